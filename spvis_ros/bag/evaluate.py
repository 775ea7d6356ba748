"""`spvis-bag eval`: score a recording of the node's InstanceArray outputs against a GT sidecar.

1. Ground truth: the YouTube-VIS sidecar of the input bag (``<BAG>.gt.json``, see
   `spvis_ros.bag.make`); each of its frames is keyed by the input message's header stamp
   (``stamps_ns``, exact; or ``timestamps`` in seconds, matched to within 10 µs).
2. Predictions: every recorded InstanceArray is matched to the GT frame with its header stamp
   (the node copies the input header). Masks are decoded from their boxes; the track id is the
   prediction's identity; the class is mapped by *name* to the GT category with that name
   (instances of classes the GT lacks are left out and counted). Per video,
   `spvis_model.eval.results_from_tracks` turns the frames into YouTube-VIS results (a track's
   score is the mean of its per-frame ``track_score`` when every instance of the recording has
   a finite one, as `spvis eval` ranks the model's own result files, else of its per-frame
   ``score``: ``bag.ranked_by`` says which; its category the one with the largest summed
   score). Recordings made with an older Instance definition read with the definition they
   recorded.
3. Frames of the GT with no recorded message are **dropped** frames: they count as frames where
   the tracker output nothing, and are reported (total, per video, and the first stamps).
   Messages that match no GT frame and second messages for one frame are counted too.
4. `spvis_model.eval.run_evaluation` (AP + HOTA/MOTSA/IDF1 and buckets) and `write_outputs`
   (metrics.json, report.md, plots) write into DIR; metrics.json gets a ``bag`` section with
   the accounting above and report.md a "Bag replay" section. ``results.json`` holds the
   YouTube-VIS results.
5. With the input bag (``--images-bag``, or the bag beside the sidecar: ``X.gt.json`` -> ``X``),
   one overlay video per GT video, ``overlay_<video name>.mp4`` (OpenCV ``mp4v``, the video's
   fps): the node's instances tinted by track id (`spvis_ros.messages.overlay`), GT outlined in
   white, the frame number, and "NO OUTPUT" on dropped frames. Frames of the worst video are
   also saved under ``frames/`` so the report's worst-video strip shows real pixels.

A recording that breaks part way (truncated, corrupt) is an error naming the file; with
``allow_partial`` what was read is scored and the error is reported in ``bag.read_error``.
A recording of which no message matches a GT frame is an error giving both stamp ranges. The
sidecar's stamps are checked (`_FrameIndex`: integer ``stamps_ns``, strictly increasing per
video, no stamp shared). Overlay problems (a frame whose size is not its GT video's, fewer
input frames than GT frames) never stop the scoring: they go to ``bag.images_error``.
"""

from __future__ import annotations

import json
import struct
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spvis_ros.bag.base import INSTANCES_TYPE, BagError, deserialize, stamp_ns
from spvis_ros.bag.make import bag_of_sidecar
from spvis_ros.bag.reader import (
    bag_topics,
    iter_messages,
    pick_image_topic,
    pick_topic,
    read_images,
)

FLOAT_STAMP_TOLERANCE_NS = 10_000
MAX_LISTED = 20


@dataclass
class EvalOptions:
    """See the module docstring. `images_bag`: None = the bag beside the sidecar if it exists;
    False = no overlay videos."""

    topic: str | None = None
    images_bag: Path | bool | None = None
    image_topic: str | None = None
    score_threshold: float = 0.5
    allow_partial: bool = False
    progress: bool = False


@dataclass
class Accounting:
    """How the recording lines up with the ground truth."""

    recorded: str
    topic: str
    messages: int = 0
    matched: int = 0
    unmatched: int = 0
    duplicates: int = 0
    instances: int = 0
    instances_left_out: int = 0
    bad_instances: int = 0
    left_out_classes: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    dropped_per_video: dict[int, int] = field(default_factory=dict)
    dropped_stamps_ns: list[int] = field(default_factory=list)
    read_error: str | None = None
    overlay_videos: dict[int, str] = field(default_factory=dict)
    images_read: int = 0
    images_error: str | None = None
    ranked_by: str = "score"

    def as_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["dropped_per_video"] = {str(k): v for k, v in self.dropped_per_video.items()}
        d["overlay_videos"] = {str(k): v for k, v in self.overlay_videos.items()}
        return d

    def text(self) -> str:
        line = (f"{self.messages} messages on {self.topic}: {self.matched} matched GT frames, "
                f"{self.dropped} GT frames dropped, {self.unmatched} unmatched, "
                f"{self.duplicates} duplicates")
        if self.instances_left_out:
            line += f"; {self.instances_left_out} instances of classes the GT lacks left out"
        if self.bad_instances:
            line += f"; {self.bad_instances} malformed instances left out"
        if self.read_error:
            line += f"; READ ERROR: {self.read_error}"
        line += f"; tracks ranked by {self.ranked_by}"
        return line


@dataclass
class BagEvaluation:
    """The metrics (with the ``bag`` section), the results list and the files written."""

    metrics: dict[str, Any]
    predictions: list[dict[str, Any]]
    accounting: Accounting
    written: dict[str, Path]


class _FrameIndex:
    """GT frames by header stamp: exact with ``stamps_ns``, else nearest within 10 µs.

    Raises:
        BagError: stamps that are missing, not integers (``stamps_ns``) or numbers
            (``timestamps``), not one per frame, not strictly increasing within a video, or
            shared by two frames; the text names the file, the video, the index and the value.
    """

    def __init__(self, raw: dict[str, Any], gt: Any) -> None:
        stamps: list[int] = []
        keys: list[tuple[int, int]] = []
        exact = True
        for entry in raw["videos"]:
            vid = int(entry["id"])
            video = gt.videos[vid]
            if entry.get("stamps_ns") is not None:
                ns = _int_stamps(gt.source, vid, entry["stamps_ns"])
            elif video.timestamps is not None:
                exact = False
                ns = _float_stamps(gt.source, vid, video.timestamps)
            else:
                raise BagError(f"{gt.source}: video {vid} has neither stamps_ns nor timestamps; "
                               "frames cannot be matched to messages by stamp")
            if len(ns) != video.length:
                raise BagError(f"{gt.source}: video {vid}: {len(ns)} stamps for "
                               f"{video.length} frames")
            field_name = "stamps_ns" if entry.get("stamps_ns") is not None else "timestamps"
            for t in range(1, len(ns)):
                if ns[t] <= ns[t - 1]:
                    raise BagError(f"{gt.source}: video {vid}: {field_name}[{t}] = {ns[t]} ns is "
                                   f"not after {field_name}[{t - 1}] = {ns[t - 1]} ns; a "
                                   "video's stamps must be strictly increasing")
            stamps += ns
            keys += [(vid, t) for t in range(len(ns))]
        order = np.argsort(np.asarray(stamps, np.int64), kind="stable")
        self.stamps = np.asarray(stamps, np.int64)[order]
        self.keys = [keys[i] for i in order]
        if len(self.stamps) > 1:
            same = np.flatnonzero(np.diff(self.stamps) == 0)
            if len(same):
                (va, ta), (vb, tb) = self.keys[same[0]], self.keys[same[0] + 1]
                raise BagError(f"{gt.source}: video {va} frame {ta} and video {vb} frame {tb} "
                               f"share the stamp {int(self.stamps[same[0]])} ns; they cannot be "
                               "told apart")
        self.tolerance = 0 if exact else FLOAT_STAMP_TOLERANCE_NS
        self.all_ns = dict(zip(keys, stamps, strict=True))

    @property
    def range_text(self) -> str:
        """"A..B ns (N frames)" of the GT's stamps."""
        if not len(self.stamps):
            return "no frames"
        return (f"{int(self.stamps[0])}..{int(self.stamps[-1])} ns ({len(self.stamps)} "
                "frames)")

    def find(self, ns: int) -> tuple[int, int] | None:
        if not len(self.stamps):
            return None
        i = int(np.searchsorted(self.stamps, ns))
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self.stamps):
                d = abs(int(self.stamps[j]) - ns)
                if d <= self.tolerance and (best is None or d < best[0]):
                    best = (d, j)
        return None if best is None else self.keys[best[1]]


def _int_stamps(source: Any, vid: int, values: Any) -> list[int]:
    """A video's ``stamps_ns``: a list of integers (JSON floats lose nanoseconds at 1.7e18)."""
    if not isinstance(values, list):
        raise BagError(f"{source}: video {vid}: stamps_ns must be a list of integer "
                       f"nanoseconds, got {type(values).__name__} {values!r:.60}")
    for t, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int):
            hint = " (a JSON float cannot hold nanoseconds exactly; write integers)" \
                if isinstance(value, float) else ""
            raise BagError(f"{source}: video {vid}: stamps_ns[{t}] = {value!r:.60} is not an "
                           f"integer{hint}")
        if value < 0:
            raise BagError(f"{source}: video {vid}: stamps_ns[{t}] = {value} is negative")
    return list(values)


def _float_stamps(source: Any, vid: int, values: Any) -> list[int]:
    """A video's ``timestamps`` (seconds) as integer nanoseconds."""
    out = []
    for t, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not np.isfinite(value):
            raise BagError(f"{source}: video {vid}: timestamps[{t}] = {value!r:.60} is not a "
                           "finite number of seconds")
        out.append(round(float(value) * 1e9))
    return out


def load_sidecar(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """(checked GroundTruth, raw JSON dict) of a GT sidecar.

    Raises:
        BagError: missing file, bad JSON or a dataset that does not check (the eval loader's
            message, naming the field).
    """
    from spvis_model.eval import load_ground_truth

    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        gt = load_ground_truth(path)
    except FileNotFoundError as exc:
        raise BagError(f"{path}: ground-truth sidecar not found") from exc
    except (ValueError, OSError) as exc:
        raise BagError(f"{path}: {exc}") from exc
    return gt, raw


def pick_instances_topic(path: str | Path, topic: str | None) -> str:
    """`topic` if given (checked), else the bag's only InstanceArray topic."""
    topics = {t: m for t, m in bag_topics(path).items() if m == INSTANCES_TYPE}
    return pick_topic(path, topics, topic, INSTANCES_TYPE, "give --topic")


def decode_instances(msg: Any) -> list[tuple[Any, np.ndarray]]:
    """[(instance, full-frame bool mask)] of a deserialized InstanceArray (mono8 or RLE masks,
    `spvis_ros.masks`).

    Raises:
        ValueError: an instance whose mask does not match its box, or a box outside the image
            (names the instance).
    """
    from spvis_ros.masks import full_masks

    return list(zip(msg.instances, full_masks(msg), strict=True))


def collect(recorded: str | Path, gt: Any, raw: dict[str, Any], options: EvalOptions
            ) -> tuple[dict[tuple[int, int], Any], Accounting]:
    """Recorded InstanceArrays by GT frame (vid, t), and the accounting (dropped frames are
    filled in by `predictions`)."""
    topic = pick_instances_topic(recorded, options.topic)
    acc = Accounting(str(recorded), topic)
    index = _FrameIndex(raw, gt)
    by_frame: dict[tuple[int, int], Any] = {}
    mismatch = None
    first: int | None = None
    last: int | None = None
    try:
        for msg in iter_messages(recorded, [topic]):
            acc.messages += 1
            try:
                arr = deserialize(msg.data, msg.msgtype, msg.msgdef)
            except (ValueError, IndexError, KeyError, struct.error) as exc:
                raise BagError(f"{recorded}: message {acc.messages - 1} on {topic} (log time "
                               f"{msg.log_time_ns} ns) does not deserialize: {exc}; read "
                               f"{acc.messages - 1} messages before the error",
                               acc.messages - 1) from exc
            stamp = stamp_ns(arr.header.stamp)
            first = stamp if first is None else min(first, stamp)
            last = stamp if last is None else max(last, stamp)
            key = index.find(stamp)
            if key is None:
                acc.unmatched += 1
                continue
            if key in by_frame:
                acc.duplicates += 1
                continue
            video = gt.videos[key[0]]
            if (int(arr.width), int(arr.height)) != (video.width, video.height):
                mismatch = (f"{recorded}: message at stamp {stamp_ns(arr.header.stamp)} ns is "
                            f"{arr.width}x{arr.height}, GT video {key[0]} is "
                            f"{video.width}x{video.height}")
                break
            by_frame[key] = arr
            acc.matched += 1
    except BagError as exc:
        if not options.allow_partial or acc.messages == 0:
            raise
        acc.read_error = str(exc)
    if mismatch is not None:
        raise BagError(mismatch)
    if not acc.matched:
        got = "no messages" if first is None else (
            f"{acc.messages} messages with header stamps {first}..{last} ns")
        raise BagError(f"{recorded}: no message on {topic} matches a ground-truth frame "
                       f"({got}; {gt.source}: stamps {index.range_text}); is it the recording "
                       "of this sidecar's bag?"
                       + (f" (the recording also broke: {acc.read_error})" if acc.read_error
                          else ""))
    return by_frame, acc


def predictions(gt: Any, by_frame: dict[tuple[int, int], Any], acc: Accounting,
                index_ns: dict[tuple[int, int], int]) -> list[dict[str, Any]]:
    """YouTube-VIS results of every GT video (`results_from_tracks`); fills the dropped-frame
    and left-out counts of `acc`."""
    from spvis_model.eval import FrameOutput, results_from_tracks

    cat_ids = list(gt.categories)
    by_name = {name: i for i, name in enumerate(gt.categories.values())}
    left_out: dict[str, int] = defaultdict(int)
    results: list[dict[str, Any]] = []
    by_track = _has_track_scores(by_frame.values())
    acc.ranked_by = "track_score" if by_track else "score"
    for vid, video in gt.videos.items():
        frames = []
        for t in range(video.length):
            arr = by_frame.get((vid, t))
            if arr is None:
                acc.dropped += 1
                acc.dropped_per_video[vid] = acc.dropped_per_video.get(vid, 0) + 1
                if len(acc.dropped_stamps_ns) < MAX_LISTED:
                    acc.dropped_stamps_ns.append(index_ns[(vid, t)])
                frames.append(_empty(video.height, video.width))
                continue
            ids, labels, scores, track_scores, masks = [], [], [], [], []
            try:
                decoded = decode_instances(arr)
            except ValueError as exc:
                acc.bad_instances += len(arr.instances)
                print(f"spvis-bag eval: video {vid} frame {t}: {exc}; frame left empty",
                      file=sys.stderr)
                decoded = []
            for inst, full in decoded:
                acc.instances += 1
                name = str(inst.class_name)
                if name not in by_name:
                    left_out[name] += 1
                    continue
                ids.append(int(inst.id))
                labels.append(by_name[name])
                scores.append(float(inst.score))
                track_scores.append(float(getattr(inst, "track_score", np.nan)))
                masks.append(full)
            if not ids:
                frames.append(_empty(video.height, video.width))
                continue
            frames.append(FrameOutput(ids=np.asarray(ids, np.uint64),
                                      labels=np.asarray(labels, np.int64),
                                      scores=np.asarray(scores, np.float64),
                                      masks=np.stack(masks),
                                      track_scores=np.asarray(track_scores, np.float64)
                                      if by_track else None))
        results += results_from_tracks(vid, frames, cat_ids)
    acc.left_out_classes = dict(left_out)
    acc.instances_left_out = sum(left_out.values())
    return results


def _has_track_scores(arrays: Any) -> bool:
    """Whether tracks are ranked by the messages' ``track_score`` (as `spvis eval` ranks the
    model's result files): only when every recorded instance carries a finite one (a node
    whose model has no track-score model sends NaN; a recording made before the field existed
    has none), else by the per-frame ``score`` for the whole recording."""
    seen = False
    for arr in arrays:
        for inst in arr.instances:
            value = float(getattr(inst, "track_score", np.nan))
            if not np.isfinite(value):
                return False
            seen = True
    return seen


def _empty(height: int, width: int) -> Any:
    from spvis_model.eval import FrameOutput

    return FrameOutput(ids=np.zeros(0, np.int64), labels=np.zeros(0, np.int64),
                       scores=np.zeros(0), masks=np.zeros((0, height, width), bool))


# --------------------------------------------------------------------------------------------
# Overlay videos
# --------------------------------------------------------------------------------------------
def _to_instances(arr: Any, decoded: list[tuple[Any, np.ndarray]]) -> Any:
    from spvis_model.instances import Instances

    n = len(decoded)
    h, w = int(arr.height), int(arr.width)
    if not n:
        return Instances.empty(h, w)
    boxes = np.array([[i.bbox.x_offset, i.bbox.y_offset, i.bbox.x_offset + i.bbox.width,
                       i.bbox.y_offset + i.bbox.height] for i, _ in decoded], np.float32)
    return Instances(ids=np.array([int(i.id) for i, _ in decoded], np.int64),
                     labels=np.array([int(i.class_id) for i, _ in decoded], np.int64),
                     label_names=[str(i.class_name) for i, _ in decoded],
                     scores=np.array([float(i.score) for i, _ in decoded], np.float32),
                     boxes=boxes, masks=np.stack([m for _, m in decoded]),
                     visibility=np.array([float(i.visibility) for i, _ in decoded], np.float32),
                     first_seen=np.array([stamp_ns(i.first_seen) / 1e9 for i, _ in decoded]))


def overlay_frame(rgb: np.ndarray, arr: Any | None, gt_masks: list[np.ndarray], label: str
                  ) -> np.ndarray:
    """The frame with the node's instances (tinted by id), GT outlines (white) and a caption;
    at least 320 pixels wide (small frames are enlarged, nearest neighbour). RGB uint8."""
    import cv2

    from spvis_ros import messages

    if arr is not None:
        try:
            decoded = decode_instances(arr)
        except ValueError:
            decoded = []
        inst = _to_instances(arr, decoded)
        out = messages.overlay(rgb, inst, np.arange(len(inst)))
    else:
        out = rgb.copy()
    for m in gt_masks:
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    scale = max(1, int(np.ceil(320 / out.shape[1])))
    if scale > 1:
        out = cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    font = 0.4 * out.shape[1] / 320 if out.shape[1] < 640 else 0.6
    cv2.putText(out, label, (4, int(14 * font / 0.4)), cv2.FONT_HERSHEY_SIMPLEX, font,
                (255, 255, 0), 1, cv2.LINE_AA)
    if arr is None:
        cv2.putText(out, "NO OUTPUT (dropped)", (4, out.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX,
                    font, (255, 40, 40), 1, cv2.LINE_AA)
    return out


def write_overlays(images_bag: Path, image_topic: str | None, gt: Any, raw: dict[str, Any],
                   by_frame: dict[tuple[int, int], Any], out: Path, worst: int | None,
                   acc: Accounting, progress: bool = False) -> Path | None:
    """One mp4 per GT video from the input bag's frames; the worst video's frames saved under
    out/frames for the report. Returns that frames folder (None when nothing was saved)."""
    import cv2
    from tqdm import tqdm

    index = _FrameIndex(raw, gt)
    tracks = defaultdict(list)
    for track in gt.tracks:
        tracks[track.video_id].append(track)
    names = {int(v["id"]): str(v.get("name") or f"video_{int(v['id'])}") for v in raw["videos"]}
    writers: dict[int, Any] = {}
    frames_dir = out / "frames"
    saved = False
    topic = image_topic or (raw["videos"][0].get("topic") if raw["videos"] else None)
    try:
        topic = pick_image_topic(images_bag, topic)
        bar = tqdm(unit="frame", desc="overlay", disable=not progress, file=sys.stderr)
        for frame in read_images(images_bag, topic):
            key = index.find(frame.stamp_ns)
            if key is None:
                continue
            vid, t = key
            video = gt.videos[vid]
            if frame.rgb.shape[:2] != (video.height, video.width):
                raise BagError(f"{images_bag}: {topic} frame at stamp {frame.stamp_ns} ns is "
                               f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]}, GT video {vid} "
                               f"({names[vid]}) is {video.width}x{video.height}; overlay "
                               f"videos stop there ({acc.images_read} frames written)")
            acc.images_read += 1
            bar.update(1)
            gt_masks = [decode_rle(tr.rles[t]) for tr in tracks[vid] if tr.rles[t] is not None]
            label = f"{names[vid]} frame {t}/{video.length}"
            image = overlay_frame(frame.rgb, by_frame.get(key), gt_masks, label)
            if vid not in writers:
                path = out / f"overlay_{names[vid]}.mp4"
                fps = float(video.fps or 10.0)
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (image.shape[1], image.shape[0]))
                if not writer.isOpened():
                    raise BagError(f"{path}: OpenCV cannot write mp4v video")
                writers[vid] = writer
                acc.overlay_videos[vid] = path.name
            writers[vid].write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            if vid == worst and video.file_names:
                target = frames_dir / video.file_names[t]
                target.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(target), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
                saved = True
        bar.close()
        expected = len(index.stamps)
        if acc.images_read < expected:
            raise BagError(f"{images_bag}: only {acc.images_read} of the {expected} "
                           f"ground-truth frames found on {topic} by header stamp (GT stamps "
                           f"{index.range_text}); overlay videos miss the other frames")
    except BagError as exc:
        acc.images_error = str(exc)
        print(f"spvis-bag eval: overlay videos: {exc}", file=sys.stderr)
    finally:
        for writer in writers.values():
            writer.release()
    return frames_dir if saved else None


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """(H, W) bool mask of a COCO RLE."""
    import warnings

    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():
        # pycocotools 2.0.11's decode trips numpy 2's __array__(copy=...) deprecation check.
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


# --------------------------------------------------------------------------------------------
def evaluate_bag(recorded: str | Path, gt_path: str | Path, out_dir: str | Path,
                 options: EvalOptions | None = None) -> BagEvaluation:
    """Everything `spvis-bag eval` does (module docstring); returns metrics and paths.

    Raises:
        BagError: unreadable recording or sidecar (what and where), or a size mismatch.
    """
    from spvis_model.eval import run_evaluation, write_outputs

    options = options or EvalOptions()
    recorded, gt_path, out = Path(recorded), Path(gt_path), Path(out_dir)
    gt, raw = load_sidecar(gt_path)
    by_frame, acc = collect(recorded, gt, raw, options)
    index = _FrameIndex(raw, gt)
    results = predictions(gt, by_frame, acc, index.all_ns)
    metrics = run_evaluation(gt, results, score_threshold=options.score_threshold,
                             progress=options.progress)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BagError(f"{out}: cannot create the output folder: {exc.strerror or exc}") from exc
    images_bag: Path | None = None
    if options.images_bag is None:
        beside = bag_of_sidecar(gt_path)
        images_bag = beside if beside is not None and beside.exists() else None
    elif options.images_bag is not False:
        images_bag = Path(options.images_bag)  # type: ignore[arg-type]
    frames_dir = None
    if images_bag is not None:
        frames_dir = write_overlays(images_bag, options.image_topic, gt, raw, by_frame, out,
                                    metrics["worst_video"], acc, options.progress)
    metrics["bag"] = acc.as_dict()
    written = write_outputs(metrics, out, gt, results, images=frames_dir)
    results_path = out / "results.json"
    results_path.write_text(json.dumps(results) + "\n", encoding="utf-8")
    written["results"] = results_path
    with written["markdown"].open("a", encoding="utf-8") as f:
        f.write(_report_section(acc, images_bag))
    for vid, name in acc.overlay_videos.items():
        written[f"overlay_{vid}"] = out / name
    return BagEvaluation(metrics, results, acc, written)


def _report_section(acc: Accounting, images_bag: Path | None) -> str:
    lines = ["", "## Bag replay", "",
             f"Recording `{acc.recorded}`, topic `{acc.topic}`: {acc.messages} messages, "
             f"{acc.matched} matched to ground-truth frames by header stamp, "
             f"{acc.unmatched} matching no frame, {acc.duplicates} duplicates.", "",
             f"**Dropped frames** (GT frames with no output): {acc.dropped}"
             + (" (per video: " + ", ".join(f"{k}: {v}" for k, v in
                                            acc.dropped_per_video.items()) + ")"
                if acc.dropped else "") + ".", ""]
    if acc.instances_left_out:
        lines += [f"Instances of classes the GT lacks, left out: {acc.left_out_classes}.", ""]
    if acc.read_error:
        lines += [f"**The recording could not be read to the end**: {acc.read_error}", ""]
    if acc.overlay_videos:
        lines += ["Overlay videos (from `" + str(images_bag) + "`): "
                  + ", ".join(f"[{n}]({n})" for n in acc.overlay_videos.values()) + ".", ""]
    elif images_bag is None:
        lines += ["No input bag given: no overlay videos.", ""]
    if acc.images_error:
        lines += [f"Input bag: {acc.images_error}", ""]
    return "\n".join(lines)
