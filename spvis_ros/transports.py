"""The image transports the node, the launch files and the bag tools understand: one table.

Naming follows image_transport: a camera publishes a *base* topic (``.../image_raw``) and each
transport adds its suffix to the base name *after* remapping, so remapping the base moves every
transport (``-r cam0/image_raw:=/cam/image_raw`` with ``transport:=compressed`` subscribes to
``/cam/image_raw/compressed``).

- ``raw``: ``sensor_msgs/msg/Image`` on ``<base>``; decoder ``image_to_rgb``, encoder
  ``rgb_to_image``;
- ``compressed``: ``sensor_msgs/msg/CompressedImage`` on ``<base>/compressed``; decoder
  ``compressed_to_rgb``, encoder ``rgb_to_compressed``.

The decoders and encoders are those of `spvis_ros.image_conversion`, imported on first use, so
this module (and the launch files, which read the names) needs neither rclpy nor OpenCV.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Transport:
    """One image transport.

    Attributes:
        name: the transport's name (the node's ``transport`` parameter, image_transport's
            plugin name).
        msgtype: the ROS message type, ``pkg/msg/Name``.
        suffix: appended to the base topic ("" for raw, "/compressed").
        decoder: name of the `spvis_ros.image_conversion` function that turns a message into
            (H, W, 3) uint8 RGB (keyword ``max_pixels``).
        encoder: name of the `spvis_ros.image_conversion` function that turns (H, W, 3) uint8 RGB
            and a header into a message.
        description: one line for parameter and launch-argument documentation.
    """

    name: str
    msgtype: str
    suffix: str
    decoder: str
    encoder: str
    description: str

    def topic(self, base: str) -> str:
        """The topic this transport uses for the base topic ``base``."""
        return base.rstrip("/") + self.suffix if self.suffix else base

    def message_class(self) -> type:
        """The rclpy message class (imports its Python package)."""
        pkg, _, name = self.msgtype.partition("/msg/")
        return getattr(importlib.import_module(f"{pkg}.msg"), name)

    def decode(self, msg: Any, **kwargs: Any) -> Any:
        """Message -> (H, W, 3) uint8 RGB; raises ImageConversionError naming the field."""
        return _conversion(self.decoder)(msg, **kwargs)

    def encode(self, rgb: Any, header: Any, **kwargs: Any) -> Any:
        """(H, W, 3) uint8 RGB -> message of this transport."""
        return _conversion(self.encoder)(rgb, header, **kwargs)


def _conversion(name: str) -> Callable[..., Any]:
    return getattr(importlib.import_module("spvis_ros.image_conversion"), name)


TRANSPORTS: dict[str, Transport] = {
    t.name: t for t in (
        Transport("raw", "sensor_msgs/msg/Image", "", "image_to_rgb", "rgb_to_image",
                  "sensor_msgs/Image on the base topic"),
        Transport("compressed", "sensor_msgs/msg/CompressedImage", "/compressed",
                  "compressed_to_rgb", "rgb_to_compressed",
                  "sensor_msgs/CompressedImage (JPEG/PNG) on <base>/compressed"),
    )
}
TRANSPORT_NAMES: tuple[str, ...] = tuple(TRANSPORTS)
IMAGE_TYPES: tuple[str, ...] = tuple(t.msgtype for t in TRANSPORTS.values())
DEFAULT_BASE_TOPIC = "image_raw"  # relative: camera c reads c/image_raw (image_transport naming)


def by_name(name: str) -> Transport:
    """The transport called ``name``; ValueError listing the known ones otherwise."""
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise ValueError(f"transport = {name!r}: must be one of {', '.join(TRANSPORTS)}") from None


def by_msgtype(msgtype: str) -> Transport:
    """The transport whose messages have type ``msgtype`` ("pkg/msg/Name")."""
    for transport in TRANSPORTS.values():
        if transport.msgtype == msgtype:
            return transport
    raise ValueError(f"message type {msgtype!r} is not an image type "
                     f"(known: {', '.join(IMAGE_TYPES)})")
