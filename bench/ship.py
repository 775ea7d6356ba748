"""Turn a selected stage-1 checkpoint into a shippable demo model: the recipe's steps 4, 6, 7.

    python bench/ship.py --candidate runs/s1_wide_m/model_step_001600.pt \
        --selected-from runs/s1_wide --selection-sets val_heldout,val_lowfps,val_real_unseen \
        --recipe "stage 1 continued with configs/train_stage1_wide.yaml on train_s1_wide ..." \
        --out runs/ship.pt

A new segmenter changes what the scores mean and what the track-score model was fitted on, so
the shipped model's calibrations are refitted for it, in the recipe's order
(docs/model.md, 'The shipped demo model'):

1. meta: ``kind: demo`` and the shipped model's tracker-settings history carried over (the
   candidate's config already holds those settings: it was trained with the shipped model
   config), plus where it was selected from, on which sets, and the recipe;
2. frame calibration on ``--frame-sets`` (bench/calibrate.py);
3. stage 2's track-score model refitted on ``--fit-sets`` (bench/fit_track_score.py);
4. its scale and offset calibrated on ``--track-sets`` (bench/calibrate.py --target track).

The weights are never changed (each step keeps them bit for bit), so the feature caches of
the candidate serve every step. Validation of the result is a separate run
(bench/ablation.py --checkpoint OUT --sets val_...), and whether it ships is decided there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import calibrate
import fit_track_score

from spvis_model.model import SPVIS
from spvis_model.weights import default_checkpoint

CARRIED = ("kind", "tracker_settings")
"""Meta fields of the shipped model that a reshipped model keeps."""


def ship_meta(shipped: dict[str, Any], *, selected_from: str, checkpoint: str,
              selection_sets: list[str], recipe: str) -> dict[str, Any]:
    """The meta of a model made from a new candidate: `CARRIED` fields of the shipped model's
    meta (``kind`` defaults to "demo"), and the selection and recipe of the new one."""
    meta = {k: shipped[k] for k in CARRIED if k in shipped}
    meta.setdefault("kind", "demo")
    meta["tracker_settings"] = list(meta.get("tracker_settings", []))
    meta.update({"selected_from": selected_from, "checkpoint": checkpoint,
                 "selection_sets": list(selection_sets), "recipe": recipe})
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidate", type=Path, required=True, help="selected model file")
    ap.add_argument("--shipped", type=Path, default=None,
                    help="model whose meta is carried over (default: the shipped model)")
    ap.add_argument("--selected-from", required=True, help="the training run (for the meta)")
    ap.add_argument("--selection-sets", required=True, help="comma-separated (for the meta)")
    ap.add_argument("--recipe", required=True, help="how the candidate was trained")
    ap.add_argument("--frame-sets", default="val_heldout,val_real")
    ap.add_argument("--fit-sets", default="train_s2")
    ap.add_argument("--track-sets", default="val_heldout,val_lowfps,val_fps10,val_vga,val_fps30")
    ap.add_argument("--data-root", type=Path, default=Path("data/eval"))
    ap.add_argument("--cache-root", type=Path, default=Path("cache"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    shipped = SPVIS.from_checkpoint(args.shipped or default_checkpoint())
    model = SPVIS.from_checkpoint(args.candidate)
    stem = args.candidate.stem.removeprefix("model_")
    meta = ship_meta(shipped.meta, selected_from=args.selected_from, checkpoint=stem,
                     selection_sets=args.selection_sets.split(","), recipe=args.recipe)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = args.out.with_suffix(".steps")
    work.mkdir(exist_ok=True)
    start = work / "0_meta.pt"
    model.save(start, half=True, meta=meta)
    print(f"[ship] 1/4 meta: kind {meta['kind']}, {len(meta['tracker_settings'])} tracker "
          f"settings carried from {args.shipped or default_checkpoint()}", flush=True)
    roots = ["--data-root", str(args.data_root), "--cache-root", str(args.cache_root)]
    steps = [
        ("2/4 frame calibration", calibrate.main,
         ["--sets", args.frame_sets, *roots], work / "1_frame.pt"),
        ("3/4 track-score model", fit_track_score.main,
         ["--sets", args.fit_sets, *roots], work / "2_fit.pt"),
        ("4/4 track-score calibration", calibrate.main,
         ["--target", "track", "--sets", args.track_sets, *roots], args.out),
    ]
    current = start
    for title, run, extra, target in steps:
        print(f"[ship] {title}: {current} -> {target}", flush=True)
        rc = run(["--checkpoint", str(current), *extra, "--out", str(target)])
        if rc:
            print(f"[ship] {title} failed (exit {rc}); {args.out} not written", file=sys.stderr)
            return rc
        current = target
    print(f"[ship] wrote {args.out}; validate it with bench/ablation.py --checkpoint {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
