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


# --- false positives on real video the model never trained on (issue: confident garbage) ------
# Every published instance on these clips is a false positive: the demo model's classes are
# synthetic shapes, and the clips (spvis_model/data/real_media.py role "heldout": opencv-doc's
# vtest.avi street scene and Megamind.avi) are used by nothing in training or selection.
FP_GOAL = 0.05  # published instances per frame at the node's default score_threshold (0.5)
FP_CLIPS = {"vtest": (0, 8), "megamind": (20, 5)}  # media: (first frame, frame step)
FP_FRAMES = 30
# Measured with the shipped model (stop 27): vtest 0.000, Megamind 0.000 (the stop-25 model:
# 0.033, 1 of 30 frames), so both clips are held to the goal. (On the longer object-free
# real_heldout clips the worst of 12 publishes 0.050 per frame, at the goal: docs/model.md.)
FP_BOUND = {"vtest": FP_GOAL, "megamind": FP_GOAL}


@pytest.mark.parametrize("media", sorted(FP_CLIPS))
def test_shipped_model_is_silent_on_held_out_real_video(media):
    from spvis_model.data.real_media import get_media, video_reader

    try:
        reader = video_reader(media)
    except FileNotFoundError as err:  # MediaNotFoundError: opencv-doc not installed
        pytest.skip(str(err))
    first, step = FP_CLIPS[media]
    fps = get_media(media).fps
    model = SPVIS.from_checkpoint(default_checkpoint())
    state = model.init_state()
    published = []
    for i in range(FP_FRAMES):
        k = first + i * step
        state, inst = model.step(state, reader.frame(k), k / fps)
        published.append(int((inst.scores >= 0.5).sum()))
    reader.close()
    rate = sum(published) / len(published)
    assert rate <= FP_BOUND[media], (f"{media}: {rate:.3f} published instances per frame "
                                     f"(bound {FP_BOUND[media]}, goal <= {FP_GOAL}); per "
                                     f"frame: {published}")
