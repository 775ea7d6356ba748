"""`SyntheticConfig`: every knob of the synthetic video generator, its checks and the presets.

A config is checked by `SyntheticConfig.validate()`; a bad value raises `ConfigError` naming the
field and the value. `preset(name)` gives the named configs ("easy", "medium", "hard",
"heldout", "real_mix", "real_heldout"). The renderer is `spvis_model.data.synthetic`, the
dataset writer and `spvis generate` `spvis_model.data.synthetic_dataset`; docs/synthetic.md
lists every field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spvis_model.config import ConfigError
from spvis_model.data.real_media import DEFAULT_TRAIN_MEDIA, MEDIA
from spvis_model.data.real_movers import CUTOUTS
from spvis_model.data.shapes import CLASS_NAMES
from spvis_model.data.textures import BACKGROUNDS

PRESETS: tuple[str, ...] = ("easy", "medium", "hard", "heldout", "real_mix", "real_heldout")
REAL_FIELDS: tuple[str, ...] = ("real_backgrounds", "empty_prob", "real_occluders", "real_media",
                                "real_video_prob", "real_crop", "real_jitter")
"""The real-footage options. `dataset_json` leaves them out of ``info.config`` while all are
at their defaults, so configs without real footage write the same bytes as before they
existed."""
MOVER_FIELDS: tuple[str, ...] = ("movers", "mover_cutouts", "mover_size")
"""The moving-people options (`spvis_model.data.real_movers`), left out of ``info.config``
while `movers` is (0, 0), for the same reason."""
IMAGE_FORMATS: tuple[str, ...] = ("jpg", "png")
REAL_MIX_MEDIA: tuple[str, ...] = (
    "tree", "bikes", "bigbuckbunny", "carphone", "building", "home", "leuven", "aero", "aloe",
    "squirrel", "butterfly", "chicky", "baboon", "basketball", "box_in_scene", "licenseplate")
"""The training media of the "real_mix" preset, spelled out so that registering more media does
not change what the preset writes (today: every train medium but the scikit-image photos)."""


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
        class_pool: 0 (default): every object's class is drawn from `classes`; n > 0: each
            video draws n of `classes` and its objects from those only, so several objects of
            one class share the frame (teaches the segmenter to keep same-class instances
            apart; the default's random streams are unchanged), 0 - 6.
        class_pool_prob: the share of videos that use `class_pool` (the others draw from all
            of `classes`), [0, 1].
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
        movers: (min, max) unlabelled people per video (0 - 16), cut out of registered photos
            (`spvis_model.data.real_movers`), walking behind every labelled object, in
            object-free clips too; (0, 0) (default): none, and no random draw.
        mover_cutouts: cut-out names (`real_movers.CUTOUTS`), all of one role, the role of
            `real_media` when that is used.
        mover_size: (min, max) height of a mover as a fraction of m, in [0.02, 1].
    """

    width: int = 320
    height: int = 240
    videos: int = 8
    frames: int = 36
    objects: tuple[int, int] = (2, 5)
    classes: tuple[str, ...] = CLASS_NAMES
    class_pool: int = 0
    class_pool_prob: float = 1.0
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
    movers: tuple[int, int] = (0, 0)
    mover_cutouts: tuple[str, ...] = ("messi_player", "grace_hopper_person")
    mover_size: tuple[float, float] = (0.08, 0.3)

    def __post_init__(self) -> None:
        for name in ("objects", "classes", "occluders", "fps", "speed", "backgrounds",
                     "real_media", "real_crop", "movers", "mover_cutouts", "mover_size"):
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
        _int_in(self, "class_pool", 0, len(CLASS_NAMES))
        _float_in(self, "class_pool_prob", 0.0, 1.0)
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
        _pair_in(self, "movers", 0, 16, integer=True)
        _names_in(self, "mover_cutouts", tuple(CUTOUTS))
        _pair_in(self, "mover_size", 0.02, 1.0)
        if self.movers[1] > 0:
            mover_roles = sorted({CUTOUTS[n].role for n in self.mover_cutouts})
            if len(mover_roles) > 1:
                raise _fail("mover_cutouts", self.mover_cutouts,
                            f"mixes roles {mover_roles}: held-out media must never join "
                            "training media")
            if self.uses_real_media and mover_roles[0] != self.real_role:
                raise _fail("mover_cutouts", self.mover_cutouts,
                            f"are {mover_roles[0]} media while real_media are "
                            f"{self.real_role}: a set uses media of one role")

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
