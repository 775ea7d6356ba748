"""Loading and checking YouTube-VIS style ground truth and results lists.

Both sides become `Track` objects: one video-long instance with a compressed COCO RLE (or None)
per frame. Every check names the entry (its index in the list), its video_id and the field, so a
bad results file can be fixed without reading this code.

Ground truth (`GroundTruth`) is a dataset JSON::

    videos      [{id, width, height, length, file_names, fps?, timestamps?}]
    annotations [{id, video_id, category_id, iscrowd, segmentations[length], areas[length]?,
                  occlusion[length]?}]   (None for frames where the object is absent)
    categories  [{id, name}]

Results (predictions) are the standard list ``[{video_id, category_id, score, segmentations}]``
with one RLE (compressed string counts or uncompressed integer counts) or None per frame.

Loading is two passes: the entries' fields are checked one by one, and every frame's RLE is
collected and then checked with all the others at once (`spvis_model.eval.rle`): decoding the
masks one at a time would cost more than the whole evaluation.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from spvis_model.config import not_utf8
from spvis_model.eval.rle import (
    check_compressed,
    check_uncompressed,
    compressed_problem,
    decode_compressed_counts,
    uncompressed_problem,
)

RLE = dict[str, Any]
"""A COCO run-length encoding: ``{"size": [height, width], "counts": bytes}``."""

GtSource = str | Path | Mapping[str, Any]
PredSource = str | Path | Sequence[Mapping[str, Any]]

__all__ = ["RLE", "GroundTruth", "GtSource", "PredSource", "Track", "Video",
           "decode_compressed_counts", "load_ground_truth", "load_predictions", "paused_gc",
           "to_rle"]


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (restored on exit, if it was on).

    Loading and scoring a YouTube-VIS-sized file makes a few hundred thousand small dicts and
    lists; each allocation burst triggers a collection that walks every live container,
    including the whole parsed input, and that took a third of `evaluate`'s time. Reference
    counting still frees everything made here; anything that forms a cycle is collected once
    the collector runs again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class Video:
    """One video of the dataset. `fps` is the `fps` field if given, else derived from
    `timestamps` as (n - 1) / (t_last - t_first), else None."""

    id: int
    width: int
    height: int
    length: int
    file_names: list[str]
    fps: float | None = None
    timestamps: list[float] | None = None


@dataclass
class Track:
    """One video-long instance: a ground-truth annotation or a prediction.

    `uid` is a 1-based internal id (COCOeval treats id 0 as "no match"); `index` is the position
    in the source list (annotations or predictions) and is what error messages and reports name.
    `rles[t]` is a compressed RLE or None; `frame_areas[t]` its pixel count (0 where absent).
    `avg_area` is the YouTube-VIS area: mean of the non-zero per-frame areas (for ground truth the
    JSON `areas` field when given, else the mask areas). `ann_id` is the ground-truth
    annotation's `id` (None for predictions).
    """

    uid: int
    index: int
    video_id: int
    category_id: int
    score: float
    iscrowd: bool
    rles: list[RLE | None]
    frame_areas: np.ndarray
    avg_area: float
    occlusion: list[float | None] | None = None
    ann_id: int | None = None

    @property
    def present(self) -> np.ndarray:
        """Bool (length,): frames where the track has a non-empty mask."""
        return self.frame_areas > 0

    @property
    def given(self) -> np.ndarray:
        """Bool (length,): frames that have a segmentation, even an empty one (what trackeval's
        YouTube-VIS reader counts as a detection)."""
        return np.array([r is not None for r in self.rles], dtype=bool)


@dataclass
class GroundTruth:
    """A checked dataset: videos and categories by id (JSON order kept) and the annotations."""

    videos: dict[int, Video]
    categories: dict[int, str]
    tracks: list[Track]
    source: str = "<dict>"
    tracks_by_video: dict[int, list[Track]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        by_video: dict[int, list[Track]] = {vid: [] for vid in self.videos}
        for track in self.tracks:
            by_video[track.video_id].append(track)
        self.tracks_by_video = by_video


def _load_json(source: str | Path, what: str) -> Any:
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {str(path)!r}")
    with path.open(encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{what} file {str(path)!r} is not valid JSON: {err}") from err
        except UnicodeDecodeError as err:
            raise ValueError(f"{what} file {str(path)!r} is {not_utf8(err)}") from err


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{where} must be an integer, got {value!r}")
    return int(value)


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{where} must be finite, got {value!r}")
    return out


def _require(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise ValueError(f"{where}: missing field {key!r} (has {sorted(entry)})")
    return entry[key]


def _ascii_counts(counts: str, where: str) -> bytes:
    """Compressed counts as bytes; a non-ASCII character is refused (replacing it with '?',
    itself a valid RLE character, would score a different mask)."""
    try:
        return counts.encode("ascii")
    except UnicodeEncodeError as err:
        raise ValueError(f"{where}: malformed compressed RLE: counts string has a non-ASCII "
                         f"character {counts[err.start]!r} at position {err.start}") from err


class _Masks:
    """Every frame's RLE of a file, collected for one bulk check.

    Each mask is a job (track slot, frame, video size, where): compressed counts (bytes) or
    uncompressed counts (list). `check` decodes them all, raises ValueError naming the first
    bad one (entry, field, frame), and returns every track's RLEs and per-frame areas.
    """

    def __init__(self) -> None:
        self.slots: list[tuple[str, int, int, int]] = []  # (where, length, height, width)
        self.compressed: list[bytes] = []
        self.compressed_jobs: tuple[list[int], list[int]] = ([], [])  # (slots, frames)
        self.uncompressed: list[list[int]] = []
        self.uncompressed_jobs: tuple[list[int], list[int]] = ([], [])

    def add_track(self, segs: list[Any], video: Video, where: str) -> None:
        """Check one entry's `segmentations` list and collect its masks."""
        if not isinstance(segs, list):
            raise ValueError(f"{where}.segmentations must be a list, got {type(segs).__name__}")
        if len(segs) != video.length:
            raise ValueError(f"{where}.segmentations has {len(segs)} frames, video {video.id} "
                             f"has {video.length}")
        slot = len(self.slots)
        self.slots.append((where, video.length, video.height, video.width))
        size = [video.height, video.width]
        comp, comp_slots, comp_frames = self.compressed, *self.compressed_jobs
        for t, seg in enumerate(segs):
            if seg is None:
                continue
            if type(seg) is dict and seg.get("size") == size and type(
                    seg["size"][0]) is int and type(seg["size"][1]) is int:
                counts = seg.get("counts")
                if type(counts) is str:
                    comp.append(_ascii_counts(counts, f"{where}.segmentations[{t}]"))
                    comp_slots.append(slot)
                    comp_frames.append(t)
                    continue
                if type(counts) is list:
                    self.uncompressed.append(counts)
                    self.uncompressed_jobs[0].append(slot)
                    self.uncompressed_jobs[1].append(t)
                    continue
            rle = to_rle(seg, video.height, video.width, f"{where}.segmentations[{t}]",
                         check_counts=False)
            if rle is not None:  # bytes counts, or polygons rasterised by pycocotools
                comp.append(rle["counts"])
                comp_slots.append(slot)
                comp_frames.append(t)

    def _problem(self, jobs: tuple[list[int], list[int]], index: int, why: str
                 ) -> tuple[tuple[int, int], str]:
        slot, t = jobs[0][index], jobs[1][index]
        return (slot, t), f"{self.slots[slot][0]}.segmentations[{t}]: {why}"

    def check(self) -> list[tuple[list[RLE | None], np.ndarray]]:
        """Bulk-check every mask; return (rles, frame_areas int64 (length,)) per track."""
        pixels = np.array([h * w for _, _, h, w in self.slots] or [0], dtype=np.int64)
        comp_slots = np.array(self.compressed_jobs[0], dtype=np.int64)
        unc_slots = np.array(self.uncompressed_jobs[0], dtype=np.int64)
        comp = check_compressed(self.compressed, pixels[comp_slots])
        unc, strings = check_uncompressed(self.uncompressed, pixels[unc_slots])
        errors = []
        if comp.first_bad >= 0:
            why = compressed_problem(self.compressed[comp.first_bad],
                                     int(pixels[comp_slots[comp.first_bad]]))
            errors.append(self._problem(self.compressed_jobs, comp.first_bad,
                                        f"malformed compressed RLE: {why}"))
        if unc.first_bad >= 0:
            why = uncompressed_problem(self.uncompressed[unc.first_bad],
                                       int(pixels[unc_slots[unc.first_bad]]))
            errors.append(self._problem(self.uncompressed_jobs, unc.first_bad, why))
        if errors:
            raise ValueError(min(errors)[1])  # the first in file order
        lengths = np.array([length for _, length, _, _ in self.slots], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(lengths)))
        flat_areas = np.zeros(int(starts[-1]), dtype=np.int64)
        rles: list[list[RLE | None]] = [[None] * int(n) for n in lengths.tolist()]
        sizes = [[h, w] for _, _, h, w in self.slots]
        for (slots, frames), counts, areas in ((self.compressed_jobs, self.compressed,
                                                comp.areas),
                                               (self.uncompressed_jobs, strings, unc.areas)):
            flat_areas[starts[np.array(slots, dtype=np.int64)] + np.array(frames, np.int64)] \
                = areas
            for slot, t, c in zip(slots, frames, counts, strict=True):
                rles[slot][t] = {"size": sizes[slot], "counts": c}
        return [(r, flat_areas[starts[k]:starts[k + 1]]) for k, r in enumerate(rles)]


POLYGON_BOUND = 4
"""Polygon coordinates must lie within +-POLYGON_BOUND x the frame's width (x) or height (y)."""


def _check_polygon_coordinates(polygons: list[list[float]], height: int, width: int,
                               where: str) -> None:
    """Refuse non-finite coordinates and ones beyond +-POLYGON_BOUND x the frame size.

    pycocotools rasterises polygons without checking them: NaN crashes the process and huge
    values make it walk billions of pixels, so both are refused here, naming the polygon,
    the coordinate and its value.
    """
    for k, polygon in enumerate(polygons):
        for j, value in enumerate(polygon):
            axis, size, side = ("x", width, "width") if j % 2 == 0 else ("y", height, "height")
            limit = POLYGON_BOUND * size
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{where}: polygon {k} coordinate {j} ({axis}) must be finite, "
                                 f"got {value!r}")
            if not -limit <= value <= limit:
                raise ValueError(f"{where}: polygon {k} coordinate {j} ({axis}) = {value!r} is "
                                 f"outside [-{limit}, {limit}] ({POLYGON_BOUND} x the "
                                 f"{height}x{width} frame's {side})")


def to_rle(seg: object, height: int, width: int, where: str, check_counts: bool = True
           ) -> RLE | None:
    """Normalise one frame's segmentation to a compressed RLE with bytes counts.

    Accepts None (absent), a COCO RLE with compressed (str/bytes) or uncompressed (list of int)
    counts whose `size` must be [height, width], or polygons (a list of [x0, y0, x1, y1, ...]
    lists). Raises ValueError naming `where` on anything else or (with `check_counts`) on
    inconsistent counts; without it, compressed counts are returned unchecked (the caller
    checks them in bulk).
    """
    if seg is None:
        return None
    n_pixels = height * width
    if isinstance(seg, Mapping):
        size = seg.get("size")
        counts = seg.get("counts")
        if counts is None or size is None:
            raise ValueError(f"{where}: an RLE needs 'size' and 'counts', got keys {sorted(seg)}")
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or [_int(v, f"{where}.size") for v in size] != [height, width]):
            raise ValueError(f"{where}.size must be [height, width] = [{height}, {width}] of the "
                             f"video, got {size!r}")
        if isinstance(counts, str):
            counts = _ascii_counts(counts, where)
        if isinstance(counts, bytes):
            why = compressed_problem(counts, n_pixels) if check_counts else ""
            if why:
                raise ValueError(f"{where}: malformed compressed RLE: {why}")
            return {"size": [height, width], "counts": counts}
        if isinstance(counts, list):
            why = uncompressed_problem(counts, n_pixels)
            if why:
                raise ValueError(f"{where}: {why}")
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
            return {"size": [height, width], "counts": rle["counts"]}
        raise ValueError(f"{where}.counts must be a string or a list of integers, "
                         f"got {type(counts).__name__}")
    if isinstance(seg, list):
        if not seg or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                              and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      for v in p) for p in seg):
            raise ValueError(f"{where}: polygons must be a non-empty list of [x0, y0, x1, y1, ...] "
                             "lists with an even number (>= 6) of numbers")
        _check_polygon_coordinates(seg, height, width, where)
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        return {"size": [height, width], "counts": rle["counts"]}
    raise ValueError(f"{where} must be an RLE dict, polygons or None, got {type(seg).__name__}")


def _mean_nonzero(values: Sequence[float | None]) -> float:
    kept = [v for v in values if v]
    return float(np.mean(kept)) if kept else 0.0


def _per_frame_list(entry: Mapping[str, Any], key: str, video: Video, where: str,
                    lo: float | None = None, hi: float | None = None) -> list[float | None] | None:
    values = entry.get(key)
    if values is None:
        return None
    if not isinstance(values, list) or len(values) != video.length:
        raise ValueError(f"{where}.{key} must be a list of {video.length} numbers or None, got "
                         f"{values!r:.80}")
    out: list[float | None] = []
    for t, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        x = _number(v, f"{where}.{key}[{t}]")
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            raise ValueError(f"{where}.{key}[{t}] must be in [{lo}, {hi}], got {v!r}")
        out.append(x)
    return out


def _load_video(i: int, entry: object) -> Video:
    where = f"gt videos[{i}]"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be an object, got {type(entry).__name__}")
    vid = _int(_require(entry, "id", where), f"{where}.id")
    where = f"gt videos[{i}] (id={vid})"
    width = _int(_require(entry, "width", where), f"{where}.width")
    height = _int(_require(entry, "height", where), f"{where}.height")
    if width <= 0 or height <= 0:
        raise ValueError(f"{where}: width and height must be positive, got {width}x{height}")
    names = entry.get("file_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}.file_names must be a list of strings")
    length = _int(entry.get("length", len(names)), f"{where}.length")
    if length <= 0:
        raise ValueError(f"{where}.length must be positive, got {length}")
    if names and len(names) != length:
        raise ValueError(f"{where}: length is {length} but file_names has {len(names)} entries")
    fps = entry.get("fps")
    if fps is not None:
        fps = _number(fps, f"{where}.fps")
        if fps <= 0:
            raise ValueError(f"{where}.fps must be positive, got {fps}")
    stamps = entry.get("timestamps")
    if stamps is not None:
        if not isinstance(stamps, list) or len(stamps) != length:
            raise ValueError(f"{where}.timestamps must be a list of {length} numbers")
        stamps = [_number(s, f"{where}.timestamps[{t}]") for t, s in enumerate(stamps)]
        if any(b < a for a, b in itertools.pairwise(stamps)):
            raise ValueError(f"{where}.timestamps must not decrease")
        if fps is None and length > 1 and stamps[-1] > stamps[0]:
            fps = (length - 1) / (stamps[-1] - stamps[0])
    return Video(vid, width, height, length, list(names), fps, stamps)


def load_ground_truth(gt: GtSource | GroundTruth) -> GroundTruth:
    """Read and check a YouTube-VIS dataset JSON (a path or the parsed dict)."""
    if isinstance(gt, GroundTruth):
        return gt
    with paused_gc():
        return _load_ground_truth(gt)


def _load_ground_truth(gt: GtSource) -> GroundTruth:
    source = "<dict>"
    if isinstance(gt, (str, Path)):
        source = str(gt)
        gt = _load_json(gt, "ground-truth")
    if not isinstance(gt, Mapping):
        raise ValueError(f"ground truth must be a JSON object, got {type(gt).__name__}")
    for key in ("videos", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise ValueError(f"ground truth field {key!r} must be a list, got {gt.get(key)!r:.60}")
    videos: dict[int, Video] = {}
    for i, entry in enumerate(gt["videos"]):
        video = _load_video(i, entry)
        if video.id in videos:
            raise ValueError(f"gt videos[{i}]: duplicate video id {video.id}")
        videos[video.id] = video
    categories: dict[int, str] = {}
    for i, entry in enumerate(gt["categories"]):
        if not isinstance(entry, Mapping):
            raise ValueError(f"gt categories[{i}] must be an object")
        cid = _int(_require(entry, "id", f"gt categories[{i}]"), f"gt categories[{i}].id")
        if cid in categories:
            raise ValueError(f"gt categories[{i}]: duplicate category id {cid}")
        categories[cid] = str(entry.get("name", cid))
    masks = _Masks()
    fields: list[tuple[int, int, int, int, bool, list[float | None] | None,
                       list[float | None] | None]] = []
    seen_ids: set[int] = set()
    for i, entry in enumerate(gt["annotations"]):
        where = f"gt annotations[{i}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be an object, got {type(entry).__name__}")
        ann_id = _int(_require(entry, "id", where), f"{where}.id")
        if ann_id in seen_ids:
            raise ValueError(f"{where}: duplicate annotation id {ann_id}")
        seen_ids.add(ann_id)
        vid = _int(_require(entry, "video_id", where), f"{where}.video_id")
        where = f"gt annotations[{i}] (id={ann_id}, video_id={vid})"
        if vid not in videos:
            raise ValueError(f"{where}: video_id {vid} is not in the dataset's videos")
        cid = _int(_require(entry, "category_id", where), f"{where}.category_id")
        if cid not in categories:
            raise ValueError(f"{where}: category_id {cid} is not in the dataset's categories")
        crowd = entry.get("iscrowd", 0)
        if crowd not in (0, 1, True, False):
            raise ValueError(f"{where}.iscrowd must be 0 or 1, got {crowd!r}")
        video = videos[vid]
        masks.add_track(_require(entry, "segmentations", where), video, where)
        json_areas = _per_frame_list(entry, "areas", video, where, lo=0.0)
        occlusion = _per_frame_list(entry, "occlusion", video, where, lo=0.0, hi=1.0)
        fields.append((i, ann_id, vid, cid, bool(crowd), json_areas, occlusion))
    tracks: list[Track] = []
    for (i, ann_id, vid, cid, crowd, json_areas, occlusion), (rles, frame_areas) in zip(
            fields, masks.check(), strict=True):
        avg_area = _mean_nonzero(json_areas if json_areas is not None else frame_areas.tolist())
        tracks.append(Track(len(tracks) + 1, i, vid, cid, 1.0, crowd, rles, frame_areas,
                            avg_area, occlusion, ann_id))
    return GroundTruth(videos, categories, tracks, source)


def load_predictions(predictions: PredSource | list[Track], gt: GroundTruth) -> list[Track]:
    """Read and check a results list (a path or the parsed list) against the ground truth.

    Raises ValueError naming the entry (index, video_id, field) for unknown videos or categories,
    a wrong number of frames, a bad score or a malformed RLE.
    """
    if isinstance(predictions, list) and all(isinstance(p, Track) for p in predictions) \
            and predictions:
        return predictions
    with paused_gc():
        return _load_predictions(predictions, gt)


def _load_predictions(predictions: PredSource, gt: GroundTruth) -> list[Track]:
    if isinstance(predictions, (str, Path)):
        predictions = _load_json(predictions, "predictions")
    if isinstance(predictions, (Mapping, str, bytes)) or not isinstance(predictions, Sequence):
        raise ValueError("predictions must be a JSON list of {video_id, category_id, score, "
                         f"segmentations}}, got {type(predictions).__name__}")
    masks = _Masks()
    fields: list[tuple[int, int, int, float]] = []
    for i, entry in enumerate(predictions):
        where = f"predictions[{i}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be an object, got {type(entry).__name__}")
        vid = _int(_require(entry, "video_id", where), f"{where}.video_id")
        where = f"predictions[{i}] (video_id={vid})"
        if vid not in gt.videos:
            raise ValueError(f"{where}: video_id {vid} is not in the ground truth's videos")
        cid = _int(_require(entry, "category_id", where), f"{where}.category_id")
        if cid not in gt.categories:
            raise ValueError(f"{where}: category_id {cid} is not in the ground truth's categories "
                             f"{sorted(gt.categories)}")
        score = _number(_require(entry, "score", where), f"{where}.score")
        masks.add_track(_require(entry, "segmentations", where), gt.videos[vid], where)
        fields.append((i, vid, cid, score))
    return [Track(k + 1, i, vid, cid, score, False, rles, frame_areas,
                  _mean_nonzero(frame_areas.tolist()))
            for k, ((i, vid, cid, score), (rles, frame_areas)) in enumerate(
                zip(fields, masks.check(), strict=True))]
