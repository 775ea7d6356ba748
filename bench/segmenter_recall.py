"""How much of what is there the segmenter finds, per frame, before any tracker: by same-class
crowding and by object size.

    python bench/segmenter_recall.py --sets val_heldout [--checkpoint model.pt] [--json out.json]

For every annotated object-frame (mask of at least --min-area pixels) of a set's cached
segmenter outputs (bench/eval_sets.py), at the frame's own resolution:

- *any query*: some query's mask (logit > 0) has mask IoU >= 0.5 with it, whatever its score
  or class: what a perfect tracker could still pick;
- *found*: a query of its class with score >= --score (class probability x mean mask
  probability inside the mask, the tracker's detection score) has IoU >= 0.5;
- *merged*: not found, but a scored query of its class covers >= 60% of it and >= 30% of
  another object of the same class in view: one query for two objects.

Rows group the object-frames by how many objects of the object's class are in view (1, 2,
3+); a second table groups them by area. Every choice made with this tool must be made on
`val` sets; it accepts test sets too, for the record.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_sets import ensure_cache, ensure_dataset, load_sets

from spvis_model.eval.data import load_ground_truth
from spvis_model.model import SPVIS, FrameGeometry
from spvis_model.tracker.types import FrameFeatures
from spvis_model.weights import default_checkpoint

AREA_BINS = ((100, 300), (300, 1000), (1000, 3000), (3000, 10**9))


@dataclass
class Counts:
    """Object-frames of one group and how many of them were found / merged."""

    n: int = 0
    any_query: int = 0
    found: int = 0
    merged: int = 0

    def row(self, name: str) -> str:
        n = max(self.n, 1)
        return (f"| {name} | {self.n} | {self.any_query / n:.3f} | {self.found / n:.3f} | "
                f"{self.merged / n:.3f} |")


@dataclass
class Recall:
    """Counts by same-class crowding (1, 2, 3 = 3 or more) and by area bin."""

    by_crowding: dict[int, Counts] = field(default_factory=lambda: {k: Counts() for k in (1, 2, 3)})
    by_area: dict[int, Counts] = field(
        default_factory=lambda: {k: Counts() for k in range(len(AREA_BINS))})

    def add(self, crowd: int, area: int, any_query: bool, found: bool, merged: bool) -> None:
        bins = [i for i, (lo, hi) in enumerate(AREA_BINS) if lo <= area < hi]
        for c in [self.by_crowding[min(crowd, 3)]] + [self.by_area[i] for i in bins]:
            c.n += 1
            c.any_query += int(any_query)
            c.found += int(found)
            c.merged += int(merged)

    def total(self) -> Counts:
        out = Counts()
        for c in self.by_crowding.values():
            out.n += c.n
            out.any_query += c.any_query
            out.found += c.found
            out.merged += c.merged
        return out

    def markdown(self) -> str:
        head = "| {} | object-frames | any query | found | merged |\n|---|---:|---:|---:|---:|"
        lines = [head.format("objects of its class in view")]
        for k, c in self.by_crowding.items():
            lines.append(c.row(f"{k}+" if k == 3 else str(k)))
        lines.append(self.total().row("all"))
        lines += ["", head.format("area (px)")]
        for i, c in self.by_area.items():
            lo, hi = AREA_BINS[i]
            lines.append(c.row(f"{lo}-{hi}" if hi < 10**9 else f">= {lo}"))
        return "\n".join(lines)


def frame_masks(pred_masks: torch.Tensor, padded: tuple[int, int], resized: tuple[int, int],
                original: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) mask logits on the padded stride-4 grid -> (N, H, W) at the frame's size."""
    x = F.interpolate(pred_masks[None].float(), padded, mode="bilinear", align_corners=False)
    x = x[:, :, :resized[0], :resized[1]]
    return F.interpolate(x, original, mode="bilinear", align_corners=False)[0]


def query_scores(feats: FrameFeatures, geometry: FrameGeometry
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One frame's queries at the frame's own size: (N, H, W) bool masks (logit > 0), (N,)
    detection scores (class probability x mean mask probability inside the mask, the
    tracker's score on full masks) and (N, K) class probabilities."""
    logits = frame_masks(feats.pred_masks, geometry.padded, geometry.resized, geometry.original)
    inside = logits > 0
    prob = logits.sigmoid()
    cls = feats.pred_logits.float().softmax(-1)[:, :-1]
    quality = (prob * inside).flatten(1).sum(1) / inside.flatten(1).sum(1).clamp(min=1)
    return inside, cls.max(-1).values * quality, cls


def set_recall(model: SPVIS, cache, data: Path, score_min: float, min_area: int) -> Recall:
    """Recall over every cached frame of one set (see the module docstring)."""
    gt = load_ground_truth(data)
    heads = model.segmenter.decoder
    out = Recall()
    for vid in cache.video_ids:
        video = cache.video(vid)
        g = video.geometry
        tracks = gt.tracks_by_video[vid]
        for t in range(len(video)):
            inside, score, cls = query_scores(video.features(t, heads, model.device), g)
            label = cls.argmax(-1) + 1  # category ids: class index + 1 (synthetic sets)
            flat = inside.flatten(1).float()
            in_view = [tr for tr in tracks if tr.rles[t] is not None and tr.frame_areas[t] > 0]
            gms = {id(tr): torch.from_numpy(mask_utils.decode(tr.rles[t])).bool().flatten()
                   .float() for tr in in_view}
            for tr in in_view:
                area = int(tr.frame_areas[t])
                if area < min_area:
                    continue
                same = [o for o in in_view if o.category_id == tr.category_id]
                gm = gms[id(tr)]
                inter = flat @ gm
                iou = inter / (flat.sum(1) + gm.sum() - inter).clamp(min=1)
                scored = (score >= score_min) & (label == tr.category_id)
                found = bool(((iou >= 0.5) & scored).any())
                merged = False
                if not found and len(same) > 1:
                    covers = scored & (inter / gm.sum() >= 0.6)
                    for o in same:
                        if o is tr or not bool(covers.any()):
                            continue
                        other = (flat[covers] @ gms[id(o)]) / gms[id(o)].sum()
                        merged = merged or bool((other >= 0.3).any())
                out.add(len(same), area, bool((iou >= 0.5).any()), found, merged)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--sets", default="val_heldout")
    ap.add_argument("--data-root", type=Path, default=Path("data/eval"))
    ap.add_argument("--cache-root", type=Path, default=Path("cache"))
    ap.add_argument("--score", type=float, default=0.3, help="detection score of a 'found' query")
    ap.add_argument("--min-area", type=int, default=100)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = SPVIS.from_checkpoint(args.checkpoint or default_checkpoint())
    model.eval()
    sets = load_sets()
    report = {}
    for name in [n for n in args.sets.split(",") if n]:
        if name not in sets:
            print(f"unknown set {name!r}; known: {sorted(sets)}", file=sys.stderr)
            return 2
        cache = ensure_cache(model, sets[name], args.data_root, args.cache_root)
        with torch.no_grad():
            rec = set_recall(model, cache, ensure_dataset(sets[name], args.data_root),
                             args.score, args.min_area)
        print(f"\n### {name} ({sets[name].role}): segmenter recall per object-frame "
              f"(score >= {args.score}, area >= {args.min_area} px)\n")
        print(rec.markdown(), flush=True)
        report[name] = {"by_crowding": {str(k): vars(c) for k, c in rec.by_crowding.items()},
                        "by_area": {str(AREA_BINS[i]): vars(c) for i, c in rec.by_area.items()}}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
