"""`spvis-bag make`: image bags from a video file, an image folder or the synthetic generator.

Every frame becomes one message of the chosen transport (`spvis_ros.transports`:
sensor_msgs/Image rgb8 on ``/cam0/image_raw``, or with ``--transport compressed`` /
``--compressed`` a CompressedImage ``"rgb8; jpeg compressed bgr8"`` on
``/cam0/image_raw/compressed``) whose header stamp is the frame's time and whose bag log time
equals that stamp:

- synthetic: the generator's stamps (jittered, with dropped captures) + the start epoch; the
  videos follow one another in one bag, each starting `video_gap_s` after the last frame of the
  previous one, so a node with ``max_gap_s`` < `video_gap_s` forgets its tracks between videos;
- a video file: frame k at ``k / fps`` (the container's fps, or ``--fps``);
- an image folder: the files in name order, frame k at ``k / fps``.

Ground truth (synthetic, or given by a caller of `write_image_bag`) goes to the sidecar
``<BAG>.gt.json``: a YouTube-VIS dataset whose videos carry, besides the usual fields,
``timestamps`` (each frame's message stamp in seconds), ``stamps_ns`` (the same, exact integer
nanoseconds), ``topic`` and ``bag``. `spvis-bag eval` matches recorded outputs to its frames by
header stamp.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spvis_model.atomic import atomic_write
from spvis_ros.bag.base import BagError
from spvis_ros.bag.writer import BagWriter, image_cdr
from spvis_ros.transports import DEFAULT_BASE_TOPIC, TRANSPORTS

DEFAULT_START_S = 1_700_000_000  # 2023-11-14T22:13:20Z: plausible wall-clock stamps
DEFAULT_VIDEO_GAP_S = 60.0  # > the node's default max_gap_s (5 s)
DEFAULT_TOPIC = f"/cam0/{DEFAULT_BASE_TOPIC}"  # the node's default input, camera cam0
DEFAULT_FRAME_ID = "cam0_optical"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
NS = 1_000_000_000
MAX_STAMP_NS = 2**31 * NS - 1  # builtin_interfaces/Time: int32 sec (a bag's log time >= 0)


@dataclass
class SourceVideo:
    """One video to put in a bag.

    frames: RGB uint8 (H, W, 3) arrays (any iterable: frames are streamed into the bag).
    stamps: seconds of each frame from the video's first frame, strictly increasing.
    annotations: YouTube-VIS annotations of this video without ``id``/``video_id`` (those are
        assigned), with one entry per frame in their per-frame lists; None = no ground truth.
    """

    name: str
    frames: Iterable[np.ndarray]
    stamps: Sequence[float]
    width: int
    height: int
    fps: float | None = None
    annotations: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class MakeSummary:
    """What `write_image_bag` wrote."""

    bag: Path
    sidecar: Path | None
    topic: str
    msgtype: str
    videos: int
    messages: int
    first_ns: int
    last_ns: int

    def text(self) -> str:
        span = (self.last_ns - self.first_ns) / NS
        lines = [f"wrote {self.bag}: {self.messages} {self.msgtype} messages on {self.topic} "
                 f"({self.videos} video{'s' if self.videos != 1 else ''}, {span:.2f} s of "
                 "stamps)"]
        if self.sidecar is not None:
            lines.append(f"ground truth: {self.sidecar}")
        return "\n".join(lines)


def sidecar_path(bag: str | Path) -> Path:
    """``<bag>.gt.json`` beside the bag (a rosbag2 directory is a path too)."""
    bag = Path(bag)
    return bag.parent / f"{bag.name}.gt.json"


def bag_of_sidecar(gt: str | Path) -> Path | None:
    """The bag a ``<bag>.gt.json`` sidecar belongs to, if the name says so."""
    gt = Path(gt)
    return gt.parent / gt.name[: -len(".gt.json")] if gt.name.endswith(".gt.json") else None


def _header(stamp: int, frame_id: str) -> Any:
    from std_msgs.msg import Header

    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(int(stamp), NS)
    return h


def encode_frame(rgb: np.ndarray, stamp: int, frame_id: str, compressed: bool,
                 jpeg_quality: int = 90) -> bytes:
    """One frame as the CDR bytes of an Image (rgb8) or CompressedImage (JPEG) message, encoded
    by the transport's encoder."""
    header = _header(stamp, frame_id)
    if compressed:
        return image_cdr(TRANSPORTS["compressed"].encode(rgb, header, fmt="jpeg",
                                                         quality=jpeg_quality))
    return image_cdr(TRANSPORTS["raw"].encode(rgb, header, encoding="rgb8"))


def write_image_bag(out: str | Path, videos: Iterable[SourceVideo], *, storage: str = "mcap",
                    compressed: bool = False, topic: str | None = None,
                    frame_id: str = DEFAULT_FRAME_ID, start_ns: int = DEFAULT_START_S * NS,
                    video_gap_s: float = DEFAULT_VIDEO_GAP_S,
                    categories: list[dict[str, Any]] | None = None, info: dict | None = None,
                    jpeg_quality: int = 90, overwrite: bool = False, progress: bool = False
                    ) -> MakeSummary:
    """Write `videos` back to back into one image bag, and the GT sidecar when `categories` is
    given (then every video must have `annotations`).

    Frame k of video v gets the stamp ``start_ns + offset_v + round(stamps[k] * 1e9)``, with
    ``offset_0 = 0`` and ``offset_{v+1} = offset_v + round(stamps_v[-1] * 1e9) + video_gap_s``.

    The bag is written under a hidden name and moved to `out` only when complete
    (`BagWriter` with ``atomic``): a failure leaves no partial bag (and, with `overwrite`, the
    old bag in place).

    Raises:
        BagError: the bag exists (without `overwrite`) or cannot be written; bad stamps (not
            increasing, or outside 0 .. 2**31 s, what a ROS Time holds: names the video, the
            frame and the stamp).
    """
    from tqdm import tqdm

    if not video_gap_s > 0:
        raise BagError(f"video_gap_s = {video_gap_s}: must be > 0")
    if not 0 <= int(start_ns) <= MAX_STAMP_NS:
        raise BagError(f"start = {int(start_ns)} ns: must be in 0 .. {MAX_STAMP_NS} ns (a ROS "
                       "Time has int32 seconds)")
    transport = TRANSPORTS["compressed" if compressed else "raw"]
    topic = topic or transport.topic(DEFAULT_TOPIC)
    msgtype = transport.msgtype
    out = Path(out)
    sidecar = sidecar_path(out) if categories is not None else None
    gt_videos: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    offset = int(start_ns)
    count, n_videos, first, last = 0, 0, None, None
    with BagWriter(out, storage, overwrite=overwrite, atomic=True) as bag, \
            tqdm(unit="frame", desc="make", disable=not progress) as bar:
        bag.add_topic(topic, msgtype)
        for v, video in enumerate(videos):
            bad = next((k for k, s in enumerate(video.stamps) if not np.isfinite(float(s))),
                       None)
            if bad is not None:
                raise BagError(f"{out}: video {video.name!r} frame {bad}: stamp "
                               f"{video.stamps[bad]} s is not a finite number")
            rel = [round(float(s) * NS) for s in video.stamps]
            if not rel or any(b <= a for a, b in itertools.pairwise(rel)):
                raise BagError(f"{out}: video {video.name!r}: stamps must be non-empty and "
                               "strictly increasing")
            stamps = [offset + r for r in rel]
            for k, stamp in enumerate(stamps):
                if not 0 <= stamp <= MAX_STAMP_NS:
                    raise BagError(f"{out}: video {video.name!r} frame {k}: stamp {stamp} ns "
                                   f"is outside 0 .. {MAX_STAMP_NS} ns (a ROS Time has int32 "
                                   "seconds); check --start, --fps and --video-gap")
            n = 0
            frames = iter(video.frames)
            for frame, stamp in zip(frames, stamps, strict=False):
                rgb = np.asarray(frame)
                if rgb.shape != (video.height, video.width, 3):
                    raise BagError(f"{out}: video {video.name!r} frame {n} has shape "
                                   f"{rgb.shape}, expected ({video.height}, {video.width}, 3)")
                bag.write(topic, stamp, encode_frame(rgb, stamp, frame_id, compressed,
                                                     jpeg_quality))
                n += 1
                bar.update(1)
            if n != len(stamps) or next(frames, None) is not None:
                raise BagError(f"{out}: video {video.name!r}: {len(stamps)} stamps but "
                               f"{'only ' + str(n) if n < len(stamps) else 'more'} frames")
            count += n
            n_videos += 1
            first = stamps[0] if first is None else first
            last = stamps[-1]
            offset = stamps[-1] + round(video_gap_s * NS)
            if categories is not None:
                gt_videos.append(_gt_video(v + 1, video, stamps, topic, out))
                if video.annotations is None:
                    raise BagError(f"{out}: video {video.name!r} has no annotations but a "
                                   "ground-truth sidecar was asked for")
                for ann in video.annotations:
                    annotations.append({"id": len(annotations) + 1, "video_id": v + 1, **ann})
    if categories is not None and sidecar is not None:
        data = {"info": {"description": "spvis-bag make: ground truth of an image bag, frames "
                         "keyed by message header stamp", "bag": out.name, "topic": topic,
                         "start_ns": int(start_ns), "video_gap_s": video_gap_s,
                         **(info or {})},
                "videos": gt_videos, "annotations": annotations, "categories": categories}
        text = (json.dumps(data, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            atomic_write(sidecar, lambda f: f.write(text))
        except OSError as exc:
            raise BagError(f"{sidecar}: cannot write the ground-truth sidecar: "
                           f"{exc.strerror or exc}") from exc
    return MakeSummary(out, sidecar, topic, msgtype, n_videos, count, first or 0, last or 0)


def _gt_video(video_id: int, video: SourceVideo, stamps: list[int], topic: str,
              bag: Path) -> dict[str, Any]:
    return {"id": video_id, "name": video.name, "width": video.width, "height": video.height,
            "length": len(stamps),
            "file_names": [f"{video.name}/{k:05d}.jpg" for k in range(len(stamps))],
            **({"fps": video.fps} if video.fps else {}),
            "timestamps": [s / NS for s in stamps], "stamps_ns": stamps, "topic": topic,
            "bag": bag.name, **video.extra}


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------
def synthetic_source(preset_name: str, seed: int | None = None, videos: int | None = None,
                     frames: int | None = None, classes: Sequence[str] | None = None
                     ) -> tuple[list[dict[str, Any]], Iterator[SourceVideo], Any]:
    """(categories, videos, config) of a synthetic preset with overrides; videos are generated
    one at a time (`spvis_model.data.synthetic.generate_video`).

    Raises:
        BagError: a bad preset or override (the generator's ConfigError text).
    """
    from spvis_model.config import ConfigError
    from spvis_model.data.synthetic import generate_video, preset

    overrides: dict[str, Any] = {}
    for name, value in (("seed", seed), ("videos", videos), ("frames", frames)):
        if value is not None:
            overrides[name] = value
    if classes is not None:
        overrides["classes"] = tuple(classes)
    try:
        config = dataclasses.replace(preset(preset_name), **overrides)
    except ConfigError as exc:
        raise BagError(f"synthetic source: {exc}") from exc
    categories = [{"id": cid, "name": name}
                  for cid, name in zip(config.category_ids(), config.classes, strict=True)]

    def generate() -> Iterator[SourceVideo]:
        from spvis_model.data.synthetic import SyntheticVideo

        for i in range(config.videos):
            images, stamps, tracks = generate_video(config, i)
            plan = SyntheticVideo(config, i)
            anns = [{"category_id": t.category_id, "iscrowd": 0, "segmentations": t.rles,
                     "bboxes": t.boxes, "areas": t.areas, "occlusion": t.occlusion}
                    for t in tracks]
            yield SourceVideo(plan.name, images, stamps, config.width, config.height,
                              fps=plan.fps, annotations=anns,
                              extra={"dropped_frames": int(plan.dropped.sum()),
                                     "background": plan.background})

    return categories, generate(), config


def video_source(path: str | Path, fps: float | None = None) -> SourceVideo:
    """A video file read with OpenCV; frame k at k / fps (the file's fps unless `fps`).

    Raises:
        BagError: the file cannot be opened or has no frame rate and none was given.
    """
    import cv2

    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise BagError(f"{path}: cannot open video file")
    rate = fps or float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if not rate or rate <= 0:
        cap.release()
        raise BagError(f"{path}: the file has no frame rate; give --fps")

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    # The container's frame count can be wrong: count by grabbing (no decoding to RGB) so the
    # stamps match the frames exactly.
    n = _count_frames(path)
    if n == 0:
        cap.release()
        raise BagError(f"{path}: no frame could be read")
    return SourceVideo(path.stem, frames(), [k / rate for k in range(n)], width, height,
                       fps=rate)


def _count_frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def images_source(folder: str | Path, fps: float) -> SourceVideo:
    """The image files of `folder` (by name), frame k at k / fps; all must have one size.

    Raises:
        BagError: no images, an unreadable file, or a size change.
    """
    import cv2

    folder = Path(folder)
    if not folder.is_dir():
        raise BagError(f"{folder}: not a directory")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BagError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    if fps <= 0:
        raise BagError(f"fps = {fps}: must be > 0")
    first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise BagError(f"{files[0]}: cannot read image")
    height, width = first.shape[:2]

    def frames() -> Iterator[np.ndarray]:
        for path in files:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise BagError(f"{path}: cannot read image")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    return SourceVideo(folder.name, frames(), [k / fps for k in range(len(files))], width,
                       height, fps=fps)
