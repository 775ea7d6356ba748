"""Model outputs -> ROS messages: InstanceArray, and the overlay picture.

Thin by design: every number comes from `spvis_model.Instances`; this only lays it out.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import RegionOfInterest
from spvis_msgs.msg import Instance, InstanceArray

from spvis_model.instances import Instances


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


def instance_array(inst: Instances, index: np.ndarray, header: object) -> InstanceArray:
    """InstanceArray with the input image's header; masks cropped to their boxes (mono, 255 =
    object)."""
    h, w = inst.image_size
    out = InstanceArray(header=header, width=w, height=h)
    for i in index.tolist():
        x1, y1, x2, y2 = (int(v) for v in inst.boxes[i])
        crop = inst.masks[i, y1:y2, x1:x2]
        out.instances.append(Instance(
            id=int(inst.ids[i]), class_id=int(inst.labels[i]), class_name=inst.label_names[i],
            score=float(inst.scores[i]), visibility=float(inst.visibility[i]),
            bbox=RegionOfInterest(x_offset=x1, y_offset=y1, width=x2 - x1, height=y2 - y1,
                                  do_rectify=False),
            mask=(crop.astype(np.uint8) * 255).tobytes(),
            first_seen=seconds_to_time(float(inst.first_seen[i]))))
    return out


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
