"""A long stream through the real (briefly trained) tiny model: the state's memory stays
constant, and ids are never reused as objects come, go and come back."""

from __future__ import annotations

import numpy as np
from synthetic_clip import H, W, scene

from spvis_model.tracker.settings import TrackSettings
from spvis_model.tracker.state import FREE


def stream_frame(i: int, rng: np.random.Generator) -> np.ndarray:
    """Frame i: the disk is in view for 6 frames of every 16, the square for 10 of every 22,
    each entering at a different place every time."""
    objects = []
    if i % 16 < 6:
        objects.append((0, 10 + (i // 16 * 23) % 70 + 3 * (i % 16), 20, 9.0, (200, 40, 40)))
    if i % 22 < 10:
        objects.append((1, 80 - (i // 22 * 17) % 60 - 2 * (i % 22), 44, 8.0, (40, 60, 210)))
    img, _ = scene(objects, rng)
    return img


def test_thousand_steps_constant_state_and_fresh_ids(trained_tiny):
    model = trained_tiny
    # Absences of 5-6 s with a 2 s memory: every return is a new track.
    settings = TrackSettings(keep_seconds=2.0, tentative_seconds=1.0)
    rng = np.random.default_rng(0)
    state = model.init_state()
    nbytes = state.nbytes()
    dead: set[int] = set()
    previous: set[int] = set()
    for i in range(1000):
        state, inst = model.step(state, stream_frame(i, rng), i * 0.5, settings)
        assert state.nbytes() == nbytes
        assert state.snapshots.shape[0] == model.cfg.tracker.max_tracks
        live = {int(x) for x in state.ids[state.status != FREE]}
        assert not live & dead, f"step {i}: id(s) {live & dead} came back after dying"
        assert set(inst.ids.tolist()) <= live
        dead |= previous - live
        previous = live
    # Births and deaths happened (about one per appearance: 1000/16 + 1000/22 ≈ 108).
    assert len(dead) >= 60, f"only {len(dead)} tracks died"
    assert inst.masks.shape[1:] == (H, W) or len(inst) == 0
