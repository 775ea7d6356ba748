"""Message field access and buffers: checked reads of Image / CompressedImage fields, byte
views of ``data`` (bytes, bytearray, memoryview, array.array, numpy, lists), and building
unpadded little-endian messages."""

from __future__ import annotations

import array
import operator
from typing import Any

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from spvis_ros.image_conversion.errors import ImageConversionError, show

DEFAULT_MAX_PIXELS = 4096 * 4096


def _field(msg: object, name: str, kind: str) -> Any:
    try:
        return getattr(msg, name)
    except AttributeError:
        raise ImageConversionError(
            f"{kind}.{name} is missing: got a {type(msg).__name__}, not a sensor_msgs/{kind}"
        ) from None


def _uint_field(msg: object, name: str, kind: str = "Image") -> int:
    value = _field(msg, name, kind)
    if isinstance(value, bool):
        raise ImageConversionError(f"{kind}.{name}={show(value)} is not an integer")
    try:
        out = operator.index(value)
    except TypeError:
        raise ImageConversionError(f"{kind}.{name}={show(value)} is not an integer") from None
    if out < 0:
        raise ImageConversionError(f"{kind}.{name}={out} is negative")
    return out


def _bigendian_field(msg: object) -> bool:
    value = _field(msg, "is_bigendian", "Image")
    if not isinstance(value, (int, np.integer)) or int(value) not in (0, 1):  # bool is an int
        raise ImageConversionError(f"Image.is_bigendian={show(value)} must be 0 or 1")
    return bool(value)


def _check_max_pixels(max_pixels: object) -> int:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ImageConversionError(f"max_pixels={show(max_pixels)} must be a positive integer")
    return max_pixels


def _check_size(height: int, width: int, max_pixels: int, kind: str = "Image") -> None:
    if height == 0 or width == 0:
        raise ImageConversionError(
            f"{kind} is empty: height={height}, width={width} (both must be > 0)")
    if height * width > max_pixels:
        raise ImageConversionError(
            f"{kind} is too large: width*height={width}*{height}={width * height} > "
            f"max_pixels={max_pixels}")


def _byte_view(data: object, field: str) -> np.ndarray:
    """``data`` as a 1-D uint8 array, sharing memory with it whenever it has a byte buffer."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise ImageConversionError(
                f"{field} is a numpy array of dtype {data.dtype} and shape {data.shape}; "
                "expected 1-D uint8")
        return np.ascontiguousarray(data)
    if isinstance(data, array.array) and data.typecode not in ("B", "b"):
        raise ImageConversionError(
            f"{field} is an array.array of typecode {show(data.typecode)}; expected 'B'")
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        view = memoryview(data)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        if view.itemsize != 1:
            raise ImageConversionError(
                f"{field} is a memoryview of format {show(view.format)}; expected bytes")
        return np.frombuffer(view.cast("B"), dtype=np.uint8)
    if isinstance(data, (list, tuple)):
        try:
            values = np.asarray(data, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ImageConversionError(f"{field} is a {type(data).__name__} of non-integers: "
                                       f"{exc}") from None
        if values.ndim != 1:
            raise ImageConversionError(f"{field} is a nested {type(data).__name__}")
        if values.size and (values.min() < 0 or values.max() > 255):
            bad = values[(values < 0) | (values > 255)][0]
            raise ImageConversionError(f"{field} holds {int(bad)}, outside the byte range 0..255")
        return values.astype(np.uint8)
    raise ImageConversionError(
        f"{field} is a {type(data).__name__}; expected bytes, bytearray, memoryview, "
        "array.array('B'), a uint8 numpy array or a list of ints")


def _strided(buf: np.ndarray, shape: tuple[int, ...], dtype: np.dtype | str,
             strides: tuple[int, ...], offset: int = 0) -> np.ndarray:
    """A view into ``buf`` (bounds were validated by the caller; numpy checks them again)."""
    return np.ndarray(shape=shape, dtype=dtype, buffer=buf, offset=offset, strides=strides)


def _to_array_field(values: np.ndarray) -> array.array:
    """A contiguous array's bytes as array.array('B'), the type rclpy's generated setters store
    without checking every element in Python."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values).data.cast("B"))
    return out


def _image_msg(header: Header | None, height: int, width: int, encoding: str, step: int,
               values: np.ndarray) -> Image:
    """An unpadded little-endian Image; ``data`` assigned after construction (the generated
    constructor would copy the buffer once more)."""
    msg = Image(header=_header_or_default(header), height=height, width=width,
                encoding=encoding, is_bigendian=0, step=step)
    msg.data = _to_array_field(values)
    return msg


def _header_or_default(header: Header | None) -> Header:
    return Header() if header is None else header
