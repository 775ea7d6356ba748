"""``sensor_msgs/Image`` -> RGB (``image_to_rgb``): every encoding of the table, row padding,
byte order, zero copy for unpadded rgb8."""

from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import Image

from spvis_ros.image_conversion.encodings import _BAYER_CODES, _NV_DECODE, _YUV422_DECODE, _layout
from spvis_ros.image_conversion.errors import ImageConversionError, show
from spvis_ros.image_conversion.fields import (
    DEFAULT_MAX_PIXELS,
    _bigendian_field,
    _byte_view,
    _check_max_pixels,
    _check_size,
    _field,
    _strided,
    _uint_field,
)
from spvis_ros.image_conversion.pixels import (
    _channels_to_rgb,
    _float_to_u8,
    _native,
    _top_byte,
    _yuv444_to_rgb,
)


def image_to_rgb(msg: Image, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 on_decoder_message: object = None) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to an (H, W, 3) uint8 RGB array (C-contiguous).

    See the module docstring for the encodings and the depth/channel rules. The result may share
    memory with ``msg.data`` (rgb8 without row padding); copy it before writing to it if the
    message must stay intact. ``on_decoder_message`` is accepted for the same signature as
    ``compressed_to_rgb`` and unused (no codec runs).

    Raises:
        ImageConversionError: unsupported encoding, empty or too large image (``max_pixels``),
            ``step`` shorter than a row, ``data`` shorter than ``step * rows``, odd sizes where the
            encoding needs even ones, or ``data``/``is_bigendian`` of the wrong type.
    """
    del on_decoder_message
    max_pixels = _check_max_pixels(max_pixels)
    height = _uint_field(msg, "height")
    width = _uint_field(msg, "width")
    encoding = _field(msg, "encoding", "Image")
    lay = _layout(encoding)
    _check_size(height, width, max_pixels)
    big = _bigendian_field(msg) and lay.itemsize > 1
    step = _uint_field(msg, "step")
    row_bytes = width * lay.pixel_bytes
    if step < row_bytes:
        raise ImageConversionError(
            f"Image.step={step} is shorter than a row: width {width} * {lay.pixel_bytes} "
            f"bytes per pixel ({encoding}) = {row_bytes}")
    if lay.kind in ("yuv422", "nv") and width % 2:
        raise ImageConversionError(f"Image.width={width} must be even for encoding {encoding}")
    if lay.kind == "nv" and lay.order != "nv24" and height % 2:
        raise ImageConversionError(f"Image.height={height} must be even for encoding {encoding}")
    rows = {"nv12": height * 3 // 2, "nv21": height * 3 // 2, "nv24": height * 3}.get(
        lay.order, height) if lay.kind == "nv" else height
    buf = _byte_view(_field(msg, "data", "Image"), "Image.data")
    if buf.size < step * rows:
        raise ImageConversionError(
            f"Image.data has {buf.size} bytes, fewer than step*rows = {step}*{rows} = "
            f"{step * rows} ({encoding}, {width}x{height})")

    try:
        if lay.kind == "packed":
            if lay.scalar[0] == "f":
                dtype = np.dtype(f"{'>' if big else '<'}f{lay.itemsize}")
                values = _strided(buf, (height, width, lay.channels), dtype,
                                  (step, lay.pixel_bytes, lay.itemsize))
                shown = values[:, :, :1] if lay.order in ("grey", "c2") else values[:, :, :3]
                return _channels_to_rgb(_float_to_u8(shown), lay.order)
            return _channels_to_rgb(_top_byte(buf, lay, big, height, width, step), lay.order)
        if lay.kind == "bayer":
            if lay.itemsize == 1:
                mosaic = _strided(buf, (height, width), np.uint8, (step, 1))
                return cv2.cvtColor(mosaic, _BAYER_CODES[lay.order])
            mosaic = _native(_strided(buf, (height, width), np.dtype(">u2" if big else "<u2"),
                                      (step, 2)))
            return (cv2.cvtColor(mosaic, _BAYER_CODES[lay.order]) >> 8).astype(np.uint8)
        if lay.kind == "yuv422":
            packed = _strided(buf, (height, width, 2), np.uint8, (step, 2, 1))
            return cv2.cvtColor(packed, _YUV422_DECODE[lay.order])
        if lay.order in _NV_DECODE:
            planes = _strided(buf, (rows, width), np.uint8, (step, 1))
            return cv2.cvtColor(planes, _NV_DECODE[lay.order])
        luma = _strided(buf, (height, width), np.uint8, (step, 1))
        chroma = _strided(buf, (height, width, 2), np.uint8, (2 * step, 2, 1),
                          offset=step * height)
        return _yuv444_to_rgb(np.dstack([luma, chroma]))
    except cv2.error as exc:
        raise ImageConversionError(
            f"OpenCV could not convert Image.encoding={show(encoding)} ({width}x{height}): "
            f"{exc.err}") from None
