"""Training checks for scripts/gpu_check.sh: data, and short stage-1 / stage-2 runs through the
AMP and NCCL paths.

    python bench/train_check.py generate --out DIR [--videos 8 --frames 24 --size 320x240]
    torchrun --standalone --nproc_per_node 1 bench/train_check.py amp --stage 1 \\
        --data DIR/annotations.json --out RUN1 --steps 30 --init spvis_model/weights/spvis_lite0.pt
    torchrun --standalone --nproc_per_node 1 bench/train_check.py amp --stage 2 \\
        --data DIR/annotations.json --out RUN2 --steps 20 --init RUN1/model.pt

``generate`` writes a small synthetic YouTube-VIS data set (`spvis generate`'s "easy" preset at
the given size; no real footage, so nothing beyond the repository and its wheels is needed).

``amp`` creates the process group itself (NCCL on CUDA, gloo on the CPU) and then runs
`spvis train` (spvis_model.training.cli) with the demo recipe (configs/train_stage1_demo.yaml,
configs/train_stage2_demo.yaml) shortened to ``--steps``, with autocast in ``--amp`` (bfloat16
by default; CUDA only, as the CPU kernels of MSDeformAttn are float32). Because the group
exists before the trainer starts, even one process trains through it
(`spvis_model.training.distributed.DistInfo.in_group`): the DDP wrapper and its gradient
all-reduce, the all-reduce of the logged scalars, the checkpoint gathers. It prints one JSON
line (and writes it to ``--json``): backend, world size, whether the trainer ran distributed,
AMP dtype, steps/s and seconds per step from the run's log.csv (mean over the second half of
its rows: the first steps include start-up), the first and last logged loss, the wall time.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIGS = {1: ROOT / "configs" / "train_stage1_demo.yaml",
                2: ROOT / "configs" / "train_stage2_demo.yaml"}


def log_rate(run: Path) -> dict:
    """steps/s (mean time per step over the second half of the log rows) and the loss at the
    first and last rows of a run's log.csv; {} when there is no log."""
    path = run / "log.csv"
    if not path.is_file():
        return {}
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    tail = rows[len(rows) // 2:]
    per_step = sum(float(r["time_per_step"]) for r in tail) / len(tail)
    return {"steps_logged": int(float(rows[-1]["step"])),
            "steps_per_s": 1.0 / per_step if per_step > 0 else None,
            "time_per_step_s": per_step, "loss_first": float(rows[0]["loss"]),
            "loss_last": float(rows[-1]["loss"]), "log_rows": len(rows)}


# --- data -------------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> None:
    from spvis_model.data.synthetic import generate_dataset, preset

    width, height = (int(v) for v in args.size.split("x"))
    cfg = dataclasses.replace(preset("easy"), videos=args.videos, frames=args.frames,
                              width=width, height=height, seed=args.seed)
    t0 = time.perf_counter()
    summary = generate_dataset(cfg, args.out)
    print(f"generated {summary.videos} videos, {summary.frames} frames ({width}x{height}) in "
          f"{time.perf_counter() - t0:.1f} s -> {summary.annotations}", flush=True)


# --- the AMP / NCCL path ----------------------------------------------------------------------
def process_group() -> tuple[str, int]:
    """Create the default process group from torchrun's environment: NCCL on CUDA (on this
    process's LOCAL_RANK device), gloo on the CPU; prove it with one all-reduce.

    Returns:
        (backend name, world size).
    """
    import torch.distributed as dist

    if "RANK" not in os.environ:
        sys.exit("bench/train_check.py amp: run it under torchrun (e.g. torchrun --standalone "
                 "--nproc_per_node 1 bench/train_check.py amp ...)")
    if torch.cuda.is_available():
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", init_method="env://", device_id=dev)
    else:
        dev = torch.device("cpu")
        dist.init_process_group("gloo", init_method="env://")
    ones = torch.ones(4, device=dev)
    dist.all_reduce(ones)
    world = dist.get_world_size()
    if not torch.equal(ones.cpu(), torch.full((4,), float(world))):
        raise RuntimeError(f"all_reduce over {dist.get_backend()} gave {ones.tolist()}, "
                           f"expected {world} in each element")
    return str(dist.get_backend()), world


def cmd_amp(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    from spvis_model.training import cli
    from spvis_model.training import distributed as D
    from spvis_model.training.config import load_train_config, save_train_config

    backend, world = process_group()
    cuda = torch.cuda.is_available()
    cfg = load_train_config(DEMO_CONFIGS[args.stage])
    cfg.steps = args.steps
    cfg.warmup_steps = min(cfg.warmup_steps, max(1, args.steps // 4))
    cfg.checkpoint_every, cfg.keep_checkpoints = args.steps, 1
    cfg.log_every = max(1, args.steps // 10)
    cfg.device = "cuda" if cuda else "cpu"
    cfg.num_workers = args.workers
    if args.batch_size:
        cfg.batch_size = args.batch_size
    if args.clip_len:
        cfg.clip_len = args.clip_len
    cfg.amp = cuda and args.amp != "none"
    if cfg.amp:
        cfg.amp_dtype = args.amp
    # What the trainer will see: the group created above is in use, so it runs distributed.
    in_group = D.init_distributed(cfg.device).distributed
    out = Path(args.out)
    config_path = out.parent / f"{out.name}_train.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_train_config(cfg, config_path)
    argv = ["--config", str(config_path), "--data", str(args.data), "--out", str(out),
            "--stage", str(args.stage), "--no-progress"]
    if args.init:
        argv += ["--init", str(args.init)]
    if args.model_config:
        argv += ["--model-config", args.model_config]
    parser = cli.add_arguments(argparse.ArgumentParser(prog="spvis train"))
    t0 = time.perf_counter()
    code = cli.run(parser.parse_args(argv))
    seconds = time.perf_counter() - t0
    dist.destroy_process_group()
    if code != 0:
        sys.exit(f"bench/train_check.py amp: spvis train exited {code}")
    result = {"stage": args.stage, "backend": backend, "world_size": world,
              "trainer_distributed": in_group, "device": cfg.device,
              "gpu": torch.cuda.get_device_name() if cuda else None,
              "amp": cfg.amp_dtype if cfg.amp else None, "steps": cfg.steps,
              "batch_size": cfg.batch_size, "clip_len": cfg.clip_len,
              "init": str(args.init) if args.init else None,
              "model_config": args.model_config, "seconds": seconds,
              "model": str(out / "model.pt"), "model_written": (out / "model.pt").is_file(),
              **log_rate(out)}
    print(json.dumps(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="a small synthetic data set")
    g.add_argument("--out", required=True)
    g.add_argument("--videos", type=int, default=4)
    g.add_argument("--frames", type=int, default=16)
    g.add_argument("--size", default="160x120", help="WIDTHxHEIGHT")
    g.add_argument("--seed", type=int, default=7)
    a = sub.add_parser("amp", help="a short training through the process group (torchrun)")
    a.add_argument("--stage", type=int, choices=[1, 2], required=True)
    a.add_argument("--data", required=True, help="annotations.json")
    a.add_argument("--out", required=True, help="run folder (must not hold a run)")
    a.add_argument("--init", default=None, help="checkpoint to start from (stage 2: stage 1's)")
    a.add_argument("--model-config", default=None, help="model preset or YAML (without --init)")
    a.add_argument("--steps", type=int, default=30)
    a.add_argument("--batch-size", type=int, default=0, help="default: the demo recipe's")
    a.add_argument("--clip-len", type=int, default=0, help="default: the demo recipe's")
    a.add_argument("--workers", type=int, default=1)
    a.add_argument("--amp", default="bfloat16", choices=["bfloat16", "float16", "none"])
    a.add_argument("--json", default=None)
    args = parser.parse_args()
    {"generate": cmd_generate, "amp": cmd_amp}[args.cmd](args)


if __name__ == "__main__":
    main()
