"""sensor_msgs images <-> numpy arrays without cv_bridge (the node's input and the bag tools).

Every decoder returns an (H, W, 3) uint8 RGB array, C-contiguous. Decisions, in one place:

Raw ``sensor_msgs/Image`` (``image_to_rgb``)
- Named encodings: rgb8, rgba8, bgr8, bgra8, mono8, rgb16, rgba16, bgr16, bgra16, mono16,
  bayer_{rggb,bggr,gbrg,grbg}{8,16}, yuv422 (= uyvy), uyvy, yuv422_yuy2 (= yuyv), yuyv, nv12,
  nv21, nv24. Generic OpenCV-style encodings: (8U|8S|16U|16S|32S|32F|64F)C[1-4] (``C`` with no
  count means one channel, as in sensor_msgs' regex). Names are matched case-insensitively after
  stripping blanks.
- Depth to 8 bits: unsigned integers keep their most significant byte (16-bit: ``v >> 8``);
  signed integers are first shifted into the unsigned range (``v + 2**(n-1)``, so the order of
  values is kept) and then keep their top byte. cv_bridge scales 16 -> 8 bit by 255/65535
  instead; the two differ by at most 1. Floats (32F, 64F) are taken to lie in [0, 1]:
  ``round(255 * v)`` clipped to [0, 255], NaN -> 0 (cv_bridge has no such rule).
- Channels of generic encodings: C1 is grey; C2 shows channel 0 as grey; C3 is read as BGR and C4
  as BGRA (OpenCV's channel order, which is what a driver publishing ``cv::Mat`` data under a
  generic encoding holds). Alpha is dropped, never blended.
- Bayer is demosaiced with OpenCV's bilinear method (the same codes cv_bridge uses: rggb ->
  COLOR_BayerBG2RGB, bggr -> BayerRG, gbrg -> BayerGR, grbg -> BayerGB); 16-bit bayer is
  demosaiced at 16 bits, then ``>> 8``.
- YUV 4:2:2 (uyvy/yuyv; width must be even) and NV12/NV21 (4:2:0; width and height even) use
  OpenCV's BT.601 limited-range conversions. NV12/NV21 use the planar layout of
  sensor_msgs ``getHeightScaling`` (common_interfaces #264): a Y plane of ``height`` rows of
  ``step`` bytes, then ``height / 2`` rows of ``step`` bytes of interleaved chroma (UV for NV12,
  VU for NV21); ``step >= width``. NV24 (4:4:4) is read as a Y plane of ``height`` rows of
  ``step`` bytes followed by ``height`` rows of ``2 * step`` bytes of interleaved UV (the same
  height scaling, 3), converted with the same BT.601 limited-range coefficients.
- ``step`` may exceed the packed row length (padding is skipped); ``data`` may be longer than
  ``step * rows`` (the excess is ignored) but not shorter. ``is_bigendian`` (0 or 1) applies to
  every multi-byte type. ``data`` may be bytes, bytearray, memoryview, array.array (typecode
  'B' or 'b'), a 1-D uint8 numpy array (rosbags) or a list/tuple of ints in [0, 255].
- Zero copy where possible: for rgb8 without row padding the result is a view of ``msg.data``
  (writeable exactly when that buffer is); every other path builds one new array, reading the
  message through strided views (no intermediate copies of the whole buffer).

``sensor_msgs/CompressedImage`` (``compressed_to_rgb``)
- Decoded with ``cv2.imdecode(..., IMREAD_UNCHANGED)``; 16-bit results (16-bit PNG/TIFF) keep
  their top byte, float results (TIFF) use the [0, 1] rule above.
- Channel order of the decoded array, read from ``format``. image_transport's compressed
  publisher (ros-perception/image_transport_plugins, compressed_image_transport/src/
  compressed_publisher.cpp) writes ``"<encoding>; <codec> compressed <target>"`` where it first
  converted the image to ``<target>`` with cv_bridge before ``cv::imencode``: colour encodings
  (rgb*/bgr*, and since kilted yuv/nv as well) are converted to ``bgr8`` for JPEG and to
  ``bgr8``/``bgr16`` for PNG; grey images become ``mono8`` for JPEG; for PNG a non-colour image
  is encoded as it is and the target is empty (``"mono16; png compressed "``); TIFF never
  converts (``"rgb8; tiff compressed "``). Since ``imdecode`` returns channels in the order
  ``imencode`` was given them, the rule here is: the decoded array is in the order of the target
  when one is named, otherwise in the order of the original encoding; a format without ``;``
  (``"jpeg"``, ``"png"``: cv_bridge's ``toCompressedImageMsg``, which converts to BGR(A) first,
  and older publishers) is decoded as grey / BGR / BGRA by channel count. This agrees with
  compressed_subscriber.cpp, which reverts "compressed bgr" to the original order and otherwise
  assumes RGB (it mis-orders ``"bgr8; tiff compressed "``; the rule here does not). A raw Bayer
  mosaic stored in PNG/TIFF (``"bayer_rggb8; png compressed "``) is demosaiced.
- ``"16UC1; compressedDepth png"`` (compressed_depth_image_transport: a 12-byte config header,
  then a 16-bit PNG) is decoded as grey; 32FC1 inverse-depth and RVL payloads are refused.
- The size is checked against ``max_pixels`` from the PNG/JPEG header before decoding (no
  decompression bombs); other codecs are checked after decoding (OpenCV's own
  CV_IO_MAX_IMAGE_PIXELS limit still applies to them).

Encoders (bags, overlays, labels)
- ``rgb_to_image`` writes any encoding ``image_to_rgb`` reads, little-endian, unpadded, chosen so
  that decoding gives the input back exactly for the lossless ones (16-bit: ``v * 257``; signed:
  the inverse of the shift; floats: ``v / 255``; alpha opaque; mono: OpenCV's RGB2GRAY weights).
- ``rgb_to_compressed`` writes what image_transport's compressed publisher would write for an
  rgb8 (or the given) image: ``"rgb8; jpeg compressed bgr8"`` / ``"rgb8; png compressed bgr8"``.
- ``labels_to_image`` writes track ids as ``32SC1`` (little-endian int32, one per pixel, 0 =
  background): exact for every id in [0, 2**31 - 1], readable by any ROS tool (cv_bridge maps it
  to CV_32SC1); an id outside that range raises instead of wrapping. 16UC1 would cap ids at 65535
  (the tracker's ids keep growing on a long run) and 64FC1/32FC1 are not exact integers in
  general. ``image_to_labels`` reads it back (also 8/16-bit unsigned single-channel images).

Every bad message raises ``ImageConversionError`` (a ``ValueError``) naming the field and value.
"""

from __future__ import annotations

import array
import operator
import re
import struct
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LABEL_ENCODING",
    "ImageConversionError",
    "compressed_to_rgb",
    "image_to_labels",
    "image_to_rgb",
    "labels_to_image",
    "rgb_to_compressed",
    "rgb_to_image",
    "supported_encodings",
]

DEFAULT_MAX_PIXELS = 4096 * 4096
LABEL_ENCODING = "32SC1"
_INT32_MAX = 2**31 - 1


class ImageConversionError(ValueError):
    """A message (or argument) that cannot be converted; the text names the field and value."""


# --------------------------------------------------------------------------------------------
# Encoding table
# --------------------------------------------------------------------------------------------
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
        raise ImageConversionError(f"{field}={encoding!r} is not a string")
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
                f"{field}={encoding!r}: depth {depth} is not a ROS image depth "
                f"(known: {', '.join(_GENERIC_SCALARS)})")
        channels = int(m.group(3)) if m.group(3) else 1
        if not 1 <= channels <= 4:
            raise ImageConversionError(
                f"{field}={encoding!r}: {channels} channels cannot be shown as RGB "
                "(supported: C1 to C4)")
        return f"{depth}C{channels}", _Layout("packed", scalar, channels, _GENERIC_ORDER[channels])
    raise ImageConversionError(
        f"{field}={encoding!r} is not a supported image encoding "
        f"(named: {', '.join(sorted(_NAMED))}; generic: 8UC1..64FC4)")


# --------------------------------------------------------------------------------------------
# Message field access
# --------------------------------------------------------------------------------------------
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
        raise ImageConversionError(f"{kind}.{name}={value!r} is not an integer")
    try:
        out = operator.index(value)
    except TypeError:
        raise ImageConversionError(f"{kind}.{name}={value!r} is not an integer") from None
    if out < 0:
        raise ImageConversionError(f"{kind}.{name}={out} is negative")
    return out


def _bigendian_field(msg: object) -> bool:
    value = _field(msg, "is_bigendian", "Image")
    if not isinstance(value, (int, np.integer)) or int(value) not in (0, 1):  # bool is an int
        raise ImageConversionError(f"Image.is_bigendian={value!r} must be 0 or 1")
    return bool(value)


def _check_max_pixels(max_pixels: object) -> int:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ImageConversionError(f"max_pixels={max_pixels!r} must be a positive integer")
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
            f"{field} is an array.array of typecode {data.typecode!r}; expected 'B'")
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        view = memoryview(data)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        if view.itemsize != 1:
            raise ImageConversionError(
                f"{field} is a memoryview of format {view.format!r}; expected bytes")
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


# --------------------------------------------------------------------------------------------
# Depth and channel handling
# --------------------------------------------------------------------------------------------
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
    raise ImageConversionError(f"internal: channel order {order!r} for {channels} channels")


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


# --------------------------------------------------------------------------------------------
# Image -> RGB
# --------------------------------------------------------------------------------------------
def image_to_rgb(msg: Image, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to an (H, W, 3) uint8 RGB array (C-contiguous).

    See the module docstring for the encodings and the depth/channel rules. The result may share
    memory with ``msg.data`` (rgb8 without row padding); copy it before writing to it if the
    message must stay intact.

    Raises:
        ImageConversionError: unsupported encoding, empty or too large image (``max_pixels``),
            ``step`` shorter than a row, ``data`` shorter than ``step * rows``, odd sizes where the
            encoding needs even ones, or ``data``/``is_bigendian`` of the wrong type.
    """
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
            f"OpenCV could not convert Image.encoding={encoding!r} ({width}x{height}): "
            f"{exc.err}") from None


# --------------------------------------------------------------------------------------------
# CompressedImage -> RGB
# --------------------------------------------------------------------------------------------
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
        raise ImageConversionError(f"CompressedImage.format={fmt!r} is not a string")
    head, sep, rest = fmt.partition(";")
    if not sep:
        codec = head.strip().lower()
        if codec not in _CODECS:
            raise ImageConversionError(
                f"CompressedImage.format={fmt!r} is not a known image codec "
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
            f"CompressedImage.format={fmt!r} is not understood: expected '<codec>' or "
            f"'<encoding>; <codec> compressed [<target>]' with a codec in "
            f"{', '.join(sorted(_CODECS))}")
    codec = m.group(1).lower()
    order_source = m.group(2) or original
    field = "CompressedImage.format (target)" if m.group(2) else "CompressedImage.format (encoding)"
    try:
        lay = _layout(order_source, field)
    except ImageConversionError as exc:
        raise ImageConversionError(f"{exc} in CompressedImage.format={fmt!r}") from None
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


def _decode(payload: np.ndarray, fmt: str, max_pixels: int) -> np.ndarray:
    if payload.size == 0:
        raise ImageConversionError(f"CompressedImage.data is empty (format={fmt!r})")
    size = _png_size(payload) or _jpeg_size(payload)
    if size is not None:
        _check_size(size[1], size[0], max_pixels, "CompressedImage")
    try:
        image = cv2.imdecode(payload, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageConversionError(
            f"CompressedImage.data ({payload.size} bytes, format={fmt!r}) could not be "
            f"decoded: {exc.err}") from None
    if image is None or image.size == 0:
        raise ImageConversionError(
            f"CompressedImage.data ({payload.size} bytes, format={fmt!r}) is not a decodable "
            "image (corrupt or truncated)")
    _check_size(image.shape[0], image.shape[1], max_pixels, "CompressedImage")
    return image


def compressed_to_rgb(msg: CompressedImage, *, max_pixels: int = DEFAULT_MAX_PIXELS
                      ) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG 8/16-bit grey or colour, TIFF, ...)
    to an (H, W, 3) uint8 RGB array; the channel order comes from ``format`` (module docstring).

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
                f"CompressedImage.format={fmt!r}: only '16UC1; compressedDepth png' is "
                "supported among compressedDepth payloads (not 32FC1 inverse depth or RVL)")
        if payload.size <= _DEPTH_HEADER.size:
            raise ImageConversionError(
                f"CompressedImage.data has {payload.size} bytes, no room for the "
                f"{_DEPTH_HEADER.size}-byte compressedDepth header and a PNG")
        payload = payload[_DEPTH_HEADER.size:]
    image = _array_to_u8(_decode(payload, fmt, max_pixels))
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
            f"OpenCV could not convert the decoded CompressedImage (format={fmt!r}): "
            f"{exc.err}") from None
    raise ImageConversionError(
        f"CompressedImage.data decodes to {channels} channels (format={fmt!r}); expected 1, 3 "
        "or 4")


# --------------------------------------------------------------------------------------------
# RGB -> Image / CompressedImage
# --------------------------------------------------------------------------------------------
def _check_rgb(rgb: object, name: str = "rgb") -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise ImageConversionError(f"{name} is a {type(rgb).__name__}, expected a numpy array")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(
            f"{name} has dtype {rgb.dtype} and shape {rgb.shape}; expected (H, W, 3) uint8")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageConversionError(f"{name} has shape {rgb.shape}: height and width must be > 0")
    return rgb


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


def _header_or_default(header: Header | None) -> Header:
    return Header() if header is None else header


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
        raise ImageConversionError(f"fmt={fmt!r} must be 'jpeg' or 'png'")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ImageConversionError(f"quality={quality!r} must be an integer in 1..100")
    if isinstance(png_level, bool) or not isinstance(png_level, int) or not 0 <= png_level <= 9:
        raise ImageConversionError(f"png_level={png_level!r} must be an integer in 0..9")
    allowed = {f"{base}{bits}" for base in ("rgb", "bgr", "rgba", "bgra", "mono")
               for bits in (8, 16)}
    name = encoding.strip().lower() if isinstance(encoding, str) else encoding
    if name not in allowed:
        raise ImageConversionError(
            f"encoding={encoding!r} is not one of {', '.join(sorted(allowed))}")
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
        raise ImageConversionError(f"cv2.imencode({ext!r}) failed for rgb of shape {rgb.shape}")
    msg = CompressedImage(header=_header_or_default(header),
                          format=f"{name}; {codec} compressed {target}")
    msg.data = _to_array_field(encoded)
    return msg


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------
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
            f"Image.encoding={encoding!r} is not a label image encoding "
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
