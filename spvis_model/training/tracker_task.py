"""Stage 2: train SIM + PGT + RCP with the segmenter frozen.

For each clip the frozen segmenter runs on every frame; the tracker then steps through the
frames from a fresh `TrackerState`, with the state carried across frames exactly as at inference.

Supervision (the design's stage-2 losses):
- Consistent matcher: each frame's detections are matched to ground truth with the Hungarian
  matcher; a track takes the GT identity of the detection it was born from and keeps it for
  the whole clip (a GT id keeps its slot from first appearance). A track born on a detection
  matched to nothing is a false track.
- Per frame, per track: class CE (its GT class, or "no object" for a false track), mask
  BCE + dice against its GT's visible mask when the GT is visible, and visibility BCE (1 when
  its GT is visible, else 0).
- Contrastive re-ID: the track's query from before the step (that of its last matched frame,
  which association and re-identification compare with the new frame) must pick out its GT's
  detection among all of the frame's query embeddings (InfoNCE over cosine similarities).
  (Scored with the query after the step, as first built, the term was trivial: that query is
  computed from the matched detection itself.)
- Feature preservation: 1 - cos(RCP output, the frozen segmenter query of the same GT) on
  visible frames, so the propagated query stays a good segmenter query.

Augmentation: random frame drops (larger Δt, keeping the first frame), simulated disappearance
of one GT object for a few frames (its detection is removed from the segmenter output, and its
GT counts as invisible there), and noisy matching (with probability `noisy_match_prob`, the
references of two live tracks are swapped before a step, so the association errs and the
referring decoder and error correction must recover the right objects).

Long clips: the design wants tracks to live (and be lost and re-identified) in training as
long as on real streams; each clip still starts from a fresh state, so that takes clips of many
frames (configs/train_stage2_long.yaml: 24; measured worse so far, docs/model.md). `detach_every`
(task_options) cuts the gradient through the state every that many tracker steps (truncated
backpropagation through time): a frame's loss reaches back at most that many steps; the
forward pass (and the loss value) is unchanged. The graph of the whole clip is still held
until the step's one backward, so memory grows with clip length. 0 keeps the whole clip's
graph (the 10-frame recipe).

`freeze` (task_options) leaves named tracker modules at their init weights: a trained RCP
lowered validation AP in every run so far, so the recipe (configs/train_stage2_cached.yaml)
keeps it at its init (docs/model.md, stage 2).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from spvis_model.model import FrameGeometry
from spvis_model.training.matcher import HungarianMatcher

if TYPE_CHECKING:
    from spvis_model.model import SPVIS


# Tracker modules stage 2 can leave at their init weights (task_options.freeze), by the names
# the design and the ablation use; the box encoding belongs to the referring decoder.
FREEZABLE: dict[str, tuple[str, ...]] = {
    "sim": ("sim",), "referring": ("referring", "box_pos"), "rcp": ("rcp",),
    "class_delta": ("class_delta",), "visibility": ("visibility_head",)}


@dataclass
class TrackerLossWeights:
    cls: float = 2.0
    mask: float = 5.0
    dice: float = 5.0
    visibility: float = 1.0
    reid: float = 1.0
    preserve: float = 1.0


class TrackerTask:
    """Stage-2 task (spvis_model.training.tasks.Task protocol)."""

    name = "tracker"

    def __init__(self, *, weights: TrackerLossWeights | None = None, drop_prob: float = 0.2,
                 disappear_prob: float = 0.3, noisy_match_prob: float = 0.5,
                 reid_temperature: float = 0.1, matcher_points: int = 2048,
                 freeze: list[str] | tuple[str, ...] = (), detach_every: int = 0) -> None:
        if isinstance(freeze, str) or any(m not in FREEZABLE for m in freeze):
            raise ValueError(f"TrackerTask: freeze = {freeze!r}: a list of tracker modules "
                             f"from {list(FREEZABLE)}")
        for name, p in (("drop_prob", drop_prob), ("disappear_prob", disappear_prob),
                        ("noisy_match_prob", noisy_match_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"TrackerTask: {name} = {p}: must be in [0, 1]")
        if isinstance(detach_every, bool) or not isinstance(detach_every, int) \
                or detach_every < 0:
            raise ValueError(f"TrackerTask: detach_every = {detach_every!r}: an integer >= 0 "
                             "(tracker steps between gradient cuts; 0: never)")
        self.detach_every = detach_every
        self.weights = weights or TrackerLossWeights()
        self.drop_prob = drop_prob
        self.disappear_prob = disappear_prob
        self.noisy_match_prob = noisy_match_prob
        self.temperature = reid_temperature
        self.matcher = HungarianMatcher(num_points=matcher_points)
        self.freeze = tuple(freeze)
        self._digest: tuple[SPVIS, str] | None = None

    def trainable_parameters(self, model: SPVIS) -> list[nn.Parameter]:
        """The tracker's parameters. Freezes the segmenter (requires_grad off), including the
        class and mask heads the tracker reuses: stage 2 must not move the segmenter; and the
        tracker modules named in `freeze` (they keep their init weights)."""
        if model.cfg.tracker.association != "pgt":
            raise ValueError("TrackerTask trains the PGT tracker; config tracker.association = "
                             f"{model.cfg.tracker.association!r} has nothing to train")
        model.segmenter.requires_grad_(False)
        for name in self.freeze:
            for module in FREEZABLE[name]:
                getattr(model.tracker, module).requires_grad_(False)
        return [p for p in model.tracker.parameters() if p.requires_grad]

    # ------------------------------------------------------------------------------------------
    def loss(self, model: SPVIS, clips: list[Any],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean stage-2 loss over the clips, and its terms for logging."""
        totals: dict[str, torch.Tensor] = {}
        count = 0
        for clip in clips:
            terms, n = self._clip_loss(model, clip, generator)
            for k, v in terms.items():
                totals[k] = totals.get(k, 0) + v
            count += n
        count = max(count, 1)
        w = dataclasses.asdict(self.weights)
        total = sum(w[k] * v for k, v in totals.items()) / count
        if not isinstance(total, torch.Tensor):  # nothing to supervise in these clips
            total = sum(p.sum() * 0 for p in model.tracker.parameters())
        logs = {f"loss_{k}": float(v.detach()) / count for k, v in totals.items()}
        # 1 when some tracker output was supervised in this step's clips: a frozen segmenter
        # that detects nothing of the data gives steps of loss 0 that train nothing, and the
        # trainer says so (`Trainer._log_row`).
        logs["supervised"] = 1.0 if totals else 0.0
        return total, logs

    # ------------------------------------------------------------------------------------------
    def _clip_loss(self, model: SPVIS, clip: Any,
                   gen: torch.Generator) -> tuple[dict[str, torch.Tensor], int]:
        if getattr(clip, "cached", None) is not None:  # a CachedClip: segmenter outputs stored
            self._check_cache(model, clip.segmenter_digest)
            frames = [clip.cached.features(t, model.segmenter.decoder, model.device)
                      for t in range(len(clip.cached))]
            geom = clip.cached.geometry
        else:
            frames, geom = self._segment(model, clip)
        grid = frames[0].pred_masks.shape[-2:]
        targets = [grid_targets(clip.labels[t], clip.masks[t], clip.track_ids[t], geom, grid,
                                model.device) for t in range(len(frames))]
        return self._track_loss(model, frames, targets, [float(s) for s in clip.stamps], gen)

    def _check_cache(self, model: SPVIS, digest: str) -> None:
        """Cached outputs must come from this model's (frozen) segmenter."""
        from spvis_model.feature_cache import CacheError, segmenter_digest

        if self._digest is None or self._digest[0] is not model:
            self._digest = (model, segmenter_digest(model))
        if digest != self._digest[1]:
            raise CacheError(f"stage 2: the clips' feature cache was built with segmenter "
                             f"{digest[:12]}, the model's is {self._digest[1][:12]} (rebuild "
                             "the cache from the --init checkpoint)")

    def _segment(self, model: SPVIS, clip: Any) -> tuple[list[Any], FrameGeometry]:
        """Run the frozen segmenter over a clip of frames: per-frame FrameFeatures."""
        dev = model.device
        frames = clip.frames.to(dev)
        t_len, _, h, w = frames.shape
        images = (frames.float() - model.pixel_mean) / model.pixel_std
        # As at inference: padding is zero *after* normalisation. A clip may arrive padded
        # (uint8 zeros) by the augmenter; its real content size is clip.image_size.
        ch, cw = getattr(clip, "image_size", None) or (h, w)
        images[:, :, ch:, :] = 0
        images[:, :, :, cw:] = 0
        ph, pw = math.ceil(h / 32) * 32, math.ceil(w / 32) * 32
        images = F.pad(images, (0, pw - w, 0, ph - h))
        geom = FrameGeometry((h, w), (h, w), (ph, pw))
        with torch.no_grad():
            seg = model.segment(images)
        return [model.frame_features(seg, t, geom) for t in range(t_len)], geom

    def _track_loss(self, model: SPVIS, frames: list[Any], targets: list[FrameTargets],
                    stamps: list[float], gen: torch.Generator
                    ) -> tuple[dict[str, torch.Tensor], int]:
        """Step the tracker through a clip's frames (fresh state) and sum the frame losses."""
        t_len = len(frames)
        keep = [0] + [t for t in range(1, t_len)
                      if float(torch.rand((), generator=gen)) >= self.drop_prob]
        det2gt = [self._match(frames[t], targets[t]) for t in range(t_len)]
        hidden = self._disappearance(targets, keep, gen)

        state = model.init_state()
        track_gt: dict[int, int | None] = {}
        terms: dict[str, torch.Tensor] = {}
        steps = 0
        for t in keep:
            feats = frames[t]
            gone = [j for j, g in det2gt[t].items() if (t, g) in hidden]
            if gone:
                feats = _remove_detections(feats, gone)
            if self.detach_every and steps and steps % self.detach_every == 0:
                state = state.detach()  # truncated backpropagation through a long clip
            if steps > 0 and float(torch.rand((), generator=gen)) < self.noisy_match_prob:
                state = _swap_two_refs(state, gen)
            before = state.query  # each slot's query of its last matched frame (with gradient)
            state, res = model.track(state, feats, stamps[t])
            steps += 1
            if res.slots.numel() == 0:
                continue
            old = [tid in track_gt for tid in res.ids.tolist()]
            for tid, det in zip(res.ids.tolist(), res.det_index.tolist(), strict=True):
                if tid not in track_gt:  # born this frame: takes its detection's GT for good
                    track_gt[tid] = det2gt[t].get(det) if det >= 0 else None
            frame_terms = self._frame_terms(res, targets[t], t, feats, det2gt[t], track_gt,
                                            hidden, before[res.slots], old)
            for k, v in frame_terms.items():
                terms[k] = terms.get(k, 0) + v
        return terms, steps

    def _match(self, feats: Any, target: FrameTargets) -> dict[int, int]:
        """{detection index: GT track id} for one frame (Hungarian on class + mask costs)."""
        if target.labels.numel() == 0:
            return {}
        with torch.no_grad():
            (pred_idx, tgt_idx), = self.matcher(
                feats.pred_logits[None].float(), feats.pred_masks[None].float(),
                [{"labels": target.labels, "masks": target.masks}])
        ids = target.ids.tolist()
        return {int(p): int(ids[g]) for p, g in zip(pred_idx.tolist(), tgt_idx.tolist(),
                                                    strict=True)}

    def _disappearance(self, targets: list[FrameTargets], keep: list[int],
                       gen: torch.Generator) -> set[tuple[int, int]]:
        """(frame, GT id) pairs whose object is removed from the segmenter output."""
        if len(keep) < 4 or float(torch.rand((), generator=gen)) >= self.disappear_prob:
            return set()
        present = sorted({int(i) for t in keep for i in targets[t].ids.tolist()})
        if not present:
            return set()
        gt = present[int(torch.randint(len(present), (), generator=gen))]
        start = 1 + int(torch.randint(len(keep) - 2, (), generator=gen))
        span = 1 + int(torch.randint(min(3, len(keep) - start - 1), (), generator=gen))
        return {(keep[k], gt) for k in range(start, start + span)}

    def _frame_terms(self, res: Any, target: FrameTargets, t: int, feats: Any,
                     det2gt: dict[int, int], track_gt: dict[int, int | None],
                     hidden: set[tuple[int, int]], before: torch.Tensor,
                     old: list[bool]) -> dict[str, torch.Tensor]:
        """One frame's loss terms for the live tracks (V).

        Args:
            before: (V, C) each track's query before this step (its last matched frame's), the
                query association and re-identification compare with this frame's detections.
            old: (V,) the track existed before this frame (a newborn has no query before).
        """
        dev = res.class_logits.device
        num_classes = res.class_logits.shape[1] - 1
        gt_ids = target.ids.tolist()
        gt_row = {g: k for k, g in enumerate(gt_ids) if (t, g) not in hidden}
        gt_det = {g: j for j, g in det2gt.items() if (t, g) not in hidden}
        targets_cls: list[int] = []
        vis_target: list[float] = []
        mask_rows: list[int] = []
        mask_tracks: list[int] = []
        reid_rows: list[int] = []  # tracks older than this frame whose GT detection is here
        reid_dets: list[int] = []
        keep_rows: list[int] = []  # tracks whose GT detection is here: feature preservation
        keep_dets: list[int] = []
        for v, tid in enumerate(res.ids.tolist()):
            g = track_gt.get(tid)
            row = gt_row.get(g) if g is not None else None
            if row is None:
                targets_cls.append(num_classes if g is None else -100)  # lost GT: no class loss
                vis_target.append(0.0)
                continue
            targets_cls.append(int(target.labels[row]))
            vis_target.append(1.0)
            mask_rows.append(row)
            mask_tracks.append(v)
            if g in gt_det:
                keep_rows.append(v)
                keep_dets.append(gt_det[g])
                if old[v]:
                    reid_rows.append(v)
                    reid_dets.append(gt_det[g])
        out: dict[str, torch.Tensor] = {}
        cls_t = torch.tensor(targets_cls, device=dev)
        empty_weight = torch.ones(num_classes + 1, device=dev)
        empty_weight[-1] = 0.1
        out["cls"] = F.cross_entropy(res.class_logits, cls_t, weight=empty_weight,
                                     ignore_index=-100) if (cls_t != -100).any() else \
            res.class_logits.sum() * 0
        out["visibility"] = F.binary_cross_entropy(
            res.visibility.clamp(1e-6, 1 - 1e-6), torch.tensor(vis_target, device=dev))
        if mask_tracks:
            gt = target.masks[mask_rows]
            logits = res.mask_logits[mask_tracks]
            out["mask"] = F.binary_cross_entropy_with_logits(logits, gt)
            prob = logits.sigmoid().flatten(1)
            gt_flat = gt.flatten(1)
            out["dice"] = (1 - (2 * (prob * gt_flat).sum(1) + 1)
                           / (prob.sum(1) + gt_flat.sum(1) + 1)).mean()
        e = F.normalize(feats.query_embed, dim=-1)
        if reid_rows:
            # Association's own question: does the track's query from its last matched frame
            # pick out its object's detection among all of this frame's?
            q = F.normalize(before[reid_rows], dim=-1)
            det_t = torch.tensor(reid_dets, device=dev)
            out["reid"] = F.cross_entropy(q @ e.T / self.temperature, det_t)
        if keep_rows:
            q = F.normalize(res.query[keep_rows], dim=-1)
            det_t = torch.tensor(keep_dets, device=dev)
            out["preserve"] = (1 - (q * e[det_t].detach()).sum(-1)).mean()
        return out


@dataclass
class FrameTargets:
    """One frame's ground truth on the model's padded stride-4 grid.

    Attributes:
        labels: (G,) int64 class indices; ids: (G,) int64 GT track ids.
        masks: (G, h, w) float32 area fractions on the (h, w) grid of the mask logits.
    """

    labels: torch.Tensor
    ids: torch.Tensor
    masks: torch.Tensor


def grid_targets(labels: torch.Tensor, masks: torch.Tensor, ids: torch.Tensor,
                 geom: FrameGeometry, grid: tuple[int, int] | torch.Size,
                 device: torch.device | str) -> FrameTargets:
    """Bring (G, H, W) bool GT masks at the frame's original size onto the mask logits' grid:
    resized as the frame was (`geom.resized`), padded bottom/right to `geom.padded`, then
    area-averaged to `grid`."""
    m = masks.to(device).float()
    if m.shape[0] and tuple(m.shape[-2:]) != tuple(geom.resized):
        m = F.interpolate(m[None], geom.resized, mode="area")[0]
    m = F.pad(m, (0, geom.padded[1] - m.shape[-1], 0, geom.padded[0] - m.shape[-2]))
    if m.shape[0]:
        m = F.interpolate(m[None], tuple(grid), mode="area")[0]
    else:
        m = m.new_zeros((0, *tuple(grid)))
    return FrameTargets(labels.to(device), ids.to(device), m)


def _remove_detections(feats: Any, dets: list[int]) -> Any:
    """The frame's features with detections `dets` taken out: no-object logits, empty masks,
    and an uninformative (mean) embedding."""
    idx = torch.tensor(dets, device=feats.query_embed.device)
    logits = feats.pred_logits.clone()
    logits[idx] = torch.full_like(logits[idx], -10.0)
    logits[idx, -1] = 10.0
    masks = feats.pred_masks.clone()
    masks[idx] = -10.0
    embed = feats.query_embed.clone()
    embed[idx] = feats.query_embed.mean(0, keepdim=True).detach()
    return dataclasses.replace(feats, pred_logits=logits, pred_masks=masks, query_embed=embed)


def _swap_two_refs(state: Any, gen: torch.Generator) -> Any:
    """Swap the association references of two random live tracks (noisy matching)."""
    live = torch.nonzero(state.status != 0).flatten()
    if live.numel() < 2:
        return state
    pick = live[torch.randperm(live.numel(), generator=gen)[:2].to(live.device)]
    ref = state.ref.clone()
    ref[pick] = ref[pick.flip(0)]
    return dataclasses.replace(state, ref=ref)
