"""Fit a model's score calibration on validation sets and write the calibrated model.

    python bench/calibrate.py --checkpoint model.pt --sets val_heldout,val_real --out model_cal.pt

Runs the model's tracker on the cached segmenter outputs of the sets (bench/eval_sets.py),
labels every predicted track a hit or a miss (video IoU >= 0.5 with a ground-truth track of its
category, spvis_model.eval.calibration), fits sigmoid(a * logit(score) + b) to the hits, and
writes the model with tracker.score_calibration = [a, b]. Object-free sets (val_real) add
misses from real footage. Prints the reliability (ECE) before and after. Only `val` sets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_sets import ensure_cache, ensure_dataset, load_sets

from spvis_model.ablation import make_variant, variant_results
from spvis_model.eval.calibration import calibrate, fit_platt, reliability, track_outcomes
from spvis_model.model import SPVIS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--sets", default="val_heldout,val_real")
    ap.add_argument("--data-root", type=Path, default=Path("data/eval"))
    ap.add_argument("--cache-root", type=Path, default=Path("cache"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sets = load_sets()
    names = args.sets.split(",")
    bad = [n for n in names if n not in sets or sets[n].role != "val"]
    if bad:
        print(f"--sets {bad}: only validation sets (role: val) may be fitted on", file=sys.stderr)
        return 2
    model = SPVIS.from_checkpoint(args.checkpoint)
    raw = make_variant(model, "raw", {"score_calibration": [1.0, 0.0]})
    scores, hits = [], []
    for name in names:
        data = ensure_dataset(sets[name], args.data_root)
        cache = ensure_cache(model, sets[name], args.data_root, args.cache_root)
        results = variant_results(model, cache, data, [raw], progress=False)["raw"]
        s, h = track_outcomes(data, results)
        print(f"{name}: {s.size} predicted tracks, {int(h.sum())} hits")
        scores.append(s)
        hits.append(h)
    s, h = np.concatenate(scores), np.concatenate(hits)
    a, b = fit_platt(s, h)
    before, after = reliability(s, h), reliability(calibrate(s, (a, b)), h)
    print(f"fit: a = {a:.4f}, b = {b:.4f}; ECE {before.ece:.3f} -> {after.ece:.3f}")
    model.cfg.tracker.score_calibration = [round(a, 6), round(b, 6)]
    model.cfg.validate()
    meta = dict(model.meta)
    meta["calibration"] = {"sets": names, "a": a, "b": b, "ece_before": before.ece,
                           "ece_after": after.ece, "predictions": int(s.size)}
    model.save(args.out, half=True, meta=meta)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
