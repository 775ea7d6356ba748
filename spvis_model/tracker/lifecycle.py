"""The track life cycle, driven by the scene and by stream time (header stamps), not frames.

    born ──► TENTATIVE ──(matched again)──► ACTIVE ◄──(re-identified)──┐
                │                             │                        │
       (tentative_seconds unseen)      (not matched)                 LOST
                ▼                             └───────────────────────►│
              FREE ◄──────────(keep_seconds unseen, or evicted)────────┘

- A newborn track is TENTATIVE; a tentative track that misses a frame stays tentative (it
  waits for a second sighting for `tentative_seconds`, or `tentative_intervals` frame
  intervals when the stream is slower) instead of being dropped.
- A confirmed track that is not matched is LOST. It stays re-identifiable for `keep_seconds`
  (long by default: objects come back after tens of seconds).
- When a birth needs a slot and none is free, a slot is taken from a track that is not
  visible this frame: waiting tentative tracks first, then lost ones, least recently seen
  first. A track matched this frame is never evicted.
- Ids are int64, unique within a stream and never reused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from spvis_model.tracker.detections import Detections
from spvis_model.tracker.geometry import soft_iou
from spvis_model.tracker.settings import TrackSettings
from spvis_model.tracker.state import ACTIVE, FREE, LOST, TENTATIVE, TrackerState

DUPLICATE_IOU = 0.7  # a new detection overlapping a tracked one this much is the same object


@dataclass
class Births:
    """Tracks started this frame.

    Attributes:
        slots: (B,) int64 state slots given to the new tracks.
        dets: (B,) int64 detection each was born from.
    """

    slots: torch.Tensor
    dets: torch.Tensor

    def mask(self, m: int) -> torch.Tensor:
        """(m,) bool: the slots that hold a newborn track."""
        out = torch.zeros(m, dtype=torch.bool, device=self.slots.device)
        out[self.slots] = True
        return out


def expire(state: TrackerState, stamp: float, settings: TrackSettings,
           matched: torch.Tensor) -> TrackerState:
    """Free the tracks that this frame did not match either and that were last seen too long
    ago: lost tracks after `keep_seconds`, tentative ones after `tentative_seconds`; their
    memory is forgotten. Expiry runs after association, so a track always gets one more frame
    to be matched on, however low the frame rate (at 1 fps, a budget checked before
    association would drop every tentative track before its second sighting).

    Args:
        matched: (M,) bool, the slots matched this frame.
    """
    since = stamp - state.last_seen
    gone = ~matched & (((state.status == LOST) & (since > settings.keep_seconds)) | (
        (state.status == TENTATIVE) & (since > tentative_budget(state, stamp, settings))))
    return free_slots(state, gone)


def tentative_budget(state: TrackerState, stamp: float, settings: TrackSettings) -> float:
    """How long a tentative track waits for its second sighting: `tentative_seconds`, or
    `tentative_intervals` frame intervals of the stream when that is longer (the interval is
    this frame's distance to the previous one), so a slow stream gives a new track as many
    chances as a fast one. Seconds either way, never a frame count."""
    budget = settings.tentative_seconds
    if state.has_stamp() and settings.tentative_intervals > 0:
        budget = max(budget, settings.tentative_intervals * (stamp - float(state.last_stamp)))
    return budget


def free_slots(state: TrackerState, slots: torch.Tensor) -> TrackerState:
    """The state with the (M,) bool `slots` freed: status FREE, id -1, no snapshots."""
    return dataclasses.replace(
        state,
        status=torch.where(slots, torch.full_like(state.status, FREE), state.status),
        ids=torch.where(slots, torch.full_like(state.ids, -1), state.ids),
        snap_valid=state.snap_valid & ~slots[:, None],
        snap_next=torch.where(slots, torch.zeros_like(state.snap_next), state.snap_next))


def select_births(dets: Detections, match: torch.Tensor, new_track_score: float,
                  duplicate_iou: float = DUPLICATE_IOU) -> torch.Tensor:
    """Detections that start tracks: confident (birth score >= new_track_score), unmatched,
    and not overlapping (IoU > duplicate_iou) a matched detection or one already chosen;
    greedy by birth score (`Detections.birth_score`).

    Args:
        dets: this frame's detections.
        match: (M,) detection index per slot, -1 for none.

    Returns:
        (B,) int64 detection indices, best first.
    """
    cand = dets.candidates
    used = match[match >= 0]
    birth = dets.birth_score
    left = cand[~torch.isin(cand, used) & (birth[cand] >= new_track_score)]
    if left.numel() == 0:
        return left
    left = left[birth[left].argsort(descending=True)]
    chosen: list[int] = []
    taken = used.tolist()
    for det in left.tolist():
        if taken and float(soft_iou(dets.low[det][None], dets.low[taken]).max()) > duplicate_iou:
            continue
        chosen.append(det)
        taken.append(det)
    return torch.tensor(chosen, dtype=torch.int64, device=cand.device)


def allocate_slots(state: TrackerState, matched: torch.Tensor, count: int) -> torch.Tensor:
    """Up to `count` slots for new tracks: free slots first (in index order), then evicted
    ones, from tracks not matched this frame: tentative before lost, least recently seen
    first. Active and matched tracks are never evicted.

    Args:
        matched: (M,) bool, the slots matched this frame.

    Returns:
        (<= count,) int64 slots.
    """
    status = state.status
    free = torch.nonzero(status == FREE).flatten()
    evictable = ((status == TENTATIVE) | (status == LOST)) & ~matched
    cands = torch.nonzero(evictable).flatten()
    if cands.numel():
        # Tentative (rank 0) before lost (rank 1); then oldest last_seen first.
        rank = (status[cands] == LOST).double()
        order = torch.argsort(state.last_seen[cands], stable=True)
        cands = cands[order]
        cands = cands[torch.argsort(rank[order], stable=True)]
    return torch.cat([free, cands])[:count]


def place_births(state: TrackerState, dets: torch.Tensor, slots: torch.Tensor,
                 stamp: float) -> tuple[TrackerState, Births]:
    """Start tentative tracks from detections `dets` (B,) in `slots` (<= B,) (a birth without a
    slot is dropped). Evicted tracks are forgotten; the new ones get fresh ids."""
    n = slots.numel()
    dets = dets[:n]
    if n == 0:
        return state, Births(slots, dets)
    state = free_slots(state, torch.zeros_like(state.status, dtype=torch.bool).index_fill(
        0, slots, True))
    next_id = state.next_id
    new_ids = next_id + torch.arange(n, dtype=torch.int64, device=next_id.device)
    stamp_t = torch.full((n,), float(stamp), dtype=torch.float64, device=slots.device)
    zero = torch.zeros(n, dtype=state.hits.dtype, device=slots.device)
    state = dataclasses.replace(
        state,
        status=state.status.index_put((slots,), torch.full_like(slots, TENTATIVE)),
        ids=state.ids.index_put((slots,), new_ids.to(slots.device)),
        first_seen=state.first_seen.index_put((slots,), stamp_t),
        last_seen=state.last_seen.index_put((slots,), stamp_t),
        hits=state.hits.index_put((slots,), zero),
        next_id=next_id + n)
    return state, Births(slots, dets)


def advance(status: torch.Tensor, matched: torch.Tensor, born: torch.Tensor) -> torch.Tensor:
    """Statuses after this frame (see the module diagram).

    Args:
        status: (V,) statuses of live tracks (newborn ones already TENTATIVE).
        matched: (V,) bool, matched this frame; born: (V,) bool, born this frame.

    Returns:
        (V,) new statuses.
    """
    confirmed = torch.full_like(status, ACTIVE)
    unmatched = torch.where(status == TENTATIVE, status, torch.full_like(status, LOST))
    return torch.where(born, torch.full_like(status, TENTATIVE),
                       torch.where(matched, confirmed, unmatched))

