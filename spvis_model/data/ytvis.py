"""YouTube-VIS (2019 / 2021 / 2022) and OVIS training data: the dataset JSON and its frames.

The JSON is parsed and checked by the evaluator's reader (`spvis_model.eval.data`), so training
and evaluation accept exactly the same files::

    videos      [{id, width, height, length, file_names, name?, fps?, timestamps?}]
    annotations [{id, video_id, category_id, iscrowd, segmentations[length], ...}]
    categories  [{id, name}]

A frame's segmentation is a compressed RLE (str or bytes counts), an uncompressed RLE (list
counts), polygons (a list of [x0, y0, x1, y1, ...] lists) or None (object absent). A missing or
null ``annotations`` field (the valid / test splits) reads as no annotations.

Time stamps (seconds) of a video: its ``timestamps`` when given; else frame index / ``fps`` when
``fps`` is given; else frame index / `DEFAULT_FPS` (6 fps: YouTube-VIS annotates every 5th frame
of 30 fps video; OVIS has no stamps either and gets the same default).

Checked on load (ValueError naming the file, the video or annotation and the frame): malformed
JSON, a segmentations list whose length is not the video's length, a mask whose size is not the
video's, an unknown category or video, a file_names list that does not match the length or
leaves the image root. Frame files are checked when read (`read_frame`): a missing or unreadable
file, or one whose size is not the video's, raises ValueError naming video id, frame index and
path.

Crowd annotations (``iscrowd`` = 1) are kept in `tracks` but left out of clip targets, as
Mask2Former's video mapper does.

API::

    ds = YTVISDataset(Path("train/instances.json"))   # frames in train/JPEGImages/
    ds.videos[0].id, ds.class_names, ds.category_index[cid]
    clip = ds.load_clip(video_id, [0, 3, 6])          # Clip: frames, stamps, targets
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

from spvis_model.eval.data import GroundTruth, Track, load_ground_truth

DEFAULT_FPS = 6.0
"""Frame rate assumed for stamps when a video gives neither ``timestamps`` nor ``fps``."""

__all__ = ["DEFAULT_FPS", "Clip", "VideoRecord", "YTVISDataset", "collate_clips"]


@dataclass
class Clip:
    """A clip of T frames of one video with its per-frame instance targets.

    Attributes:
        frames: uint8 (T, 3, H, W), RGB.
        stamps: float64 (T,), seconds (a repeated frame repeats its stamp).
        labels: T int64 tensors (n_t,): contiguous class indices 0..K-1.
        masks: T bool tensors (n_t, H, W): visible masks, aligned with `labels`.
        track_ids: T int64 tensors (n_t,): the annotation id of each instance (its ground-truth
            track identity, the same in every frame of the clip).
        video_id: the video's id in the JSON.
        frame_indices: the T frame indices in the video (non-decreasing).
        orig_size: (height, width) of the video before any transform.
        image_size: (height, width) of the image content inside `frames`; smaller than
            (H, W) when a transform padded the frames at the bottom / right.

    `orig_size` and `image_size` default to (H, W). Construction checks every shape and dtype
    and raises ValueError naming the field.
    """

    frames: torch.Tensor
    stamps: torch.Tensor
    labels: list[torch.Tensor]
    masks: list[torch.Tensor]
    track_ids: list[torch.Tensor]
    video_id: int
    frame_indices: list[int]
    orig_size: tuple[int, int] | None = None
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        f = self.frames
        if f.dim() != 4 or f.shape[1] != 3 or f.dtype != torch.uint8:
            raise ValueError(f"Clip(video {self.video_id}).frames must be uint8 (T, 3, H, W), "
                             f"got {f.dtype} {tuple(f.shape)}")
        t, _, h, w = f.shape
        if self.orig_size is None:
            self.orig_size = (h, w)
        if self.image_size is None:
            self.image_size = (h, w)
        if self.stamps.dtype != torch.float64 or tuple(self.stamps.shape) != (t,):
            raise ValueError(f"Clip(video {self.video_id}).stamps must be float64 ({t},), got "
                             f"{self.stamps.dtype} {tuple(self.stamps.shape)}")
        if len(self.frame_indices) != t:
            raise ValueError(f"Clip(video {self.video_id}).frame_indices has "
                             f"{len(self.frame_indices)} entries, frames has {t}")
        for name in ("labels", "masks", "track_ids"):
            if len(getattr(self, name)) != t:
                raise ValueError(f"Clip(video {self.video_id}).{name} has "
                                 f"{len(getattr(self, name))} entries, frames has {t}")
        for k, (lab, msk, ids) in enumerate(zip(self.labels, self.masks, self.track_ids,
                                                strict=True)):
            where = f"Clip(video {self.video_id}) frame {k}"
            if lab.dim() != 1 or lab.dtype != torch.int64:
                raise ValueError(f"{where}: labels must be int64 (n,), got {lab.dtype} "
                                 f"{tuple(lab.shape)}")
            n = lab.shape[0]
            if ids.dtype != torch.int64 or tuple(ids.shape) != (n,):
                raise ValueError(f"{where}: track_ids must be int64 ({n},), got {ids.dtype} "
                                 f"{tuple(ids.shape)}")
            if msk.dtype != torch.bool or tuple(msk.shape) != (n, h, w):
                raise ValueError(f"{where}: masks must be bool ({n}, {h}, {w}), got {msk.dtype} "
                                 f"{tuple(msk.shape)}")

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def targets(self) -> list[dict[str, torch.Tensor]]:
        """Per-frame target dicts for the set criterion: {"labels": (n_t,) int64, "masks":
        (n_t, H, W) bool, "track_ids": (n_t,) int64}."""
        return [{"labels": lab, "masks": msk, "track_ids": ids}
                for lab, msk, ids in zip(self.labels, self.masks, self.track_ids, strict=True)]


def collate_clips(batch: Sequence[Clip]) -> list[Clip]:
    """DataLoader collate_fn: the clips as a list (sizes and instance counts differ). Also
    importable from `spvis_model.data.sampler`."""
    out = list(batch)
    for i, clip in enumerate(out):
        if not isinstance(clip, Clip):
            raise TypeError(f"collate_clips: batch[{i}] is a {type(clip).__name__}, not a Clip")
    return out


@dataclass(frozen=True, eq=False)
class VideoRecord:
    """One video of the dataset.

    Attributes:
        id: the JSON video id.
        name: the JSON ``name``, else the folder of the first frame file.
        width, height: frame size in pixels.
        length: number of frames.
        file_names: frame paths relative to the image root, one per frame.
        stamps: float64 (length,), seconds (see the module docstring for defaults).
        fps: the JSON ``fps``, else derived from ``timestamps``, else `DEFAULT_FPS`.
    """

    id: int
    name: str
    width: int
    height: int
    length: int
    file_names: tuple[str, ...]
    stamps: np.ndarray
    fps: float


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"YTVISDataset: annotations file not found: {str(path)!r}")
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"YTVISDataset: {str(path)!r} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"YTVISDataset: {str(path)!r} must hold a JSON object, got "
                         f"{type(data).__name__}")
    return data


def _check_file_name(name: str, where: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/"))
    if not name or parts.is_absolute() or ".." in parts.parts or Path(name).is_absolute():
        raise ValueError(f"{where}: must be a relative path inside the image root, got {name!r}")


class YTVISDataset:
    """A YouTube-VIS / OVIS dataset: checked annotations, lazily read frames.

    Args:
        annotations: path of the dataset JSON, or the parsed dict (then `image_root` is
            required; RLE counts may also be bytes there).
        image_root: folder that the videos' ``file_names`` are relative to; default
            ``JPEGImages/`` beside the JSON.

    Attributes:
        source: the JSON path as a string, or "<dict>".
        image_root: the folder of the frame files.
        videos: `VideoRecord` per video, JSON order.
        categories: (id, name) per category, sorted by id.
        class_names: the names, in `categories` order.
        category_index: category id -> contiguous class index 0..K-1 (`categories` order).
        ground_truth: the evaluator's parsed `GroundTruth` (compressed RLE per frame).
    """

    def __init__(self, annotations: Path | str | Mapping[str, Any],
                 image_root: Path | str | None = None) -> None:
        if isinstance(annotations, Mapping):
            if image_root is None:
                raise ValueError("YTVISDataset: image_root is required when annotations is a "
                                 "parsed dict, not a path")
            self.source = "<dict>"
            data = dict(annotations)
            root = Path(image_root)
        else:
            path = Path(annotations)
            self.source = str(path)
            data = _read_json(path)
            root = path.parent / "JPEGImages" if image_root is None else Path(image_root)
        self.image_root: Path = root
        if data.get("annotations") is None:
            data["annotations"] = []
        try:
            gt = load_ground_truth(data)
        except ValueError as err:
            raise ValueError(f"YTVISDataset {self.source!r}: {err}") from err
        self.ground_truth: GroundTruth = gt
        self._annotation_ids: list[int] = [int(a["id"]) for a in data["annotations"]]
        self.videos: list[VideoRecord] = [
            self._video_record(i, entry, gt) for i, entry in enumerate(data["videos"])]
        self._by_id = {v.id: v for v in self.videos}
        self.categories: list[tuple[int, str]] = sorted(gt.categories.items())
        self.class_names: list[str] = [name for _, name in self.categories]
        self.category_index: dict[int, int] = {cid: k for k, (cid, _) in
                                               enumerate(self.categories)}

    def _video_record(self, i: int, entry: dict[str, Any], gt: GroundTruth) -> VideoRecord:
        video = gt.videos[int(entry["id"])]
        where = f"YTVISDataset {self.source!r}: videos[{i}] (id={video.id})"
        if len(video.file_names) != video.length:
            raise ValueError(f"{where}.file_names has {len(video.file_names)} entries, length "
                             f"is {video.length}")
        for t, name in enumerate(video.file_names):
            _check_file_name(name, f"{where}.file_names[{t}]")
        if video.timestamps is not None:
            stamps = np.asarray(video.timestamps, dtype=np.float64)
        else:
            rate = video.fps if video.fps is not None else DEFAULT_FPS
            stamps = np.arange(video.length, dtype=np.float64) / rate
        fps = video.fps if video.fps is not None and math.isfinite(video.fps) else DEFAULT_FPS
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            name = PurePosixPath(video.file_names[0].replace("\\", "/")).parent.name or str(
                video.id)
        stamps.setflags(write=False)
        return VideoRecord(video.id, name, video.width, video.height, video.length,
                           tuple(video.file_names), stamps, float(fps))

    def __len__(self) -> int:
        """Number of videos."""
        return len(self.videos)

    @property
    def num_classes(self) -> int:
        """K, the number of categories."""
        return len(self.categories)

    def video(self, video_id: int) -> VideoRecord:
        """The video with JSON id `video_id`; KeyError naming it when unknown."""
        try:
            return self._by_id[video_id]
        except KeyError:
            raise KeyError(f"YTVISDataset: no video with id {video_id!r}") from None

    def tracks(self, video_id: int) -> list[Track]:
        """The annotations of a video (crowd ones included), JSON order. `Track.rles[t]` is a
        compressed RLE with bytes counts or None; the annotation id is the JSON ``id``."""
        self.video(video_id)
        return self.ground_truth.tracks_by_video[video_id]

    def annotation_id(self, track: Track) -> int:
        """The JSON ``id`` of an annotation returned by `tracks`."""
        return self._annotation_ids[track.index]

    def frame_path(self, video_id: int, t: int) -> Path:
        """Path of frame `t` of a video."""
        video = self.video(video_id)
        if not 0 <= t < video.length:
            raise IndexError(f"YTVISDataset: video {video_id} frame index {t} is out of range "
                             f"[0, {video.length})")
        return self.image_root / video.file_names[t]

    def read_frame(self, video_id: int, t: int) -> np.ndarray:
        """Frame `t` of a video as RGB uint8 (height, width, 3).

        Raises ValueError naming the video id, the frame index and the path when the file is
        missing, cannot be decoded, or is not the video's size.
        """
        video = self.video(video_id)
        path = self.frame_path(video_id, t)
        where = f"YTVISDataset: video {video_id} ({video.name}) frame {t}"
        if not path.is_file():
            raise ValueError(f"{where}: frame file not found: {str(path)!r}")
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{where}: could not decode frame file {str(path)!r}")
        if bgr.shape[:2] != (video.height, video.width):
            raise ValueError(f"{where}: frame file {str(path)!r} is {bgr.shape[1]}x"
                             f"{bgr.shape[0]}, the video is {video.width}x{video.height}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def frame_targets(self, video_id: int, t: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Instances visible in frame `t` (non-crowd, non-empty mask), JSON order.

        Returns:
            labels: int64 (n,) contiguous class indices.
            masks: bool (n, height, width).
            track_ids: int64 (n,) annotation ids.
        """
        video = self.video(video_id)
        if not 0 <= t < video.length:
            raise IndexError(f"YTVISDataset: video {video_id} frame index {t} is out of range "
                             f"[0, {video.length})")
        present = [tr for tr in self.tracks(video_id)
                   if not tr.iscrowd and tr.rles[t] is not None and tr.frame_areas[t] > 0]
        labels = torch.tensor([self.category_index[tr.category_id] for tr in present],
                              dtype=torch.int64)
        ids = torch.tensor([self.annotation_id(tr) for tr in present], dtype=torch.int64)
        if not present:
            return labels, torch.zeros((0, video.height, video.width), dtype=torch.bool), ids
        decoded = mask_utils.decode([tr.rles[t] for tr in present])  # (H, W, n) uint8
        masks = torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1))).bool()
        return labels, masks, ids

    def load_clip(self, video_id: int, frame_indices: Sequence[int]) -> Clip:
        """Frames, stamps and targets of `frame_indices` of a video, untransformed.

        A repeated index yields the same frame, stamp and targets again.
        """
        video = self.video(video_id)
        indices = [int(t) for t in frame_indices]
        if not indices:
            raise ValueError(f"YTVISDataset.load_clip: video {video_id}: frame_indices is empty")
        frames: dict[int, np.ndarray] = {}
        targets: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for t in indices:
            if t not in frames:
                frames[t] = self.read_frame(video_id, t)
                targets[t] = self.frame_targets(video_id, t)
        stacked = np.stack([frames[t] for t in indices])  # (T, H, W, 3)
        return Clip(
            frames=torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2))),
            stamps=torch.from_numpy(video.stamps[indices].copy()),
            labels=[targets[t][0] for t in indices],
            masks=[targets[t][1] for t in indices],
            track_ids=[targets[t][2] for t in indices],
            video_id=video_id, frame_indices=indices)
