"""Tests of ``spvis_ros.image_conversion``: our cv_bridge replacement.

Messages are built two ways: by the module's own encoders (round trips) and by hand in this file
with plain numpy / OpenCV calls (so a mistake shared by an encoder and its decoder is caught).
Every message passes through a real rclpy CDR serialize/deserialize before it is decoded.

Lossy encodings are compared with a smoothed 64x48 crop of a real photo (matplotlib's
grace_hopper.jpg), with bounds on the mean absolute error set about 1.5-2x above what the
correct conversion gives and far below what a wrong channel order / Bayer pattern / chroma order
gives (each test asserts that gap too, so the bound is shown to discriminate).
"""

from __future__ import annotations

import array
import os
import struct
import time
from typing import Any

import numpy as np
import pytest

try:
    import cv2
    import rclpy  # noqa: F401  (import check: the ROS runtime must be installed)
    from matplotlib import cbook
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header

    from spvis_ros.image_conversion import (
        DEFAULT_MAX_PIXELS,
        LABEL_ENCODING,
        ImageConversionError,
        compressed_to_rgb,
        image_to_labels,
        image_to_rgb,
        labels_to_image,
        rgb_to_compressed,
        rgb_to_image,
        supported_encodings,
    )
except ImportError as exc:
    if os.environ.get("SPVIS_ALLOW_NO_ROS") == "1":
        pytest.skip(f"SPVIS_ALLOW_NO_ROS=1 and {exc}", allow_module_level=True)
    raise

pytestmark = pytest.mark.ros

GENERIC_DEPTHS = ("8U", "8S", "16U", "16S", "32S", "32F", "64F")
COLOUR_LOSSLESS = ["rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16"] + [
    f"{d}C{c}" for d in GENERIC_DEPTHS for c in (3, 4)]
GREY_LOSSLESS = ["mono8", "mono16"] + [f"{d}C{c}" for d in GENERIC_DEPTHS for c in (1, 2)]
BAYER = [f"bayer_{p}{b}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)]
YUV = ["yuv422", "uyvy", "yuv422_yuy2", "yuyv", "nv12", "nv21", "nv24"]
# Mean absolute error bounds (8-bit levels) on the smoothed photo; measured for the correct
# conversion: bayer 3.2, yuv422 1.3, nv12/21 2.4, nv24 0.4 (pure rounding). Wrong pattern /
# order: 23-31 / 69 / 34.
MEAN_ERR = {"bayer": 5.0, "yuv422": 2.5, "nv": 4.0, "nv24": 1.0}
WRONG_FACTOR = 4  # a wrong pattern/order must be at least this many times the bound
JPEG_MIN_PSNR = 32.0  # q90 on the smoothed photo: 35.6 dB; R/B swapped: 14 dB


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """48x64 RGB uint8 from a real photograph (detail everywhere: good for exactness)."""
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return cv2.cvtColor(cv2.resize(bgr, (64, 48), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def smooth(photo: np.ndarray) -> np.ndarray:
    """The photo blurred (sigma 1 px): what demosaicing and chroma subsampling assume."""
    return cv2.GaussianBlur(photo, (0, 0), 1.0)


def grey_rgb(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[:, :, None], 3, axis=2)


def wire(msg: Any) -> Any:
    """The message as a subscriber gets it: CDR serialize + deserialize through rclpy."""
    out = deserialize_message(serialize_message(msg), type(msg))
    assert isinstance(out.data, array.array)
    return out


def raw(height: int, width: int, encoding: str, step: int, data: bytes,
        big: bool = False) -> Image:
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(big), step=step)
    msg.data = array.array("B", data)
    return msg


def compressed(fmt: str, payload: bytes | np.ndarray) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", bytes(payload))
    return msg


class _Duck:
    """A message-like object (rosbags messages are not rclpy classes)."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def mean_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def pad_rows(data: bytes, row_bytes: int, rows: int, pad: int, seed: int = 0) -> bytes:
    """Rows of ``row_bytes`` followed by ``pad`` random garbage bytes each, plus a garbage
    tail (``data`` may be longer than ``step * rows``)."""
    rng = np.random.default_rng(seed)
    body = np.frombuffer(data, np.uint8)[:row_bytes * rows].reshape(rows, row_bytes)
    garbage = rng.integers(0, 256, (rows, pad), dtype=np.uint8)
    tail = rng.integers(0, 256, 13, dtype=np.uint8)
    return np.concatenate([body, garbage], axis=1).tobytes() + tail.tobytes()


def check_decodes(msg: Image, expected: np.ndarray) -> np.ndarray:
    out = image_to_rgb(wire(msg))
    assert out.dtype == np.uint8 and out.shape == expected.shape
    assert out.flags.c_contiguous
    return out


# --------------------------------------------------------------------------------------------
# Lossless round trips and hand-built messages
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", COLOUR_LOSSLESS)
def test_colour_round_trip_is_exact(photo: np.ndarray, encoding: str) -> None:
    msg = rgb_to_image(photo, Header(frame_id="cam"), encoding)
    assert msg.encoding == encoding and msg.is_bigendian == 0
    assert msg.header.frame_id == "cam"
    assert len(msg.data) == msg.step * msg.height
    np.testing.assert_array_equal(check_decodes(msg, photo), photo)


@pytest.mark.parametrize("encoding", GREY_LOSSLESS)
def test_grey_round_trip_is_exact(photo: np.ndarray, encoding: str) -> None:
    msg = rgb_to_image(photo, None, encoding)
    np.testing.assert_array_equal(check_decodes(msg, photo), grey_rgb(photo))


def test_every_supported_encoding_round_trips(smooth: np.ndarray) -> None:
    """Nothing in supported_encodings() is left untested by one of the families above."""
    families = set(COLOUR_LOSSLESS) | set(GREY_LOSSLESS) | set(BAYER) | set(YUV)
    assert set(supported_encodings()) == families
    for encoding in supported_encodings():
        out = image_to_rgb(wire(rgb_to_image(smooth, None, encoding)))
        ref = grey_rgb(smooth) if encoding in GREY_LOSSLESS else smooth
        assert mean_err(out, ref) < 5.0, encoding


def _hand_packed(rgb: np.ndarray, encoding: str, big: bool) -> tuple[bytes, int]:
    """Encode ``rgb`` without the module: values and channel order spelled out here."""
    order = {"rgb8": "rgb", "rgb16": "rgb", "rgba16": "rgba", "bgr8": "bgr", "bgra8": "bgra",
             "bgr16": "bgr", "mono16": "grey", "16UC3": "bgr", "16SC4": "bgra", "32SC1": "grey",
             "32FC3": "bgr", "64FC1": "grey", "8SC3": "bgr"}[encoding]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    r, g, b = (rgb[:, :, i].astype(np.int64) for i in range(3))
    alpha = np.full_like(r, 255)
    planes = {"rgb": [r, g, b], "rgba": [r, g, b, alpha], "bgr": [b, g, r],
              "bgra": [b, g, r, alpha], "grey": [grey.astype(np.int64)]}[order]
    v = np.stack(planes, axis=2)
    end = ">" if big else "<"
    if encoding.endswith("8") and not encoding.startswith("8S"):
        values = v.astype(np.uint8)
    elif encoding == "8SC3":
        values = (v - 128).astype("i1")
    elif encoding in ("rgb16", "rgba16", "bgr16", "mono16", "16UC3"):
        values = (v * 257).astype(f"{end}u2")
    elif encoding == "16SC4":
        values = (v * 257 - 32768).astype(f"{end}i2")
    elif encoding == "32SC1":
        values = (v * 16843009 - 2**31).astype(f"{end}i4")
    elif encoding == "32FC3":
        values = (v / 255.0).astype(f"{end}f4")
    else:  # 64FC1
        values = (v / 255.0).astype(f"{end}f8")
    return values.tobytes(), rgb.shape[1] * v.shape[2] * values.dtype.itemsize


@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "bgra8", "rgb16", "rgba16", "bgr16",
                                      "mono16", "16UC3", "16SC4", "32SC1", "32FC3", "64FC1",
                                      "8SC3"])
def test_hand_built_messages(photo: np.ndarray, encoding: str, big: bool) -> None:
    data, step = _hand_packed(photo, encoding, big)
    expected = grey_rgb(photo) if encoding in ("mono16", "32SC1", "64FC1") else photo
    out = check_decodes(raw(48, 64, encoding, step, data, big), expected)
    np.testing.assert_array_equal(out, expected)
    if encoding == "rgb8":  # and the encoder writes exactly these bytes
        assert bytes(rgb_to_image(photo, None, "rgb8").data) == data


def test_big_endian_is_respected_not_ignored() -> None:
    """The same bytes give different pixels when is_bigendian flips."""
    data = np.array([[0x12AB, 0xFF00]], ">u2").tobytes()  # bytes 12 AB FF 00
    big = image_to_rgb(raw(1, 2, "mono16", 4, data, big=True))[0, :, 0]
    little = image_to_rgb(raw(1, 2, "mono16", 4, data, big=False))[0, :, 0]
    assert big.tolist() == [0x12, 0xFF]
    assert little.tolist() == [0xAB, 0x00]


def test_sixteen_bit_keeps_the_top_byte() -> None:
    """16 -> 8 bit is v >> 8 (0x12FF -> 0x12), not rounding v / 257 (which gives 0x13)."""
    values = np.array([[0x0000, 0x00FF, 0x12FF, 0xFFFF]], "<u2")
    out = image_to_rgb(raw(1, 4, "mono16", 8, values.tobytes()))
    assert out[0, :, 0].tolist() == [0x00, 0x00, 0x12, 0xFF]
    assert (out[0, :, 0:1] == out[0]).all()  # grey in all three channels


def test_signed_and_float_rules() -> None:
    cases = {
        "8SC1": (np.array([-128, -1, 0, 127], "i1"), [0, 127, 128, 255]),
        "16SC1": (np.array([-32768, -1, 0, 32767], "<i2"), [0, 127, 128, 255]),
        "32SC1": (np.array([-(2**31), -1, 0, 2**31 - 1], "<i4"), [0, 127, 128, 255]),
        "32FC1": (np.array([-0.5, 0.0, 0.2, 0.5, 1.0, 2.0, np.nan, np.inf, -np.inf], "<f4"),
                  [0, 0, 51, 128, 255, 255, 0, 255, 0]),
        "64FC1": (np.array([0.0, 1 / 255, 0.999, 1.5], "<f8"), [0, 1, 255, 255]),
    }
    for encoding, (values, expected) in cases.items():
        out = image_to_rgb(raw(1, values.size, encoding, values.nbytes, values.tobytes()))
        assert out[0, :, 0].tolist() == expected, encoding


def test_generic_channel_conventions() -> None:
    """C2: channel 0 as grey; C3: BGR; C4: BGRA with the alpha dropped."""
    c2 = image_to_rgb(raw(1, 1, "8UC2", 2, bytes([40, 200])))
    assert c2[0, 0].tolist() == [40, 40, 40]
    c3 = image_to_rgb(raw(1, 1, "8UC3", 3, bytes([1, 2, 3])))
    assert c3[0, 0].tolist() == [3, 2, 1]
    c4 = image_to_rgb(raw(1, 1, "8UC4", 4, bytes([1, 2, 3, 0])))
    assert c4[0, 0].tolist() == [3, 2, 1]
    rgba = image_to_rgb(raw(1, 1, "rgba8", 4, bytes([1, 2, 3, 0])))
    assert rgba[0, 0].tolist() == [1, 2, 3]
    # "8UC" (no count) is one channel, like sensor_msgs' regex; names are case-insensitive
    assert image_to_rgb(raw(1, 1, "8UC", 1, b"\x07"))[0, 0].tolist() == [7, 7, 7]
    assert image_to_rgb(raw(1, 1, "RGB8", 3, b"\x01\x02\x03"))[0, 0].tolist() == [1, 2, 3]


# --------------------------------------------------------------------------------------------
# Bayer, YUV
# --------------------------------------------------------------------------------------------
def _hand_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Bayer mosaic built here: ``pattern`` gives the colours of the top-left 2x2 cell."""
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, "rgb".index(colour)]
    return mosaic


@pytest.mark.parametrize("encoding", BAYER)
def test_bayer(smooth: np.ndarray, encoding: str) -> None:
    pattern, bits = encoding[6:10], int(encoding[10:])
    mosaic = _hand_mosaic(smooth, pattern)
    for big in ((False, True) if bits == 16 else (False,)):
        if bits == 8:
            data, step = mosaic.tobytes(), 64
        else:  # low byte set to garbage: only the top byte may matter after demosaicing
            data = (mosaic.astype(np.int64) * 256 + 0x80).astype(">u2" if big else "<u2")
            data, step = data.tobytes(), 128
        out = check_decodes(raw(48, 64, encoding, step, data, big), smooth)
        # each pixel keeps the colour its photosite measured (interior: no border effects)
        for k, colour in enumerate(pattern):
            dy, dx = divmod(k, 2)
            sites = (slice(2 + dy, -2, 2), slice(2 + dx, -2, 2), "rgb".index(colour))
            diff = np.abs(out[sites].astype(int) - smooth[sites].astype(int))
            assert diff.max() <= (0 if bits == 8 else 1), (encoding, colour)
        assert mean_err(out, smooth) < MEAN_ERR["bayer"]
        np.testing.assert_allclose(out, image_to_rgb(rgb_to_image(smooth, None, encoding)),
                                   atol=1)
    for wrong in {"rggb", "bggr", "gbrg", "grbg"} - {pattern}:  # measured: 23 to 31
        bad = image_to_rgb(raw(48, 64, f"bayer_{wrong}8", 64, mosaic.tobytes()))
        assert mean_err(bad, smooth) > WRONG_FACTOR * MEAN_ERR["bayer"], wrong


def _bt601(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited-range Y, U, V of one colour (the standard's formulas)."""
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return round(y), round(u), round(v)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422_byte_order(encoding: str) -> None:
    """Two pixels: black then white (luma differs), then a saturated colour pair."""
    uyvy = encoding in ("yuv422", "uyvy")

    def pair(y0: int, y1: int, u: int, v: int) -> bytes:
        return bytes([u, y0, v, y1] if uyvy else [y0, u, y1, v])

    out = image_to_rgb(wire(raw(1, 2, encoding, 4, pair(16, 235, 128, 128))))
    np.testing.assert_allclose(out[0], [[0, 0, 0], [255, 255, 255]], atol=2)
    y, u, v = _bt601((200, 30, 60))
    out = image_to_rgb(wire(raw(1, 2, encoding, 4, pair(y, y, u, v))))
    np.testing.assert_allclose(out[0], [[200, 30, 60]] * 2, atol=3)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv", "nv12", "nv21"])
def test_yuv_round_trip(smooth: np.ndarray, encoding: str) -> None:
    msg = rgb_to_image(smooth, None, encoding)
    bound = MEAN_ERR["nv" if encoding.startswith("nv") else "yuv422"]
    assert mean_err(check_decodes(msg, smooth), smooth) < bound
    swapped = {"yuv422": "yuyv", "uyvy": "yuyv", "yuv422_yuy2": "uyvy", "yuyv": "uyvy",
               "nv12": "nv21", "nv21": "nv12"}[encoding]
    msg.encoding = swapped
    assert mean_err(image_to_rgb(msg), smooth) > WRONG_FACTOR * bound


@pytest.mark.parametrize("encoding", ["nv12", "nv21", "nv24"])
def test_nv_hand_built(encoding: str) -> None:
    """2x4 image, left half one colour, right half another: plane layout and UV order."""
    left, right = (200, 30, 60), (20, 90, 220)
    (yl, ul, vl), (yr, ur, vr) = _bt601(left), _bt601(right)
    luma = bytes([yl, yl, yr, yr] * 2)
    if encoding == "nv24":  # full-resolution chroma: one UV pair per pixel, 2 rows
        chroma = bytes([ul, vl, ul, vl, ur, vr, ur, vr] * 2)
    else:  # one pair per 2x2 block: UV for nv12, VU for nv21
        chroma = bytes([ul, vl, ur, vr] if encoding == "nv12" else [vl, ul, vr, ur])
    out = image_to_rgb(wire(raw(2, 4, encoding, 4, luma + chroma)))
    expected = np.array([[left, left, right, right]] * 2)
    np.testing.assert_allclose(out, expected, atol=3)


def test_nv24_matches_nv12_coefficients(smooth: np.ndarray) -> None:
    """Where chroma is constant over 2x2 blocks, 4:2:0 subsampling loses nothing, so NV24
    (our own matrix) and NV12 (OpenCV's) must agree up to rounding."""
    blocky = cv2.resize(cv2.resize(smooth, (32, 24), interpolation=cv2.INTER_AREA), (64, 48),
                        interpolation=cv2.INTER_NEAREST)
    nv12 = image_to_rgb(rgb_to_image(blocky, None, "nv12"))
    nv24 = image_to_rgb(rgb_to_image(blocky, None, "nv24"))
    assert np.abs(nv12.astype(int) - nv24.astype(int)).max() <= 3
    assert mean_err(nv24, blocky) < MEAN_ERR["nv24"]


# --------------------------------------------------------------------------------------------
# Row padding, data types, zero copy, tiny and big images
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pad", [1, 7, 64])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba16", "mono16", "8UC3", "16SC1",
                                      "32FC3", "64FC1", "bayer_rggb8", "bayer_grbg16",
                                      "yuv422", "yuyv", "nv12", "nv21", "nv24"])
def test_row_padding_is_skipped(smooth: np.ndarray, encoding: str, pad: int) -> None:
    tight = rgb_to_image(smooth, None, encoding)
    expected = image_to_rgb(tight)
    row = tight.step
    if encoding == "nv24":  # Y rows of `step`, then chroma rows of 2 * step
        luma = pad_rows(bytes(tight.data[:row * 48]), row, 48, pad)[:(row + pad) * 48]
        chroma = pad_rows(bytes(tight.data[row * 48:]), 2 * row, 48, 2 * pad, seed=1)
        data = luma + chroma
    else:
        rows = len(tight.data) // row
        data = pad_rows(bytes(tight.data), row, rows, pad)
    padded = raw(48, 64, encoding, row + pad, data, big=False)
    np.testing.assert_array_equal(check_decodes(padded, expected), expected)


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "array", "memoryview", "list", "tuple",
                                  "numpy", "signed_array", "strided_memoryview"])
def test_data_container_types(photo: np.ndarray, kind: str) -> None:
    """rclpy stores array.array('B'); rosbags gives numpy arrays; hand-made messages and other
    libraries give bytes-likes or lists. All must decode the same."""
    bgr = photo[:, :, ::-1].tobytes()
    doubled = bytes(b for pair in zip(bgr, bytes(len(bgr)), strict=True) for b in pair)
    container: Any = {
        "bytes": lambda: bgr,
        "bytearray": lambda: bytearray(bgr),
        "array": lambda: array.array("B", bgr),
        "memoryview": lambda: memoryview(bgr),
        "list": lambda: list(bgr),
        "tuple": lambda: tuple(bgr),
        "numpy": lambda: np.frombuffer(bgr, np.uint8),
        "signed_array": lambda: array.array("b", bgr),
        "strided_memoryview": lambda: memoryview(doubled)[::2],
    }[kind]()
    msg = _Duck(height=48, width=64, encoding="bgr8", is_bigendian=0, step=64 * 3,
                data=container)  # rclpy's setter would turn every one into array.array
    np.testing.assert_array_equal(image_to_rgb(msg), photo)  # type: ignore[arg-type]
    assert bytes(container) == bgr  # the input is left as it was


def test_zero_copy_for_unpadded_rgb8(photo: np.ndarray) -> None:
    msg = wire(rgb_to_image(photo, None, "rgb8"))
    out = image_to_rgb(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    padded = raw(48, 64, "rgb8", 64 * 3 + 4, pad_rows(bytes(msg.data), 64 * 3, 48, 4))
    out = image_to_rgb(padded)
    assert not np.shares_memory(out, np.frombuffer(padded.data, np.uint8))
    assert out.flags.c_contiguous


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono16", "32FC1", "8UC4",
                                      "bayer_rggb8", "bayer_bggr16"])
def test_one_pixel(encoding: str) -> None:
    pixel = np.array([[[10, 120, 250]]], np.uint8)
    out = image_to_rgb(wire(rgb_to_image(pixel, None, encoding)))
    assert out.shape == (1, 1, 3)
    if encoding in ("rgb8", "bgr8", "8UC4"):
        np.testing.assert_array_equal(out, pixel)
    for fmt in ("png", "jpeg"):
        decoded = compressed_to_rgb(wire(rgb_to_compressed(pixel, None, fmt)))
        np.testing.assert_allclose(decoded, pixel, atol=0 if fmt == "png" else 8)


def _timed(fn: Any, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def _gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([x * 255 // width, y * 255 // height,
                      (x + y) * 255 // (width + height)]).astype(np.uint8)


def test_timings_printed() -> None:
    """Mean times (ms) over a few runs on a shared machine, for the docs; never asserted.
    Also checks that 640x480, 1080p and 4K images convert correctly."""
    lines = []
    for height, width, repeats in ((480, 640, 10), (1080, 1920, 5), (2160, 3840, 2)):
        rgb = _gradient(height, width)
        row = [f"{width}x{height}:"]
        for encoding in ("rgb8", "bgr8"):
            msg = wire(rgb_to_image(rgb, None, encoding))
            out = image_to_rgb(msg)
            np.testing.assert_array_equal(out, rgb)
            row.append(f"{encoding} {_timed(lambda m=msg: image_to_rgb(m), repeats):.2f}")
        jpeg = wire(rgb_to_compressed(rgb, None, "jpeg", 90))
        assert compressed_to_rgb(jpeg).shape == rgb.shape
        row.append(f"jpeg(q90) decode {_timed(lambda c=jpeg: compressed_to_rgb(c), repeats):.2f}")
        row.append(f"| encode rgb_to_image(bgr8) "
                   f"{_timed(lambda r=rgb: rgb_to_image(r, None, 'bgr8'), repeats):.2f} "
                   f"rgb_to_compressed(jpeg) "
                   f"{_timed(lambda r=rgb: rgb_to_compressed(r, None, 'jpeg'), repeats):.2f}")
        lines.append(" ".join(row))
    print("\nimage_conversion timings (ms):\n" + "\n".join(lines))


# --------------------------------------------------------------------------------------------
# Compressed images
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "encoding", "expected"), [
    ("jpeg", "rgb8", "rgb8; jpeg compressed bgr8"),
    ("jpeg", "bgr8", "bgr8; jpeg compressed bgr8"),
    ("jpeg", "rgba8", "rgba8; jpeg compressed bgr8"),
    ("jpeg", "mono8", "mono8; jpeg compressed mono8"),
    ("jpeg", "mono16", "mono16; jpeg compressed mono8"),
    ("png", "rgb8", "rgb8; png compressed bgr8"),
    ("png", "bgra8", "bgra8; png compressed bgr8"),
    ("png", "rgb16", "rgb16; png compressed bgr16"),
    ("png", "mono8", "mono8; png compressed "),
    ("png", "mono16", "mono16; png compressed "),
])
def test_rgb_to_compressed_writes_image_transport_formats(
        smooth: np.ndarray, fmt: str, encoding: str, expected: str) -> None:
    msg = rgb_to_compressed(smooth, Header(frame_id="cam"), fmt, 90, encoding=encoding)
    assert msg.format == expected
    assert msg.header.frame_id == "cam"
    payload = np.frombuffer(msg.data, np.uint8)
    stored = cv2.imdecode(payload, cv2.IMREAD_UNCHANGED)  # what is inside, read independently
    colour = not encoding.startswith("mono")
    assert stored.ndim == (3 if colour else 2)
    assert stored.dtype == (np.uint16 if fmt == "png" and encoding.endswith("16") else np.uint8)
    ref = smooth if colour else grey_rgb(smooth)
    out = compressed_to_rgb(wire(msg))
    if fmt == "png":
        np.testing.assert_array_equal(out, ref)
        if colour:  # stored BGR, as the target says
            np.testing.assert_array_equal(stored[:, :, 0] >> (8 if stored.dtype == np.uint16
                                                               else 0), smooth[:, :, 2])
    else:
        assert cv2.PSNR(out, ref) > JPEG_MIN_PSNR


def _encode(array_: np.ndarray, ext: str, *params: int) -> np.ndarray:
    ok, buf = cv2.imencode(ext, array_, list(params))
    assert ok
    return buf


@pytest.mark.parametrize(("fmt", "stored_order", "lossless"), [
    # plain codec names (cv_bridge toCompressedImageMsg, old publishers): OpenCV's BGR
    ("png", "bgr", True),
    ("jpeg", "bgr", False),
    ("jpg", "bgr", False),
    # image_transport: colour converted to bgr8 before encoding
    ("bgr8; jpeg compressed bgr8", "bgr", False),
    ("rgb8; jpeg compressed bgr8", "bgr", False),
    ("rgb8; png compressed bgr8", "bgr", True),
    ("rgba8; png compressed bgr8", "bgr", True),
    # a producer that encoded the RGB buffer as it was, and says so
    ("rgb8; png compressed rgb8", "rgb", True),
    ("rgb8; jpeg compressed rgb8", "rgb", False),
    # TIFF is never converted: stored in the original's order
    ("rgb8; tiff compressed ", "rgb", True),
    ("bgr8; tiff compressed ", "bgr", True),
    ("8UC3; png compressed ", "bgr", True),
])
def test_compressed_channel_order(smooth: np.ndarray, fmt: str, stored_order: str,
                                  lossless: bool) -> None:
    stored = smooth if stored_order == "rgb" else cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR)
    codec = fmt.rsplit(";", maxsplit=1)[-1].split(maxsplit=1)[0]
    ext = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "tiff": ".tiff"}[codec]
    out = compressed_to_rgb(wire(compressed(fmt, _encode(stored, ext))))
    assert out.shape == smooth.shape and out.flags.c_contiguous
    if lossless:
        np.testing.assert_array_equal(out, smooth)
    else:
        assert cv2.PSNR(out, smooth) > JPEG_MIN_PSNR
        assert cv2.PSNR(np.ascontiguousarray(out[:, :, ::-1]), smooth) < JPEG_MIN_PSNR - 10


@pytest.mark.parametrize("fmt", ["mono16; png compressed ", "mono16; png compressed mono16",
                                 "16UC1; png compressed ", "png"])
def test_compressed_sixteen_bit_grey(smooth: np.ndarray, fmt: str) -> None:
    grey = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    values = (grey.astype(np.uint16) << 8) | 0xAB  # the low byte must not change the result
    out = compressed_to_rgb(wire(compressed(fmt, _encode(values, ".png"))))
    np.testing.assert_array_equal(out, grey_rgb(smooth))


def test_compressed_sixteen_bit_colour_and_grey_eight_bit(smooth: np.ndarray) -> None:
    bgr16 = cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR).astype(np.uint16) * 256 + 0x7F
    out = compressed_to_rgb(compressed("rgb16; png compressed bgr16", _encode(bgr16, ".png")))
    np.testing.assert_array_equal(out, smooth)
    grey = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    for fmt in ("mono8; png compressed ", "png", "mono8; jpeg compressed mono8", "jpeg"):
        ext = ".png" if "png" in fmt else ".jpg"
        out = compressed_to_rgb(compressed(fmt, _encode(grey, ext, cv2.IMWRITE_JPEG_QUALITY, 95)))
        if ext == ".png":
            np.testing.assert_array_equal(out, grey_rgb(smooth))
        else:
            assert cv2.PSNR(out, grey_rgb(smooth)) > JPEG_MIN_PSNR


def test_compressed_alpha_is_dropped(smooth: np.ndarray) -> None:
    bgra = cv2.cvtColor(smooth, cv2.COLOR_RGB2BGRA)
    bgra[:, :, 3] = 17
    np.testing.assert_array_equal(compressed_to_rgb(compressed("png", _encode(bgra, ".png"))),
                                  smooth)


def test_compressed_raw_bayer_png(smooth: np.ndarray) -> None:
    """image_transport stores a bayer image in PNG without conversion ("... compressed ")."""
    mosaic = _hand_mosaic(smooth, "grbg")
    out = compressed_to_rgb(compressed("bayer_grbg8; png compressed ", _encode(mosaic, ".png")))
    np.testing.assert_array_equal(out, image_to_rgb(raw(48, 64, "bayer_grbg8", 64,
                                                        mosaic.tobytes())))


def test_compressed_depth_png(smooth: np.ndarray) -> None:
    depth = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY).astype(np.uint16) << 8
    header = struct.pack("<iff", 0, 0.0, 0.0)  # compressed_depth_image_transport ConfigHeader
    payload = header + _encode(depth, ".png").tobytes()
    for fmt in ("16UC1; compressedDepth png", "16UC1; compressedDepth"):
        out = compressed_to_rgb(wire(compressed(fmt, payload)))
        np.testing.assert_array_equal(out, grey_rgb(smooth))


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int32, np.uint16, np.uint8])
def test_labels_are_exact(dtype: type) -> None:
    rng = np.random.default_rng(3)
    high = min(np.iinfo(dtype).max, 2**31 - 1)
    labels = rng.integers(0, high, (30, 41), endpoint=True).astype(dtype)
    labels[0, 0], labels[0, 1], labels[5, 5] = 0, high, 1
    msg = wire(labels_to_image(labels, Header(frame_id="cam")))
    assert msg.encoding == LABEL_ENCODING == "32SC1"
    assert (msg.height, msg.width, msg.step, msg.is_bigendian) == (30, 41, 41 * 4, 0)
    assert bytes(msg.data) == labels.astype("<i4").tobytes()
    back = image_to_labels(msg)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, labels.astype(np.int64))


def test_label_readback_of_other_encodings() -> None:
    values = np.array([[0, 7, 65535]], ">u2")
    msg = raw(1, 3, "16UC1", 6, values.tobytes(), big=True)
    assert image_to_labels(msg).tolist() == [[0, 7, 65535]]


# --------------------------------------------------------------------------------------------
# Errors: every bad message raises ImageConversionError naming the field and value
# --------------------------------------------------------------------------------------------
def _ok_fields() -> dict[str, Any]:
    return {"height": 2, "width": 3, "encoding": "rgb8", "is_bigendian": 0, "step": 9,
            "data": bytes(18)}


@pytest.mark.parametrize(("changes", "pattern"), [
    ({"encoding": "foo"}, r"Image\.encoding='foo' is not a supported"),
    ({"encoding": ""}, r"Image\.encoding='' is not a supported"),
    ({"encoding": "8UC5", "step": 30, "data": bytes(60)}, r"Image\.encoding='8UC5': 5 chan"),
    ({"encoding": "32UC1"}, r"Image\.encoding='32UC1': depth 32U"),
    ({"encoding": 5}, r"Image\.encoding=5 is not a string"),
    ({"width": 0}, r"height=2, width=0"),
    ({"height": 0}, r"height=0, width=3"),
    ({"step": 8}, r"Image\.step=8 is shorter than a row: width 3 \* 3"),
    ({"data": bytes(17)}, r"Image\.data has 17 bytes, fewer than step\*rows = 9\*2 = 18"),
    ({"step": 12, "data": bytes(20)}, r"Image\.data has 20 bytes.*12\*2 = 24"),
    ({"is_bigendian": 2}, r"Image\.is_bigendian=2 must be 0 or 1"),
    ({"data": "abc"}, r"Image\.data is a str"),
    ({"data": [0] * 17 + [300]}, r"Image\.data holds 300"),
    ({"data": array.array("H", [0] * 18)}, r"Image\.data is an array\.array of typecode 'H'"),
    ({"data": np.zeros(18, np.float32)}, r"Image\.data is a numpy array of dtype float32"),
    ({"encoding": "yuv422", "step": 6, "data": bytes(12)}, r"Image\.width=3 must be even"),
    ({"encoding": "nv12", "width": 2, "height": 3, "step": 2, "data": bytes(9)},
     r"Image\.height=3 must be even"),
    ({"encoding": "nv12", "width": 2, "step": 2, "data": bytes(5)},
     r"Image\.data has 5 bytes.*2\*3 = 6"),
    ({"height": -1}, r"Image\.height=-1 is negative"),
    ({"step": 9.0}, r"Image\.step=9\.0 is not an integer"),
])
def test_image_errors_name_field_and_value(changes: dict[str, Any], pattern: str) -> None:
    msg = _Duck(**{**_ok_fields(), **changes})
    with pytest.raises(ImageConversionError, match=pattern):
        image_to_rgb(msg)  # type: ignore[arg-type]


def test_max_pixels_and_missing_fields() -> None:
    msg = raw(100, 200, "mono8", 200, bytes(20000))
    with pytest.raises(ImageConversionError, match=r"width\*height=200\*100=20000 > "
                                                   r"max_pixels=19999"):
        image_to_rgb(msg, max_pixels=19999)
    assert image_to_rgb(msg, max_pixels=20000).shape == (100, 200, 3)
    with pytest.raises(ImageConversionError, match=r"max_pixels=0 must be a positive"):
        image_to_rgb(msg, max_pixels=0)
    huge = _Duck(height=70000, width=70000, encoding="rgb8", is_bigendian=0, step=210000,
                 data=b"")  # rejected on the header alone, nothing allocated
    with pytest.raises(ImageConversionError, match=f"max_pixels={DEFAULT_MAX_PIXELS}"):
        image_to_rgb(huge)  # type: ignore[arg-type]
    with pytest.raises(ImageConversionError, match=r"Image\.height is missing: got a str"):
        image_to_rgb("not a message")  # type: ignore[arg-type]
    with pytest.raises(ImageConversionError, match=r"CompressedImage\.format is missing"):
        compressed_to_rgb(msg)  # type: ignore[arg-type]


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming the given size (no pixel data follows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"


def _jpeg_claiming(width: int, height: int, photo: np.ndarray) -> bytes:
    """A real JPEG whose SOF0 segment is patched to claim another size."""
    data = bytearray(_encode(photo, ".jpg").tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_compressed_errors(photo: np.ndarray) -> None:
    png = _encode(photo, ".png").tobytes()
    cases: list[tuple[str, bytes, str]] = [
        ("h264", png, r"CompressedImage\.format='h264' is not a known image codec"),
        ("", png, r"CompressedImage\.format='' is not a known image codec"),
        ("rgb8; zstd compressed bgr8", png, r"CompressedImage\.format='rgb8; zstd compressed "
                                            r"bgr8' is not understood"),
        ("rgb8; png compressed foo8", png, r"target\)='foo8'.*format='rgb8; png compressed "
                                          r"foo8'"),
        ("foo; png compressed ", png, r"encoding\)='foo'"),
        ("32FC1; compressedDepth", png, r"format='32FC1; compressedDepth': only '16UC1"),
        ("16UC1; compressedDepth rvl", png, r"compressedDepth rvl': only"),
        ("16UC1; compressedDepth png", b"\0" * 12, r"CompressedImage\.data has 12 bytes"),
        ("png", b"", r"CompressedImage\.data is empty \(format='png'\)"),
        ("png", b"definitely not an image", r"CompressedImage\.data \(23 bytes, format='png'\)"
                                            r" is not a decodable image"),
        ("jpeg", png[: len(png) // 3], r"CompressedImage\.data \(\d+ bytes, format='jpeg'\)"),
        ("png", _png_header(100000, 100000), r"width\*height=100000\*100000=10000000000 > "
                                              r"max_pixels=16777216"),
        ("jpeg", _jpeg_claiming(60000, 50000, photo), r"width\*height=60000\*50000"),
    ]
    for fmt, payload, pattern in cases:
        with pytest.raises(ImageConversionError, match=pattern):
            compressed_to_rgb(compressed(fmt, payload))
    with pytest.raises(ImageConversionError, match=r"width\*height=64\*48=3072 > max_pixels=3000"):
        compressed_to_rgb(compressed("png", png), max_pixels=3000)
    with pytest.raises(ImageConversionError, match=r"CompressedImage\.format=7 is not a str"):
        compressed_to_rgb(_Duck(format=7, data=png))  # type: ignore[arg-type]


def test_encoder_argument_errors(photo: np.ndarray) -> None:
    cases = [
        (lambda: rgb_to_image(photo[:, :, 0], None), r"rgb has dtype uint8 and shape \(48, 64\)"),
        (lambda: rgb_to_image(photo.astype(np.float32), None), r"rgb has dtype float32"),
        (lambda: rgb_to_image(photo[:0], None), r"rgb has shape \(0, 64, 3\)"),
        (lambda: rgb_to_image(photo, None, "foo"), r"encoding='foo' is not a supported"),
        (lambda: rgb_to_image(photo[:, :63], None, "uyvy"), r"shape \(48, 63, 3\): encoding "
                                                            r"uyvy needs an even width"),
        (lambda: rgb_to_compressed(photo, None, "gif"), r"fmt='gif' must be 'jpeg' or 'png'"),
        (lambda: rgb_to_compressed(photo, None, "jpeg", 0), r"quality=0 must be"),
        (lambda: rgb_to_compressed(photo, None, "png", png_level=10), r"png_level=10 must be"),
        (lambda: rgb_to_compressed(photo, None, encoding="8UC3"), r"encoding='8UC3' is not one"),
        (lambda: labels_to_image(np.array([[0, 2**31]]), None),
         r"labels\[0, 1\]=2147483648: track ids must lie in \[0, 2147483647\]"),
        (lambda: labels_to_image(np.array([[3, -1]]), None), r"labels\[0, 1\]=-1"),
        (lambda: labels_to_image(np.zeros((2, 2), np.float32), None), r"labels has dtype float32"),
        (lambda: labels_to_image(np.zeros((2, 2, 1), np.int64), None), r"shape \(2, 2, 1\)"),
        (lambda: labels_to_image([[1]], None), r"labels is a list"),
        (lambda: image_to_labels(rgb_to_image(photo, None)), r"Image\.encoding='rgb8' is not a "
                                                             r"label image encoding"),
    ]
    for call, pattern in cases:
        with pytest.raises(ImageConversionError, match=pattern):
            call()


def test_fuzzed_messages_raise_only_image_conversion_error(photo: np.ndarray) -> None:
    """Random headers over random bytes, and damaged JPEG/PNG payloads: either a correct-shape
    RGB array or ImageConversionError, never another exception (nor a crash)."""
    rng = np.random.default_rng(11)
    encodings = [*supported_encodings(), "8UC", "16FC1", "rgb9", "RGB8 "]
    decoded = 0
    for _ in range(400):
        height, width = (int(v) for v in rng.integers(0, 9, 2))
        encoding = encodings[int(rng.integers(len(encodings)))]
        step = int(rng.integers(0, 80))
        data = rng.integers(0, 256, int(rng.integers(0, 700)), dtype=np.uint8).tobytes()
        msg = raw(height, width, encoding, step, data, big=bool(rng.integers(2)))
        try:
            out = image_to_rgb(msg)
        except ImageConversionError:
            continue
        assert out.shape == (height, width, 3) and out.dtype == np.uint8
        decoded += 1
    assert decoded > 20  # the fuzzer reaches the decoders, not only the checks
    payloads = [_encode(photo, ".jpg").tobytes(), _encode(photo, ".png").tobytes()]
    for _ in range(60):
        payload = bytearray(payloads[int(rng.integers(2))])
        cut = int(rng.integers(1, len(payload)))
        payload = payload[:cut] if rng.integers(2) else payload
        for _ in range(int(rng.integers(0, 4))):
            payload[int(rng.integers(len(payload)))] = int(rng.integers(256))
        try:
            out = compressed_to_rgb(compressed("jpeg", bytes(payload)))
        except ImageConversionError:
            continue
        assert out.ndim == 3 and out.shape[2] == 3


# --------------------------------------------------------------------------------------------
# Long values and codec output
# --------------------------------------------------------------------------------------------
def test_megabyte_field_values_give_short_messages(photo: np.ndarray) -> None:
    """A 1 MB encoding or format string used to make a 1 MB error (and log) line."""
    msg = rgb_to_image(photo, None, "rgb8")
    msg.encoding = "y" * 1_000_000
    with pytest.raises(ImageConversionError) as info:
        image_to_rgb(msg)
    assert len(str(info.value)) < 600 and "1000002 characters" in str(info.value)
    comp = rgb_to_compressed(photo, None, "jpeg")
    comp.format = "jpeg; " + "z" * 1_000_000
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb(comp)
    assert len(str(info.value)) < 600


_DECODE_SCRIPT = r"""
import sys
import numpy as np
from spvis_ros.image_conversion import ImageConversionError, compressed_to_rgb, rgb_to_compressed
rgb = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
said = []
for fmt in ("png", "jpeg", "jpeg-extra"):
    msg = rgb_to_compressed(rgb, None, fmt.split("-")[0])
    data = bytearray(bytes(msg.data))
    if fmt == "jpeg-extra":
        data[-2:-2] = bytes(40)  # bytes before the end marker: decodes, libjpeg complains
    else:
        for i in range(40, min(len(data), 400), 7):
            data[i] ^= 0x5A
    msg.data = bytes(data)
    try:
        compressed_to_rgb(msg, on_decoder_message=said.append)
        print(fmt, "decoded")
    except ImageConversionError as exc:
        print(fmt, "error:", exc)
print("callback:", said)
"""


def test_codec_stderr_output_is_captured_and_passed_on(tmp_path) -> None:
    """libpng / libjpeg complaints used to be written straight to the process's stderr; now
    nothing reaches stderr, and the text ends up in the error or the callback."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _DECODE_SCRIPT], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    out = done.stdout
    assert "png error:" in out and "the decoder said: libpng error" in out, out
    assert "jpeg error:" in out and "the decoder said: Corrupt JPEG data" in out, out
    assert "jpeg-extra decoded" in out, out
    assert "decoded, but the decoder said: Corrupt JPEG data" in out.split("callback:")[1], out


def test_decoder_output_without_a_callback_is_a_warning(photo: np.ndarray) -> None:
    from spvis_ros.image_conversion import DecoderWarning

    msg = rgb_to_compressed(photo, None, "jpeg")
    data = bytearray(bytes(msg.data))
    data[-2:-2] = b"\x00" * 40  # bytes before the EOI marker: "extraneous bytes"
    msg.data = bytes(data)
    with pytest.warns(DecoderWarning, match="Corrupt JPEG data"):
        compressed_to_rgb(msg)
