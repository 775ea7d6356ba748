"""Stage 1's instance-contrastive term (spvis_model.training.instance_contrast) and its wiring
into the segmenter task."""

from __future__ import annotations

import math

import pytest
import torch
from test_training import read_log, run_toy

from spvis_model.config import ConfigError
from spvis_model.training.instance_contrast import instance_contrast_loss


def _frames(*rows: list[list[float]]) -> torch.Tensor:
    """(F, Q, C) from per-frame lists of query vectors."""
    return torch.tensor(rows, dtype=torch.float32)


def _match(pred: list[int], tgt: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(pred), torch.tensor(tgt)


def test_loss_is_low_when_each_object_keeps_its_direction_and_high_when_swapped():
    # Two objects (ids 7 and 9), three queries per frame; in frame 1 the objects sit on other
    # queries than in frame 0 (what matters is the matching, not the query index).
    q0 = [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]
    same = [[0.7, 0.7], [1.0, 0.0], [0.0, 1.0]]      # id 7 -> query 1, id 9 -> query 2
    ids = [torch.tensor([7, 9]), torch.tensor([9, 7])]
    idx = [_match([0, 1], [0, 1]), _match([2, 1], [0, 1])]  # frame 1: tgt 0 (id 9) on q2
    good, n = instance_contrast_loss(_frames(q0, same), [2], idx, ids, temperature=0.1)
    swapped_idx = [_match([0, 1], [0, 1]), _match([1, 2], [0, 1])]
    bad, _ = instance_contrast_loss(_frames(q0, same), [2], swapped_idx, ids, temperature=0.1)
    assert n == 4  # both objects, both directions
    assert good.item() < 1e-3
    # Swapped: every anchor's positive is orthogonal, its negative identical: log(1 + e^10).
    assert bad.item() == pytest.approx(math.log1p(math.exp(10.0)), rel=1e-4)


def test_same_class_neighbours_are_negatives_and_clips_do_not_mix():
    # Clip A (2 frames): objects 1 and 2. Clip B (2 frames): a lone object 1, which has no
    # negative in its other frame and must not borrow clip A's objects as negatives.
    a0 = [[1.0, 0.0], [0.0, 1.0]]
    b0 = [[0.6, 0.8], [0.0, 0.0]]
    ids = [torch.tensor([1, 2]), torch.tensor([1, 2]), torch.tensor([1]), torch.tensor([1])]
    idx = [_match([0, 1], [0, 1]), _match([0, 1], [0, 1]), _match([0], [0]), _match([0], [0])]
    loss, n = instance_contrast_loss(_frames(a0, a0, b0, b0), [2, 2], idx, ids, 0.5)
    assert n == 4  # clip A only
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(0.0)))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_no_anchor_gives_a_zero_that_keeps_the_gradient():
    q = torch.randn(2, 3, 4, requires_grad=True)
    ids = [torch.tensor([1]), torch.tensor([2])]
    idx = [_match([0], [0]), _match([1], [0])]
    loss, n = instance_contrast_loss(q, [2], idx, ids)
    assert n == 0 and loss.item() == 0.0
    loss.backward()
    assert q.grad is not None and torch.count_nonzero(q.grad) == 0


def test_bad_arguments_are_named():
    q = torch.zeros(2, 3, 4)
    idx = [_match([], []), _match([], [])]
    ids = [torch.zeros(0, dtype=torch.int64)] * 2
    with pytest.raises(ValueError, match="temperature"):
        instance_contrast_loss(q, [2], idx, ids, temperature=0.0)
    with pytest.raises(ValueError, match="3 in clips"):
        instance_contrast_loss(q, [3], idx, ids)


def test_stage1_task_trains_and_logs_the_term(tmp_path):
    run_toy(tmp_path, steps=4, checkpoint_every=4,
            task_options={"num_points": 256, "contrast_weight": 1.0})
    rows = [r for r in read_log(tmp_path / "log.csv") if "loss" in r]
    assert len(rows) == 4
    anchors = [r["contrast_anchors"] for r in rows]
    # ToyClips: two objects of different classes in two frames, so most clips have anchors.
    assert all(a >= 0 for a in anchors) and sum(anchors) > 0
    assert all(math.isfinite(r["loss_contrast"]) for r in rows)


@pytest.mark.parametrize("options", [{"contrast_weight": -1.0},
                                     {"contrast_temperature": 0.0},
                                     {"contrast_weight": True}])
def test_bad_contrast_options_name_the_field(tmp_path, options):
    with pytest.raises(ConfigError, match="contrast_"):
        run_toy(tmp_path, task_options={"num_points": 256, **options})
