"""The SPVIS tracker step: SIM -> PGT (associate, refer, correct) -> RCP -> heads -> life cycle.

`Tracker` holds weights only. `Tracker.step(state, feats, stamp, heads)` takes a `TrackerState`
and returns a new one with the frame's results; nothing is kept on the module. Updates of
tensors that carry gradients are out of place, so stage-2 training can backpropagate through a
clip of steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spvis_model.config import TrackerConfig
from spvis_model.tracker.association import assignment_cost, gated_assignment
from spvis_model.tracker.geometry import lowres, normalised_cxcywh, soft_iou, time_encoding
from spvis_model.tracker.layers import BoxEncoding
from spvis_model.tracker.rcp import RefinementCompensator
from spvis_model.tracker.referring import ReferringDecoder
from spvis_model.tracker.sim import SpatialInteraction
from spvis_model.tracker.state import ACTIVE, FREE, LOST, TENTATIVE, TrackerState

DUPLICATE_IOU = 0.7  # a new detection overlapping a tracked one this much is the same object


@dataclass
class FrameFeatures:
    """Segmenter outputs for one frame (batch of one): what the tracker consumes.

    Attributes:
        query_embed: (N, C) per-frame query embeddings E_t (after the decoder norm).
        pred_logits: (N, K+1) class logits, last = no object.
        pred_masks: (N, h, w) mask logits on the padded stride-4 grid.
        mask_features: (C, h, w) per-pixel embeddings F_t.
        memory: (S, C_mem) pixel-decoder encoder output; spatial_shapes (L, 2);
            level_start_index (L,).
        valid_hw: rows and columns of the (h, w) grid that cover the frame (the rest is padding).
    """

    query_embed: torch.Tensor
    pred_logits: torch.Tensor
    pred_masks: torch.Tensor
    mask_features: torch.Tensor
    memory: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor
    valid_hw: tuple[int, int]


@dataclass
class TrackStep:
    """Per-frame tracker results for the live tracks (V of them) after the update.

    Attributes:
        slots: (V,) state slots.
        ids: (V,) int64 track ids.
        visible: (V,) bool, matched to a detection this frame (these are published).
        det_index: (V,) int64 matched detection (query) index, -1 if none.
        class_logits: (V, K+1) this frame's class logits of the track's query.
        running_logits: (V, K+1) the track's running class logits (used for its label).
        mask_logits: (V, h, w) this frame's mask logits on the padded stride-4 grid.
        visibility: (V,) probability that the track is visible.
        score: (V,) the track's score (EMA of its per-frame confidence).
        first_seen: (V,) float64 stamps.
        query: (V, C) the propagated queries q (RCP output), for training losses.
        refined: (V, C) the referring decoder outputs o.
    """

    slots: torch.Tensor
    ids: torch.Tensor
    visible: torch.Tensor
    det_index: torch.Tensor
    class_logits: torch.Tensor
    running_logits: torch.Tensor
    mask_logits: torch.Tensor
    visibility: torch.Tensor
    score: torch.Tensor
    first_seen: torch.Tensor
    query: torch.Tensor
    refined: torch.Tensor


class Tracker(nn.Module):
    """SIM + PGT + RCP weights.

    Args:
        cfg: tracker configuration.
        dim: query width C (the segmenter's hidden_dim).
        memory_dim: width of the pixel decoder's encoder memory.
        n_levels: encoder levels.
        num_logits: classes + 1.
    """

    def __init__(self, cfg: TrackerConfig, dim: int, memory_dim: int, n_levels: int,
                 num_logits: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        self.num_logits = num_logits
        self.sim = SpatialInteraction(dim, memory_dim, n_levels, cfg.nheads, cfg.sim_points)
        self.box_pos = BoxEncoding(dim)
        self.referring = ReferringDecoder(dim, cfg.nheads, cfg.num_layers)
        self.class_delta = nn.Linear(2 * dim, num_logits)
        self.visibility_head = nn.Linear(dim, 1)
        for lin in (self.class_delta, self.visibility_head):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.rcp = RefinementCompensator(dim)

    def init_state(self, device: torch.device | str = "cpu") -> TrackerState:
        cfg = self.cfg
        return TrackerState.empty(cfg.max_tracks, self.dim, cfg.memory_size, cfg.mask_res,
                                  self.num_logits, device)

    # ------------------------------------------------------------------------------------------
    def step(self, state: TrackerState, feats: FrameFeatures, stamp: float,
             heads: nn.Module) -> tuple[TrackerState, TrackStep]:
        """Advance one frame.

        Args:
            state: the stream's state (not modified).
            feats: this frame's segmenter outputs.
            stamp: the frame's time in seconds (>= the state's last stamp).
            heads: the segmenter's decoder; its `class_embed` and `mask_embed` turn queries
                into class logits and mask embeddings.

        Returns:
            (new state, results for the live tracks).
        """
        cfg = self.cfg
        dev = feats.query_embed.device
        m_slots = state.max_tracks
        h, w = feats.valid_hw
        status = state.status.clone()
        ids = state.ids.clone()
        next_id = int(state.next_id)

        # Time since each track was last seen; lost tracks past keep_seconds die first.
        since = (stamp - state.last_seen).float().clamp_min(0)
        expired = (status == LOST) & (since > cfg.keep_seconds)
        status[expired] = FREE
        ids[expired] = -1

        # This frame's detections.
        det_embed = feats.query_embed
        det_unit = F.normalize(det_embed, dim=-1)
        class_score, _ = feats.pred_logits.softmax(-1)[:, :-1].max(-1)
        # Association works on R×R masks over the frame: logits are average-pooled first
        # (pooling is linear, so pooled mask features give the same pooled logits for tracks).
        det_low = lowres(feats.pred_masks[:, :h, :w], cfg.mask_res).sigmoid()
        # Mask2Former's instance score: class probability × mean mask probability inside the
        # mask, so a confident class with an empty mask is no detection.
        inside = (det_low > 0.5).float()
        mask_score = (det_low * inside).flatten(1).sum(1) / inside.flatten(1).sum(1).clamp_min(1)
        det_score = class_score * mask_score
        det_box = normalised_cxcywh(det_low)
        pooled_features = lowres(feats.mask_features[:, :h, :w], cfg.mask_res)
        cand = torch.nonzero(det_score >= cfg.detect_score).flatten()

        # SIM over the tracks alive before this frame's births.
        live_before = torch.nonzero(status != FREE).flatten()
        sim_out = self.sim(state.query[live_before], state.box[live_before],
                           state.mask[live_before], since[live_before], feats.memory,
                           feats.spatial_shapes, feats.level_start_index)

        # PGT a: associate, active first, then lost tracks against what is left.
        match = torch.full((m_slots,), -1, dtype=torch.int64, device=dev)
        active = live_before[(status[live_before] == ACTIVE) | (status[live_before] == TENTATIVE)]
        if active.numel() and cand.numel():
            cost = self._cost(state.ref[active], state.mask[active], det_unit[cand], det_low[cand])
            rows, cols = gated_assignment(cost, cfg.active_gate)
            match[active[rows]] = cand[cols]
        # Second chance, by memory: every established track still unmatched (lost ones, and
        # active ones whose last mask no longer overlaps, e.g. after an occlusion) against the
        # leftovers, by their prototype μ, with the stricter gate.
        established = (status[live_before] == LOST) | (status[live_before] == ACTIVE)
        lost = live_before[established & (match[live_before] < 0)]
        # Re-identification stands in for a birth: only detections confident enough to start a
        # track may revive one.
        left = cand[~torch.isin(cand, match) & (det_score[cand] >= cfg.new_track_score)]
        if lost.numel() and left.numel():
            key = torch.where(state.snap_valid[lost].any(1, keepdim=True), state.proto[lost],
                              state.ref[lost])
            cost = 1 - key @ det_unit[left].T
            rows, cols = gated_assignment(cost, cfg.lost_gate)
            match[lost[rows]] = left[cols]

        # New tracks from confident leftovers that are not duplicates of tracked objects.
        born = torch.zeros(m_slots, dtype=torch.bool, device=dev)
        first_seen = state.first_seen.clone()
        for det in self._births(det_score, det_low, cand, match):
            slot = self._free_slot(status, state.last_seen)
            if slot is None:
                break  # every slot holds a visible track; the detection is dropped
            status[slot] = TENTATIVE
            ids[slot] = next_id
            next_id += 1
            first_seen[slot] = stamp
            match[slot] = det
            born[slot] = True

        # PGT b: refine every live track against this frame's detections.
        live = torch.nonzero(status != FREE).flatten()
        matched = match[live] >= 0
        safe = match[live].clamp_min(0)
        e_m = torch.where(matched[:, None], det_embed[safe], torch.zeros_like(det_embed[safe]))
        sim_all = torch.zeros(m_slots, self.dim, dtype=det_embed.dtype, device=dev)
        sim_all = sim_all.index_put((live_before,), sim_out.to(det_embed.dtype))
        sim_live = torch.where(born[live][:, None], e_m, sim_all[live])
        box_live = torch.where(matched[:, None], det_box[safe], state.box[live])
        refined = self.referring(self.referring.init_estimate(state.query[live], e_m, matched),
                                 sim_live, self.box_pos(box_live), det_embed,
                                 self.box_pos(det_box))

        # PGT c: error correction with the refined queries (newborn tracks keep their match).
        old = ~born[live]
        usable = cand[~torch.isin(cand, match[born])]
        if old.any() and usable.numel():
            low_old = self._mask_logits(heads, refined[old], pooled_features).sigmoid()
            cost = self._cost(F.normalize(refined[old], dim=-1), low_old, det_unit[usable],
                              det_low[usable])
            rows, cols = gated_assignment(cost, cfg.active_gate)
            prev = match[live][old]
            prev_rows = torch.nonzero(prev >= 0).flatten()
            prev_cols = torch.searchsorted(usable, prev[prev_rows])
            before = assignment_cost(cost, prev_rows, prev_cols, cfg.active_gate)
            after = assignment_cost(cost, rows, cols, cfg.active_gate)
            if after + cfg.correction_margin < before:
                corrected = torch.full_like(prev, -1)
                corrected[rows] = usable[cols]
                match[live[old]] = corrected
                matched = match[live] >= 0
                safe = match[live].clamp_min(0)
                e_m = torch.where(matched[:, None], det_embed[safe],
                                  torch.zeros_like(det_embed[safe]))

        # RCP and heads.
        score_m = torch.where(matched, det_score[safe], torch.zeros_like(det_score[safe]))
        dt_live = torch.where(born[live], torch.zeros_like(since[live]), since[live])
        query, _ = self.rcp(refined, e_m, state.proto[live], time_encoding(dt_live, self.dim),
                            score_m, state.snapshots[live], state.snap_valid[live])
        ref_live = torch.where(born[live][:, None], F.normalize(e_m, dim=-1), state.ref[live])
        class_logits = heads.class_embed(query) + self.class_delta(torch.cat([ref_live, query], 1))
        mask_logits = self._mask_logits(heads, query, feats.mask_features)
        prior = torch.where(matched, torch.logit(score_m.clamp(0.05, 0.99)),
                            torch.full_like(score_m, math.log(0.05 / 0.95)))
        visibility = torch.sigmoid(prior + self.visibility_head(query)[:, 0])

        low = self._mask_logits(heads, query, pooled_features).sigmoid().detach()
        new_state = self._update(state, stamp, live, matched, born, status, ids, next_id,
                                 first_seen, query, class_logits, low, visibility)
        result = TrackStep(
            slots=live, ids=ids[live], visible=matched, det_index=torch.where(matched, safe, -1),
            class_logits=class_logits, running_logits=new_state.class_logits[live],
            mask_logits=mask_logits, visibility=visibility, score=new_state.score[live],
            first_seen=first_seen[live], query=query, refined=refined)
        return new_state, result

    # ------------------------------------------------------------------------------------------
    def _cost(self, ref: torch.Tensor, mask: torch.Tensor, det_unit: torch.Tensor,
              det_low: torch.Tensor) -> torch.Tensor:
        """(1 - cos) + λ (1 - IoU): (M, C), (M, R, R) vs (N, C), (N, R, R) -> (M, N)."""
        return (1 - ref @ det_unit.T) + self.cfg.iou_weight * (1 - soft_iou(mask, det_low))

    @staticmethod
    def _mask_logits(heads: nn.Module, query: torch.Tensor,
                     mask_features: torch.Tensor) -> torch.Tensor:
        """(M, C) queries -> (M, h, w) mask logits through the segmenter's mask head."""
        return torch.einsum("mc,chw->mhw", heads.mask_embed(query), mask_features)

    def _births(self, det_score: torch.Tensor, det_low: torch.Tensor, cand: torch.Tensor,
                match: torch.Tensor) -> list[int]:
        """Detections that start tracks: confident, unmatched, not overlapping a matched or an
        already chosen detection (greedy by score)."""
        used = match[match >= 0]
        left = cand[~torch.isin(cand, used) & (det_score[cand] >= self.cfg.new_track_score)]
        if left.numel() == 0:
            return []
        left = left[det_score[left].argsort(descending=True)]
        chosen: list[int] = []
        taken = used.tolist()
        for det in left.tolist():
            if taken:
                iou = soft_iou(det_low[det][None], det_low[taken])
                if float(iou.max()) > DUPLICATE_IOU:
                    continue
            chosen.append(det)
            taken.append(det)
        return chosen

    @staticmethod
    def _free_slot(status: torch.Tensor, last_seen: torch.Tensor) -> int | None:
        """A free slot, else the lost track seen longest ago (evicted), else None."""
        free = torch.nonzero(status == FREE).flatten()
        if free.numel():
            return int(free[0])
        lost = torch.nonzero(status == LOST).flatten()
        if lost.numel():
            return int(lost[last_seen[lost].argmin()])
        return None

    def _update(self, state: TrackerState, stamp: float, live: torch.Tensor,
                matched: torch.Tensor, born: torch.Tensor, status: torch.Tensor,
                ids: torch.Tensor, next_id: int, first_seen: torch.Tensor, query: torch.Tensor,
                class_logits: torch.Tensor, low: torch.Tensor,
                visibility: torch.Tensor) -> TrackerState:
        """Write this frame's results into a new state (life cycle, memory, running stats).
        `low` is the tracks' (V, R, R) mask probabilities over the frame."""
        cfg = self.cfg
        box = normalised_cxcywh(low)
        frame_score = class_logits.softmax(-1)[:, :-1].max(-1).values
        mom = cfg.score_momentum
        newborn = born[live]
        col = matched[:, None]

        # Life cycle: born -> tentative; matched on a later frame -> active; an unmatched
        # tentative track is dropped (no lost phase for one-frame detections); active -> lost.
        cur = status[live]
        new_status = torch.where(
            newborn, torch.full_like(cur, TENTATIVE),
            torch.where(matched, torch.full_like(cur, ACTIVE),
                        torch.where(cur == TENTATIVE, torch.full_like(cur, FREE),
                                    torch.full_like(cur, LOST))))
        status = status.index_put((live,), new_status)
        ids = torch.where(status == FREE, torch.full_like(ids, -1), ids)
        last_seen = state.last_seen.index_put(
            (live,), torch.where(matched, torch.full_like(state.last_seen[live], stamp),
                                 state.last_seen[live]))

        old_score = torch.where(newborn, frame_score.detach(), state.score[live])
        score = torch.where(matched, mom * old_score + (1 - mom) * frame_score.detach(),
                            state.score[live])
        old_logits = torch.where(newborn[:, None], class_logits.detach(),
                                 state.class_logits[live])
        run_logits = torch.where(col, mom * old_logits + (1 - mom) * class_logits.detach(),
                                 old_logits)

        # Memory: write a snapshot only for clearly visible, confident tracks.
        write = matched & (visibility >= cfg.snapshot_min_visibility) & (
            frame_score >= cfg.snapshot_min_score)
        k = state.snapshots.shape[1]
        ptr = state.snap_next[live]
        slot_w = live[write]
        snapshots, snap_time, snap_valid = state.snapshots, state.snap_time, state.snap_valid
        if slot_w.numel():
            snapshots = snapshots.index_put((slot_w, ptr[write]), query[write])
            snap_time = snap_time.index_put((slot_w, ptr[write]),
                                            torch.full_like(snap_time[slot_w, 0], stamp))
            snap_valid = snap_valid.index_put((slot_w, ptr[write]),
                                              torch.ones_like(snap_valid[slot_w, 0]))
        snap_next = state.snap_next.index_put((live,), torch.where(write, (ptr + 1) % k, ptr))
        # Freed slots forget their memory.
        freed = status == FREE
        snap_valid = snap_valid & ~freed[:, None]
        proto = prototype(snapshots, snap_valid)

        new = TrackerState(
            query=state.query.index_put((live,), query),
            ref=state.ref.index_put((live,), torch.where(col, F.normalize(query, dim=-1),
                                                          state.ref[live])),
            proto=proto,
            snapshots=snapshots, snap_time=snap_time, snap_valid=snap_valid,
            snap_next=torch.where(freed, torch.zeros_like(snap_next), snap_next),
            box=state.box.index_put((live,), torch.where(col, box, state.box[live])),
            mask=state.mask.index_put(
                (live,), torch.where(col[:, :, None], low, state.mask[live])),
            score=state.score.index_put((live,), score),
            class_logits=state.class_logits.index_put((live,), run_logits),
            visibility=state.visibility.index_put((live,), visibility.detach()),
            status=status, ids=ids,
            first_seen=first_seen, last_seen=last_seen,
            next_id=torch.tensor(next_id, dtype=torch.int64, device=state.next_id.device),
            last_stamp=torch.tensor(float(stamp), dtype=torch.float64,
                                    device=state.last_stamp.device),
        )
        return new


def prototype(snapshots: torch.Tensor, valid: torch.Tensor, temperature: float = 0.1
              ) -> torch.Tensor:
    """μ: similarity-weighted fusion of each track's snapshots (outliers count less).

    Args:
        snapshots: (M, K, C); valid: (M, K) bool.

    Returns:
        (M, C) unit-norm prototypes (zeros for tracks without snapshots).
    """
    unit = F.normalize(snapshots, dim=-1)
    count = valid.sum(1, keepdim=True).clamp_min(1)
    mean = F.normalize((unit * valid[..., None]).sum(1) / count, dim=-1)
    sim = torch.einsum("mkc,mc->mk", unit, mean) / temperature
    weights = torch.softmax(sim.masked_fill(~valid, float("-inf")), 1)
    weights = torch.nan_to_num(weights) * valid
    return F.normalize(torch.einsum("mk,mkc->mc", weights, unit), dim=-1) * valid.any(
        1, keepdim=True)
