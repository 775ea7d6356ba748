"""Fit a model's score calibration on validation sets and write the calibrated model.

    python bench/calibrate.py --checkpoint model.pt --sets val_heldout,val_real --out model_cal.pt
    python bench/calibrate.py --target track --checkpoint model.pt \
        --sets val_heldout,val_lowfps,val_fps10,val_vga,val_fps30 --out model_cal.pt

Runs the model's tracker on the cached segmenter outputs of the sets (bench/eval_sets.py) and
labels every predicted track a hit or a miss (video IoU >= 0.5 with a ground-truth track of
its category, spvis_model.eval.calibration). Only `val` sets. Prints the reliability (ECE)
before and after.

- ``--target frame`` (default): the per-frame published scores. Fits sigmoid(a * logit(score)
  + b) to the hits of the tracks ranked by their mean per-frame score (no track-score model)
  and writes tracker.score_calibration = [a, b]. Object-free sets (val_real) add misses from
  real footage.
- ``--target track``: the result-file scores of a model with stage 2's track-score model (a
  track's mean per-frame track score). Refits the score model's logit scale and offset so
  that this mean is calibrated (spvis_model.training.track_score.calibrate_track_score) and
  writes tracker.score_model. Per-frame published scores do not change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tracker_settings
from eval_sets import ensure_cache, ensure_dataset, load_sets

from spvis_model.ablation import make_variant, variant_results
from spvis_model.eval.calibration import calibrate, fit_platt, reliability, track_outcomes
from spvis_model.model import SPVIS
from spvis_model.training.track_score import (
    calibrate_track_score,
    collect_track_frames,
    mean_track_scores,
)


def _frame(model: SPVIS, names: list[str], sets: dict, args: argparse.Namespace) -> int:
    raw = make_variant(model, "raw", {"score_calibration": [1.0, 0.0], "score_model": []})
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


def _track(model: SPVIS, names: list[str], sets: dict, args: argparse.Namespace) -> int:
    weights = list(model.cfg.tracker.score_model)
    if not weights:
        print(f"--target track: {args.checkpoint} has no track-score model "
              "(tracker.score_model is empty); fit one with bench/fit_track_score.py first",
              file=sys.stderr)
        return 2
    tracks = []
    for name in names:
        data = ensure_dataset(sets[name], args.data_root)
        cache = ensure_cache(model, sets[name], args.data_root, args.cache_root)
        got = [t for t in collect_track_frames(model, cache, data) if len(t.score)]
        y = np.array([t.right for t in got], dtype=bool)
        print(f"{name}: {len(got)} tracks, {int(y.sum())} right; ECE "
              f"{reliability(mean_track_scores(got, weights), y).ece:.3f}", flush=True)
        tracks.extend(got)
    new = calibrate_track_score(tracks, weights, args.l2)
    y = np.array([t.right for t in tracks], dtype=bool)
    before = reliability(mean_track_scores(tracks, weights), y).ece
    after = reliability(mean_track_scores(tracks, new), y).ece
    value = "[" + ", ".join(f"{w:.4f}" for w in new) + "]"
    print(f"score_model {weights} -> {value}; ECE (all {len(tracks)} tracks) "
          f"{before:.3f} -> {after:.3f}")
    return tracker_settings.main([
        "--checkpoint", str(args.checkpoint), "--set", f"score_model={value}",
        "--why", f"bench/calibrate.py --target track --sets {','.join(names)} --l2 {args.l2}: "
        f"result-file ECE {before:.3f} -> {after:.3f} on {len(tracks)} validation tracks",
        "--out", str(args.out)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--target", choices=("frame", "track"), default="frame")
    ap.add_argument("--sets", default="val_heldout,val_real")
    ap.add_argument("--data-root", type=Path, default=Path("data/eval"))
    ap.add_argument("--cache-root", type=Path, default=Path("cache"))
    ap.add_argument("--l2", type=float, default=1e-3, help="--target track: penalty weight")
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
    return (_frame if args.target == "frame" else _track)(model, names, sets, args)


if __name__ == "__main__":
    sys.exit(main())
