"""Per-camera stream bookkeeping, free of ROS: the newest-frame slot, time rules, statistics,
health.

The subscription callback only `offer`s a message to its camera's slot (never blocks); the
inference worker `take`s the newest pending frame. A frame replaced before it was processed is
counted as dropped. `check_time` applies the stream time rules: a stamp earlier than the last one
(a looping bag) or a jump forward of more than `max_gap_s` resets that camera's tracker state.

`assess_health` turns a camera's statistics into a diagnostic level and message, as
diagnostic_updater users expect: WARN for stale or missing input, a high drop rate or some
rejected frames; ERROR when every frame of the window was rejected, or when a frame failed with
an unexpected error (a bug: the node logged it, reset that camera's tracks and went on).
`record_snapshot` keeps the counter history the window rates are computed from (the node calls
it once per diagnostics period).
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


OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels
HEALTH_WINDOW_S = 5.0
DROP_WARN_FRACTION = 0.5


@dataclass(frozen=True)
class Snapshot:
    """Counters of a stream at one (monotonic) time."""

    time: float
    received: int
    processed: int
    dropped: int
    rejected: int
    errors: int = 0


@dataclass
class StreamStats:
    """Counters since start (received = offered to the slot), the newest receive time
    (monotonic), recent latencies and completion times, and the snapshot history.

    ``errors`` counts frames that failed with an unexpected exception (not a bad image, not a
    model refusal); ``last_error`` is the newest one's ``Type: message``."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    rejected: int = 0
    resets: int = 0
    live_tracks: int = 0
    errors: int = 0
    last_error: str = ""
    last_received: float | None = None
    latencies: deque = field(default_factory=lambda: deque(maxlen=100))
    done_times: deque = field(default_factory=lambda: deque(maxlen=100))
    history: deque = field(default_factory=lambda: deque(maxlen=64))

    def record_snapshot(self, now: float) -> None:
        self.history.append(Snapshot(now, self.received, self.processed, self.dropped,
                                     self.rejected, self.errors))

    def window(self, now: float, seconds: float = HEALTH_WINDOW_S) -> Snapshot:
        """Counter increments over (about) the last `seconds`: against the oldest snapshot
        taken within them (zeros without history)."""
        base = next((snap for snap in self.history if now - snap.time <= seconds + 1e-6), None)
        if base is None:
            return Snapshot(0.0, 0, 0, 0, 0)
        return Snapshot(now - base.time, self.received - base.received,
                        self.processed - base.processed, self.dropped - base.dropped,
                        self.rejected - base.rejected, self.errors - base.errors)

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
        # The first id of the next state created (after a cleanup frees the state): ids are
        # unique in a camera's stream for the node's whole life.
        self.next_id = 1
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
            self.stats.received += 1
            self.stats.last_received = item.received

    def clear(self) -> None:
        """Forget the pending frame (not counted as dropped: processing was stopped)."""
        with self._lock:
            self._pending = None

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


def assess_health(stats: StreamStats, now: float, *, stale_s: float, topic: str,
                  active: bool = True, enabled: bool = True,
                  window_s: float = HEALTH_WINDOW_S) -> tuple[int, str]:
    """(level, message) of one camera for /diagnostics; every reason that applies is listed,
    the level is the worst of them."""
    if not active:
        return WARN, "inactive (lifecycle): not processing"
    if not enabled:
        return WARN, "disabled (~/enable): not processing"
    reasons: list[tuple[int, str]] = []
    if stats.last_received is None:
        reasons.append((WARN, f"no input received yet on {topic}"))
    elif now - stats.last_received > stale_s:
        reasons.append((WARN, f"stale input: last frame on {topic} {now - stats.last_received:.1f}"
                              f" s ago (stale_input_s = {stale_s:g})"))
    w = stats.window(now, window_s)
    if w.errors:
        reasons.append((ERROR, f"{w.errors} frame(s) of the last {w.time:.0f} s failed with an "
                               f"unexpected error ({stats.last_error}); tracks reset, still "
                               "running (see the log)"))
    if w.rejected and not w.processed:
        reasons.append((ERROR, f"all {w.rejected} frames of the last {w.time:.0f} s rejected "
                               "(bad images, see the log)"))
    elif w.rejected:
        reasons.append((WARN, f"{w.rejected} of {w.rejected + w.processed} frames of the last "
                              f"{w.time:.0f} s rejected (see the log)"))
    if w.received and w.dropped / w.received > DROP_WARN_FRACTION:
        reasons.append((WARN, f"dropping {100 * w.dropped / w.received:.0f}% of frames (newest "
                              "frame wins: the model is slower than the input)"))
    if not reasons:
        return OK, "running"
    return max(level for level, _ in reasons), "; ".join(text for _, text in reasons)
