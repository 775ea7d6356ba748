"""RGB -> messages: ``rgb_to_image`` (any encoding of the table) and ``rgb_to_compressed``
(what image_transport's compressed publisher writes)."""

from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from spvis_ros.image_conversion.encodings import (
    _COLOUR_NAMES,
    _NV_DECODE,
    _YUV2RGB,
    _YUV422_ENCODE,
    _YUV_OFFSET,
    _canonical,
    _layout,
)
from spvis_ros.image_conversion.errors import ImageConversionError, show
from spvis_ros.image_conversion.fields import _header_or_default, _image_msg, _to_array_field


def _check_rgb(rgb: object, name: str = "rgb") -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise ImageConversionError(f"{name} is a {type(rgb).__name__}, expected a numpy array")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(
            f"{name} has dtype {rgb.dtype} and shape {rgb.shape}; expected (H, W, 3) uint8")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageConversionError(f"{name} has shape {rgb.shape}: height and width must be > 0")
    return rgb


def _expand_depth(values: np.ndarray, scalar: str) -> np.ndarray:
    """uint8 values -> ``scalar`` values that the decoder maps back to exactly the same bytes:
    unsigned ``v * (2**n - 1) / 255`` (``v`` repeated in every byte, so the top byte is ``v``),
    signed the same minus ``2**(n-1)``, floats ``v / 255``."""
    kind, size = scalar[0], int(scalar[1])
    if kind == "f":
        return np.divide(values, 255.0, dtype=f"<f{size}")
    if size == 1:  # 8S: v - 128
        return (values ^ np.uint8(0x80)).view(np.int8)
    wide_type = np.uint16 if size == 2 else np.uint32
    repeated = values.astype(wide_type) * wide_type(((1 << (8 * size)) - 1) // 255)
    if kind == "i":  # subtracting 2**(n-1) modulo 2**n flips the top bit
        repeated ^= wide_type(1 << (8 * size - 1))
        return repeated.view(f"=i{size}").astype(f"<i{size}", copy=False)
    return repeated.astype(f"<u{size}", copy=False)


_RGB_TO_PACKED = {("rgb", 3): None, ("bgr", 3): cv2.COLOR_RGB2BGR,
                  ("rgb", 4): cv2.COLOR_RGB2RGBA, ("bgr", 4): cv2.COLOR_RGB2BGRA}


def rgb_to_image(rgb: np.ndarray, header: Header | None, encoding: str = "rgb8") -> Image:
    """Encode an (H, W, 3) uint8 RGB array as a ``sensor_msgs/Image`` in ``encoding``.

    Any encoding of ``supported_encodings()``; little-endian, no row padding. For rgb/bgr(a)
    8/16 bit, generic C3/C4 and float encodings, ``image_to_rgb`` returns ``rgb`` exactly; mono
    and C1/C2 hold OpenCV's RGB2GRAY grey; bayer keeps one channel per pixel; yuv/nv are lossy.

    Raises:
        ImageConversionError: ``rgb`` not (H, W, 3) uint8, an unknown encoding, or odd sizes
            where the encoding needs even ones.
    """
    rgb = _check_rgb(rgb)
    lay = _layout(encoding, "encoding")
    name = _canonical(encoding, "encoding")
    height, width = rgb.shape[:2]
    step = width * lay.pixel_bytes
    if lay.kind == "packed":
        if lay.order in ("grey", "c2"):
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            planes = grey if lay.channels == 1 else cv2.merge([grey, grey])
        else:
            code = _RGB_TO_PACKED[(lay.order, lay.channels)]
            planes = rgb if code is None else cv2.cvtColor(rgb, code)  # alpha is 255
        values = planes if lay.scalar == "u1" else _expand_depth(planes, lay.scalar)
    elif lay.kind == "bayer":
        mosaic = _bayer_mosaic(rgb, lay.order)
        values = mosaic if lay.itemsize == 1 else _expand_depth(mosaic, lay.scalar)
    else:
        if width % 2 or (lay.kind == "nv" and lay.order != "nv24" and height % 2):
            raise ImageConversionError(
                f"rgb has shape {rgb.shape}: encoding {name} needs an even width"
                f"{' and height' if lay.kind == 'nv' and lay.order != 'nv24' else ''}")
        values = _rgb_to_yuv(np.ascontiguousarray(rgb), lay.order)
    return _image_msg(header, height, width, name, step, values)


def _bayer_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """(H, W) mosaic: ``pattern`` names the colours of the 2x2 cell, row-major from (0, 0)."""
    index = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, index[colour]]
    return mosaic


def _rgb_to_yuv(rgb: np.ndarray, order: str) -> np.ndarray:
    height, width = rgb.shape[:2]
    if order in _YUV422_ENCODE:
        return cv2.cvtColor(rgb, _YUV422_ENCODE[order])
    if order in _NV_DECODE:
        i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
        luma_size, chroma_size = height * width, height * width // 4
        u = i420[luma_size:luma_size + chroma_size]
        v = i420[luma_size + chroma_size:]
        chroma = np.stack([u, v] if order == "nv12" else [v, u], axis=1)
        return np.concatenate([i420[:luma_size], chroma.reshape(-1)])
    # nv24: full-resolution BT.601 limited range, the inverse of _YUV2RGB
    inverse = np.linalg.inv(_YUV2RGB)
    matrix = np.concatenate([inverse, _YUV_OFFSET[:, None]], axis=1)
    yuv = cv2.transform(rgb, matrix)
    return np.concatenate([yuv[:, :, 0].reshape(-1), yuv[:, :, 1:].reshape(-1)])


def rgb_to_compressed(rgb: np.ndarray, header: Header | None, fmt: str = "jpeg",
                      quality: int = 90, *, encoding: str = "rgb8",
                      png_level: int = 3) -> CompressedImage:
    """Encode an (H, W, 3) uint8 RGB array as image_transport's compressed publisher would
    publish it for a raw image of ``encoding``.

    ``fmt`` is "jpeg" (``quality`` 1..100) or "png" (``png_level`` 0..9, image_transport's
    default 3). ``encoding`` is the raw image's encoding, one of rgb8, bgr8, rgba8, bgra8, mono8
    and their 16-bit forms: colour is stored as bgr8 (JPEG) or bgr8/bgr16 (PNG), grey as mono8
    (JPEG) or as it is (PNG), e.g. ``"rgb8; jpeg compressed bgr8"``, ``"mono16; png compressed "``
    (16-bit values ``v * 257``, so decoding gives ``v`` back).

    Raises:
        ImageConversionError: bad ``rgb``, ``fmt``, ``quality``, ``png_level`` or ``encoding``.
    """
    rgb = _check_rgb(rgb)
    codec = fmt.strip().lower() if isinstance(fmt, str) else fmt
    if codec not in ("jpeg", "png"):
        raise ImageConversionError(f"fmt={show(fmt)} must be 'jpeg' or 'png'")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ImageConversionError(f"quality={show(quality)} must be an integer in 1..100")
    if isinstance(png_level, bool) or not isinstance(png_level, int) or not 0 <= png_level <= 9:
        raise ImageConversionError(f"png_level={show(png_level)} must be an integer in 0..9")
    allowed = {f"{base}{bits}" for base in ("rgb", "bgr", "rgba", "bgra", "mono")
               for bits in (8, 16)}
    name = encoding.strip().lower() if isinstance(encoding, str) else encoding
    if name not in allowed:
        raise ImageConversionError(
            f"encoding={show(encoding)} is not one of {', '.join(sorted(allowed))}")
    bits = 16 if name.endswith("16") else 8
    colour = name in _COLOUR_NAMES
    if codec == "jpeg":
        target = "bgr8" if colour else "mono8"
        ext, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality]
    else:
        target = f"bgr{bits}" if colour else ""
        ext, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, png_level]
    if colour:
        stored = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    else:
        stored = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if codec == "png" and bits == 16:
        stored = _expand_depth(stored, "u2").astype(np.uint16)
    ok, encoded = cv2.imencode(ext, stored, params)
    if not ok:
        raise ImageConversionError(f"cv2.imencode({show(ext)}) failed for rgb of shape {rgb.shape}")
    msg = CompressedImage(header=_header_or_default(header),
                          format=f"{name}; {codec} compressed {target}")
    msg.data = _to_array_field(encoded)
    return msg
