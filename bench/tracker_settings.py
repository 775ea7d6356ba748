"""Change tracker settings in a checkpoint, keeping its weights bit for bit.

Tracker settings chosen on validation sets (bench/ablation.py --sets val_...) go into the
shipped checkpoint's config with this; the weights, and so the segmenter digest that the
feature caches are keyed on, do not change. Each change is recorded in the checkpoint's meta
(`tracker_settings`: field, old and new value, and why).

    python bench/tracker_settings.py --checkpoint spvis_model/weights/spvis_lite0.pt \
        --set use_correction=true --set correction_max_interval=0.1 \
        --why "chosen on val_fps10/val_fps30/val_heldout" --out spvis_lite0.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from spvis_model.checkpoint import read_checkpoint, weights_checksum
from spvis_model.config import ConfigError
from spvis_model.model import SPVIS


def parse_setting(text: str) -> tuple[str, Any]:
    """'name=value' -> (name, value); the value is a YAML scalar (true, 0.1, .inf)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected NAME=VALUE")
    return name.strip(), yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--set", dest="settings", action="append", type=parse_setting, required=True,
                    help="TrackerConfig field NAME=VALUE (repeatable)")
    ap.add_argument("--why", required=True, help="recorded in the checkpoint's meta")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    model = SPVIS.from_checkpoint(args.checkpoint)
    known = {f.name for f in dataclasses.fields(model.cfg.tracker)}
    before = weights_checksum(model.state_dict())
    stored = read_checkpoint(args.checkpoint)
    half = any(t.dtype == torch.float16 for t in stored["state_dict"].values())
    # What the file says (None: the field is not in it, the checkpoint predates it).
    in_file = stored["config"].get("tracker", {})
    changes = []
    for name, value in args.settings:
        if name not in known:
            print(f"--set {name}: not a tracker setting; known: {sorted(known)}", file=sys.stderr)
            return 2
        changes.append({"field": name, "old": in_file.get(name), "new": value,
                        "why": args.why})
        setattr(model.cfg.tracker, name, value)
    try:
        model.cfg.validate()
    except ConfigError as err:
        print(f"--set: {err}", file=sys.stderr)
        return 2
    meta = dict(model.meta)
    meta["tracker_settings"] = [*meta.get("tracker_settings", []), *changes]
    model.save(args.out, half=half, meta=meta)
    after = weights_checksum(SPVIS.from_checkpoint(args.out).state_dict())
    if after != before:
        print(f"{args.out}: the weights changed on the way ({before[:12]} -> {after[:12]})",
              file=sys.stderr)
        return 1
    for c in changes:
        print(f"tracker.{c['field']}: {c['old']!r} -> {c['new']!r}")
    print(f"wrote {args.out} (weights unchanged: {after[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
