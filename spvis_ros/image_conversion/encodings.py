"""The encoding table: every ROS image encoding this package reads and writes, as a layout.

Named encodings (rgb8, bayer_rggb16, yuv422, nv12, ...) and the generic OpenCV-style ones
((8U|8S|16U|16S|32S|32F|64F)C[1-4]), matched case-insensitively after stripping blanks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from spvis_ros.image_conversion.errors import ImageConversionError, show


@dataclass(frozen=True)
class _Layout:
    """How an encoding lays out its pixels.

    kind: "packed" (interleaved channels), "bayer", "yuv422" or "nv" (planar 4:2:0 / 4:4:4).
    scalar: numpy kind and size of one channel value ("u1", "i2", "f4", ...).
    channels: interleaved values per pixel (2 for yuv422, 1 for bayer and the nv Y plane).
    order: "rgb", "bgr", "grey", "c2" (generic two channels), a bayer pattern ("rggb", ...),
        "uyvy" / "yuyv" or "nv12" / "nv21" / "nv24".
    """

    kind: str
    scalar: str
    channels: int
    order: str

    @property
    def itemsize(self) -> int:
        return int(self.scalar[1])

    @property
    def pixel_bytes(self) -> int:
        """Bytes of one pixel in a packed row (the Y plane for nv)."""
        return self.channels * self.itemsize


def _named_layouts() -> dict[str, _Layout]:
    table: dict[str, _Layout] = {
        "mono8": _Layout("packed", "u1", 1, "grey"),
        "mono16": _Layout("packed", "u2", 1, "grey"),
        "yuv422": _Layout("yuv422", "u1", 2, "uyvy"),
        "uyvy": _Layout("yuv422", "u1", 2, "uyvy"),
        "yuv422_yuy2": _Layout("yuv422", "u1", 2, "yuyv"),
        "yuyv": _Layout("yuv422", "u1", 2, "yuyv"),
        "nv12": _Layout("nv", "u1", 1, "nv12"),
        "nv21": _Layout("nv", "u1", 1, "nv21"),
        "nv24": _Layout("nv", "u1", 1, "nv24"),
    }
    for bits in (8, 16):
        scalar = f"u{bits // 8}"
        for order in ("rgb", "bgr"):
            table[f"{order}{bits}"] = _Layout("packed", scalar, 3, order)
            table[f"{order}a{bits}"] = _Layout("packed", scalar, 4, order)
        for pattern in ("rggb", "bggr", "gbrg", "grbg"):
            table[f"bayer_{pattern}{bits}"] = _Layout("bayer", scalar, 1, pattern)
    return table


_NAMED = _named_layouts()
_GENERIC_RE = re.compile(r"(8|16|32|64)([USF])C(\d*)", re.IGNORECASE)
_GENERIC_SCALARS = {"8U": "u1", "8S": "i1", "16U": "u2", "16S": "i2", "32S": "i4",
                    "32F": "f4", "64F": "f8"}
_GENERIC_ORDER = {1: "grey", 2: "c2", 3: "bgr", 4: "bgr"}
_COLOUR_NAMES = {name for name, lay in _NAMED.items() if lay.order in ("rgb", "bgr")}
_COLOUR_NAMES |= {"yuv422", "uyvy", "yuv422_yuy2", "yuyv", "nv12", "nv21", "nv24"}
# cv_bridge's pattern -> OpenCV code table (OpenCV names the pattern one row/column shifted).
_BAYER_CODES = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB,
                "gbrg": cv2.COLOR_BayerGR2RGB, "grbg": cv2.COLOR_BayerGB2RGB}
_YUV422_DECODE = {"uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuyv": cv2.COLOR_YUV2RGB_YUY2}
_YUV422_ENCODE = {"uyvy": cv2.COLOR_RGB2YUV_UYVY, "yuyv": cv2.COLOR_RGB2YUV_YUY2}
_NV_DECODE = {"nv12": cv2.COLOR_YUV2RGB_NV12, "nv21": cv2.COLOR_YUV2RGB_NV21}
# BT.601 limited range ("video" levels), the coefficients OpenCV's YUV 4:2:0 / 4:2:2 code uses.
_YUV2RGB = np.array([[1.164, 0.0, 1.596], [1.164, -0.391, -0.813], [1.164, 2.018, 0.0]])
_YUV_OFFSET = np.array([16.0, 128.0, 128.0])


def supported_encodings() -> list[str]:
    """Every encoding name ``image_to_rgb`` and ``rgb_to_image`` accept (generic ones spelled
    with an explicit channel count)."""
    generic = [f"{depth}C{c}" for depth in _GENERIC_SCALARS for c in range(1, 5)]
    return sorted(_NAMED) + generic


def _layout(encoding: object, field: str = "Image.encoding") -> _Layout:
    """The layout of ``encoding``; raises naming ``field`` if it is not supported."""
    return _resolve(encoding, field)[1]


def _canonical(encoding: object, field: str) -> str:
    """The spelling sensor_msgs uses ("rgb8", "16UC1"), for messages this module writes."""
    return _resolve(encoding, field)[0]


def _resolve(encoding: object, field: str) -> tuple[str, _Layout]:
    if not isinstance(encoding, str):
        raise ImageConversionError(f"{field}={show(encoding)} is not a string")
    name = encoding.strip()
    named = _NAMED.get(name.lower())
    if named is not None:
        return name.lower(), named
    m = _GENERIC_RE.fullmatch(name)
    if m is not None:
        depth = f"{m.group(1)}{m.group(2).upper()}"
        scalar = _GENERIC_SCALARS.get(depth)
        if scalar is None:
            raise ImageConversionError(
                f"{field}={show(encoding)}: depth {depth} is not a ROS image depth "
                f"(known: {', '.join(_GENERIC_SCALARS)})")
        channels = int(m.group(3)) if m.group(3) else 1
        if not 1 <= channels <= 4:
            raise ImageConversionError(
                f"{field}={show(encoding)}: {channels} channels cannot be shown as RGB "
                "(supported: C1 to C4)")
        return f"{depth}C{channels}", _Layout("packed", scalar, channels, _GENERIC_ORDER[channels])
    raise ImageConversionError(
        f"{field}={show(encoding)} is not a supported image encoding "
        f"(named: {', '.join(sorted(_NAMED))}; generic: 8UC1..64FC4)")
