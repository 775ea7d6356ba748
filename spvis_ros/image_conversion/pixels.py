"""Depth and channel rules shared by the decoders: the top byte of integers, floats in [0, 1]
to 8 bits, channel orders to RGB, byte order, YUV 4:4:4."""

from __future__ import annotations

import cv2
import numpy as np

from spvis_ros.image_conversion.encodings import _YUV2RGB, _YUV_OFFSET, _Layout
from spvis_ros.image_conversion.errors import ImageConversionError, show
from spvis_ros.image_conversion.fields import _strided


def _top_byte(buf: np.ndarray, lay: _Layout, big: bool, height: int, width: int,
              step: int) -> np.ndarray:
    """(H, W, C) uint8 view of the most significant byte of each integer value; no copy."""
    size = lay.itemsize
    msb = 0 if (big or size == 1) else size - 1
    view = _strided(buf, (height, width, lay.channels), np.uint8,
                    (step, lay.pixel_bytes, size), offset=msb)
    if lay.scalar[0] == "i":  # v + 2**(n-1) only flips the sign bit of the top byte
        view = view ^ np.uint8(0x80)
    return view


def _float_to_u8(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8: round(255 v) clipped, NaN -> 0; a new contiguous array."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN are handled below
        scaled = np.multiply(values, 255.0,
                             dtype=np.float64 if values.itemsize > 4 else np.float32)
    np.nan_to_num(scaled, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint8)


def _array_to_u8(image: np.ndarray) -> np.ndarray:
    """Any decoded OpenCV image (uint8/16, int, float) -> uint8 with the module's depth rules."""
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind == "f":
        return _float_to_u8(image)
    if image.dtype.kind in "ui":
        bits = 8 * image.dtype.itemsize
        if image.dtype.kind == "i":
            image = image.astype(np.int64) + (1 << (bits - 1))
        return (image >> (bits - 8)).astype(np.uint8)
    raise ImageConversionError(f"decoded image has unsupported dtype {image.dtype}")


def _channels_to_rgb(image: np.ndarray, order: str) -> np.ndarray:
    """(H, W, C) or (H, W) uint8 in ``order`` -> contiguous (H, W, 3) RGB."""
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    unit_stride = image.strides[2] == 1 and image.strides[1] == channels
    if channels == 1 or order in ("grey", "c2"):
        grey = image[:, :, 0]
        if grey.strides[1] == 1:
            return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
        out = np.empty((*grey.shape, 3), np.uint8)
        out[...] = grey[:, :, None]
        return out
    if order == "rgb":
        return np.ascontiguousarray(image[:, :, :3])
    if order == "bgr":
        if unit_stride:
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGB)
        return np.ascontiguousarray(image[:, :, 2::-1])
    raise ImageConversionError(f"internal: channel order {show(order)} for {channels} channels")


def _native(view: np.ndarray) -> np.ndarray:
    """``view`` in native byte order and aligned (what OpenCV needs); copies only if needed."""
    if view.dtype.byteorder not in ("=", "|") and view.dtype.byteorder != (
            "<" if np.little_endian else ">"):
        return view.astype(view.dtype.newbyteorder("="))
    if not view.flags.aligned:
        return view.copy()
    return view


def _yuv444_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 Y, U, V (BT.601 limited range) -> RGB uint8."""
    matrix = np.concatenate([_YUV2RGB, (-_YUV2RGB @ _YUV_OFFSET)[:, None]], axis=1)
    return cv2.transform(np.ascontiguousarray(yuv), matrix)
