"""Point sampling, Hungarian matcher and SetCriterion; a tiny overfit of the whole segmenter."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from spvis_model.modeling.pixel_decoder import MSDeformAttnPixelDecoder
from spvis_model.modeling.transformer_decoder import MaskedAttentionDecoder
from spvis_model.training import criterion as criterion_module
from spvis_model.training.criterion import CriterionOutput, SetCriterion
from spvis_model.training.matcher import HungarianMatcher
from spvis_model.training.point_sample import point_sample, uncertain_point_coords_with_randomness


def rect(h: int, w: int, rows: slice, cols: slice) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[rows, cols] = 1.0
    return m


def logits_for(masks: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """Confident mask logits (+scale inside, -scale outside)."""
    return scale * (2.0 * masks - 1.0)


def class_logits(labels: list[int], num_classes: int, scale: float = 10.0) -> torch.Tensor:
    """(len(labels), K+1) logits confident in each label (K = no object)."""
    return scale * F.one_hot(torch.tensor(labels), num_classes + 1).float()


# --- point sampling ------------------------------------------------------------------------------

def test_point_sample_reads_pixel_centres():
    img = torch.arange(12.0).view(1, 1, 3, 4)
    coords = torch.tensor([[[0.5 / 4, 0.5 / 3], [3.5 / 4, 2.5 / 3], [1.5 / 4, 1.5 / 3]]])
    torch.testing.assert_close(point_sample(img, coords), torch.tensor([[[0.0, 11.0, 5.0]]]))


def test_uncertain_points_concentrate_where_logits_are_near_zero():
    torch.manual_seed(0)
    logits = torch.full((2, 1, 32, 32), 20.0)
    logits[:, :, :, 8:24] = 0.0  # uncertain band: x in [0.25, 0.75]
    coords = uncertain_point_coords_with_randomness(logits, 100, 3.0, 0.75)
    assert coords.shape == (2, 100, 2)
    assert ((coords >= 0) & (coords <= 1)).all()
    important = coords[:, :75, 0]
    assert ((important > 0.24) & (important < 0.76)).all()
    # Only uniform points: about half fall outside the band.
    uniform = uncertain_point_coords_with_randomness(logits, 400, 1.0, 0.0)[..., 0]
    outside = ((uniform < 0.25) | (uniform > 0.75)).float().mean()
    assert 0.35 < outside < 0.65
    with pytest.raises(ValueError, match="oversample_ratio"):
        uncertain_point_coords_with_randomness(logits, 10, 0.5, 0.75)


# --- matcher -------------------------------------------------------------------------------------

def hand_case() -> tuple[torch.Tensor, torch.Tensor, list[dict[str, torch.Tensor]]]:
    """3 predictions vs 2 targets: pred 0 is target 1, pred 2 is target 0, pred 1 is junk."""
    a = rect(16, 16, slice(None), slice(0, 8))  # left half, class 0
    b = rect(16, 16, slice(0, 8), slice(8, 16))  # top-right quadrant, class 1
    junk = rect(16, 16, slice(12, 16), slice(12, 16))
    pred_masks = logits_for(torch.stack([b, junk, a]))[None]
    pred_logits = class_logits([1, 3, 0], num_classes=3)[None]  # junk says "no object"
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.stack([a, b]).bool()}]
    return pred_logits, pred_masks, targets


def test_matcher_finds_the_right_pairs():
    torch.manual_seed(0)
    pred_logits, pred_masks, targets = hand_case()
    (src, tgt), = HungarianMatcher(num_points=256)(pred_logits, pred_masks, targets)
    assert src.dtype == tgt.dtype == torch.int64
    assert src.tolist() == [0, 2]
    assert tgt.tolist() == [1, 0]


def test_matcher_is_optimal_against_brute_force():
    """Class cost only (deterministic): the assignment minimises the summed cost."""
    torch.manual_seed(0)
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=0.0, cost_dice=0.0, num_points=4)
    for _ in range(5):
        logits = torch.randn(1, 4, 6)
        labels = torch.randint(0, 5, (3,))
        targets = [{"labels": labels, "masks": torch.zeros(3, 4, 4)}]
        (src, tgt), = matcher(logits, torch.zeros(1, 4, 4, 4), targets)
        cost = -logits[0].softmax(-1)[:, labels]  # (4, 3)
        got = cost[src, tgt].sum()
        best = min(cost[list(p), [0, 1, 2]].sum() for p in itertools.permutations(range(4), 3))
        assert got.item() == pytest.approx(best.item(), abs=1e-6)


def test_matcher_cost_formula():
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=50)
    c = 1.5
    logits = torch.tensor([[0.0, 1.0, 0.0]])
    cost = matcher.cost_matrix(logits, torch.full((1, 8, 8), c), torch.tensor([1]),
                               torch.ones(1, 16, 16), torch.rand(50, 2) * 0.8 + 0.1)
    p = torch.sigmoid(torch.tensor(c)).item()
    expected = (2.0 * -logits.softmax(-1)[0, 1].item()
                + 5.0 * F.softplus(torch.tensor(-c)).item()
                + 5.0 * (1.0 - (2 * p * 50 + 1) / (p * 50 + 50 + 1)))
    assert cost.shape == (1, 1)
    assert cost.item() == pytest.approx(expected, rel=1e-5)


def test_matcher_handles_zero_and_excess_targets():
    torch.manual_seed(0)
    pred_logits, pred_masks, targets = hand_case()
    matcher = HungarianMatcher(num_points=64)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 16, 16)}
    out = matcher(pred_logits.repeat(2, 1, 1), pred_masks.repeat(2, 1, 1, 1),
                  [empty, targets[0]])
    assert out[0][0].numel() == 0 and out[0][1].numel() == 0
    assert out[0][0].dtype == torch.int64
    assert out[1][0].tolist() == [0, 2] and out[1][1].tolist() == [1, 0]
    # More targets than queries: every query gets one.
    many = {"labels": torch.tensor([0, 1, 2, 0]), "masks": torch.rand(4, 16, 16)}
    (src, tgt), = matcher(pred_logits, pred_masks, [many])
    assert sorted(src.tolist()) == [0, 1, 2] and len(set(tgt.tolist())) == 3


def test_matcher_rejects_non_finite_predictions():
    pred_logits, pred_masks, targets = hand_case()
    pred_masks[0, 1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        HungarianMatcher(num_points=16 * 16 * 8)(pred_logits, pred_masks, targets)


# --- criterion -----------------------------------------------------------------------------------

def test_correct_prediction_scores_lower_than_wrong_one():
    torch.manual_seed(0)
    pred_logits, pred_masks, targets = hand_case()
    crit = SetCriterion(3, num_points=200)
    good = crit({"pred_logits": pred_logits, "pred_masks": pred_masks}, targets)
    # Wrong: every mask lies in the bottom-right quadrant, which no target touches, and every
    # query says "no object".
    wrong_masks = torch.stack([rect(16, 16, slice(8, 16), slice(8, 16)),
                               rect(16, 16, slice(8, 12), slice(8, 16)),
                               rect(16, 16, slice(12, 16), slice(8, 16))])
    wrong = crit({"pred_logits": class_logits([3, 3, 3], 3)[None],
                  "pred_masks": logits_for(wrong_masks)[None]}, targets)
    assert good.losses["loss_ce"] < 0.1 * wrong.losses["loss_ce"]
    assert wrong.losses["loss_dice"] > 0.9
    # Importance sampling puts 75% of the points on mask edges, where even the right mask's
    # interpolated values are near 0.5 and imperfect: the right prediction does not reach 0.
    assert good.losses["loss_dice"] < 0.3 * wrong.losses["loss_dice"]
    assert good.losses["loss_mask"] < 0.3 * wrong.losses["loss_mask"]
    assert good.indices[0][0].tolist() == [0, 2]
    assert good.total() < 0.2 * wrong.total()


def interior_points(monkeypatch):
    """Make the criterion sample only interior points (off-map points read 0, as in
    Mask2Former, which would blur the exact values these tests check)."""
    def sample(logits, num_points, *_):
        return torch.rand(logits.shape[0], num_points, 2) * 0.5 + 0.25
    monkeypatch.setattr(criterion_module, "uncertain_point_coords_with_randomness", sample)


def test_normalised_by_number_of_masks(monkeypatch):
    """Constant logits c against all-ones targets: every point's BCE is softplus(-c), so the
    per-mask mean is exact and the sum over masks / number of masks must equal it."""
    interior_points(monkeypatch)
    c = 0.7
    crit = SetCriterion(2, num_points=64)
    for batch, per_image in ((1, 1), (2, 1), (2, 2)):
        targets = [{"labels": torch.zeros(per_image, dtype=torch.int64),
                    "masks": torch.ones(per_image, 8, 8)} for _ in range(batch)]
        outputs = {"pred_logits": torch.zeros(batch, 3, 3),
                   "pred_masks": torch.full((batch, 3, 8, 8), c)}
        losses = crit(outputs, targets).losses
        assert losses["loss_mask"].item() == pytest.approx(F.softplus(torch.tensor(-c)).item(),
                                                           rel=1e-5)


def test_targets_at_another_resolution():
    torch.manual_seed(0)
    a = rect(32, 32, slice(4, 20), slice(8, 24))
    big = F.interpolate(a[None, None], size=(128, 128), mode="nearest")[0]
    outputs = {"pred_logits": class_logits([0, 1], 1)[None],
               "pred_masks": logits_for(torch.stack([a, 1 - a]))[None]}
    out = SetCriterion(1, num_points=500)(outputs, [{"labels": torch.tensor([0]), "masks": big}])
    assert out.indices[0][0].tolist() == [0]
    assert out.losses["loss_dice"] < 0.05


def test_zero_targets_are_finite_and_differentiable():
    torch.manual_seed(0)
    pred_logits = torch.randn(2, 4, 3, requires_grad=True)
    pred_masks = torch.randn(2, 4, 8, 8, requires_grad=True)
    aux = [{"pred_logits": pred_logits * 2, "pred_masks": pred_masks * 2}]
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 8, 8)}
    out = SetCriterion(2, num_points=32)(
        {"pred_logits": pred_logits, "pred_masks": pred_masks, "aux_outputs": aux},
        [empty, empty])
    assert all(torch.isfinite(v) for v in out.losses.values())
    assert out.losses["loss_mask"] == 0 and out.losses["loss_dice_0"] == 0
    assert out.losses["loss_ce"] > 0
    out.total().backward()
    assert pred_logits.grad is not None and pred_logits.grad.abs().max() > 0
    assert pred_masks.grad is not None and torch.isfinite(pred_masks.grad).all()
    assert [len(s) for s, _ in out.indices] == [0, 0]


def test_deep_supervision_keys_weights_and_indices():
    torch.manual_seed(0)
    dec = MaskedAttentionDecoder(16, num_classes=3, hidden_dim=16, num_queries=5, nheads=2,
                                 dim_feedforward=32, dec_layers=2, mask_dim=16)
    feats = [torch.randn(2, 16, s, s) for s in (4, 8, 16)]
    outputs = dec(feats, torch.randn(2, 16, 32, 32))
    targets = [{"labels": torch.tensor([0, 2]), "masks": torch.rand(2, 64, 64) > 0.5},
               {"labels": torch.tensor([1]), "masks": torch.rand(1, 64, 64) > 0.5}]
    crit = SetCriterion(3, num_points=64)
    out = crit(outputs, targets)
    assert isinstance(out, CriterionOutput)
    expected = {f"{k}{s}" for k in ("loss_ce", "loss_mask", "loss_dice") for s in ("", "_0", "_1")}
    assert set(out.losses) == expected
    assert set(out.weight_dict) == expected
    assert out.weight_dict["loss_ce_1"] == 2.0 and out.weight_dict["loss_dice_0"] == 5.0
    assert out.weight_dict["loss_mask"] == 5.0
    manual = sum(out.weight_dict[k] * v for k, v in out.losses.items())
    torch.testing.assert_close(out.total(), manual)
    assert [len(s) for s, _ in out.indices] == [2, 1]
    assert len(out.aux_indices) == 2
    assert crit.empty_weight.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.1])
    assert "empty_weight" not in crit.state_dict()


def test_bad_targets_raise_naming_them():
    crit = SetCriterion(2, num_points=16)
    outputs = {"pred_logits": torch.zeros(1, 3, 3), "pred_masks": torch.zeros(1, 3, 8, 8)}
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] must be in \[0, 2\)"):
        crit(outputs, [{"labels": torch.tensor([2]), "masks": torch.ones(1, 8, 8)}])
    with pytest.raises(ValueError, match=r"targets\[0\]\['masks'\]"):
        crit(outputs, [{"labels": torch.tensor([1]), "masks": torch.ones(2, 8, 8)}])
    with pytest.raises(ValueError, match="expected 1 target dicts"):
        crit(outputs, [])


def test_distributed_normalisation_single_process(tmp_path, monkeypatch):
    """The all-reduce path runs (gloo, world size 1) and gives the local normalisation."""
    interior_points(monkeypatch)
    dist = torch.distributed
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        c = 0.3
        out = SetCriterion(2, num_points=16)(
            {"pred_logits": torch.zeros(1, 2, 3), "pred_masks": torch.full((1, 2, 4, 4), c)},
            [{"labels": torch.tensor([0, 1]), "masks": torch.ones(2, 4, 4)}])
        assert out.losses["loss_mask"].item() == pytest.approx(
            F.softplus(torch.tensor(-c)).item(), rel=1e-5)
    finally:
        dist.destroy_process_group()


# --- overfit -------------------------------------------------------------------------------------

def test_segmenter_overfits_two_masks():
    """Pixel decoder + masked-attention decoder + criterion, 100 Adam steps on one fixed random
    feature map and 2 rectangles. Bounds: the matched masks reach IoU >= 0.9 at full mask
    resolution with the right classes (what "fitted" means), and the total loss (4 prediction
    layers) falls below 30% of its start; in trials it ends near 10% with IoU 1.0."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        channels = {"res2": 16, "res3": 24, "res4": 32, "res5": 48}
        strides = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
        pixel = MSDeformAttnPixelDecoder(channels, conv_dim=32, mask_dim=32, num_encoder_layers=1,
                                         n_heads=4, ffn_dim=64, norm_groups=8)
        dec = MaskedAttentionDecoder(32, num_classes=3, hidden_dim=32, num_queries=10, nheads=4,
                                     dim_feedforward=64, dec_layers=3, mask_dim=32)
        feats = {k: torch.randn(1, c, 128 // strides[k], 128 // strides[k])
                 for k, c in channels.items()}
        masks = torch.stack([rect(32, 32, slice(4, 16), slice(6, 20)),
                             rect(32, 32, slice(18, 30), slice(10, 28))])
        targets = [{"labels": torch.tensor([0, 2]), "masks": masks}]
        crit = SetCriterion(3, num_points=256)
        opt = torch.optim.Adam([*pixel.parameters(), *dec.parameters()], lr=1e-3)
        first = None
        for _ in range(100):
            pd = pixel(feats)
            loss = crit(dec(pd.multi_scale_features, pd.mask_features), targets).total()
            first = loss.item() if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pd = pixel(feats)
            out = dec(pd.multi_scale_features, pd.mask_features)
            result = crit(out, targets)
        src, tgt = result.indices[0]
        pred = out.pred_masks[0, src] > 0
        gt = masks[tgt] > 0.5
        iou = (pred & gt).sum((1, 2)) / (pred | gt).sum((1, 2))
        assert (iou >= 0.9).all(), iou
        assert out.pred_logits[0, src].argmax(-1).tolist() == targets[0]["labels"][tgt].tolist()
        assert result.total().item() < 0.3 * first, (result.total().item(), first)
    finally:
        torch.set_num_threads(threads)
