"""Tracker settings that may change while a stream runs, passed explicitly to every step.

The node's live parameters (`keep_seconds`, ...) reach the tracker through a `TrackSettings`
given to `SPVIS.step(..., settings=...)`; nothing writes them into the model's config, so a
later `model.save()` persists only what the model was built with.

    settings = model.default_settings().replace(keep_seconds=30)   # the model's, one changed
    settings = TrackSettings(keep_seconds=30)       # TrackerConfig's defaults for the others
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from spvis_model.config import TrackerConfig

_DEFAULTS = TrackerConfig()


@dataclass(frozen=True)
class TrackSettings:
    """Run-time track life-cycle budgets, in seconds of stream time (header stamps).

    A field left out takes `TrackerConfig`'s default (60 s, 1 s, 3 intervals; the
    "Track life cycle" of docs/model.md), not a particular model's: to change one field of
    what a model runs with, use `model.default_settings().replace(keep_seconds=...)`. Numbers
    may be any real (Python or numpy) and are stored as float.

    Attributes:
        keep_seconds: a confirmed track that is no longer matched (lost) stays
            re-identifiable this long after it was last seen. Before that, a lost track only
            goes when its slot is needed for a new one (the least recently seen goes first).
        tentative_seconds: a track seen on one frame only (tentative) waits this long for a
            second sighting, then it is forgotten ...
        tentative_intervals: ... or this many of the stream's frame intervals, when that is
            longer (a slow stream: at 1 fps, 3 intervals are 3 s). 0: seconds only.
    """

    keep_seconds: float = float(_DEFAULTS.keep_seconds)
    tentative_seconds: float = float(_DEFAULTS.tentative_seconds)
    tentative_intervals: float = float(_DEFAULTS.tentative_intervals)

    def __post_init__(self) -> None:
        for name in ("keep_seconds", "tentative_seconds"):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"TrackSettings.{name} = {value!r}: must be a finite number "
                                 "of seconds > 0")
            object.__setattr__(self, name, float(value))
        value = self.tentative_intervals
        if not _is_real(value) or not math.isfinite(value) or value < 0:
            raise ValueError(f"TrackSettings.tentative_intervals = {value!r}: must be a finite "
                             "number >= 0")
        object.__setattr__(self, "tentative_intervals", float(value))

    def replace(self, **changes: Any) -> TrackSettings:
        """A copy with the named fields changed (checked like the constructor's)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_config(cls, cfg: TrackerConfig) -> TrackSettings:
        """The defaults a model was built with."""
        return cls(keep_seconds=float(cfg.keep_seconds),
                   tentative_seconds=float(cfg.tentative_seconds),
                   tentative_intervals=float(cfg.tentative_intervals))


def _is_real(value: object) -> bool:
    """A real number (int, float, numpy integer or floating), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
