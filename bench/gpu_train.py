"""The pieces of scripts/gpu_train.sh (a stage-1 run sized to the GPU machine's minutes).

    python bench/gpu_train.py data --set train_s1_movers4 --videos 1000 --jobs 16 --out DIR
    python bench/gpu_train.py model-config --init spvis_model/weights/spvis_lite0.pt \\
        [--max-size 640] --out MODEL.yaml
    python bench/gpu_train.py export --run RUN --out OUT --keep 4 [--json extra.json ...]

``data`` generates the training set of a `configs/eval_sets.yaml` entry (role train only) with
more videos than the entry (video i of a set is ``SeedSequence([seed, i])``, so the entry's
videos are the first of them) and, with ``--size``, another frame size, in ``--jobs``
processes. ``model-config`` writes the init checkpoint's model config, optionally with another
``input.max_size`` (training at a higher resolution). ``export`` turns the newest ``--keep``
training checkpoints of a run (ckpt/step_*.pt: weights, optimizer and RNG state) into
float16 spvis model files ``OUT/model_step_XXXXXX.pt`` (about 12 MiB for lite0: what comes back
from the machine; `bench/select_checkpoint.py --run OUT` picks among them on validation sets)
and writes ``OUT/train.json``: the run's train config, its rate from log.csv, the first and last
logged losses and the exported files, merged with the JSON files given by ``--json`` (the
script's timings, the data summary, the machine).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def cmd_data(args: argparse.Namespace) -> int:
    from eval_sets import load_sets

    from spvis_model.data.synthetic import generate_dataset

    sets = load_sets()
    if args.set not in sets or sets[args.set].role != "train":
        names = sorted(n for n, s in sets.items() if s.role == "train")
        print(f"data: --set {args.set!r} is not a training set of configs/eval_sets.yaml "
              f"(training sets: {names})", file=sys.stderr)
        return 2
    cfg = sets[args.set].config()
    fields: dict[str, Any] = {}
    if args.videos:
        fields["videos"] = args.videos
    if args.frames:
        fields["frames"] = args.frames
    if args.size:
        fields["width"], fields["height"] = args.size
    cfg = dataclasses.replace(cfg, **fields)
    dropped: dict[str, str] = {}
    if cfg.uses_real_media:
        readable, dropped = readable_media(cfg.real_media)
        for name, why in dropped.items():
            print(f"data: WARNING: real medium {name!r} left out of the training data: {why}",
                  flush=True)
        if not readable:
            print("data: no real medium is readable here; not training without real negatives",
                  file=sys.stderr)
            return 1
        cfg = dataclasses.replace(cfg, real_media=readable)
    t0 = time.perf_counter()
    summary = generate_dataset(cfg, args.out, jobs=args.jobs)
    seconds = time.perf_counter() - t0
    info = {"set": args.set, "videos": summary.videos, "frames": summary.frames,
            "instances": summary.instances, "size": f"{cfg.width}x{cfg.height}",
            "real_backgrounds": summary.real_backgrounds, "empty_videos": summary.empty_videos,
            "jobs": args.jobs, "seconds": round(seconds, 1), "media_dropped": dropped}
    print(f"data: {summary.videos} videos, {summary.frames} frames ({cfg.width}x{cfg.height}), "
          f"{summary.real_backgrounds} on real footage, in {seconds:.1f} s with {args.jobs} "
          f"process(es) -> {summary.annotations}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"data": info}, indent=1))
    return 0


def readable_media(names: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, str]]:
    """(the media that read here as registered, {name: why} for the others). Every frame of a
    video is decoded: another OpenCV / FFmpeg build (the GPU machine's) may decode a file
    differently, and a short video would stop the generator half-way."""
    from spvis_model.data.real_media import (
        MEDIA,
        MediaNotFoundError,
        MediaReadError,
        VideoReader,
        load_media_photo,
    )

    ok, dropped = [], {}
    for name in names:
        entry = MEDIA[name]
        try:
            if entry.kind == "video":
                reader = VideoReader(name)
                reader.frame(entry.frames - 1)
                reader.close()
            else:
                load_media_photo(name)
        except (MediaNotFoundError, MediaReadError) as exc:
            dropped[name] = str(exc)
            continue
        ok.append(name)
    return tuple(ok), dropped


def cmd_model_config(args: argparse.Namespace) -> int:
    from spvis_model.checkpoint import CheckpointError
    from spvis_model.config import save_config
    from spvis_model.model import SPVIS

    try:
        cfg = SPVIS.from_checkpoint(args.init).cfg
    except CheckpointError as exc:
        print(f"model-config: --init {args.init}: {exc}", file=sys.stderr)
        return 2
    if args.max_size:
        cfg.input.max_size = args.max_size
    cfg.validate()
    save_config(cfg, args.out)
    print(f"model-config: {cfg.name}, input.max_size {cfg.input.max_size} -> {args.out}")
    return 0


def log_summary(run: Path) -> dict[str, Any]:
    """Rate and losses from a run's log.csv ({} without one): median s/step over the second half
    of the rows (the first include start-up), first and last logged loss."""
    path = run / "log.csv"
    if not path.is_file():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    tail = rows[len(rows) // 2:]
    per_step = statistics.median(float(r["time_per_step"]) for r in tail)
    data = statistics.median(float(r["data_time"]) for r in tail)
    return {"steps": int(float(rows[-1]["step"])), "seconds_per_step": per_step,
            "data_seconds_per_step": data, "loss_first": float(rows[0]["loss"]),
            "loss_last": float(rows[-1]["loss"]), "lr_last": float(rows[-1]["lr"]),
            "log_rows": len(rows)}


def cmd_export(args: argparse.Namespace) -> int:
    import yaml
    from select_checkpoint import model_from_training_payload

    from spvis_model.training.checkpoints import load_training_checkpoint

    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpts = sorted((run / "ckpt").glob("step_*.pt"))[-args.keep:] if args.keep else []
    train_cfg = {}
    if (run / "train_config.yaml").is_file():
        train_cfg = yaml.safe_load((run / "train_config.yaml").read_text())
    exported = []
    for ckpt in ckpts:
        payload = load_training_checkpoint(ckpt)
        model = model_from_training_payload(payload, source=str(ckpt))
        target = out / f"model_{ckpt.stem}.pt"
        model.save(target, half=True, meta={"trained_by": args.trained_by,
                                           "step": int(payload["step"]),
                                           "train_config": payload["train_config"]})
        exported.append({"file": target.name, "step": int(payload["step"]),
                         "bytes": target.stat().st_size})
        print(f"export: {ckpt.name} -> {target} ({target.stat().st_size / 2**20:.1f} MiB)",
              flush=True)
    result: dict[str, Any] = {}
    for extra in args.json or []:
        path = Path(extra)
        if path.is_file():
            result.update(json.loads(path.read_text()))
    result.update({"train_config": train_cfg, "log": log_summary(run), "exported": exported})
    if (run / "log.csv").is_file():
        (out / "log.csv").write_bytes((run / "log.csv").read_bytes())
    (out / "train.json").write_text(json.dumps(result, indent=1))
    print(f"export: {len(exported)} model file(s), train.json in {out}")
    return 0 if exported else 1


def main(argv: list[str] | None = None) -> int:
    from spvis_model.data.synthetic import parse_size

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("--set", default="train_s1_movers4")
    d.add_argument("--videos", type=int)
    d.add_argument("--frames", type=int)
    d.add_argument("--size", type=parse_size, help="WIDTHxHEIGHT (default: the set's)")
    d.add_argument("--jobs", type=int, default=1)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--json", type=Path, help="also write the data summary here")
    m = sub.add_parser("model-config")
    m.add_argument("--init", type=Path, required=True)
    m.add_argument("--max-size", type=int)
    m.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("export")
    e.add_argument("--run", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--keep", type=int, default=4)
    e.add_argument("--json", type=Path, nargs="*", help="JSON files merged into train.json")
    e.add_argument("--trained-by", default="scripts/gpu_train.sh",
                   help="what ran the training, for the model files' meta (e.g. 'spvis train "
                        "on the CPU')")
    args = ap.parse_args(argv)
    commands = {"data": cmd_data, "model-config": cmd_model_config, "export": cmd_export}
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
