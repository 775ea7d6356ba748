"""Batched multi-camera inference: one segmenter forward over the newest frame of each camera,
then each camera's own tracker. Per camera, the instances, ids and states are those of
stepping that camera alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from synthetic_clip import crossing_clip

from spvis_model.tracker.state import TrackerState


def cameras(n_frames: int = 8) -> list[tuple[list[np.ndarray], list[float]]]:
    """Three cameras: the crossing clip, the same run backwards (objects cross the other
    way), and another seed starting later, with its own stamps."""
    a, _ = crossing_clip(n_frames, seed=7)
    c, _ = crossing_clip(n_frames + 3, seed=3)
    return [(a, [0.1 * i for i in range(n_frames)]),
            (a[::-1], [5.0 + 0.25 * i for i in range(n_frames)]),
            (c[3:], [100.0 + 0.5 * i for i in range(n_frames)])]


def test_batched_cameras_equal_one_by_one(trained_tiny):
    model = trained_tiny
    cams = cameras()
    alone = [model.init_state() for _ in cams]
    together = [model.init_state() for _ in cams]
    seen = 0
    for t in range(len(cams[0][0])):
        frames = [f[t] for f, _ in cams]
        stamps = [s[t] for _, s in cams]
        expected = []
        for k in range(len(cams)):
            alone[k], inst = model.step(alone[k], frames[k], stamps[k])
            expected.append(inst)
        results = model.step_batch(together, frames, stamps)
        together = [state for state, _ in results]
        for k, (state, inst) in enumerate(results):
            got, want = inst, expected[k]
            assert np.array_equal(got.ids, want.ids), (t, k)
            assert got.label_names == want.label_names, (t, k)
            assert np.array_equal(got.masks, want.masks), (t, k)
            assert np.array_equal(got.boxes, want.boxes), (t, k)
            np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-6)
            np.testing.assert_allclose(got.visibility, want.visibility, rtol=0, atol=1e-6)
            assert np.array_equal(got.first_seen, want.first_seen), (t, k)
            for f in dataclasses.fields(TrackerState):
                a, b = getattr(state, f.name), getattr(alone[k], f.name)
                if a.is_floating_point():
                    assert torch.allclose(a, b, atol=1e-5, equal_nan=True), (t, k, f.name)
                else:
                    assert torch.equal(a, b), (t, k, f.name)
            seen += len(got)
    assert seen > 0
    # Ids are per camera: each camera numbers its own tracks from 1.
    assert all(int(s.ids[s.ids > 0].min()) == 1 for s in together if (s.ids > 0).any())


def test_batch_refuses_mixed_sizes_and_bad_lengths(trained_tiny):
    model = trained_tiny
    frames, _ = crossing_clip(2)
    small = frames[0][:32]
    states = [model.init_state(), model.init_state()]
    with pytest.raises(ValueError, match=r"frames\[1\] is 96x32"):
        model.step_batch(states, [frames[0], small], [0.0, 0.0])
    with pytest.raises(ValueError, match="one of each per stream"):
        model.step_batch(states, [frames[0]], [0.0, 0.0])
    state, _ = model.step(model.init_state(), frames[0], 1.0)
    with pytest.raises(ValueError, match="time went backwards"):
        model.step_batch([state, model.init_state()], frames, [0.5, 0.5])
