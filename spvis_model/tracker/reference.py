"""The tracker step and the model's post-processing as they were before the host-sync work:
the reference that `Tracker.step` and `SPVIS.postprocess` must reproduce exactly.

`Tracker.step` now makes its decisions on host copies, with one packed copy per decision point
(`spvis_model.tracker.host`). This module keeps the earlier code path, which reads device
values wherever it needs them (tens of syncs per frame on CUDA), unchanged, so that the two can
be compared field by field on recorded segmenter outputs (test/test_tracker_equivalence.py), and
its host round trips counted against the new path's (bench/tracker_syncs.py --reference, also
in scripts/gpu_check.sh). Like `ms_deform_attn_reference` for the op: slow, simple, the
definition of the right answer. Nothing else calls it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spvis_model.instances import Instances
from spvis_model.mask_refine import configured_masks
from spvis_model.tracker.association import associate, match_cost
from spvis_model.tracker.correction import corrected_assignment, correction_applies
from spvis_model.tracker.detections import Detections, detections_from
from spvis_model.tracker.geometry import masks_to_boxes, normalised_cxcywh
from spvis_model.tracker.lifecycle import (
    advance,
    allocate_slots,
    expire,
    place_births,
    select_births,
)
from spvis_model.tracker.memory import prototype, write_snapshots
from spvis_model.tracker.publish import coasting, suppress_duplicates, track_score
from spvis_model.tracker.settings import TrackSettings
from spvis_model.tracker.state import FREE, TrackerState
from spvis_model.tracker.types import FrameFeatures, TrackStep


def reference_step(tracker: nn.Module, state: TrackerState, feats: FrameFeatures, stamp: float,
                   heads: nn.Module, settings: TrackSettings | None = None
                   ) -> tuple[TrackerState, TrackStep]:
    """`Tracker.step` before the host-sync work (same arguments and results; `host` is None).

    Args:
        tracker: a `spvis_model.tracker.tracker.Tracker` (its weights and config are used).
    """
    from spvis_model.tracker.tracker import LiveTracks

    cfg = tracker.cfg
    settings = settings or TrackSettings.from_config(cfg)
    interval = stamp - float(state.last_stamp)
    dets = detections_from(feats, cfg.mask_res, cfg.detect_score, cfg.nms_iou,
                           cfg.nms_measure, cfg.score_masks, cfg.birth_masks)
    since = (stamp - state.last_seen).float().clamp_min(0)
    spatial = _spatial(tracker, state, since, feats)
    assoc = associate(state, dets, cfg)
    state = expire(state, stamp, settings, assoc.match >= 0)
    births = select_births(dets, assoc.match, cfg.new_track_score)
    slots = allocate_slots(state, assoc.match >= 0, births.numel())
    state, born = place_births(state, births, slots, stamp)
    match = assoc.match.index_put((born.slots,), born.dets)
    live_slots = torch.nonzero(state.status != FREE).flatten()
    live = LiveTracks(live_slots, match[live_slots], born.mask(state.max_tracks)[live_slots])
    refined = tracker._refer(state, live, spatial, dets)
    if correction_applies(cfg, interval):
        live = _correct(tracker, heads, live, refined, dets)
    out = tracker._heads(heads, state, live, since, refined, dets, feats)
    new_state = _write(tracker, state, stamp, live, out, dets)
    visible = live.matched | coasting(state, live.slots, live.matched, out.visibility,
                                      out.low, stamp, cfg.coast_seconds)
    visible = suppress_duplicates(visible, new_state.score[live.slots], out.low,
                                  cfg.output_nms_iou)
    result = TrackStep(
        slots=live.slots, ids=new_state.ids[live.slots], visible=visible,
        det_index=live.det, class_logits=out.class_logits,
        running_logits=new_state.class_logits[live.slots], mask_logits=out.mask_logits,
        visibility=out.visibility,
        score=new_state.score[live.slots],
        track_score=track_score(new_state.score[live.slots], new_state.hits[live.slots],
                                cfg.score_model) if cfg.score_model else None,
        first_seen=new_state.first_seen[live.slots], query=out.query, refined=refined)
    return new_state, result


def _spatial(tracker: nn.Module, state: TrackerState, since: torch.Tensor,
             feats: FrameFeatures) -> torch.Tensor:
    before = torch.nonzero(state.status != FREE).flatten()
    out = torch.zeros_like(state.query)
    if not tracker.cfg.use_sim:
        return out.index_put((before,), state.query[before])
    s = tracker.sim(state.query[before], state.box[before], state.mask[before], since[before],
                    feats.memory, feats.spatial_shapes, feats.level_start_index)
    return out.index_put((before,), s.to(out.dtype))


def _correct(tracker: nn.Module, heads: nn.Module, live: object, refined: torch.Tensor,
             dets: Detections) -> object:
    from spvis_model.tracker.tracker import _mask_logits

    old = ~live.born
    usable = dets.candidates[~torch.isin(dets.candidates, live.det[live.born])]
    if not bool(old.any()) or usable.numel() == 0:
        return live
    low = _mask_logits(heads, refined[old], dets.pooled_features).sigmoid()
    cost = match_cost(F.normalize(refined[old], dim=-1), low, dets.unit[usable],
                      dets.low[usable], tracker.cfg.iou_weight)
    prev = live.det[old]
    prev_cols = torch.where(prev >= 0, torch.searchsorted(usable, prev.clamp_min(0)), -1)
    cols = corrected_assignment(cost, prev_cols, tracker.cfg.active_gate,
                                tracker.cfg.correction_margin)
    det = live.det.clone()
    det[old] = torch.where(cols >= 0, usable[cols.clamp_min(0)], -1)
    return dataclasses.replace(live, det=det)


def _write(tracker: nn.Module, state: TrackerState, stamp: float, live: object, out: object,
           dets: Detections) -> TrackerState:
    cfg = tracker.cfg
    s = live.slots
    matched = live.matched
    col = matched[:, None]
    hits = state.hits[s] + matched.long()
    rate = (1.0 / hits.clamp_min(1).float())
    det_score = live.take(dets.score).detach()
    score = torch.where(matched, state.score[s] + (det_score - state.score[s]) * rate,
                        state.score[s])
    logits = out.class_logits.detach()
    run_logits = torch.where(col, state.class_logits[s] + (logits - state.class_logits[s])
                             * rate[:, None], state.class_logits[s])
    frame_score = logits.softmax(-1)[:, :-1].max(-1).values
    write = matched & (out.visibility >= cfg.snapshot_min_visibility) & (
        frame_score >= cfg.snapshot_min_score)
    snapshots, snap_time, snap_valid, snap_next = write_snapshots(
        state.snapshots, state.snap_time, state.snap_valid, state.snap_next, s[write],
        out.query[write], stamp)
    stamp_t = torch.full_like(state.last_seen[s], stamp)
    return dataclasses.replace(
        state,
        query=state.query.index_put((s,), torch.where(col, out.query, state.query[s])),
        ref=state.ref.index_put((s,), torch.where(col, F.normalize(out.query, dim=-1),
                                                  state.ref[s])),
        proto=prototype(snapshots, snap_valid),
        snapshots=snapshots, snap_time=snap_time, snap_valid=snap_valid,
        snap_next=snap_next,
        box=state.box.index_put((s,), torch.where(col, normalised_cxcywh(out.low),
                                                  state.box[s])),
        mask=state.mask.index_put((s,), torch.where(col[:, :, None], out.low,
                                                    state.mask[s])),
        score=state.score.index_put((s,), score),
        hits=state.hits.index_put((s,), hits),
        class_logits=state.class_logits.index_put((s,), run_logits),
        visibility=state.visibility.index_put((s,), out.visibility.detach()),
        status=state.status.index_put((s,), advance(state.status[s], matched, live.born)),
        last_seen=state.last_seen.index_put((s,), torch.where(matched, stamp_t,
                                                              state.last_seen[s])),
        last_stamp=torch.tensor(float(stamp), dtype=torch.float64,
                                device=state.last_stamp.device))


def reference_postprocess(model: nn.Module, result: TrackStep, geom: object,
                          tracker_cfg: object | None = None,
                          frame: torch.Tensor | None = None) -> Instances:
    """`SPVIS.postprocess` before the host-sync work: visible tracks above the output score ->
    Instances at the original resolution (`model` is the SPVIS whose classes apply;
    `tracker_cfg`: the output score, calibration and mask refinement, default the model's;
    `frame`: the (H, W, 3) uint8 frame on the model's device, for `mask_refine`)."""
    h, w = geom.original
    tcfg = tracker_cfg or model.cfg.tracker
    a, b = tcfg.score_calibration
    score = result.score if (a, b) == (1.0, 0.0) else torch.sigmoid(
        a * torch.logit(result.score.clamp(1e-6, 1 - 1e-6)) + b)
    keep = result.visible & (score >= tcfg.output_score)
    if not bool(keep.any()):
        return Instances.empty(h, w, track_scores=result.track_score is not None)
    masks = configured_masks(result.mask_logits[keep], geom, tcfg, frame)
    nonempty = masks.flatten(1).any(1)
    masks = masks[nonempty]
    labels = result.running_logits[keep][nonempty][:, :-1].argmax(-1)
    names = model.class_names
    return Instances(
        ids=result.ids[keep][nonempty].cpu().numpy().astype(np.int64),
        labels=labels.cpu().numpy().astype(np.int64),
        label_names=[names[i] for i in labels.tolist()],
        scores=score[keep][nonempty].float().cpu().numpy(),
        boxes=masks_to_boxes(masks).cpu().numpy().astype(np.float32),
        masks=masks.cpu().numpy(),
        visibility=result.visibility[keep][nonempty].float().cpu().numpy(),
        first_seen=result.first_seen[keep][nonempty].cpu().numpy().astype(np.float64),
        track_scores=None if result.track_score is None
        else result.track_score[keep][nonempty].float().cpu().numpy(),
    )
