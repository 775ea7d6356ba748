"""``sensor_msgs/CompressedImage`` -> RGB (``compressed_to_rgb``): image_transport's format
strings, JPEG/PNG/TIFF/..., 16-bit PNG, compressedDepth PNG, decompression-bomb checks.

OpenCV's codecs (libpng, libjpeg, libtiff) write their complaints about corrupt data straight to
the process's stderr, outside any logging. The decoder captures what they write during the
decode (file descriptor 2) and hands it on: appended to the `ImageConversionError` when the
decode fails, otherwise given to the ``on_decoder_message`` callback (the node logs it through
ROS logging with the camera and stamp), or, without a callback, issued as a
`DecoderWarning`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import struct
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage

from spvis_ros.image_conversion.encodings import _BAYER_CODES, _layout
from spvis_ros.image_conversion.errors import ImageConversionError, shorten, show
from spvis_ros.image_conversion.fields import (
    DEFAULT_MAX_PIXELS,
    _byte_view,
    _check_max_pixels,
    _check_size,
    _field,
)
from spvis_ros.image_conversion.pixels import _array_to_u8, _channels_to_rgb

_CODECS = {"jpeg", "jpg", "jpe", "png", "tiff", "tif", "bmp", "dib", "webp", "jp2",
           "pbm", "pgm", "ppm", "pnm", "pxm"}
_TRANSPORT_RE = re.compile(r"\s*([A-Za-z0-9]+)\s+compressed(?:\s+(\S+))?\s*", re.IGNORECASE)
_DEPTH_RE = re.compile(r"\s*compressedDepth(?:\s+(\S+))?\s*", re.IGNORECASE)
_DEPTH_HEADER = struct.Struct("<iff")  # compressed_depth_image_transport ConfigHeader: 12 bytes


@dataclass(frozen=True)
class _CompressedFormat:
    """Parsed CompressedImage.format: codec, original encoding, order of the decoded array
    ("bgr" = OpenCV's default, "rgb", "grey" or a bayer pattern), and compressedDepth."""

    codec: str
    original: str | None
    order: str
    depth: bool = False


def _parse_format(fmt: object) -> _CompressedFormat:
    if not isinstance(fmt, str):
        raise ImageConversionError(f"CompressedImage.format={show(fmt)} is not a string")
    head, sep, rest = fmt.partition(";")
    if not sep:
        codec = head.strip().lower()
        if codec not in _CODECS:
            raise ImageConversionError(
                f"CompressedImage.format={show(fmt)} is not a known image codec "
                f"(known: {', '.join(sorted(_CODECS))}, or '<encoding>; <codec> compressed "
                "<target>' as image_transport writes it)")
        return _CompressedFormat(codec, None, "bgr")
    original = head.strip()
    depth = _DEPTH_RE.fullmatch(rest)
    if depth is not None:
        codec = (depth.group(1) or "png").lower()
        return _CompressedFormat(codec, original, "grey", depth=True)
    m = _TRANSPORT_RE.fullmatch(rest)
    if m is None or m.group(1).lower() not in _CODECS:
        raise ImageConversionError(
            f"CompressedImage.format={show(fmt)} is not understood: expected '<codec>' or "
            f"'<encoding>; <codec> compressed [<target>]' with a codec in "
            f"{', '.join(sorted(_CODECS))}")
    codec = m.group(1).lower()
    order_source = m.group(2) or original
    field = "CompressedImage.format (target)" if m.group(2) else "CompressedImage.format (encoding)"
    try:
        lay = _layout(order_source, field)
    except ImageConversionError as exc:
        raise ImageConversionError(f"{exc} in CompressedImage.format={show(fmt)}") from None
    if lay.kind == "bayer" or lay.order in ("rgb", "bgr"):
        order = lay.order
    elif lay.kind in ("yuv422", "nv"):
        order = "bgr"  # never stored raw: image_transport converts these to bgr8 first
    else:
        order = "grey"  # mono / generic C1/C2: a 3-or-4 channel result is then read as BGR(A)
    return _CompressedFormat(codec, original, order)


def _png_size(data: np.ndarray) -> tuple[int, int] | None:
    if data.size >= 24 and bytes(data[:8]) == b"\x89PNG\r\n\x1a\n" and bytes(data[12:16]) == \
            b"IHDR":
        width, height = struct.unpack(">II", bytes(data[16:24]))
        return width, height
    return None


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from the first SOF segment of a JPEG, None if not found."""
    raw = memoryview(data)  # no copy; only segment headers are read
    if bytes(raw[:2]) != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(raw):
        if raw[pos] != 0xFF:
            return None
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # standalone markers
            pos += 2
            continue
        length = int.from_bytes(raw[pos + 2:pos + 4], "big")
        if marker in _SOF_MARKERS:
            if pos + 9 > len(raw):
                return None
            height = int.from_bytes(raw[pos + 5:pos + 7], "big")
            width = int.from_bytes(raw[pos + 7:pos + 9], "big")
            return width, height
        if marker == 0xDA or length < 2:  # start of scan: no SOF before it
            return None
        pos += 2 + length
    return None


class DecoderWarning(UserWarning):
    """What an image codec wrote to stderr while decoding a message that still decoded (e.g.
    libjpeg's "Corrupt JPEG data: N extraneous bytes")."""


DecoderLog = Callable[[str], None]
_STDERR_LOCK = threading.Lock()
_sink: list = []  # one reusable temporary file, created on first use


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Send file descriptor 2 to a temporary file for the duration of the block; afterwards the
    yielded list holds what was written there (nothing if nothing was).

    One block at a time (a lock): the codecs run on the calling thread, and a concurrent write
    to stderr by another thread during the block (rare: the block lasts one decode) is captured
    with it rather than lost."""
    said: list[str] = []
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to capture
            yield said
            return
        if not _sink:
            _sink.append(tempfile.TemporaryFile())  # noqa: SIM115 - kept open for reuse
            atexit.register(_sink[0].close)
        sink = _sink[0]
        sink.seek(0)
        sink.truncate()
        sys.stderr.flush()
        try:
            os.dup2(sink.fileno(), 2)
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace").strip()
        if text:
            said.append(text)


def _decode(payload: np.ndarray, fmt: str, max_pixels: int,
            on_decoder_message: DecoderLog | None) -> np.ndarray:
    if payload.size == 0:
        raise ImageConversionError(f"CompressedImage.data is empty (format={show(fmt)})")
    size = _png_size(payload) or _jpeg_size(payload)
    if size is not None:
        _check_size(size[1], size[0], max_pixels, "CompressedImage")
    failure: str | None = None
    image = None
    with _captured_stderr() as said:
        try:
            image = cv2.imdecode(payload, cv2.IMREAD_UNCHANGED)
        except cv2.error as exc:
            failure = f"could not be decoded: {exc.err}"
    decoder = f"; the decoder said: {shorten(said[0])}" if said else ""
    if failure is None and (image is None or image.size == 0):
        failure = "is not a decodable image (corrupt or truncated)"
    if failure is not None:
        raise ImageConversionError(
            f"CompressedImage.data ({payload.size} bytes, format={show(fmt)}) {failure}{decoder}")
    if said:
        text = (f"CompressedImage.data ({payload.size} bytes, format={show(fmt)}) decoded, but "
                f"the decoder said: {shorten(said[0])}")
        if on_decoder_message is not None:
            on_decoder_message(text)
        else:
            warnings.warn(text, DecoderWarning, stacklevel=3)
    assert image is not None
    _check_size(image.shape[0], image.shape[1], max_pixels, "CompressedImage")
    return image


def compressed_to_rgb(msg: CompressedImage, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                      on_decoder_message: DecoderLog | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG 8/16-bit grey or colour, TIFF, ...)
    to an (H, W, 3) uint8 RGB array; the channel order comes from ``format`` (package docstring).

    What the codec writes to stderr is captured: part of the error when the decode fails; for
    an image that decodes anyway it goes to ``on_decoder_message`` (one line), or without it
    is issued as a `DecoderWarning`.

    Raises:
        ImageConversionError: unknown ``format``, empty or corrupt ``data``, or an image larger
            than ``max_pixels``.
    """
    max_pixels = _check_max_pixels(max_pixels)
    fmt = _field(msg, "format", "CompressedImage")
    parsed = _parse_format(fmt)
    payload = _byte_view(_field(msg, "data", "CompressedImage"), "CompressedImage.data")
    if parsed.depth:
        original = (parsed.original or "").upper()
        if parsed.codec != "png" or original != "16UC1":
            raise ImageConversionError(
                f"CompressedImage.format={show(fmt)}: only '16UC1; compressedDepth png' is "
                "supported among compressedDepth payloads (not 32FC1 inverse depth or RVL)")
        if payload.size <= _DEPTH_HEADER.size:
            raise ImageConversionError(
                f"CompressedImage.data has {payload.size} bytes, no room for the "
                f"{_DEPTH_HEADER.size}-byte compressedDepth header and a PNG")
        payload = payload[_DEPTH_HEADER.size:]
    image = _array_to_u8(_decode(payload, fmt, max_pixels, on_decoder_message))
    channels = 1 if image.ndim == 2 else image.shape[2]
    try:
        if channels == 1:
            grey = image if image.ndim == 2 else image[:, :, 0]
            if parsed.order in _BAYER_CODES:
                return cv2.cvtColor(np.ascontiguousarray(grey), _BAYER_CODES[parsed.order])
            return cv2.cvtColor(np.ascontiguousarray(grey), cv2.COLOR_GRAY2RGB)
        if channels in (3, 4):
            return _channels_to_rgb(image, "rgb" if parsed.order == "rgb" else "bgr")
    except cv2.error as exc:
        raise ImageConversionError(
            f"OpenCV could not convert the decoded CompressedImage (format={show(fmt)}): "
            f"{exc.err}") from None
    raise ImageConversionError(
        f"CompressedImage.data decodes to {channels} channels (format={show(fmt)}); expected 1, 3 "
        "or 4")
