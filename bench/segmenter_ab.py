"""Benchmark: this checkout's segmenter against another checkout's, paired, on one device.

A code change that should only make the segmenter faster (a kernel, a fold, a memory layout)
is timed against the checkout before it: each round runs a worker process in each checkout
(its own ``spvis_model`` and compiled extension, imported through ``PYTHONPATH``), the order
alternating from round to round, so that both sides share the machine's drift. It prints
each stage's median per side and the median and range of the per-round ratios (this / base).
On lite0 backbones the worker also times the backbone with ``cpu_channels_last`` off,
interleaved with the main run: a reference in the same process for the layout alone.

Models: the shipped checkpoint at its own input size (the frame is 320×240), and the lite0 and
r50 presets with seeded random weights on a 640×480 frame.

    git worktree add /tmp/base <commit> && (cd /tmp/base && make setup)   # or build_ext
    python bench/segmenter_ab.py --base /tmp/base --rounds 6 --repeats 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("backbone", "pixel_decoder", "decoder", "segmenter")
MODELS = ("shipped", "lite0", "r50")


def worker(models: list[str], repeats: int, threads: int) -> dict:
    """Stage medians (ms) of each model in this process's checkout."""
    import numpy as np
    import torch

    from spvis_model.config import preset
    from spvis_model.model import SPVIS

    torch.set_num_threads(threads)
    out: dict[str, dict] = {}
    for name in models:
        torch.manual_seed(0)
        if name == "shipped":
            model = SPVIS.from_checkpoint("spvis_model/weights/spvis_lite0.pt").eval()
            hw = (240, 320)
        else:
            model = SPVIS(preset(name), pretrained_backbone=False).eval()
            hw = (480, 640)
        frame = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
        n = repeats if name != "r50" else max(2, repeats // 3)
        seg = model.segmenter
        backbone = seg.backbone
        pixel_decoder, decoder = seg.sem_seg_head.pixel_decoder, seg.sem_seg_head.predictor
        times: dict[str, list[float]] = {k: [] for k in STAGES}
        layout = isinstance(getattr(backbone, "cpu_channels_last", None), bool)
        if layout:
            times["backbone_nchw"] = []
        with torch.inference_mode():
            images, _ = model.preprocess(frame)
            seg(images)
            for _ in range(n):
                t0 = time.perf_counter()
                feats = backbone(images)
                t1 = time.perf_counter()
                pixels = pixel_decoder(feats)
                t2 = time.perf_counter()
                decoder(pixels.multi_scale_features, pixels.mask_features)
                t3 = time.perf_counter()
                for k, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                    times[k].append(dt)
                if layout:  # the default layout, interleaved with the run above
                    backbone.cpu_channels_last = False
                    t0 = time.perf_counter()
                    backbone(images)
                    times["backbone_nchw"].append(time.perf_counter() - t0)
                    backbone.cpu_channels_last = True
        out[name] = {"input": list(images.shape[-2:]),
                     **{k: statistics.median(v) * 1e3 for k, v in times.items()}}
    return out


def run_side(checkout: Path, models: list[str], repeats: int, threads: int) -> dict:
    """One worker in `checkout` (its own code and extension); its JSON result."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--models", *models,
           "--repeats", str(repeats), "--threads", str(threads)]
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker in {checkout} failed (exit {proc.returncode}); is its "
                         f"extension built (make setup there)?\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, help="the other checkout (built), the reference")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write every round here")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.models, args.repeats, args.threads)))
        return
    if args.base is None or not (args.base / "spvis_model").is_dir():
        parser.error(f"--base must be another spvis checkout, got {args.base}")
    here = Path(__file__).resolve().parents[1]
    rounds = []
    for r in range(args.rounds):
        sides = [("base", args.base), ("this", here)]
        for side, path in sides if r % 2 == 0 else sides[::-1]:
            rounds.append({"round": r, "side": side,
                           "t": run_side(path, args.models, args.repeats, args.threads)})
            print(f"round {r + 1}/{args.rounds} {side}: " + ", ".join(
                f"{m} {rounds[-1]['t'][m]['segmenter']:.1f} ms" for m in args.models),
                file=sys.stderr)
    print(f"segmenter stages, CPU, {args.threads} thread(s); median over {args.rounds} paired "
          f"rounds of {args.repeats} repeats; base = {args.base}")
    print(f"{'model':8s} {'stage':14s} {'base ms':>9s} {'this ms':>9s} {'this/base':>9s} "
          f"{'range':>13s}")
    for m in args.models:
        for stage in (*STAGES, "backbone_nchw"):
            pairs = [(a["t"][m].get(stage), b["t"][m].get(stage))
                     for a in rounds if a["side"] == "base"
                     for b in rounds if b["side"] == "this" and b["round"] == a["round"]]
            this = [t for _, t in pairs if t is not None]
            if not this:
                continue
            if stage == "backbone_nchw":  # same process, layout only: this side's ratio
                nhwc = [b["t"][m]["backbone"] for b in rounds if b["side"] == "this"]
                ratios = [a / b for a, b in zip(nhwc, this, strict=True)]
                print(f"{m:8s} {'nhwc/nchw':14s} {'':>9s} {statistics.median(this):9.1f} "
                      f"{statistics.median(ratios):9.3f} {min(ratios):6.3f}-{max(ratios):.3f}")
                continue
            base = [b for b, _ in pairs if b is not None]
            ratios = [t / b for b, t in pairs if b and t]
            print(f"{m:8s} {stage:14s} {statistics.median(base):9.1f} "
                  f"{statistics.median(this):9.1f} {statistics.median(ratios):9.3f} "
                  f"{min(ratios):6.3f}-{max(ratios):.3f}")
    if args.json:
        args.json.write_text(json.dumps(rounds, indent=1))


if __name__ == "__main__":
    main()
