"""Real things that move: people cut out of registered photos (or video frames) and walked
across a synthetic video, unlabelled ("movers").

A deployed camera sees people, mostly small and moving, and none of them is one of the demo
model's classes. Object-free clips of still photos under camera motion (`val_real_unseen`)
did not show what the held-out street video showed (docs/model.md, stop 29): small blobs that
move on their own. A mover is a cut-out of a person from a registered photo or from one
frame of a registered video (`spvis_model.data.real_media`), scaled to a height drawn per
mover, walking a path of the generator's motion model, drawn behind every labelled object (so
it never changes a label).
The cut-out's role is its medium's role: validation sets use people from "val" media only,
training sets people from "train" media, so the validation people stay unseen.

    rgba = cutout_rgba("messi_player")          # (h, w, 4) uint8, alpha 0 / 255, read-only
    movers = plan_movers(rng, config, stamps, view, m)
    draw_mover(image, movers[0], t, zoom, offset_x, offset_y)

The cut-out is GrabCut's foreground inside a registered box, with OpenCV's random generator
seeded, so the same image always gives the same sprite.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from spvis_model.data.motion import Box, object_path
from spvis_model.data.real_media import MEDIA, media_frame

if TYPE_CHECKING:
    from spvis_model.data.synthetic_config import SyntheticConfig

_GRABCUT_ITERATIONS = 5
_GRABCUT_SEED = 12345


@dataclass(frozen=True)
class Cutout:
    """A person in a registered photo, or in one frame of a registered video.

    Attributes:
        name: the cut-out's name (`SyntheticConfig.mover_cutouts`).
        media: the registered photo or video (`real_media.MEDIA`); its role is the cut-out's.
        box: (x0, y0, x1, y1) pixels of the image around the person (GrabCut's rectangle).
        description: what it shows.
        frame: the video frame the person is cut from (0 for a photo).
    """

    name: str
    media: str
    box: tuple[int, int, int, int]
    description: str
    frame: int = 0

    @property
    def role(self) -> str:
        return MEDIA[self.media].role


CUTOUTS: dict[str, Cutout] = {c.name: c for c in (
    Cutout("messi_player", "messi", (70, 55, 462, 338),
           "a footballer mid-kick, whole body, red-and-blue kit"),
    Cutout("grace_hopper_person", "grace_hopper", (20, 10, 500, 600),
           "head and shoulders of a woman in a dark uniform and white cap"),
    # Training cut-outs (train photos): other people, so that validation stays unseen.
    Cutout("basketball_right", "basketball", (430, 20, 640, 480),
           "grey: a man in a patterned shirt seen from behind, waist up"),
    Cutout("astronaut_person", "astronaut", (20, 10, 380, 512),
           "a woman in an orange flight suit, waist up"),
    # Stop 31: people in frames of the training videos.
    Cutout("bikes_cyclist", "bikes", (372, 2, 530, 272),
           "a cyclist in black with a helmet standing over his bike, whole body (a strip of "
           "the lamp post stays on)", frame=125),
    Cutout("carphone_man", "carphone", (25, 10, 150, 144),
           "a man in a dark suit and red bow tie, head and shoulders (a corner of the car "
           "seat stays on)", frame=15),
)}
"""Every registered cut-out, by name."""


def cutout_names(role: str | None = None) -> tuple[str, ...]:
    """Names of the registered cut-outs, optionally of one role."""
    return tuple(c.name for c in CUTOUTS.values() if role is None or c.role == role)


@functools.cache
def cutout_rgba(name: str) -> np.ndarray:
    """Cut-out `name` as read-only RGBA uint8 (h, w, 4), cropped to the person (alpha 255
    inside, 0 outside).

    Raises:
        ValueError: unknown name, or GrabCut found no person in the box.
        MediaNotFoundError / MediaReadError: the photo is missing or unreadable.
    """
    if name not in CUTOUTS:
        raise ValueError(f"cut-out {name!r} is not one of {sorted(CUTOUTS)}")
    cut = CUTOUTS[name]
    rgb = media_frame(cut.media, cut.frame)
    x0, y0, x1, y1 = cut.box
    mask = np.zeros(rgb.shape[:2], np.uint8)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(_GRABCUT_SEED)
    cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), mask, (x0, y0, x1 - x0, y1 - y0), bgd,
                fgd, _GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
    person = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    # The largest connected part: GrabCut leaves specks of background-coloured foreground.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(person, connectivity=8)
    if count < 2:
        raise ValueError(f"cut-out {name!r}: GrabCut found no foreground in box {cut.box} of "
                         f"photo {cut.media!r}")
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    person = labels == keep
    rows, cols = np.flatnonzero(person.any(1)), np.flatnonzero(person.any(0))
    ys, xs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    out = np.dstack([rgb[ys, xs], np.where(person[ys, xs], 255, 0).astype(np.uint8)])
    out = np.ascontiguousarray(out)
    out.setflags(write=False)
    return out


@dataclass
class Mover:
    """One cut-out walking across a video.

    Attributes:
        name: the cut-out.
        positions: (T, 2) world positions of its centre.
        height: world pixels.
        rgba: the sprite, mirrored or not, at about twice its largest on-screen size.
    """

    name: str
    positions: np.ndarray
    height: float
    rgba: np.ndarray


def plan_movers(rng: np.random.Generator, config: SyntheticConfig, stamps: np.ndarray,
                view: Box, m: float) -> list[Mover]:
    """The movers of one video: `config.movers` (min, max) of them, each a cut-out of
    `config.mover_cutouts`, `config.mover_size` * m high, mirrored at random, walking at the
    config's object speeds on a path that may leave the view and come back."""
    lo, hi = config.movers
    out = []
    for _ in range(int(rng.integers(lo, hi + 1))):
        name = config.mover_cutouts[int(rng.integers(len(config.mover_cutouts)))]
        sprite = cutout_rgba(name)
        height = float(rng.uniform(*config.mover_size)) * m
        flip = bool(rng.random() < 0.5)
        half_w = height * sprite.shape[1] / sprite.shape[0] / 2
        box = Box(view.x0 - half_w, view.y0, view.x1 + half_w, view.y1)
        start = (float(rng.uniform(view.x0, view.x1)), float(rng.uniform(view.y0, view.y1)))
        speed = float(rng.uniform(*config.speed)) * m
        positions = object_path(rng, stamps, start, box, speed, config.turn, config.accel)
        # Resample once to about twice the largest on-screen height (zoom included).
        target = max(8, math.ceil(2 * height * math.exp(config.camera_zoom)))
        scale = min(1.0, target / sprite.shape[0])
        rgba = sprite[:, ::-1] if flip else sprite
        if scale < 1.0:
            size = (max(2, round(rgba.shape[1] * scale)), max(2, round(rgba.shape[0] * scale)))
            rgba = cv2.resize(np.ascontiguousarray(rgba), size, interpolation=cv2.INTER_AREA)
        out.append(Mover(name, positions, height, np.ascontiguousarray(rgba)))
    return out


def draw_mover(image: np.ndarray, mover: Mover, t: int, z: float, ox: float,
               oy: float) -> None:
    """Blend `mover` at frame `t` into `image` (RGB uint8, modified in place); image =
    z * world + (ox, oy)."""
    h, w = image.shape[:2]
    sh, sw = mover.rgba.shape[:2]
    s = z * mover.height / sh
    ux = z * float(mover.positions[t, 0]) + ox
    uy = z * float(mover.positions[t, 1]) + oy
    half_w, half_h = s * sw / 2 + 1, s * sh / 2 + 1
    x0, x1 = max(0, math.floor(ux - half_w)), min(w, math.ceil(ux + half_w) + 1)
    y0, y1 = max(0, math.floor(uy - half_h)), min(h, math.ceil(uy + half_h) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    matrix = np.array([[s, 0, ux - s * (sw - 1) / 2 - x0],
                       [0, s, uy - s * (sh - 1) / 2 - y0]], np.float64)
    rgba = cv2.warpAffine(mover.rgba, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    a = rgba[:, :, 3].astype(np.float32) * np.float32(1 / 255)
    if not a.any():
        return
    roi = image[y0:y1, x0:x1]
    image[y0:y1, x0:x1] = cv2.blendLinear(np.ascontiguousarray(rgba[:, :, :3]), roi, a,
                                          1.0 - a)
