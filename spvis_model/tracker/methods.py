"""The association methods, side by side: `pgt` (SPVIS) and `minvis` (the baseline).

`tracker.association` in the config picks one from `METHODS`. Each takes the same inputs and
returns the same `(TrackerState, TrackStep)`, so everything above the tracker (the model, the
node, training, evaluation, ablations) treats them alike.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from spvis_model.tracker.minvis import minvis_step
from spvis_model.tracker.settings import TrackSettings
from spvis_model.tracker.state import TrackerState
from spvis_model.tracker.tracker import Tracker
from spvis_model.tracker.types import FrameFeatures, TrackStep

StepFn = Callable[[Tracker, TrackerState, FrameFeatures, float, nn.Module, TrackSettings],
                  tuple[TrackerState, TrackStep]]


def _pgt(tracker: Tracker, state: TrackerState, feats: FrameFeatures, stamp: float,
         heads: nn.Module, settings: TrackSettings) -> tuple[TrackerState, TrackStep]:
    return tracker.step(state, feats, stamp, heads, settings)


def _minvis(tracker: Tracker, state: TrackerState, feats: FrameFeatures, stamp: float,
            heads: nn.Module, settings: TrackSettings) -> tuple[TrackerState, TrackStep]:
    return minvis_step(tracker.cfg, state, feats, stamp)


METHODS: dict[str, StepFn] = {"pgt": _pgt, "minvis": _minvis}
