"""Per-camera stream bookkeeping, free of ROS: the newest-frame slot, time rules, statistics.

The subscription callback only `offer`s a message to its camera's slot (never blocks); the
inference worker `take`s the newest pending frame. A frame replaced before it was processed is
counted as dropped. `check_time` applies the stream time rules: a stamp earlier than the last one
(a looping bag) or a jump forward of more than `max_gap_s` resets that camera's tracker state.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Pending:
    """A message waiting for the worker, with its receive time (monotonic seconds)."""

    msg: Any
    received: float


@dataclass
class StreamStats:
    processed: int = 0
    dropped: int = 0
    rejected: int = 0
    resets: int = 0
    live_tracks: int = 0
    latencies: deque = field(default_factory=lambda: deque(maxlen=100))
    done_times: deque = field(default_factory=lambda: deque(maxlen=100))

    def frame_rate(self, now: float, window: float = 5.0) -> float:
        recent = [t for t in self.done_times if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)

    def latency_ms(self) -> float:
        return 1e3 * sorted(self.latencies)[len(self.latencies) // 2] if self.latencies else 0.0


class Stream:
    """One camera: its pending frame, its tracker state (owned by the worker) and its stats."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._pending: Pending | None = None
        self.state: Any = None  # TrackerState, created by the worker
        self.last_stamp: float | None = None
        self.reset_requested = False
        self.stats = StreamStats()

    def offer(self, msg: Any) -> None:
        """Keep the newest message; a replaced unprocessed one counts as dropped."""
        item = Pending(msg, time.monotonic())
        with self._lock:
            if self._pending is not None:
                self.stats.dropped += 1
            self._pending = item

    def take(self) -> Pending | None:
        with self._lock:
            item, self._pending = self._pending, None
            return item

    def has_pending(self) -> bool:
        with self._lock:
            return self._pending is not None

    def check_time(self, stamp: float, max_gap_s: float) -> str | None:
        """Apply the time rules before processing `stamp`; returns why the state must be reset
        (and forgets the last stamp), or None."""
        reason = None
        if self.reset_requested:
            reason = "reset requested"
        elif self.last_stamp is not None and stamp < self.last_stamp:
            reason = (f"time went backwards ({self.last_stamp:.3f} -> {stamp:.3f} s; a looping "
                      "bag?)")
        elif self.last_stamp is not None and stamp - self.last_stamp > max_gap_s:
            reason = (f"gap of {stamp - self.last_stamp:.3f} s > max_gap_s = {max_gap_s:.3f} s")
        if reason is not None:
            self.reset_requested = False
            self.last_stamp = None
            self.stats.resets += 1
        return reason
