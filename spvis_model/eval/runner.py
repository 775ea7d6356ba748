"""`spvis eval --checkpoint ckpt --data data.json`: run the model over a dataset's videos.

Frames are read from `--images` (default: `JPEGImages/` beside the dataset JSON) using each
video's `file_names`. Time stamps come from the video's `timestamps` field, else its `fps`,
else YouTube-VIS's annotation rate (6 fps: every fifth frame of a 30 fps video).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

MODES: tuple[str, ...] = ("online", "clip")
DEFAULT_FPS = 6.0

MODEL_MISSING = ("spvis eval --checkpoint needs spvis_model.build_model, which this installation "
                 "lacks. Evaluate saved predictions with: spvis eval --gt data.json "
                 "--pred results.json")


def model_available() -> bool:
    """Whether the model package can be imported (the runner's entry point)."""
    try:
        from spvis_model.model import build_model  # noqa: F401
    except ImportError:
        return False
    return True


def video_stamps(video: Any) -> list[float]:
    """Seconds of each frame of a dataset video (see the module docstring)."""
    if video.timestamps is not None:
        return [float(t) for t in video.timestamps]
    fps = video.fps or DEFAULT_FPS
    return [i / fps for i in range(video.length)]


def read_frame(images: Path, video_id: int, index: int, name: str) -> np.ndarray:
    """An RGB uint8 frame; a missing or unreadable file raises ValueError naming it."""
    path = images / name
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"video {video_id} frame {index}: cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def run_model_on_dataset(checkpoint: Path, data: Path, mode: str = "online",
                         images: Path | None = None, device: str = "cpu",
                         progress: bool = True,
                         association: str | None = None) -> list[dict[str, Any]]:
    """Run the checkpoint over every video of the dataset JSON; return the results list.

    Model labels map to dataset categories by name; instances of classes the dataset does not
    have are left out (a line says how many).

    Raises:
        ValueError: a bad mode, a missing image directory or frame, a checkpoint or dataset
            that does not load (the message names it).
    """
    from spvis_model.eval.data import load_ground_truth
    from spvis_model.eval.results import results_from_tracks
    from spvis_model.model import SPVIS
    from spvis_model.weights import demo_notice

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    gt = load_ground_truth(data)
    for video in gt.videos.values():  # scoring needs no file names, running the model does
        if len(video.file_names) != video.length:
            raise ValueError(f"{data}: video {video.id} has {len(video.file_names)} file_names "
                             f"but length {video.length}; running a checkpoint needs one file "
                             "name per frame")
    images = Path(images) if images is not None else Path(data).parent / "JPEGImages"
    if not images.is_dir():
        raise ValueError(f"image directory {images} does not exist (give --images DIR: the "
                         "folder the dataset's file_names are relative to)")
    model = SPVIS.from_checkpoint(checkpoint, device=device)
    notice = demo_notice(model)
    if notice:
        print(f"spvis eval: {notice}", file=sys.stderr)
    if association is not None:
        set_association(model, association)
    mapping = category_mapping(model.class_names, gt.categories, str(data))
    results: list[dict[str, Any]] = []
    dropped = 0
    videos = list(gt.videos.values())
    for video in tqdm(videos, desc="videos", disable=not progress):
        frames = [read_frame(images, video.id, i, name)
                  for i, name in enumerate(video.file_names)]
        stamps = video_stamps(video)
        if mode == "clip":
            outputs = model.segment_clip(frames, stamps)
        else:
            state = model.init_state()
            outputs = []
            for frame, stamp in zip(frames, stamps, strict=True):
                state, inst = model.step(state, frame, stamp)
                outputs.append(inst)
        kept = [known_classes(inst, mapping) for inst in outputs]
        dropped += sum(len(a) - len(b) for a, b in zip(outputs, kept, strict=True))
        results.extend(results_from_tracks(video.id, kept, mapping))
    if dropped:
        print(f"spvis eval: left out {dropped} instance-frames of classes the dataset lacks")
    return results


def set_association(model: Any, association: str) -> None:
    """Switch a loaded model between the PGT tracker and the MinVIS baseline (same segmenter).
    MinVIS needs one state slot per segmenter query."""
    cfg = model.cfg
    if association not in ("pgt", "minvis"):
        raise ValueError(f"association = {association!r}: must be 'pgt' or 'minvis'")
    cfg.tracker.association = association
    if association == "minvis":
        cfg.tracker.max_tracks = max(cfg.tracker.max_tracks, cfg.segmenter.num_queries)
    cfg.validate()


def category_mapping(class_names: list[str], categories: dict[int, str],
                     where: str) -> dict[int, int]:
    """Model class index -> dataset category id, by name. Raises ValueError when no class of
    the model is a category of the dataset (`where` names the dataset)."""
    by_name = {name: cid for cid, name in categories.items()}
    mapping = {i: by_name[n] for i, n in enumerate(class_names) if n in by_name}
    if not mapping:
        raise ValueError(f"none of the checkpoint's classes {class_names} is a category of "
                         f"{where} ({sorted(by_name)})")
    return mapping


def known_classes(inst: Any, mapping: dict[int, int]) -> Any:
    """The instances whose class has a dataset category."""
    from spvis_model.instances import Instances

    keep = np.isin(inst.labels, list(mapping))
    return Instances(ids=inst.ids[keep], labels=inst.labels[keep],
                     label_names=[n for n, k in zip(inst.label_names, keep, strict=True) if k],
                     scores=inst.scores[keep], boxes=inst.boxes[keep], masks=inst.masks[keep],
                     visibility=inst.visibility[keep], first_seen=inst.first_seen[keep],
                     track_scores=None if inst.track_scores is None
                     else inst.track_scores[keep])
