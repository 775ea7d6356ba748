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
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict[str, Any]
"""A COCO run-length encoding: ``{"size": [height, width], "counts": bytes}``."""

GtSource = str | Path | Mapping[str, Any]
PredSource = str | Path | Sequence[Mapping[str, Any]]

_MAX_TOKEN_CHARS = 7  # 7 x 5 bits covers any uint32 run length


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
    JSON `areas` field when given, else the mask areas).
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

    @property
    def present(self) -> np.ndarray:
        """Bool (length,): frames where the track has a non-empty mask."""
        return self.frame_areas > 0


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


def decode_compressed_counts(counts: bytes) -> np.ndarray:
    """Decode COCO's compressed RLE counts string into run lengths, int64 (M,).

    Format (pycocotools' rleToString): 5 bits per character offset by 48, 0x20 = "more characters
    follow", 0x10 on a run's last character = negative, and from the 4th run on each value is
    stored as the difference to the run two before. pycocotools trusts these strings (a truncated
    one is read past its end), so results files are decoded and checked here before any
    pycocotools call. Raises ValueError saying what is wrong.
    """
    if not counts:
        raise ValueError("counts string is empty")
    chars = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    bad = np.flatnonzero((chars < 0) | (chars > 63))
    if bad.size:
        raise ValueError(f"counts string has a character outside '0'..'o': "
                         f"{counts[int(bad[0]):][:1]!r}")
    more = (chars & 0x20) != 0
    if more[-1]:
        raise ValueError("counts string ends inside a run (last character has the "
                         "continuation bit)")
    ends = np.flatnonzero(~more)
    token = np.concatenate(([0], np.cumsum(~more[:-1])))
    starts = np.concatenate(([0], ends[:-1] + 1))
    pos = np.arange(chars.size) - starts[token]
    if pos.max() >= _MAX_TOKEN_CHARS:
        raise ValueError(f"counts string has a run longer than {_MAX_TOKEN_CHARS} characters")
    values = np.zeros(ends.size, dtype=np.int64)
    np.add.at(values, token, (chars & 0x1F) << (5 * pos))
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (pos[ends][negative] + 1))
    runs = values.copy()
    runs[3::2] = np.cumsum(values[1::2])[1:]
    runs[4::2] = np.cumsum(values[2::2])[1:]
    return runs


def to_rle(seg: object, height: int, width: int, where: str) -> RLE | None:
    """Normalise one frame's segmentation to a compressed RLE with bytes counts.

    Accepts None (absent), a COCO RLE with compressed (str/bytes) or uncompressed (list of int)
    counts whose `size` must be [height, width], or polygons (a list of [x0, y0, x1, y1, ...]
    lists). Raises ValueError naming `where` on anything else or on inconsistent counts.
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
            counts = counts.encode("ascii", errors="replace")
        if isinstance(counts, bytes):
            try:
                runs = decode_compressed_counts(counts)
            except ValueError as err:
                raise ValueError(f"{where}: malformed compressed RLE: {err}") from err
            if runs.min() < 0 or int(runs.sum()) != n_pixels:
                raise ValueError(f"{where}: malformed compressed RLE: runs (min {int(runs.min())}) "
                                 f"cover {int(runs.sum())} pixels, size says {n_pixels}")
            return {"size": [height, width], "counts": counts}
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
                raise ValueError(f"{where}: uncompressed RLE counts must be integers")
            arr = np.asarray(counts, dtype=np.int64)
            if arr.size and arr.min() < 0:
                raise ValueError(f"{where}: uncompressed RLE has a negative count {int(arr.min())}")
            if int(arr.sum()) != n_pixels:
                raise ValueError(f"{where}: uncompressed RLE counts cover {int(arr.sum())} pixels, "
                                 f"size says {n_pixels}")
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
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        return {"size": [height, width], "counts": rle["counts"]}
    raise ValueError(f"{where} must be an RLE dict, polygons or None, got {type(seg).__name__}")


def _frame_areas(rles: list[RLE | None]) -> np.ndarray:
    areas = np.zeros(len(rles), dtype=np.int64)
    idx = [t for t, r in enumerate(rles) if r is not None]
    if idx:
        areas[idx] = mask_utils.area([rles[t] for t in idx])
    return areas


def _mean_nonzero(values: Sequence[float | None]) -> float:
    kept = [v for v in values if v]
    return float(np.mean(kept)) if kept else 0.0


def _segmentations(entry: Mapping[str, Any], video: Video, where: str) -> list[RLE | None]:
    segs = _require(entry, "segmentations", where)
    if not isinstance(segs, list):
        raise ValueError(f"{where}.segmentations must be a list, got {type(segs).__name__}")
    if len(segs) != video.length:
        raise ValueError(f"{where}.segmentations has {len(segs)} frames, video {video.id} has "
                         f"{video.length}")
    return [to_rle(s, video.height, video.width, f"{where}.segmentations[{t}]")
            for t, s in enumerate(segs)]


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
    tracks: list[Track] = []
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
        rles = _segmentations(entry, video, where)
        frame_areas = _frame_areas(rles)
        json_areas = _per_frame_list(entry, "areas", video, where, lo=0.0)
        avg_area = _mean_nonzero(json_areas if json_areas is not None else frame_areas.tolist())
        occlusion = _per_frame_list(entry, "occlusion", video, where, lo=0.0, hi=1.0)
        tracks.append(Track(len(tracks) + 1, i, vid, cid, 1.0, bool(crowd), rles, frame_areas,
                            avg_area, occlusion))
    return GroundTruth(videos, categories, tracks, source)


def load_predictions(predictions: PredSource | list[Track], gt: GroundTruth) -> list[Track]:
    """Read and check a results list (a path or the parsed list) against the ground truth.

    Raises ValueError naming the entry (index, video_id, field) for unknown videos or categories,
    a wrong number of frames, a bad score or a malformed RLE.
    """
    if isinstance(predictions, list) and all(isinstance(p, Track) for p in predictions) \
            and predictions:
        return predictions
    if isinstance(predictions, (str, Path)):
        predictions = _load_json(predictions, "predictions")
    if isinstance(predictions, Mapping) or not isinstance(predictions, Sequence):
        raise ValueError("predictions must be a JSON list of {video_id, category_id, score, "
                         f"segmentations}}, got {type(predictions).__name__}")
    tracks: list[Track] = []
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
        rles = _segmentations(entry, gt.videos[vid], where)
        frame_areas = _frame_areas(rles)
        tracks.append(Track(len(tracks) + 1, i, vid, cid, score, False, rles, frame_areas,
                            _mean_nonzero(frame_areas.tolist())))
    return tracks
