"""Deterministic synthetic videos in YouTube-VIS format, with frame time stamps: writing data
sets to disk, the `spvis generate` command, and the generator's public API in one import.

The config and presets are `spvis_model.data.synthetic_config`, the renderer (what a video
shows, its ground truth) `spvis_model.data.synthetic_render`; both are re-exported here.

`generate_dataset(config, out_dir, jobs=1)` renders every video of a `SyntheticConfig`
(`spvis_model.data.synthetic`) and writes the frames as JPEG (or PNG) and annotations.json in
YouTube-VIS format with time stamps; `jobs` > 1 renders in worker processes with byte-identical
files. `main` / `add_arguments` / `run` are `spvis generate`. docs/synthetic.md has the format.

    path = generate(preset("easy"), "out")          # out/annotations.json
    main(["--out", "out", "--preset", "hard", "--jobs", "4"])
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import multiprocessing
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spvis_model.config import ConfigError
from spvis_model.data.real_media import SOURCES
from spvis_model.data.synthetic_config import (
    IMAGE_FORMATS,
    MOVER_FIELDS,
    PRESETS,
    REAL_FIELDS,
    REAL_MIX_MEDIA,
    SyntheticConfig,
    preset,
)
from spvis_model.data.synthetic_render import (
    RLE,
    ObjectView,
    RenderedFrame,
    SyntheticVideo,
    TrackBuilder,
    TrackGT,
    generate_video,
)

__all__ = [  # the generator's public API, in one import (config, renderer, writer, CLI)
    "IMAGE_FORMATS", "MOVER_FIELDS", "PRESETS", "REAL_FIELDS", "REAL_MIX_MEDIA", "RLE",
    "DatasetSummary",
    "ObjectView", "RenderedFrame", "SyntheticConfig", "SyntheticVideo", "TrackBuilder",
    "TrackGT", "add_arguments", "dataset_json", "generate", "generate_dataset",
    "generate_video", "info_config", "main", "parse_size", "preset", "real_background_info", "run",
]


@dataclass
class DatasetSummary:
    """What `generate_dataset` wrote."""

    annotations: Path
    images: Path
    videos: int
    frames: int
    instances: int
    mean_occlusion: float
    seconds: float
    real_backgrounds: int = 0
    empty_videos: int = 0
    real_role: str | None = None

    def text(self) -> str:
        """Human-readable summary lines."""
        fps = self.frames / self.seconds if self.seconds > 0 else float("inf")
        real = (f"{self.real_backgrounds} videos on real {self.real_role} footage, "
                f"{self.empty_videos} of them object-free\n" if self.real_role else "")
        return (f"wrote {self.annotations}\n"
                f"frames in {self.images}/<video>/\n"
                f"{self.videos} videos, {self.frames} frames, {self.instances} instances, "
                f"mean occlusion {self.mean_occlusion:.3f}\n"
                f"{real}"
                f"{self.seconds:.1f} s ({fps:.1f} frames/s)")


def _annotation(track: TrackGT, ann_id: int, video_id: int) -> dict[str, Any]:
    return {"id": ann_id, "video_id": video_id, "category_id": track.category_id,
            "iscrowd": 0, "segmentations": track.rles, "bboxes": track.boxes,
            "areas": track.areas, "occlusion": track.occlusion}


def _write_image(path: Path, rgb: np.ndarray, config: SyntheticConfig) -> None:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = ([cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality] if config.image_format == "jpg"
              else [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not cv2.imwrite(str(path), bgr, params):
        raise OSError(f"could not write frame image {str(path)!r}")


def info_config(config: SyntheticConfig) -> dict[str, Any]:
    """The config as a dataset records it (``info.config``): every field, tuples as lists;
    the `REAL_FIELDS` only when one of them is not at its default, and `class_pool` /
    `class_pool_prob` only when `class_pool` is not 0 (so older configs keep their exact
    bytes); the `MOVER_FIELDS` likewise only when `movers` is not (0, 0). Equal records mean
    equal datasets (generation is deterministic)."""
    defaults = {f.name: f.default for f in dataclasses.fields(SyntheticConfig)}
    real_default = all(getattr(config, k) == defaults[k] for k in REAL_FIELDS)
    no_movers = tuple(config.movers) == (0, 0)
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()
            if not (real_default and k in REAL_FIELDS)
            and not (k in ("class_pool", "class_pool_prob") and config.class_pool == 0)
            and not (no_movers and k in MOVER_FIELDS)}


def dataset_json(config: SyntheticConfig, videos: list[dict[str, Any]],
                 annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """The YouTube-VIS dataset dict (info, videos, annotations, categories); ``info.config``
    is `info_config(config)`."""
    from spvis_model import __version__

    return {
        "info": {"description": "spvis synthetic videos (spvis_model.data.synthetic)",
                 "version": __version__, "config": info_config(config)},
        "videos": videos,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name}
                       for cid, name in zip(config.category_ids(), config.classes,
                                            strict=True)],
    }


@dataclass
class _WrittenVideo:
    """One video as `_write_video` wrote it: its JSON entry and its tracks' annotations
    (without ids: the dataset numbers them in video order)."""

    entry: dict[str, Any]
    tracks: list[TrackGT]
    real: bool
    empty: bool


def _write_video(config: SyntheticConfig, index: int, images: Path) -> _WrittenVideo:
    """Render video `index` of `config`, write its frames under `images` and return its JSON
    entry and tracks (a pure function of (config, index): the same bytes in any process)."""
    video = SyntheticVideo(config, index)
    folder = images / video.name
    folder.mkdir(parents=True, exist_ok=True)
    builder = TrackBuilder(video)
    names = []
    ext = config.image_format
    for t, frame in enumerate(video.frames()):
        builder.add(frame)
        name = f"{video.name}/{t:05d}.{ext}"
        _write_image(images / name, frame.image, config)
        names.append(name)
    entry = {"id": index + 1, "name": video.name, "width": config.width,
             "height": config.height, "length": config.frames, "file_names": names,
             "fps": video.fps, "timestamps": [float(s) for s in video.stamps],
             "dropped_frames": int(video.dropped.sum()), "background": video.background}
    real = video.backdrop is not None
    if real:
        entry["real_background"] = real_background_info(video)
    return _WrittenVideo(entry, list(builder.visible_tracks()), real, real and video.empty)


def generate_dataset(config: SyntheticConfig, out_dir: str | Path,
                     progress: bool = False, jobs: int = 1) -> DatasetSummary:
    """Write every video of `config` under `out_dir` and return a summary.

    Writes ``out_dir/JPEGImages/<video_name>/<00000>.jpg`` (or .png) and
    ``out_dir/annotations.json`` (YouTube-VIS, compressed RLE with str counts, plus per-video
    `fps`, `timestamps`, `dropped_frames`, `background` and per-annotation `occlusion`; a video
    on real footage also gets `real_background`, see `real_background_info`).
    Existing files of the same names are overwritten. Objects never visible get no annotation,
    so an object-free video has none. `jobs` > 1 renders videos in that many processes; the
    files are byte-identical to one process's (each video depends only on (config, index)).
    """
    from tqdm import tqdm

    config.validate()
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"jobs = {jobs!r}: must be an int >= 1")
    start = time.perf_counter()
    out = Path(out_dir)
    images = out / "JPEGImages"
    images.mkdir(parents=True, exist_ok=True)
    videos: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    occlusion: list[float] = []
    real_count = empty_count = 0
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=config.videos * config.frames, unit="frame",
                                       disable=not progress, desc="generate"))
        indices = range(config.videos)
        if jobs == 1 or config.videos < 2:
            written: Iterable[_WrittenVideo] = (_write_video(config, i, images) for i in indices)
        else:
            pool = stack.enter_context(ProcessPoolExecutor(
                max_workers=min(jobs, config.videos),
                mp_context=multiprocessing.get_context("spawn")))
            written = pool.map(_write_video, itertools.repeat(config), indices,
                               itertools.repeat(images))
        for video in written:
            videos.append(video.entry)
            real_count += int(video.real)
            empty_count += int(video.empty)
            for track in video.tracks:
                annotations.append(_annotation(track, len(annotations) + 1, video.entry["id"]))
                occlusion.extend(v for v in track.occlusion if v is not None)
            bar.update(config.frames)
    path = out / "annotations.json"
    text = json.dumps(dataset_json(config, videos, annotations), separators=(",", ":"))
    path.write_text(text + "\n", encoding="utf-8")
    return DatasetSummary(path, images, config.videos, config.videos * config.frames,
                          len(annotations), float(np.mean(occlusion)) if occlusion else 0.0,
                          time.perf_counter() - start, real_count, empty_count,
                          config.real_role if config.uses_real_media else None)


def real_background_info(video: SyntheticVideo) -> dict[str, Any]:
    """What a video's ``real_background`` JSON entry says: the medium (`name`, `kind`, `role`,
    `file`, `package`), whether the video is `empty`, and for a video the source frame shown at
    each frame (`source_frames`, one per frame). ValueError when the background is a photo of
    `backgrounds`."""
    if video.backdrop is None:
        raise ValueError(f"video {video.name!r} has no real background")
    media = video.backdrop.media
    info: dict[str, Any] = {"name": media.name, "kind": media.kind, "role": media.role,
                            "file": media.file, "package": SOURCES[media.source].package,
                            "empty": video.empty}
    if media.kind == "video":
        info["source_frames"] = [int(k) for k in video.backdrop.source_frames]
    return info


def generate(config: SyntheticConfig, out_dir: str | Path, progress: bool = False,
             jobs: int = 1) -> Path:
    """Write the dataset of `config` under `out_dir` (see `generate_dataset`); returns the path
    of annotations.json."""
    return generate_dataset(config, out_dir, progress, jobs).annotations


def parse_size(text: str) -> tuple[int, int]:
    """"WIDTHxHEIGHT" -> (width, height); argparse.ArgumentTypeError otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT (e.g. 640x480), "
                                         f"got {text!r}")
    return int(parts[0]), int(parts[1])


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `spvis generate` options to `parser` (for registering it as a subcommand)."""
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (JPEGImages/ and annotations.json)")
    parser.add_argument("--preset", choices=PRESETS, default="medium",
                        help="preset (default medium; real_mix: training with real negatives; "
                             "real_heldout: the false-positive test); the options below "
                             "override it")
    parser.add_argument("--videos", type=int, help="number of videos")
    parser.add_argument("--frames", type=int, help="frames per video")
    parser.add_argument("--size", type=parse_size, help="frame size WIDTHxHEIGHT, e.g. 640x480")
    parser.add_argument("--seed", type=int, help="base seed (presets have their own)")
    parser.add_argument("--format", choices=IMAGE_FORMATS, help="frame image format")
    parser.add_argument("--jobs", type=int, default=1,
                        help="render videos in this many processes (same files as one)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `spvis generate` with parsed arguments: 0 ok, 1 could not write (or the photos or real
    media are missing or unreadable), 2 bad option value."""
    overrides: dict[str, Any] = {}
    for key, name in (("videos", "videos"), ("frames", "frames"), ("seed", "seed"),
                      ("format", "image_format")):
        if getattr(args, key) is not None:
            overrides[name] = getattr(args, key)
    if args.size is not None:
        overrides["width"], overrides["height"] = args.size
    if args.jobs < 1:
        print(f"spvis generate: error: --jobs {args.jobs}: must be >= 1", file=sys.stderr)
        return 2
    try:
        config = dataclasses.replace(preset(args.preset), **overrides)
    except ConfigError as err:
        print(f"spvis generate: error: {err}", file=sys.stderr)
        return 2
    try:
        summary = generate_dataset(config, args.out,
                                   progress=not args.no_progress and sys.stderr.isatty(),
                                   jobs=args.jobs)
    # unwritable --out, scikit-image missing, a real medium missing (MediaNotFoundError) or
    # unreadable (MediaReadError): all OSError or ModuleNotFoundError.
    except (OSError, ModuleNotFoundError) as err:
        print(f"spvis generate: error: {err}", file=sys.stderr)
        return 1
    print(summary.text())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`spvis generate`: write a synthetic YouTube-VIS dataset (see module docstring)."""
    parser = argparse.ArgumentParser(
        prog="spvis generate",
        description="Write deterministic synthetic videos in YouTube-VIS format with frame "
                    "time stamps (docs/synthetic.md).")
    add_arguments(parser)
    return run(parser.parse_args(None if argv is None else list(argv)))



if __name__ == "__main__":
    sys.exit(main())
