"""The tracker's host-side decisions for one frame, from one copy of their inputs.

PGT step a (association), expiry, births, slot allocation and placement are discrete
decisions. `plan_frame` makes them on host copies of the state and the detections, with the
very stage functions the device path used (`associate`, `expire`, `select_births`,
`allocate_slots`, `place_births`), so they decide exactly as before; `Tracker.step` then uploads
the results (statuses, ids, stamps, the live slots and their matches) without waiting and
runs the networks on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spvis_model.config import TrackerConfig
from spvis_model.tracker.association import associate
from spvis_model.tracker.detections import Detections, candidates
from spvis_model.tracker.lifecycle import allocate_slots, expire, place_births, select_births
from spvis_model.tracker.settings import TrackSettings
from spvis_model.tracker.state import FREE, TrackerState

HOST_STATE: tuple[str, ...] = ("status", "ids", "first_seen", "last_seen", "hits", "next_id",
                               "last_stamp", "snap_valid", "snap_next", "ref", "proto", "mask")
"""The state fields the decisions read (copied to the host once per frame)."""

LIFECYCLE_FIELDS: tuple[str, ...] = ("status", "ids", "snap_valid", "snap_next", "first_seen",
                                     "last_seen", "hits", "next_id")
"""The state fields expiry and births change (uploaded after the decisions)."""


@dataclass
class FramePlan:
    """This frame's decisions, on the host.

    Attributes:
        after: the host state after expiry and births (only `HOST_STATE` fields are real;
            the others are empty placeholders).
        cand: (D,) int64 candidate detections.
        before: (B,) int64 slots alive before this frame (SIM's tracks).
        live_slots: (V,) int64 slots alive after births; live_det: (V,) int64 their matched
            detection (-1: none); live_born: (V,) bool, born this frame.
        upload: {name: host tensor} of everything the device needs: the `LIFECYCLE_FIELDS`
            of `after`, and cand, before, live_slots, live_det, live_born.
    """

    after: TrackerState
    cand: torch.Tensor
    before: torch.Tensor
    live_slots: torch.Tensor
    live_det: torch.Tensor
    live_born: torch.Tensor
    upload: dict[str, torch.Tensor]


def host_state(copies: dict[str, torch.Tensor], max_tracks: int) -> TrackerState:
    """A TrackerState of host copies of the `HOST_STATE` fields; the other fields are (M, 0)
    placeholders that no decision reads."""
    names = [f for f in TrackerState.__dataclass_fields__]
    fields = {}
    for name in names:
        if name in copies:
            fields[name] = copies[name]
        else:
            fields[name] = torch.zeros((max_tracks, 0))
    return TrackerState(**fields)


def plan_frame(cfg: TrackerConfig, copies: dict[str, torch.Tensor], max_tracks: int,
               stamp: float, settings: TrackSettings) -> FramePlan:
    """Make the frame's decisions (see the module docstring) on host copies.

    Args:
        copies: host tensors: the `HOST_STATE` fields of the state before this frame, and
            det_unit (N, C), det_low (N, R, R), det_score (N,), det_birth_score (N,) of this
            frame's detections.
        max_tracks: M.
    """
    state = host_state(copies, max_tracks)
    unit, low, score = copies["det_unit"], copies["det_low"], copies["det_score"]
    cand = candidates(score, low, cfg.detect_score, cfg.nms_iou, cfg.nms_measure)
    empty = torch.zeros(0)
    dets = Detections(embed=unit, unit=unit, score=score, low=low, box=empty,
                      pooled_features=empty, candidates=cand,
                      birth_score=copies["det_birth_score"])
    before = torch.nonzero(state.status != FREE).flatten()
    assoc = associate(state, dets, cfg)
    state = expire(state, stamp, settings, assoc.match >= 0)
    births = select_births(dets, assoc.match, cfg.new_track_score)
    slots = allocate_slots(state, assoc.match >= 0, births.numel())
    state, born = place_births(state, births, slots, stamp)
    match = assoc.match.index_put((born.slots,), born.dets)
    live_slots = torch.nonzero(state.status != FREE).flatten()
    live_det = match[live_slots]
    live_born = born.mask(max_tracks)[live_slots]
    upload = {name: getattr(state, name) for name in LIFECYCLE_FIELDS}
    upload.update(cand=cand, before=before, live_slots=live_slots, live_det=live_det,
                  live_born=live_born)
    return FramePlan(state, cand, before, live_slots, live_det, live_born, upload)
