"""Real photographs shipped inside installed packages, made into backgrounds and class textures.

The synthetic generator (`spvis_model.data.synthetic`) draws no procedural noise as texture:
every background and every object texture is cut from one of these photos. They are the sample
images that the scikit-image wheel installs under ``skimage/data/`` (found on disk; skimage itself
is never imported). Licences as stated in scikit-image's ``skimage/data/_fetchers.py``:

=================  =====================================================  ========================
name (file)        what                                                   licence
=================  =====================================================  ========================
coffee             coffee cup, Rachel Michetti (Pikolo Espresso Bar)      CC0
chelsea            Chelsea the cat, Stefan van der Walt                   CC0
astronaut          Eileen Collins, NASA Great Images                      public domain (NASA)
rocket             DSCOVR launch on Falcon 9, SpaceX                      public domain (SpaceX)
retina             fundus photograph, Mikael Häggström (Wikimedia)        CC0 1.0
brick              brick wall, CC0Textures "Bricks25"                     CC0
grass              grass, linolafett (DeviantArt)                         CC0
gravel             gravel, CC0Textures "Gravel04"                         CC0
hubble_deep_field  Hubble eXtreme Deep Field, NASA                        public domain (NASA)
camera             cameraman, Lav Varshney                                CC0
=================  =====================================================  ========================

Backgrounds use the four colour scenes (coffee, chelsea, astronaut, rocket) in their own colours,
cut by a `CanvasCrop` (window, flip, colour jitter), which also cuts every frame of a real video
background (`spvis_model.data.real_scene`) the same way.
Object textures use the other six photos as luminance patterns mapped through a per-class colour
ramp (`class_texture`), so the texture family (vessels, bricks, blades of grass, pebbles, star
field, photo detail) and the colour both tell the classes apart.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from spvis_model.data.real_media import media_dir_override

SKIMAGE_HINT = ("the synthetic generator cuts its textures from the photos that the scikit-image "
                "wheel ships in skimage/data/: pip install scikit-image==0.26.0 "
                "(requirements.txt)")


@dataclass(frozen=True)
class Photo:
    """One packaged photo: where it is, what it shows and its licence.

    `region` is the part of the photo used, (x0, y0, x1, y1) as fractions of width and height
    (the retina photo, for example, has a black border that is left out).
    """

    name: str
    file: str
    description: str
    licence: str
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)


PHOTOS: dict[str, Photo] = {p.name: p for p in (
    Photo("coffee", "coffee.png", "coffee cup, Rachel Michetti (Pikolo Espresso Bar)", "CC0"),
    Photo("chelsea", "chelsea.png", "Chelsea the cat, Stefan van der Walt", "CC0"),
    Photo("astronaut", "astronaut.png", "Eileen Collins, NASA Great Images",
          "public domain (NASA)"),
    Photo("rocket", "rocket.jpg", "DSCOVR launch on Falcon 9, SpaceX", "public domain (SpaceX)"),
    Photo("retina", "retina.jpg", "fundus photograph, Mikael Häggström (Wikimedia Commons)",
          "CC0 1.0", (0.22, 0.22, 0.78, 0.78)),
    Photo("brick", "brick.png", "brick wall, CC0Textures Bricks25", "CC0"),
    Photo("grass", "grass.png", "grass, linolafett (DeviantArt)", "CC0"),
    Photo("gravel", "gravel.png", "gravel, CC0Textures Gravel04", "CC0"),
    Photo("hubble_deep_field", "hubble_deep_field.jpg", "Hubble eXtreme Deep Field, NASA",
          "public domain (NASA)"),
    Photo("camera", "camera.png", "cameraman, Lav Varshney", "CC0"),
)}

BACKGROUNDS: tuple[str, ...] = ("coffee", "chelsea", "astronaut", "rocket")
"""Photos used as scene backgrounds (and, in other crops, as unlabelled occluders)."""


def photo_dir() -> Path:
    """The folder holding the packaged photos (``skimage/data`` of the installed wheel).

    With ``SPVIS_MEDIA_DIR`` set, ``$SPVIS_MEDIA_DIR/scikit-image`` instead (and only that;
    `spvis_model.data.real_media.MEDIA_DIR_ENV`). Raises ModuleNotFoundError with an install
    hint when scikit-image is not installed.
    """
    override = media_dir_override("scikit-image")
    if override is not None:
        return override
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"scikit-image is not installed: {SKIMAGE_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def photo_path(name: str) -> Path:
    """Path of photo `name` (a key of `PHOTOS`); raises ValueError or FileNotFoundError."""
    if name not in PHOTOS:
        raise ValueError(f"photo name {name!r} is not one of {sorted(PHOTOS)}")
    path = photo_dir() / PHOTOS[name].file
    if not path.is_file():
        raise FileNotFoundError(f"packaged photo {name!r} missing at {str(path)!r}: "
                                f"{SKIMAGE_HINT}")
    return path


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """Photo `name` as read-only RGB uint8 (H, W, 3), cropped to its `region`."""
    path = photo_path(name)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"OpenCV could not read packaged photo {str(path)!r}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    x0, y0, x1, y1 = PHOTOS[name].region
    h, w = rgb.shape[:2]
    rgb = np.ascontiguousarray(rgb[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)])
    rgb.setflags(write=False)
    return rgb


@functools.cache
def luminance_pattern(name: str) -> np.ndarray:
    """Photo `name` as luminance, read-only float32 (H, W) in [0, 1]."""
    lum = cv2.cvtColor(load_photo(name), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    lum.setflags(write=False)
    return lum


def _random_crop(rng: np.random.Generator, img: np.ndarray, out_w: int, out_h: int,
                 zoom: float) -> np.ndarray:
    """A crop of `img` covering (out_w * zoom, out_h * zoom) source pixels (shrunk to fit the
    photo, aspect kept), at a random place, resized to (out_h, out_w)."""
    h, w = img.shape[:2]
    cw, ch = out_w * zoom, out_h * zoom
    fit = min(1.0, w / cw, h / ch)
    cw, ch = max(2, int(cw * fit)), max(2, int(ch * fit))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    crop = img[y0:y0 + ch, x0:x0 + cw]
    interp = cv2.INTER_AREA if cw > out_w else cv2.INTER_LINEAR
    return cv2.resize(crop, (out_w, out_h), interpolation=interp)


@dataclass(frozen=True)
class CanvasCrop:
    """Where and how a background canvas is cut from a source image, drawn once so that every
    frame of a real video gets the same crop, flip and colour change.

    Attributes:
        x0, y0, crop_w, crop_h: the source window in pixels.
        out_w, out_h: the canvas size.
        flip: mirror the canvas horizontally.
        saturation, gain, offset: colour change; canvas = grey + (rgb - grey) * saturation,
            then * gain + offset (grey levels), clipped to [0, 255].
    """

    x0: int
    y0: int
    crop_w: int
    crop_h: int
    out_w: int
    out_h: int
    flip: bool
    saturation: float
    gain: float
    offset: float

    @staticmethod
    def draw(rng: np.random.Generator, src_w: int, src_h: int, out_w: int, out_h: int,
             scale: tuple[float, float] = (0.6, 1.0), jitter: float = 1.0) -> CanvasCrop:
        """A random crop with the canvas' aspect ratio covering `scale` (min, max) of the
        largest such window of the source, random flip and colour jitter (`jitter` scales the
        saturation, gain and offset changes: 1 = full; 0 = none and no flip either, the
        picture as it is).

        The draws (and, with the defaults, their values) are those of `background_canvas`.
        """
        fit = min(src_w / out_w, src_h / out_h)
        zoom = fit * float(rng.uniform(*scale))
        cw, ch = out_w * zoom, out_h * zoom
        shrink = min(1.0, src_w / cw, src_h / ch)
        cw, ch = max(2, int(cw * shrink)), max(2, int(ch * shrink))
        x0 = int(rng.integers(0, src_w - cw + 1))
        y0 = int(rng.integers(0, src_h - ch + 1))
        flip = bool(rng.random() < 0.5) and jitter > 0
        saturation = float(rng.uniform(0.7, 1.15))
        gain, offset = float(rng.uniform(0.8, 1.15)), float(rng.uniform(-15, 15))
        if jitter != 1.0:
            saturation = 1.0 + jitter * (saturation - 1.0)
            gain = 1.0 + jitter * (gain - 1.0)
            offset = jitter * offset
        return CanvasCrop(x0, y0, cw, ch, out_w, out_h, flip, saturation, gain, offset)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The (out_h, out_w, 3) uint8 RGB canvas cut from `image` (RGB uint8 (H, W, 3), at
        least the size the crop was drawn for)."""
        crop = image[self.y0:self.y0 + self.crop_h, self.x0:self.x0 + self.crop_w]
        interp = cv2.INTER_AREA if self.crop_w > self.out_w else cv2.INTER_LINEAR
        canvas = cv2.resize(crop, (self.out_w, self.out_h), interpolation=interp)
        if self.flip:
            canvas = canvas[:, ::-1]
        canvas = canvas.astype(np.float32)
        grey = canvas.mean(axis=2, keepdims=True)
        canvas = grey + (canvas - grey) * self.saturation
        return np.clip(canvas * self.gain + self.offset, 0, 255).astype(np.uint8)

    def apply_fast(self, image: np.ndarray) -> np.ndarray:
        """`apply` with the colour change as one 3x4 colour matrix (``cv2.transform``, rounded
        instead of truncated, so within 1 grey level of `apply`): several times faster, for
        cutting every frame of a real video. Same input and output as `apply`."""
        crop = image[self.y0:self.y0 + self.crop_h, self.x0:self.x0 + self.crop_w]
        interp = cv2.INTER_AREA if self.crop_w > self.out_w else cv2.INTER_LINEAR
        canvas = cv2.resize(crop, (self.out_w, self.out_h), interpolation=interp)
        if self.flip:
            canvas = cv2.flip(canvas, 1)
        if self.saturation == 1.0 and self.gain == 1.0 and self.offset == 0.0:
            return canvas
        s, g = self.saturation, self.gain
        matrix = np.full((3, 4), g * (1.0 - s) / 3.0)
        matrix[:, 3] = self.offset
        for c in range(3):
            matrix[c, c] += g * s
        return cv2.transform(canvas, matrix)


def background_canvas(rng: np.random.Generator, name: str, width: int, height: int
                      ) -> np.ndarray:
    """A (height, width, 3) uint8 RGB background cut from photo `name`: a random crop of 60-100%
    of the photo's shorter side, random horizontal flip, brightness/contrast/saturation jitter."""
    photo = load_photo(name)
    ph, pw = photo.shape[:2]
    return CanvasCrop.draw(rng, pw, ph, width, height).apply(photo)


TEXTURE_STD = 0.2
"""Standard deviation of every texture crop's pattern on the [0, 1] colour ramp."""


def class_texture(rng: np.random.Generator, source: str, size: int, zoom: float,
                  dark: tuple[int, int, int], light: tuple[int, int, int],
                  colour_jitter: float = 0.1) -> np.ndarray:
    """A (size, size, 3) uint8 RGB texture: a random crop of photo `source`'s luminance
    (covering about size * zoom photo pixels, randomly rotated by a multiple of 90 degrees and
    flipped), normalised to mean 0.5 and standard deviation `TEXTURE_STD` (so a dark or flat
    part of the photo still shows its pattern and every instance sits mid-ramp), then mapped
    linearly from the colour `dark` (0) to `light` (1).

    `colour_jitter` scales both ramp ends per channel by up to +-that fraction, so instances of
    one class differ a little while keeping their class colour.
    """
    crop = _random_crop(rng, luminance_pattern(source), size, size, zoom)
    pattern = 0.5 + (crop - crop.mean()) * (TEXTURE_STD / max(float(crop.std()), 0.02))
    pattern = np.clip(pattern, 0.0, 1.0)
    pattern = np.rot90(pattern, int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        pattern = pattern[:, ::-1]
    jitter = 1.0 + rng.uniform(-colour_jitter, colour_jitter, size=3)
    lo = np.clip(np.asarray(dark, np.float32) * jitter, 0, 255)
    hi = np.clip(np.asarray(light, np.float32) * jitter, 0, 255)
    rgb = lo + (hi - lo) * pattern[..., None]
    return np.ascontiguousarray(np.clip(rgb, 0, 255).astype(np.uint8))
