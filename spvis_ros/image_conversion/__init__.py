"""sensor_msgs images <-> numpy arrays without cv_bridge (the node's input and the bag tools).

Modules: `encodings` (the encoding table), `fields` (message fields and buffers), `pixels`
(depth and channel rules), `raw` (Image -> RGB), `compressed` (CompressedImage -> RGB),
`encoders` (RGB -> Image / CompressedImage), `labels` (track-id images), `errors`. Everything
public is re-exported here; import from ``spvis_ros.image_conversion``.

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

Every bad message raises ``ImageConversionError`` (a ``ValueError``) naming the field and value;
values are quoted shortened (at most about 80 characters), so a 1 MB ``encoding`` or ``format``
string gives a short message. Decoder output that OpenCV's codecs write to stderr is captured
and passed on (see `compressed`).
"""

from __future__ import annotations

from spvis_ros.image_conversion.compressed import DecoderWarning, compressed_to_rgb
from spvis_ros.image_conversion.encoders import rgb_to_compressed, rgb_to_image
from spvis_ros.image_conversion.encodings import supported_encodings
from spvis_ros.image_conversion.errors import ImageConversionError, show
from spvis_ros.image_conversion.fields import DEFAULT_MAX_PIXELS
from spvis_ros.image_conversion.labels import LABEL_ENCODING, image_to_labels, labels_to_image
from spvis_ros.image_conversion.raw import image_to_rgb

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LABEL_ENCODING",
    "DecoderWarning",
    "ImageConversionError",
    "compressed_to_rgb",
    "image_to_labels",
    "image_to_rgb",
    "labels_to_image",
    "rgb_to_compressed",
    "rgb_to_image",
    "show",
    "supported_encodings",
]
