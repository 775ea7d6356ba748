"""The SPVIS tracker step, stage by stage, as the design reads:

    detections → SIM → associate (PGT a) → expire → births → refer (PGT b)
               → correct (PGT c) → RCP + heads → life cycle and memory

(Expiry follows association so that a track always gets one more frame, see `lifecycle`.)

`Tracker` holds weights only. `Tracker.step(state, feats, stamp, heads, settings)` takes a
`TrackerState` and returns a new one (rebuilt with `dataclasses.replace`) with the frame's
results; nothing is kept on the module. Tensors that carry gradients are updated out of place,
so stage-2 training can backpropagate through a clip of steps. Each stage is a function of its
own module (`detections`, `lifecycle`, `association`, `correction`, `memory`) or a sub-module
(`sim`, `referring`, `rcp`), and each can be switched off by the config for ablations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spvis_model.config import TrackerConfig
from spvis_model.syncs import host_side
from spvis_model.tracker.association import match_cost
from spvis_model.tracker.correction import corrected_assignment, correction_applies
from spvis_model.tracker.detections import Detections, detection_tensors, mask_quality
from spvis_model.tracker.geometry import normalised_cxcywh, time_encoding
from spvis_model.tracker.host import to_device, to_host
from spvis_model.tracker.layers import BoxEncoding
from spvis_model.tracker.lifecycle import advance
from spvis_model.tracker.memory import prototype, write_snapshots_where
from spvis_model.tracker.plan import HOST_STATE, LIFECYCLE_FIELDS, FramePlan, plan_frame
from spvis_model.tracker.publish import coasting, suppress_duplicates, track_score
from spvis_model.tracker.rcp import RefinementCompensator
from spvis_model.tracker.referring import ReferringDecoder
from spvis_model.tracker.settings import TrackSettings
from spvis_model.tracker.sim import SpatialInteraction
from spvis_model.tracker.state import TrackerState
from spvis_model.tracker.types import FrameFeatures, TrackHost, TrackStep


@dataclass
class LiveTracks:
    """The tracks alive after this frame's births (V of them) and what they matched.

    Attributes:
        slots: (V,) int64 state slots.
        det: (V,) int64 matched detection, -1 for none.
        born: (V,) bool, born this frame.
    """

    slots: torch.Tensor
    det: torch.Tensor
    born: torch.Tensor

    @property
    def matched(self) -> torch.Tensor:
        return self.det >= 0

    def take(self, values: torch.Tensor) -> torch.Tensor:
        """Rows of a per-detection tensor (N, ...) for the matched tracks, zeros elsewhere:
        (V, ...)."""
        rows = values[self.det.clamp_min(0)]
        shape = (-1,) + (1,) * (rows.dim() - 1)
        return torch.where(self.matched.view(shape), rows, torch.zeros_like(rows))


@dataclass
class TrackOutputs:
    """The heads' outputs for the live tracks (V).

    Attributes:
        query: (V, C) propagated queries q (RCP output).
        class_logits: (V, K+1); mask_logits: (V, h, w) on the padded stride-4 grid.
        visibility: (V,) probabilities.
        low: (V, R, R) mask probabilities over the frame (detached: state, not gradients).
    """

    query: torch.Tensor
    class_logits: torch.Tensor
    mask_logits: torch.Tensor
    visibility: torch.Tensor
    low: torch.Tensor


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
    def step(self, state: TrackerState, feats: FrameFeatures, stamp: float, heads: nn.Module,
             settings: TrackSettings | None = None) -> tuple[TrackerState, TrackStep]:
        """Advance one frame.

        Args:
            state: the stream's state (not modified).
            feats: this frame's segmenter outputs.
            stamp: the frame's time in seconds (>= the state's last stamp).
            heads: the segmenter's decoder; its `class_embed` and `mask_embed` turn queries
                into class logits and mask embeddings.
            settings: run-time life-cycle budgets (default: the config's).

        Returns:
            (new state, results for the live tracks).
        """
        cfg = self.cfg
        settings = settings or TrackSettings.from_config(cfg)
        dev = state.status.device
        dets = detection_tensors(feats, cfg.mask_res, cfg.score_masks, cfg.birth_masks)
        # The difference in float64 (stamps near 1.7e9 s keep their milliseconds), then float32.
        since = (float(stamp) - state.last_seen.double()).float().clamp_min(0)
        # The one copy of the assignment inputs; everything decided from it is decided on the
        # host, by the same stage functions on the copies (spvis_model.tracker.host).
        copies = to_host({**{name: getattr(state, name) for name in HOST_STATE},
                          "det_unit": dets.unit, "det_low": dets.low, "det_score": dets.score,
                          "det_birth_score": dets.birth_score},
                         "association inputs")
        with host_side():
            plan = plan_frame(cfg, copies, state.max_tracks, stamp, settings)
            correct = correction_applies(cfg, stamp - float(copies["last_stamp"]))
        up = to_device(plan.upload, dev)
        spatial = self._spatial(state, since, feats, up["before"])
        state = dataclasses.replace(state, **{k: up[k] for k in LIFECYCLE_FIELDS})
        dets = dataclasses.replace(dets, candidates=up["cand"])
        live = LiveTracks(up["live_slots"], up["live_det"], up["live_born"])
        refined = self._refer(state, live, spatial, dets)
        det_h = plan.live_det
        if correct:
            live, det_h = self._correct(heads, live, refined, dets, plan)
        out = self._heads(heads, state, live, since, refined, dets, feats)
        new_state = self._write(state, stamp, live, out, dets)
        matched_h = det_h >= 0
        if cfg.coast_seconds > 0 or cfg.output_nms_iou < 1.0:
            c = to_host({"visibility": out.visibility, "low": out.low,
                         "score": new_state.score[live.slots]}, "publish policies")
            with host_side():
                visible_h = matched_h | coasting(plan.after, plan.live_slots, matched_h,
                                                 c["visibility"], c["low"], stamp,
                                                 cfg.coast_seconds)
                visible_h = suppress_duplicates(visible_h, c["score"], c["low"],
                                                cfg.output_nms_iou)
            visible = to_device({"v": visible_h}, dev)["v"]
        else:
            visible_h, visible = matched_h, live.matched
        if cfg.publish_min_hits > 1:
            hits_h = plan.after.hits[plan.live_slots] + matched_h.long()
            visible_h = visible_h & (hits_h >= cfg.publish_min_hits)
            visible = to_device({"v": visible_h}, dev)["v"]
        host = TrackHost(slots=plan.live_slots, ids=plan.after.ids[plan.live_slots],
                         det_index=det_h, visible=visible_h,
                         first_seen=plan.after.first_seen[plan.live_slots])
        result = TrackStep(
            slots=live.slots, ids=new_state.ids[live.slots], visible=visible,
            det_index=live.det, class_logits=out.class_logits,
            running_logits=new_state.class_logits[live.slots], mask_logits=out.mask_logits,
            visibility=out.visibility,
            score=new_state.score[live.slots],
            track_score=track_score(new_state.score[live.slots], new_state.hits[live.slots],
                                    cfg.score_model) if cfg.score_model else None,
            first_seen=new_state.first_seen[live.slots], query=out.query, refined=refined,
            host=host)
        new_state._host_last_stamp = (new_state.last_stamp, float(stamp))  # see SPVIS._check_stamp
        return new_state, result

    # --- stages ---------------------------------------------------------------------------------
    def _spatial(self, state: TrackerState, since: torch.Tensor, feats: FrameFeatures,
                 before: torch.Tensor) -> torch.Tensor:
        """SIM over the tracks alive before this frame's births (`before`, (B,) slots chosen on
        the host): (M, C) S_t per slot (the track's own query where SIM is off, zeros for free
        slots)."""
        out = torch.zeros_like(state.query)
        if not self.cfg.use_sim:
            return out.index_put((before,), state.query[before])
        s = self.sim(state.query[before], state.box[before], state.mask[before], since[before],
                     feats.memory, feats.spatial_shapes, feats.level_start_index)
        return out.index_put((before,), s.to(out.dtype))

    def _refer(self, state: TrackerState, live: LiveTracks, spatial: torch.Tensor,
               dets: Detections) -> torch.Tensor:
        """PGT b: (V, C) refined queries o. The estimate starts from the matched detection's
        embedding (a newborn track's SIM input is its detection too)."""
        e_m = live.take(dets.embed)
        estimate = self.referring.init_estimate(state.query[live.slots], e_m, live.matched)
        if not self.cfg.use_referring:
            return estimate
        guide = torch.where(live.born[:, None], e_m, spatial[live.slots])
        box = torch.where(live.matched[:, None], live.take(dets.box), state.box[live.slots])
        return self.referring(estimate, guide, self.box_pos(box), dets.embed,
                              self.box_pos(dets.box))

    def _correct(self, heads: nn.Module, live: LiveTracks, refined: torch.Tensor,
                 dets: Detections, plan: FramePlan) -> tuple[LiveTracks, torch.Tensor]:
        """PGT c: re-decide the old tracks' matches with their refined queries and masks. The
        costs are computed on the device; the decision on a host copy of them (one copy).

        Returns:
            (live tracks with the corrected matches, (V,) host copy of their det).
        """
        with host_side():
            old = ~plan.live_born
            usable = plan.cand[~torch.isin(plan.cand, plan.live_det[plan.live_born])]
            if not bool(old.any()) or usable.numel() == 0:
                return live, plan.live_det
            old_idx = torch.nonzero(old).flatten()
        idx = to_device({"old": old_idx, "usable": usable}, refined.device)
        low = _mask_logits(heads, refined[idx["old"]], dets.pooled_features).sigmoid()
        cost = match_cost(F.normalize(refined[idx["old"]], dim=-1), low,
                          dets.unit[idx["usable"]], dets.low[idx["usable"]],
                          self.cfg.iou_weight)
        cost_h = to_host({"cost": cost}, "correction costs")["cost"]
        with host_side():
            prev = plan.live_det[old]
            prev_cols = torch.where(prev >= 0, torch.searchsorted(usable, prev.clamp_min(0)),
                                    -1)
            cols = corrected_assignment(cost_h, prev_cols, self.cfg.active_gate,
                                        self.cfg.correction_margin)
            det = plan.live_det.clone()
            det[old] = torch.where(cols >= 0, usable[cols.clamp_min(0)], -1)
            same = torch.equal(det, plan.live_det)
        if same:
            return live, det
        return dataclasses.replace(live, det=to_device({"det": det}, refined.device)["det"]), det

    def _heads(self, heads: nn.Module, state: TrackerState, live: LiveTracks,
               since: torch.Tensor, refined: torch.Tensor, dets: Detections,
               feats: FrameFeatures) -> TrackOutputs:
        """RCP, then the segmenter's class and mask heads on q, a class correction from
        [ref, q], and the visibility head."""
        e_m = live.take(dets.embed)
        score_m = live.take(dets.score)
        if self.cfg.use_rcp:
            dt = torch.where(live.born, torch.zeros_like(since[live.slots]), since[live.slots])
            query, _ = self.rcp(refined, e_m, state.proto[live.slots],
                                time_encoding(dt, self.dim), score_m,
                                state.snapshots[live.slots], state.snap_valid[live.slots])
        else:
            query = refined
        ref = torch.where(live.born[:, None], F.normalize(e_m, dim=-1), state.ref[live.slots])
        class_logits = heads.class_embed(query) + self.class_delta(torch.cat([ref, query], 1))
        low = _mask_logits(heads, query, dets.pooled_features).sigmoid()
        # Visibility prior: the matched detection's score; for an unmatched track, the same
        # score of its own propagated query on this frame (class confidence × mask quality).
        own = class_logits.softmax(-1)[:, :-1].max(-1).values * mask_quality(low)
        prior = torch.logit(torch.where(live.matched, score_m, own.detach()).clamp(0.05, 0.99))
        return TrackOutputs(
            query=query, class_logits=class_logits,
            mask_logits=_mask_logits(heads, query, feats.mask_features),
            visibility=torch.sigmoid(prior + self.visibility_head(query)[:, 0]),
            low=low.detach())

    def _write(self, state: TrackerState, stamp: float, live: LiveTracks, out: TrackOutputs,
               dets: Detections) -> TrackerState:
        """Life cycle, running statistics and memory of the live tracks after this frame."""
        cfg = self.cfg
        s = live.slots
        matched = live.matched
        col = matched[:, None]
        hits = state.hits[s] + matched.long()
        # Running means over the matched frames (a newborn track has hits 0 before this one).
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
        # What association and re-identification compare with the next frame's detections:
        # the track's own output query (default), or the matched detection's embedding, which
        # stays in the segmenter's space whatever stage 2 does to the refined query.
        memory = out.query if cfg.memory_from == "query" else live.take(dets.unit)
        snapshots, snap_time, snap_valid, snap_next = write_snapshots_where(
            state.snapshots, state.snap_time, state.snap_valid, state.snap_next, s, write,
            memory, stamp)
        stamp_t = torch.full_like(state.last_seen[s], stamp)
        return dataclasses.replace(
            state,
            # An unmatched track keeps the query of its last matched frame: its refined query
            # is recomputed from that anchor each frame, never fed back (a trained referring
            # decoder or RCP applied frame after frame drifts a lost track's query away).
            query=state.query.index_put((s,), torch.where(col, out.query, state.query[s])),
            ref=state.ref.index_put((s,), torch.where(col, F.normalize(memory, dim=-1),
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
            # A fill, not torch.tensor(stamp, device=...): no synchronising upload.
            last_stamp=torch.full((), float(stamp), dtype=torch.float64,
                                  device=state.last_stamp.device))


def _mask_logits(heads: nn.Module, query: torch.Tensor,
                 mask_features: torch.Tensor) -> torch.Tensor:
    """(M, C) queries -> (M, h, w) mask logits through the segmenter's mask head."""
    return torch.einsum("mc,chw->mhw", heads.mask_embed(query), mask_features)
