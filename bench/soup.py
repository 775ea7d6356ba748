"""Average the weights of model files fine-tuned from one model (a uniform "model soup").

    python bench/soup.py --out runs/soups/model_step_000001.pt \
        runs/stop30.pt runs/s1_movers4_m/model_step_000800.pt ...

Stage-1 runs on the CPU end on checkpoints that each lose something on validation (AP, or
quiet on real footage; docs/experiments.md "Stage 1 trained on further"). Fine-tunes of one model
stay in one basin of the loss, so the mean of their weights is itself a model, often better
than each of them; it costs no training, only a validation run (`bench/select_checkpoint.py
--run <dir of soups>`), which is where a soup is chosen or dropped.

Every input must have the same architecture (config apart from the tracker's run-time
settings, same keys and shapes). Floating-point tensors, BatchNorm running statistics
included, are averaged in float32; integer tensors (BatchNorm's batch counters) are taken from
the first file. The first file also gives the config, and so the calibrations, of the soup.
The output's `meta.soup` lists every ingredient with its SHA-256.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from spvis_model.checkpoint import CheckpointError, load_checkpoint
from spvis_model.hashing import file_sha256
from spvis_model.model import SPVIS


def average(models: list[SPVIS], names: list[str]) -> dict[str, torch.Tensor]:
    """The mean state dict of `models` (see the module docstring).

    Raises:
        ValueError: naming the file and key when the architectures differ.
    """
    first = models[0].state_dict()
    total = {k: v.detach().float().clone() if v.is_floating_point() else v.clone()
             for k, v in first.items()}
    for model, name in zip(models[1:], names[1:], strict=True):
        sd = model.state_dict()
        if sd.keys() != first.keys():
            extra = sorted(set(sd) ^ set(first))[:3]
            raise ValueError(f"{name}: its weights have other keys than {names[0]} ({extra})")
        for k, v in sd.items():
            if v.shape != first[k].shape:
                raise ValueError(f"{name}: weight {k!r} has shape {tuple(v.shape)}, "
                                 f"{names[0]} has {tuple(first[k].shape)}")
            if v.is_floating_point():
                total[k] += v.detach().float()
    n = float(len(models))
    return {k: (v / n).to(first[k].dtype) if first[k].is_floating_point() else v
            for k, v in total.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path, help="model files (spvis checkpoints)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--full", action="store_true", help="float32 storage (default float16)")
    args = ap.parse_args(argv)
    if len(args.inputs) < 2:
        print("soup: give at least two model files", file=sys.stderr)
        return 2
    names = [str(p) for p in args.inputs]
    models = []
    for path in args.inputs:
        try:
            models.append(load_checkpoint(path))
        except (CheckpointError, OSError) as exc:
            print(f"soup: {exc}", file=sys.stderr)
            return 2
    head = models[0].cfg.to_dict()
    for model, name in zip(models[1:], names[1:], strict=True):
        other = model.cfg.to_dict()
        for part in head:
            if part != "tracker" and other[part] != head[part]:
                print(f"soup: {name}: config.{part} differs from {names[0]}'s", file=sys.stderr)
                return 2
    soup = models[0]
    soup.load_state_dict(average(models, names))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(soup.meta)
    meta["soup"] = [{"file": n, "sha256": file_sha256(p)} for n, p in zip(names, args.inputs,
                                                                      strict=True)]
    soup.save(args.out, half=not args.full, meta=meta)
    print(f"soup of {len(models)} models -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
