"""Model outputs -> ROS messages: InstanceArray, vision_msgs Detection2DArray and LabelInfo,
and the overlay picture.

Thin by design: every number comes from `spvis_model.Instances`; this only lays it out.

vision_msgs conventions used here:
- ``Detection2D.id`` is the persistent track id as a string with the ``id_prefix`` in front
  (default ``"{camera}/"``: ``"front/17"``). Track ids are unique per camera only; the prefix
  makes them unique in anything that merges cameras.
- one hypothesis per detection: ``class_id`` is the class index as a string (the key of
  ``LabelInfo.class_map``), ``score`` the instance score; the pose is left zero (a 2D
  detector has none).
- ``bbox`` is the float box: centre ``((x1 + x2) / 2, (y1 + y2) / 2)`` and size
  ``(x2 - x1, y2 - y1)`` in pixels, where the box covers pixels ``x1 <= x < x2`` (continuous
  coordinates, pixel k spans [k, k + 1)); ``theta`` = 0.
- every Detection2D carries the input image's header, like the array.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import RegionOfInterest
from spvis_msgs.msg import Instance, InstanceArray
from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    VisionClass,
)

from spvis_model.instances import Instances
from spvis_ros.masks import ENCODINGS, encode_mask


def seconds_to_time(seconds: float) -> Time:
    sec = int(np.floor(seconds))
    return Time(sec=sec, nanosec=min(round((seconds - sec) * 1e9), 999_999_999))


def time_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def select(inst: Instances, score_threshold: float, max_instances: int,
           class_filter: list[str]) -> np.ndarray:
    """Indices of the instances to publish: score and class filters, best `max_instances`."""
    keep = inst.scores >= score_threshold
    if class_filter:
        keep &= np.isin(np.asarray(inst.label_names, dtype=object), class_filter)
    idx = np.nonzero(keep)[0]
    order = np.argsort(-inst.scores[idx], kind="stable")
    return idx[order][:max_instances]


def instance_array(inst: Instances, index: np.ndarray, header: object,
                   mask_encoding: str = "rle") -> InstanceArray:
    """InstanceArray with the input image's header; masks cropped to their (integer) boxes, as
    COCO RLE (``mask_encoding="rle"``) or mono8 bytes, 255 = object (``"mono8"``);
    ``track_score`` NaN when the model has no track-score model (``inst.track_scores`` None)."""
    encoding = ENCODINGS[mask_encoding]
    h, w = inst.image_size
    out = InstanceArray(header=header, width=w, height=h, mask_encoding=encoding)
    track = inst.track_scores
    for i in index.tolist():
        x1, y1, x2, y2 = _int_box(inst.boxes[i], w, h)
        mask, rle = encode_mask(inst.masks[i, y1:y2, x1:x2], encoding)
        out.instances.append(Instance(
            id=int(inst.ids[i]), class_id=int(inst.labels[i]), class_name=inst.label_names[i],
            score=float(inst.scores[i]),
            track_score=float("nan") if track is None else float(track[i]),
            visibility=float(inst.visibility[i]),
            bbox=RegionOfInterest(x_offset=x1, y_offset=y1, width=x2 - x1, height=y2 - y1,
                                  do_rectify=False),
            mask=mask, mask_rle=rle,
            first_seen=seconds_to_time(float(inst.first_seen[i]))))
    return out


def _int_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (int(v) for v in box)
    x1, x2 = min(max(x1, 0), width), min(max(x2, 0), width)
    y1, y2 = min(max(y1, 0), height), min(max(y2, 0), height)
    return x1, y1, max(x2, x1), max(y2, y1)


def track_id_string(track_id: int, camera: str, id_prefix: str) -> str:
    """The string id of a track in vision_msgs: ``id_prefix`` (``{camera}`` replaced) + id."""
    return id_prefix.format(camera=camera) + str(int(track_id))


def detection_array(inst: Instances, index: np.ndarray, header: object, camera: str,
                    id_prefix: str) -> Detection2DArray:
    """vision_msgs/Detection2DArray of the published instances (module docstring)."""
    out = Detection2DArray(header=header)
    for i in index.tolist():
        x1, y1, x2, y2 = (float(v) for v in inst.boxes[i])
        det = Detection2D(header=header, id=track_id_string(int(inst.ids[i]), camera, id_prefix))
        det.bbox.center.position.x = (x1 + x2) / 2.0
        det.bbox.center.position.y = (y1 + y2) / 2.0
        det.bbox.center.theta = 0.0
        det.bbox.size_x = x2 - x1
        det.bbox.size_y = y2 - y1
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(int(inst.labels[i]))
        hyp.hypothesis.score = float(inst.scores[i])
        det.results.append(hyp)
        out.detections.append(det)
    return out


def label_info(class_names: list[str], threshold: float, stamp: Time | None = None
               ) -> LabelInfo:
    """vision_msgs/LabelInfo: class index -> name, and the node's score threshold.

    Raises ValueError when there are more classes than a uint16 class id can number."""
    if len(class_names) > 65535:
        raise ValueError(f"{len(class_names)} classes do not fit LabelInfo's uint16 class ids")
    msg = LabelInfo(threshold=float(threshold))
    if stamp is not None:
        msg.header.stamp = stamp
    msg.class_map = [VisionClass(class_id=k, class_name=name)
                     for k, name in enumerate(class_names)]
    return msg


def label_image(inst: Instances, index: np.ndarray) -> np.ndarray:
    """(H, W) int64 track id per pixel, 0 = background (track ids start at 1); where masks
    overlap the higher score wins."""
    h, w = inst.image_size
    labels = np.zeros((h, w), np.int64)
    for i in index[::-1].tolist():  # lowest score first, best written last
        labels[inst.masks[i]] = int(inst.ids[i])
    return labels


def overlay(rgb: np.ndarray, inst: Instances, index: np.ndarray) -> np.ndarray:
    """The frame with each published instance tinted in a colour fixed by its id, and its box."""
    out = rgb.astype(np.float32)
    for i in index.tolist():
        colour = _colour(int(inst.ids[i]))
        m = inst.masks[i]
        out[m] = 0.45 * out[m] + 0.55 * colour
        x1, y1, x2, y2 = (int(v) for v in inst.boxes[i])
        out[y1:y2, [x1, max(x2 - 1, x1)]] = colour
        out[[y1, max(y2 - 1, y1)], x1:x2] = colour
    return out.clip(0, 255).astype(np.uint8)


def _colour(track_id: int) -> np.ndarray:
    rng = np.random.default_rng(track_id * 7919 + 17)
    c = rng.uniform(60, 255, 3)
    c[track_id % 3] = 255
    return c.astype(np.float32)
