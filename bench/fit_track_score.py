"""Fit stage 2's track-score model on training videos and (optionally) write it into a model.

    python bench/fit_track_score.py --checkpoint spvis_model/weights/spvis_lite0.pt \
        --sets train_s2 [--out model.pt]

Runs the model's PGT tracker on the cached segmenter outputs of the sets (bench/eval_sets.py;
built on first use), labels every published track right or wrong (video IoU >= 0.5 with a
ground-truth track of its category) and fits P(right) = sigmoid(b + w_s logit(score) + w_h
log(hits)) (spvis_model.training.track_score). Prints the weights and the AUC of the tracks'
mean scores before and after; with --out, writes the model with tracker.score_model set (the
weights do not change: bench/tracker_settings.py, the change recorded in the meta). The score
model ranks whole tracks in result files; per-frame published scores and their calibration
are untouched. Only `train` sets: whether the score model is kept is decided on
validation sets afterwards (bench/ablation.py --sets val_...).
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

from spvis_model.model import SPVIS
from spvis_model.tracker.publish import track_score
from spvis_model.training.track_score import collect_track_frames, fit_track_score


def auc(scores: np.ndarray, right: np.ndarray) -> float:
    """Probability that a right track outscores a wrong one (ties count half)."""
    pos, neg = scores[right], scores[~right]
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--sets", default="train_s2")
    ap.add_argument("--data-root", type=Path, default=Path("data/eval"))
    ap.add_argument("--cache-root", type=Path, default=Path("cache"))
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sets = load_sets()
    names = args.sets.split(",")
    bad = [n for n in names if n not in sets or sets[n].role != "train"]
    if bad:
        print(f"--sets {bad}: not train sets of configs/eval_sets.yaml (train sets: "
              f"{[n for n, s in sets.items() if s.role == 'train']}); the score model is "
              "fitted on training videos and kept or not on validation ones", file=sys.stderr)
        return 2
    model = SPVIS.from_checkpoint(args.checkpoint)
    tracks = []
    for name in names:
        data = ensure_dataset(sets[name], args.data_root)
        cache = ensure_cache(model, sets[name], args.data_root, args.cache_root)
        got = collect_track_frames(model, cache, data)
        print(f"{name}: {len(got)} tracks, {sum(t.right for t in got)} right", flush=True)
        tracks.extend(got)
    weights = fit_track_score(tracks, args.l2)
    right = np.array([t.right for t in tracks])
    before = np.array([t.score.mean() for t in tracks])
    after = np.array([float(track_score(torch.from_numpy(t.score), torch.from_numpy(t.hits),
                                        weights).mean()) for t in tracks])
    print(f"score_model = [{weights[0]:.4f}, {weights[1]:.4f}, {weights[2]:.4f}]  "
          f"AUC (training tracks) {auc(before, right):.3f} -> {auc(after, right):.3f}")
    if args.out:
        value = "[" + ", ".join(f"{w:.4f}" for w in weights) + "]"
        return tracker_settings.main([
            "--checkpoint", str(args.checkpoint), "--set", f"score_model={value}",
            "--why", f"bench/fit_track_score.py --sets {args.sets} --l2 {args.l2}",
            "--out", str(args.out)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
