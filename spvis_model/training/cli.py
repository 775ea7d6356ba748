"""`spvis train`: train stage 1 (segmenter) or stage 2 (tracker) on a YouTube-VIS dataset.

    spvis train --config train.yaml --data train/annotations.json [--images DIR]
                [--model-config lite0|tiny|r50|model.yaml] --out DIR [--resume]
                [--stage 1|2] [--init CKPT] [--no-progress]

    torchrun --standalone --nproc_per_node 8 -m spvis_model.cli train ...   # one node, 8 GPUs

The data set is `spvis_model.data.sampler.ClipDataset` over a `YTVISDataset`: clips of
`clip_len` frames at a random stride (`data.stride_min`..`data.stride_max`), augmented by
`ClipAugment` (`data.augment`; by default resized so the longer side is at most the model's
input.max_size). See docs/training.md.

The model's class names come from the data set: a preset (whose class_names is the placeholder
["object"]) takes the data set's categories; a config or checkpoint that names its classes must
list exactly the data set's, in category-id order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from spvis_model.config import ConfigError, ModelConfig

DATA_MODULES = ("spvis_model.data.ytvis", "spvis_model.data.sampler",
                "spvis_model.data.transforms")
PLACEHOLDER_CLASSES = ["object"]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `spvis train`'s arguments to `parser` (the `train` subparser)."""
    parser.description = ("Train an SPVIS model (stage 1: segmenter, stage 2: tracker) on a "
                          "YouTube-VIS format dataset; see docs/training.md. Multi-process: run "
                          "it under torchrun.")
    parser.add_argument("--config", type=Path, required=True,
                        help="train config YAML (TrainConfig fields)")
    parser.add_argument("--data", type=Path, required=True,
                        help="dataset JSON in YouTube-VIS format")
    parser.add_argument("--images", type=Path,
                        help="folder the JSON's file_names are relative to (default: "
                             "JPEGImages/ beside the JSON)")
    parser.add_argument("--model-config",
                        help="model preset (tiny, lite0, r50) or YAML (default: the --init "
                             "checkpoint's config, on --resume the run's, else lite0)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: ckpt/, log.csv, loss.png, model.pt")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from ckpt/last.pt")
    parser.add_argument("--stage", type=int, choices=(1, 2),
                        help="override the config's stage")
    parser.add_argument("--init", help="override the config's init checkpoint (e.g. the "
                                       "stage-1 model.pt for stage 2)")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="override the config's time_budget_s: after the probe steps the "
                             "run's length is fixed so that its loop ends within SECONDS")
    parser.add_argument("--feature-cache", type=Path,
                        help="stage 2: train on the frozen segmenter's outputs cached in this "
                             "folder (built there from the --init checkpoint on first use), "
                             "so each step costs only the tracker")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (print one line per log row instead)")
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(f"spvis train: error: {message}", file=sys.stderr)
    return code


def _import_data() -> tuple[Any, Any, Any, Any]:
    """(YTVISDataset, ClipSampler, ClipDataset, ClipAugment); ImportError naming the module."""
    try:
        from spvis_model.data.sampler import ClipDataset, ClipSampler
        from spvis_model.data.transforms import ClipAugment
        from spvis_model.data.ytvis import YTVISDataset
    except ImportError as exc:
        raise ImportError(f"spvis train needs the data modules {', '.join(DATA_MODULES)}, and "
                          f"one cannot be imported ({exc}); this installation has no "
                          "YouTube-VIS data loading yet") from exc
    return YTVISDataset, ClipSampler, ClipDataset, ClipAugment


def _model_config(args: argparse.Namespace, init: str | None) -> ModelConfig:
    from spvis_model.checkpoint import read_checkpoint
    from spvis_model.training.checkpoints import checkpoint_dir, load_training_checkpoint
    from spvis_model.training.trainer import resolve_model_config

    if args.model_config:
        return resolve_model_config(args.model_config)
    source = None
    if args.resume:
        source = checkpoint_dir(args.out) / "last.pt"
    elif init is not None:
        source = Path(init)
    if source is None:
        return resolve_model_config("lite0")
    if args.resume:  # ckpt/last.pt is a training checkpoint: say what is wrong with it
        data = load_training_checkpoint(source)["model_config"]
    else:
        try:
            data = load_training_checkpoint(source)["model_config"]
        except ValueError:
            data = read_checkpoint(source)["config"]
    return ModelConfig.from_dict(data)


def _class_names(model_cfg: ModelConfig, names: list[str], data: Path) -> ModelConfig:
    if model_cfg.class_names == PLACEHOLDER_CLASSES and names != PLACEHOLDER_CLASSES:
        model_cfg.class_names = list(names)
        return model_cfg.validate()
    if model_cfg.class_names != names:
        raise ConfigError(f"class_names = {model_cfg.class_names}: the model's classes must be "
                          f"the data set's ({data}: {names}, in category-id order)")
    return model_cfg


def run(args: argparse.Namespace) -> int:
    """Run `spvis train` with parsed arguments; 0 on success, 1 on bad data, 2 on bad usage,
    config or checkpoint."""
    from spvis_model.checkpoint import CheckpointError
    from spvis_model.training.config import load_train_config

    try:
        cfg = load_train_config(args.config)
        if args.stage is not None:
            cfg.stage = args.stage
        if args.init is not None:
            cfg.init = args.init
        if args.time_budget is not None:
            cfg.time_budget_s = args.time_budget
        cfg.validate()
        YTVISDataset, ClipSampler, ClipDataset, ClipAugment = _import_data()  # noqa: N806
        model_cfg = _model_config(args, cfg.init)
    except ImportError as exc:
        return _fail(str(exc))
    except (ConfigError, CheckpointError, OSError) as exc:
        return _fail(str(exc))
    from spvis_model.training.distributed import check_device
    try:
        check_device(cfg.device)
    except ValueError as exc:  # e.g. device: cuda on a machine without one
        return _fail(f"train config {args.config}: {exc}")

    images = args.images if args.images is not None else args.data.parent / "JPEGImages"
    cache_ready = args.feature_cache is not None and (args.feature_cache / "meta.json").exists()
    if not cache_ready and not images.is_dir():  # else the DataLoader's workers find out
        return _fail(f"image directory {images} does not exist (give --images DIR: the folder "
                     "the dataset's file_names are relative to)", code=1)
    try:
        videos = YTVISDataset(args.data, args.images)
    except (ValueError, OSError) as exc:
        return _fail(f"--data {args.data}: {exc}", code=1)
    if not cache_ready:
        missing = _missing_frames(videos, videos.image_root)
        if missing is not None:
            return _fail(f"--data {args.data}: {missing} (--images {videos.image_root})",
                         code=1)
    if args.feature_cache is not None:
        return _train_on_cache(args, cfg, model_cfg, videos)
    try:
        model_cfg = _class_names(model_cfg, list(videos.class_names), args.data)
        data = cfg.data
        sampler = ClipSampler(videos, cfg.clip_len, stride_min=data.get("stride_min", 1),
                              stride_max=data.get("stride_max", 10), seed=cfg.seed,
                              skip_empty=data.get("skip_empty", True))
        m = model_cfg.input.max_size
        augment_args = {"max_size": m, "min_size": (round(0.45 * m), round(0.8 * m)),
                        **dict(data.get("augment") or {})}
        try:
            augment = ClipAugment(**augment_args)
        except TypeError as exc:
            raise ConfigError(f"data.augment = {data.get('augment')!r}: {exc}") from exc
        length = data.get("epoch_length") or len(sampler)
        dataset = ClipDataset(videos, sampler, augment, length=length)
    except ConfigError as exc:
        return _fail(str(exc))
    except ValueError as exc:  # the sampler found nothing to sample, ...
        return _fail(f"--data {args.data}: {exc}", code=1)

    progress = not args.no_progress and sys.stderr.isatty()
    return _run_train(args, model_cfg, cfg, dataset, progress)


def _missing_frames(videos: Any, images: Path) -> str | None:
    """None when every frame file of the data set exists under `images`, else one line naming
    how many are missing and the first (checked before training: a missing frame would
    otherwise stop the run at the step that first samples it, hours in)."""
    missing, first = 0, None
    for video in videos.videos:
        for t, name in enumerate(video.file_names):
            path = images / name
            if not path.is_file():
                missing += 1
                if first is None:
                    first = f"video {video.id} ({video.name}) frame {t}: {path}"
    if not missing:
        return None
    total = sum(len(v.file_names) for v in videos.videos)
    return f"{missing} of {total} frame files do not exist, e.g. {first}"


class _TerminatedError(Exception):
    """SIGTERM turned into an exception, so the run ends with one line like Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _TerminatedError()


def _run_train(args: argparse.Namespace, model_cfg: ModelConfig, cfg: Any, dataset: Any,
               progress: bool, extra_errors: tuple[type[Exception], ...] = ()) -> int:
    """Call `train` and turn its user-facing errors into one line and an exit code: 1 for a
    run the data or the numbers stopped (TrainingError), 2 for config / checkpoint / out-dir
    problems, 130 / 143 for Ctrl-C / SIGTERM (naming the checkpoint to resume from)."""
    import signal
    import threading

    from spvis_model.checkpoint import CheckpointError
    from spvis_model.training.checkpoints import checkpoint_dir
    from spvis_model.training.tasks import TaskUnavailableError
    from spvis_model.training.trainer import TrainingError, train

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        train(model_cfg, cfg, dataset, args.out, resume=args.resume, progress=progress)
    except (ConfigError, CheckpointError, TaskUnavailableError, FileExistsError,
            FileNotFoundError, *extra_errors) as exc:
        return _fail(str(exc))
    except TrainingError as exc:
        return _fail(str(exc), code=1)
    except (KeyboardInterrupt, _TerminatedError) as exc:
        what, code = ("interrupted", 130) if isinstance(exc, KeyboardInterrupt) else \
            ("terminated (SIGTERM)", 143)
        last = checkpoint_dir(args.out) / "last.pt"
        where = (f"continue from its last checkpoint ({last}) with --resume" if last.is_file()
                 else "no checkpoint was written yet")
        return _fail(f"{what}; {where}", code=code)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0



def _train_on_cache(args: argparse.Namespace, cfg: Any, model_cfg: ModelConfig,
                    videos: Any) -> int:
    """Stage 2 on cached segmenter outputs (--feature-cache); 0, 1 or 2 as `run`."""
    from spvis_model.checkpoint import CheckpointError
    from spvis_model.feature_cache import CacheError, FeatureCache, build_cache
    from spvis_model.model import SPVIS
    from spvis_model.training.cached_clips import CachedClipDataset
    from spvis_model.training.checkpoints import load_init_weights

    if cfg.stage != 2:
        return _fail(f"--feature-cache is for stage 2 (the segmenter is frozen there); the "
                     f"config says stage = {cfg.stage}")
    if cfg.data.get("augment"):
        return _fail("data.augment does not apply with --feature-cache (the segmenter outputs "
                     "are fixed); remove it")
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        model_cfg = _class_names(model_cfg, list(videos.class_names), args.data)
        if (args.feature_cache / "meta.json").exists():
            cache = FeatureCache(args.feature_cache)
        else:
            if cfg.init is None:
                return _fail("--feature-cache: the cache does not exist yet and there is no "
                             "--init checkpoint to build it from")
            model = SPVIS(model_cfg, pretrained_backbone=False)
            load_init_weights(model, cfg.init)
            print(f"spvis train: caching the segmenter's outputs in {args.feature_cache}",
                  file=sys.stderr)
            cache = build_cache(model, args.data, args.feature_cache, args.images,
                                progress=progress)
        data = cfg.data
        dataset = CachedClipDataset(cache, videos, cfg.clip_len,
                                    stride_min=data.get("stride_min", 1),
                                    stride_max=data.get("stride_max", 10), seed=cfg.seed,
                                    length=data.get("epoch_length") or len(cache.video_ids))
    except (ConfigError, CheckpointError, CacheError) as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(f"--data {args.data}: {exc}", code=1)
    return _run_train(args, model_cfg, cfg, dataset, progress, extra_errors=(CacheError,))
