"""Time and motion of the synthetic videos: frame time stamps, object paths and the camera.

All motion is a function of time in seconds, sampled at each frame's stamp, so dropped frames
and irregular intervals show up as larger (or uneven) displacements between frames, as they do
in a real recording.

- `frame_times`: nominal interval 1/fps, each capture jittered, dropped frames left out.
- `object_path`: curved paths (a turn rate that changes at random times), speed that rises and
  falls (acceleration), and mirror bounces off the walls of a box (`fold`). A box larger than the
  view makes the object leave the frame and come back.
- `camera_path`: smooth pan (two sinusoids per axis) and zoom (exp of a sinusoid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIM_RATE = 60.0
"""Samples per second of the motion integration grid."""


@dataclass(frozen=True)
class Box:
    """Axis-aligned box [x0, x1] x [y0, y1] in world pixels."""

    x0: float
    y0: float
    x1: float
    y1: float

    def shrink(self, dx: float, dy: float) -> Box:
        """The box with each side moved inwards by (dx, dy); collapses to its centre line when
        the box is too small."""
        cx, cy = (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2
        hx = max(0.0, (self.x1 - self.x0) / 2 - dx)
        hy = max(0.0, (self.y1 - self.y0) / 2 - dy)
        return Box(cx - hx, cy - hy, cx + hx, cy + hy)


def frame_times(rng: np.random.Generator, n: int, fps: float, drop_prob: float,
                jitter: float) -> tuple[np.ndarray, np.ndarray]:
    """Stamps of `n` frames, in seconds from the first, and dropped frames before each frame.

    Captures are due every 1/fps seconds; each capture's time is moved by a uniform offset of
    +-jitter/2 intervals, so consecutive kept frames are (1 +- jitter) intervals apart. Before
    each frame after the first, a run of captures is dropped with probability `drop_prob` each
    (geometric, at most 8), so a gap after k drops is about k + 1 intervals.

    Returns:
        stamps: float64 (n,), strictly increasing, stamps[0] = 0, rounded to microseconds.
        dropped: int64 (n,), captures dropped just before each frame (0 for frame 0).
    """
    dropped = np.zeros(n, np.int64)
    for t in range(1, n):
        k = 0
        while k < 8 and rng.random() < drop_prob:
            k += 1
        dropped[t] = k
    slots = np.arange(n) + np.cumsum(dropped)
    capture = (slots + rng.uniform(-jitter / 2, jitter / 2, size=n)) / fps
    stamps = np.round(capture - capture[0], 6)
    return stamps, dropped


def fold(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Mirror-reflect free positions `x` into [lo, hi] (elastic bounces off both walls)."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, lo)
    y = np.mod(x - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


def object_path(rng: np.random.Generator, stamps: np.ndarray, start: tuple[float, float],
                box: Box, speed: float, turn: float, accel: float) -> np.ndarray:
    """World positions (n, 2) of an object at `stamps` (seconds).

    Heading starts random and turns at a rate drawn from U(-turn, turn) rad/s that changes at
    random times (about every 2 s); speed (px/s) is `speed` * (1 + accel * sin(...)) with a
    random 2-6 s period; positions bounce off the walls of `box` (the object's centre stays in
    it).
    """
    t_end = float(stamps[-1]) if len(stamps) else 0.0
    steps = int(np.ceil(t_end * SIM_RATE)) + 2
    grid = np.arange(steps) / SIM_RATE
    dt = 1.0 / SIM_RATE
    n_turns = max(1, int(np.ceil(t_end / 2.0)) + 1)
    switch = np.sort(rng.uniform(0, max(t_end, 1e-6), size=n_turns - 1))
    rates = rng.uniform(-turn, turn, size=n_turns)
    omega = rates[np.searchsorted(switch, grid)]
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(omega) * dt
    period, phase = rng.uniform(2.0, 6.0), rng.uniform(0, 2 * np.pi)
    v = speed * (1.0 + accel * np.sin(2 * np.pi * grid / period + phase))
    x = start[0] + np.concatenate(([0.0], np.cumsum(v * np.cos(heading) * dt)[:-1]))
    y = start[1] + np.concatenate(([0.0], np.cumsum(v * np.sin(heading) * dt)[:-1]))
    x = fold(x, box.x0, box.x1)
    y = fold(y, box.y0, box.y1)
    return np.stack([np.interp(stamps, grid, x), np.interp(stamps, grid, y)], axis=1)


def camera_path(rng: np.random.Generator, stamps: np.ndarray, centre: tuple[float, float],
                pan: tuple[float, float], zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre (n, 2) in world pixels and zoom factor (n,) at `stamps`.

    The centre moves around `centre` by at most `pan` (px, per axis): two sinusoids per axis.
    Zoom is exp(zoom * sin(...)), so it stays in [exp(-zoom), exp(zoom)]. Periods are 0.7-2
    times the clip's duration (at least 2 s, at most 40 s), so short clips move too.
    """
    t = np.asarray(stamps, np.float64)
    duration = float(t[-1] - t[0]) if len(t) else 0.0

    def periods(k: int) -> np.ndarray:
        return np.clip(rng.uniform(0.7, 2.0, size=k) * max(duration, 2.0), 2.0, 40.0)

    out = np.empty((len(t), 2))
    for axis in range(2):
        period = periods(2)
        phases = rng.uniform(0, 2 * np.pi, size=2)
        wave = (0.6 * np.sin(2 * np.pi * t / period[0] + phases[0])
                + 0.4 * np.sin(2 * np.pi * t / period[1] + phases[1]))
        out[:, axis] = centre[axis] + pan[axis] * wave
    zoom_period, phase = float(periods(1)[0]), rng.uniform(0, 2 * np.pi)
    zooms = np.exp(zoom * np.sin(2 * np.pi * t / zoom_period + phase))
    return out, zooms
