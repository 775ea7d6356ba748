"""The demo model shipped in the package: it loads, fits the size budget, and segments and tracks
freshly generated synthetic video far better than an untrained model of the same architecture
(a check that fails if the wrong or a broken checkpoint is shipped)."""

from __future__ import annotations

import dataclasses

import pytest

from spvis_model.data.synthetic import generate, preset
from spvis_model.eval import evaluate
from spvis_model.eval.runner import run_model_on_dataset
from spvis_model.model import SPVIS
from spvis_model.weights import default_checkpoint

CLASSES = ["disk", "square", "triangle", "star", "ring", "cross"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two unseen videos (a seed the training set never used), medium difficulty."""
    out = tmp_path_factory.mktemp("shipped_eval")
    cfg = dataclasses.replace(preset("medium"), videos=2, frames=20, seed=424242)
    return generate(cfg, out)


def test_shipped_checkpoint_loads_within_budget():
    path = default_checkpoint()
    assert path.stat().st_size <= 30 * 2**20
    model = SPVIS.from_checkpoint(path)
    assert model.class_names == CLASSES
    assert model.cfg.backbone.name == "lite0"


def test_shipped_model_beats_an_untrained_one(clips, tmp_path):
    shipped = run_model_on_dataset(default_checkpoint(), clips, progress=False)
    untrained_path = tmp_path / "untrained.pt"
    trained = SPVIS.from_checkpoint(default_checkpoint())
    SPVIS(trained.cfg, pretrained_backbone=False).save(untrained_path)
    untrained = run_model_on_dataset(untrained_path, clips, progress=False)
    ap_shipped = evaluate(clips, shipped)["AP50"] if shipped else 0.0
    ap_untrained = evaluate(clips, untrained)["AP50"] if untrained else 0.0
    assert ap_shipped >= ap_untrained + 0.3, (ap_shipped, ap_untrained)
