"""Where a model's AP goes, on the same segmenter outputs: the tracker as run, its masks
re-associated by the ground truth, without its left-over tracks, and the segmenter's own
queries given to the objects one to one.

    python bench/ap_ladder.py --sets val_heldout [--checkpoint model.pt] [--variant k:v,...]

Rungs (YouTube-VIS AP / AP50 / AR10, from `spvis_model.eval.ceiling` and the feature cache of
bench/eval_sets.py):

1. *as run*: the tracker as configured (or with `--variant` overrides of TrackerConfig fields,
   e.g. `score_calibration:[1, 0],output_score:0.3,score_model:[]` for raw scores);
2. *re-associated*: the same published masks, ids given by the ground truth; left-over tracks
   kept. The gap 1 -> 2 is association;
3. *objects only*: without the left-over tracks. The gap 2 -> 3 is duplicates, parts and
   background the tracker publishes; the left-over masks are counted by kind;
4. *query oracle*: every object-frame takes the query (score >= --score) that a one-to-one
   matching on mask IoU gives it (IoU >= 0.5), whatever the tracker did. The gap 3 -> 4 is
   what the tracker's candidates, births and thresholds leave out; 4 is the segmenter's ceiling.

Every choice made with this tool must be made on `val` sets (docs/experiments.md,
"Duplicate queries").
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation import parse_variant
from eval_sets import ensure_cache, ensure_dataset, load_sets
from segmenter_recall import query_scores

from spvis_model.ablation import make_variant, variant_results
from spvis_model.eval.ceiling import reassociate
from spvis_model.eval.data import GroundTruth, load_ground_truth, load_predictions
from spvis_model.eval.runner import category_mapping
from spvis_model.eval.ytvis import evaluate
from spvis_model.model import SPVIS
from spvis_model.weights import default_checkpoint

METRICS = ("AP", "AP50", "AR10")


def query_oracle(model: SPVIS, cache: Any, gt: GroundTruth, data: Path, score_min: float
                 ) -> list[dict[str, Any]]:
    """Rung 4: one result entry per object some query covers (see the module docstring);
    category = the most frequent predicted class, score = mean query score."""
    heads = model.segmenter.decoder
    category = category_mapping(model.class_names, gt.categories, str(data))
    known = torch.tensor([i in category for i in range(len(model.class_names))])
    out: list[dict[str, Any]] = []
    for vid in cache.video_ids:
        video = cache.video(vid)
        g = video.geometry
        objects = [o for o in gt.tracks_by_video[vid] if not o.iscrowd]
        segs: list[list[dict[str, Any] | None]] = [[None] * len(video) for _ in objects]
        scores: list[list[float]] = [[] for _ in objects]
        labels: list[list[int]] = [[] for _ in objects]
        for t in range(len(video)):
            inside, score, cls = query_scores(video.features(t, heads, model.device), g)
            keep = torch.nonzero((score >= score_min) & known[cls.argmax(-1)]).flatten()
            here = [k for k, o in enumerate(objects) if o.frame_areas[t] > 0]
            if not here or keep.numel() == 0:
                continue
            flat = inside[keep].flatten(1).float()
            gms = torch.stack([torch.from_numpy(mask_utils.decode(objects[k].rles[t]))
                               .flatten().float() for k in here])
            inter = gms @ flat.T
            union = gms.sum(1, keepdim=True) + flat.sum(1)[None] - inter
            iou = (inter / union.clamp(min=1)).numpy()
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] < 0.5:
                    continue
                k, q = here[r], int(keep[c])
                m = np.asfortranarray(inside[q].numpy().astype(np.uint8))
                segs[k][t] = mask_utils.encode(m)
                scores[k].append(float(score[q]))
                labels[k].append(category[int(cls[q].argmax())])
        for k in range(len(objects)):
            if scores[k]:
                out.append({"video_id": vid, "category_id": Counter(labels[k]).most_common(1)[0][0],
                            "score": float(np.mean(scores[k])), "segmentations": segs[k]})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--sets", default="val_heldout")
    ap.add_argument("--data-root", type=Path, default=Path("data/eval"))
    ap.add_argument("--cache-root", type=Path, default=Path("cache"))
    ap.add_argument("--variant", default="", help="TrackerConfig overrides key:value,...")
    ap.add_argument("--score", type=float, default=0.3, help="query oracle: smallest score")
    ap.add_argument("--no-oracle", action="store_true", help="skip rung 4")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    overrides = parse_variant(f"v={args.variant}")[1] if args.variant else {}
    model = SPVIS.from_checkpoint(args.checkpoint or default_checkpoint())
    model.eval()
    sets = load_sets()
    for name in [n for n in args.sets.split(",") if n]:
        if name not in sets:
            print(f"unknown set {name!r}; known: {sorted(sets)}", file=sys.stderr)
            return 2
        cache = ensure_cache(model, sets[name], args.data_root, args.cache_root)
        data = ensure_dataset(sets[name], args.data_root)
        gt = load_ground_truth(data)
        with torch.no_grad():
            results = variant_results(model, cache, data, [make_variant(model, "v", overrides)],
                                      progress=False)["v"]
            rungs = {"as run": results}
            redo = reassociate(gt, load_predictions(results, gt))
            rungs["re-associated"] = redo.reassociated
            rungs["objects only"] = redo.objects_only
            if not args.no_oracle:
                rungs["query oracle"] = query_oracle(model, cache, gt, data, args.score)
        print(f"\n### {name} ({sets[name].role}; tracker overrides: {overrides or 'none'})\n")
        print("| rung | " + " | ".join(METRICS) + " |\n|---|" + "---:|" * len(METRICS))
        for rung, res in rungs.items():
            m = evaluate(gt, load_predictions(res, gt)) if res else dict.fromkeys(METRICS, 0.0)
            print(f"| {rung} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS) + " |")
        kinds = ", ".join(f"{k} {v}" for k, v in redo.leftover_frames.items())
        print(f"\nleft-over tracks: {redo.leftover_tracks}; left-over masks: {kinds}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
