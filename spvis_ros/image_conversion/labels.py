"""Track-id label images: ``labels_to_image`` (exact ``32SC1``) and ``image_to_labels``."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from spvis_ros.image_conversion.encodings import _layout
from spvis_ros.image_conversion.errors import ImageConversionError, show
from spvis_ros.image_conversion.fields import (
    DEFAULT_MAX_PIXELS,
    _bigendian_field,
    _byte_view,
    _check_max_pixels,
    _check_size,
    _field,
    _image_msg,
    _strided,
    _uint_field,
)

LABEL_ENCODING = "32SC1"
_INT32_MAX = 2**31 - 1

def labels_to_image(labels: np.ndarray, header: Header | None) -> Image:
    """Encode an (H, W) integer track-id image (0 = background) exactly as a ``32SC1`` Image.

    Raises:
        ImageConversionError: ``labels`` not a 2-D integer array, empty, or holding an id outside
            [0, 2**31 - 1] (the error names the id and a pixel holding it).
    """
    if not isinstance(labels, np.ndarray):
        raise ImageConversionError(
            f"labels is a {type(labels).__name__}, expected an (H, W) integer numpy array")
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise ImageConversionError(
            f"labels has dtype {labels.dtype} and shape {labels.shape}; expected (H, W) integers")
    height, width = labels.shape
    if height == 0 or width == 0:
        raise ImageConversionError(f"labels has shape {labels.shape}: height and width must be > 0")
    if labels.dtype.kind != "b":
        low, high = labels.min(), labels.max()
        if low < 0 or high > _INT32_MAX:
            bad = low if low < 0 else high
            y, x = np.argwhere(labels == bad)[0]
            raise ImageConversionError(
                f"labels[{y}, {x}]={int(bad)}: track ids must lie in [0, {_INT32_MAX}] to be "
                f"stored exactly as {LABEL_ENCODING}")
    values = labels.astype("<i4")
    return _image_msg(header, height, width, LABEL_ENCODING, 4 * width, values)


def image_to_labels(msg: Image, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a track-id image (32SC1 as ``labels_to_image`` writes it; also 8UC1/mono8,
    16UC1/mono16) back to an (H, W) int64 array, exactly.

    Raises:
        ImageConversionError: another encoding, or the size/step/data errors of ``image_to_rgb``.
    """
    max_pixels = _check_max_pixels(max_pixels)
    height = _uint_field(msg, "height")
    width = _uint_field(msg, "width")
    encoding = _field(msg, "encoding", "Image")
    lay = _layout(encoding)
    if lay.kind != "packed" or lay.channels != 1 or lay.scalar not in ("u1", "u2", "i4"):
        raise ImageConversionError(
            f"Image.encoding={show(encoding)} is not a label image encoding "
            "(32SC1, 16UC1, mono16, 8UC1 or mono8)")
    _check_size(height, width, max_pixels)
    big = _bigendian_field(msg)
    step = _uint_field(msg, "step")
    if step < width * lay.itemsize:
        raise ImageConversionError(
            f"Image.step={step} is shorter than a row: width {width} * {lay.itemsize} bytes "
            f"per pixel ({encoding}) = {width * lay.itemsize}")
    buf = _byte_view(_field(msg, "data", "Image"), "Image.data")
    if buf.size < step * height:
        raise ImageConversionError(
            f"Image.data has {buf.size} bytes, fewer than step*height = {step}*{height} = "
            f"{step * height}")
    dtype = np.dtype(f"{'>' if big else '<'}{lay.scalar}")
    return _strided(buf, (height, width), dtype, (step, lay.itemsize)).astype(np.int64)
