"""The tracker ablation table: every stage of PGT added in turn, against MinVIS, on the same
segmenter outputs (docs/model.md).

    python bench/ablation.py                                  # shipped model, test sets
    python bench/ablation.py --sets val_heldout,val_lowfps    # validation sets (for tuning)
    python bench/ablation.py --no-table --variant "long=keep_seconds:1000" \
        --variant minvis=association:minvis

Sets are defined in configs/eval_sets.yaml; they are generated under --data-root and the
segmenter's outputs cached under --cache-root on first use (bench/eval_sets.py). Prints one
markdown table per set (AP, AP50, HOTA, AssA, IDF1, ID switches) and writes them with the raw
numbers to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_sets import ensure_cache, ensure_dataset, load_sets

from spvis_model.ablation import (
    ABLATION,
    METRICS,
    make_variant,
    published_per_frame,
    run_variants,
)
from spvis_model.model import SPVIS
from spvis_model.weights import default_checkpoint


def _split_items(spec: str) -> list[str]:
    """Split 'a:1,b:[2, 3],c:4' at the commas outside brackets."""
    items, depth, start = [], 0, 0
    for k, ch in enumerate(spec):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(spec[start:k])
            start = k + 1
    items.append(spec[start:])
    return items


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """'name=key:value,key:[v, v]' -> (name, overrides); values are YAML (scalars or flow
    lists, whose commas do not split items)."""
    name, _, spec = text.partition("=")
    if not name or not spec:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME=key:value,...")
    overrides = {}
    for item in _split_items(spec):
        key, _, value = item.partition(":")
        overrides[key.strip()] = yaml.safe_load(value)
    return name, overrides


def table(rows: dict[str, dict[str, float]]) -> str:
    head = "| tracker | " + " | ".join(METRICS) + " |"
    lines = [head, "|---|" + "---:|" * len(METRICS)]
    for name, m in rows.items():
        cells = [f"{int(m[k])}" if k == "IDSW" else f"{m[k]:.3f}" for k in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--sets", default="heldout,lowfps,vga,fps30,fps10",
                    help="comma-separated names from configs/eval_sets.yaml")
    ap.add_argument("--data-root", type=Path, default=Path("data/eval"))
    ap.add_argument("--cache-root", type=Path, default=Path("cache"))
    ap.add_argument("--out", type=Path, default=Path("out/ablation"))
    ap.add_argument("--variant", action="append", type=parse_variant, default=[],
                    help="extra row NAME=key:value,... (TrackerConfig fields)")
    ap.add_argument("--no-table", action="store_true", help="only the --variant rows")
    ap.add_argument("--score-threshold", type=float, default=0.5)
    ap.add_argument("--save-results", action="store_true",
                    help="also write each row's results list to OUT/results/<row>/<set>.json "
                         "(for bench/compare_results.py)")
    ap.add_argument("--false-positives", default="",
                    help="comma-separated object-free sets (e.g. real_heldout): instances "
                         "published per frame by MinVIS and the model as configured, per clip")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    model = SPVIS.from_checkpoint(args.checkpoint or default_checkpoint())
    sets = load_sets()
    rows_table: dict[str, dict[str, Any]] = {} if args.no_table else dict(ABLATION)
    rows_table.update(dict(args.variant))
    args.out.mkdir(parents=True, exist_ok=True)
    everything = {}
    for name in [n for n in args.sets.split(",") if n]:
        if name not in sets:
            print(f"unknown set {name!r}; known: {sorted(sets)}", file=sys.stderr)
            return 2
        s = sets[name]
        t0 = time.monotonic()
        cache = ensure_cache(model, s, args.data_root, args.cache_root)
        rows = run_variants(model, cache, ensure_dataset(s, args.data_root), rows_table,
                            args.score_threshold,
                            save_dir=args.out / "results" if args.save_results else None,
                            save_name=f"{name}.json")
        everything[name] = rows
        print(f"\n### {name} ({s.role}; {len(cache.video_ids)} videos; "
              f"{time.monotonic() - t0:.0f} s)\n")
        print(table(rows), flush=True)
        (args.out / f"{name}.md").write_text(table(rows) + "\n")
    for name in [n for n in args.false_positives.split(",") if n]:
        if name not in sets:
            print(f"unknown set {name!r}; known: {sorted(sets)}", file=sys.stderr)
            return 2
        cache = ensure_cache(model, sets[name], args.data_root, args.cache_root)
        variants = [make_variant(model, "MinVIS", ABLATION["MinVIS"]),
                    make_variant(model, "PGT as configured", {})]
        counts = published_per_frame(model, cache, variants, args.score_threshold)
        print(f"\n### {name}: published instances per frame (score >= {args.score_threshold}; "
              "object-free footage, every one is a false positive)\n")
        print("| tracker | mean | worst clip | clips above 0.05 |\n|---|---:|---:|---:|")
        for v, per in counts.items():
            rates = [sum(c) / max(len(c), 1) for c in per.values()]
            print(f"| {v} | {sum(rates) / len(rates):.3f} | {max(rates):.3f} | "
                  f"{sum(r > 0.05 for r in rates)} of {len(rates)} |", flush=True)
        everything[f"false_positives/{name}"] = {v: {str(k): c for k, c in per.items()}
                                                 for v, per in counts.items()}
    (args.out / "ablation.json").write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
