"""Is a candidate's AP lead over a reference more than the noise of the videos? Paired
jackknife per set (spvis_model.eval.compare) on results lists saved by
`bench/select_checkpoint.py --save-results DIR`.

    python bench/compare_results.py --reference runs/fresh_results/step_000030 \
        --candidate runs/fresh_results/step_000101 --candidate runs/fresh_results/step_000102 \
        --sets val2_heldout,val2_lowfps

Each folder holds <set>.json per set; the ground truth is <data-root>/<set>/annotations.json.
Prints, per candidate and set, AP candidate vs reference, the difference and its jackknife
standard error, and over the sets the difference of the mean AP with its SE (the sets are
independent videos, so their variances add). A lead smaller than about two SEs is noise.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from spvis_model.eval.compare import PairedDifference, paired_jackknife


def compare(reference: Path, candidate: Path, sets: list[str], data_root: Path,
            metric: str = "AP") -> dict[str, PairedDifference]:
    """{set: candidate − reference} for each set.

    Raises:
        FileNotFoundError: naming the missing results or annotations file.
    """
    out = {}
    for s in sets:
        gt = data_root / s / "annotations.json"
        files = [gt, candidate / f"{s}.json", reference / f"{s}.json"]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{f}: no such file (set {s!r})")
        out[s] = paired_jackknife(gt, files[1], files[2], metric)
    return out


def combined(diffs: dict[str, PairedDifference]) -> tuple[float, float]:
    """(difference of the mean over sets, its SE)."""
    k = len(diffs)
    delta = sum(d.delta for d in diffs.values()) / k
    se = math.sqrt(sum(d.se ** 2 for d in diffs.values())) / k
    return delta, se


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", type=Path, required=True)
    ap.add_argument("--candidate", type=Path, action="append", required=True)
    ap.add_argument("--sets", required=True, help="comma-separated set names")
    ap.add_argument("--data-root", type=Path, default=Path("data/eval"))
    ap.add_argument("--metric", default="AP")
    args = ap.parse_args(argv)
    sets = [s for s in args.sets.split(",") if s]
    print(f"reference: {args.reference}")
    for cand in args.candidate:
        try:
            diffs = compare(args.reference, cand, sets, args.data_root, args.metric)
        except (FileNotFoundError, ValueError) as exc:
            print(f"{cand}: {exc}", file=sys.stderr)
            return 2
        print(f"\n{cand}")
        for s, d in diffs.items():
            print(f"  {s}: {d.describe()}")
        delta, se = combined(diffs)
        verdict = "beyond 2 SE" if abs(delta) > 2 * se else "within 2 SE (noise)"
        print(f"  mean over {len(sets)} sets: {delta:+.3f} ± {se:.3f} ({verdict})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
