"""Tracker settings that may change while a stream runs, passed explicitly to every step.

The node's live parameters (`keep_seconds`, ...) reach the tracker through a `TrackSettings`
given to `SPVIS.step(..., settings=...)`; nothing writes them into the model's config, so a
later `model.save()` persists only what the model was built with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spvis_model.config import TrackerConfig


@dataclass(frozen=True)
class TrackSettings:
    """Run-time track life-cycle budgets, in seconds of stream time (header stamps).

    Attributes:
        keep_seconds: a confirmed track that is no longer matched (lost) stays
            re-identifiable this long after it was last seen. Before that, a lost track only
            goes when its slot is needed for a new one (the least recently seen goes first).
        tentative_seconds: a track seen on one frame only (tentative) waits this long for a
            second sighting, then it is forgotten ...
        tentative_intervals: ... or this many of the stream's frame intervals, when that is
            longer (a slow stream: at 1 fps, 3 intervals are 3 s). 0: seconds only.
    """

    keep_seconds: float
    tentative_seconds: float
    tentative_intervals: float = 0.0

    def __post_init__(self) -> None:
        for name in ("keep_seconds", "tentative_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value <= 0:
                raise ValueError(f"TrackSettings.{name} = {value!r}: must be a finite number "
                                 "of seconds > 0")
        value = self.tentative_intervals
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or value < 0:
            raise ValueError(f"TrackSettings.tentative_intervals = {value!r}: must be a finite "
                             "number >= 0")

    @classmethod
    def from_config(cls, cfg: TrackerConfig) -> TrackSettings:
        """The defaults a model was built with."""
        return cls(keep_seconds=float(cfg.keep_seconds),
                   tentative_seconds=float(cfg.tentative_seconds),
                   tentative_intervals=float(cfg.tentative_intervals))
