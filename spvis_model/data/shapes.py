"""The object classes of the synthetic videos: a shape, a texture family and a size range each.

Every class differs from every other one both by its outline and by its texture (a photo
pattern from `spvis_model.data.textures` mapped through the class' own colour ramp):

========  ==================  =================  ==========  =====================
class     shape               texture (photo)    colour      extent (of min(H, W))
========  ==================  =================  ==========  =====================
disk      filled circle       retina vessels     red         0.14 - 0.26
square    square              bricks             blue-violet 0.14 - 0.26
triangle  equilateral         grass blades       green       0.18 - 0.32
star      five-pointed star   gravel             yellow      0.22 - 0.36
ring      annulus (hole)      Hubble star field  teal        0.18 - 0.30
cross     plus sign           cameraman photo    magenta     0.18 - 0.32
========  ==================  =================  ==========  =====================

An object is drawn from a sprite: an RGBA square of side R whose alpha holds the shape,
inscribed in the circle of radius R / 2 (so any rotation stays inside the sprite), and whose RGB
is texture everywhere (no dark fringe when the sprite is resampled). The "extent" is R on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from spvis_model.data.textures import class_texture

_SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeClass:
    """One object class.

    Attributes:
        name: category name written to the dataset.
        texture: photo name (`spvis_model.data.textures.PHOTOS`) the texture is cut from.
        texture_zoom: photo pixels per sprite pixel of the texture crop (pattern scale).
        dark, light: RGB ends of the colour ramp the luminance pattern is mapped through.
        extent: (min, max) on-screen sprite side as a fraction of min(height, width).
    """

    name: str
    texture: str
    texture_zoom: float
    dark: tuple[int, int, int]
    light: tuple[int, int, int]
    extent: tuple[float, float]


SHAPE_CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass("disk", "retina", 2.5, (125, 10, 10), (255, 120, 85), (0.14, 0.26)),
    ShapeClass("square", "brick", 1.2, (25, 20, 120), (135, 140, 255), (0.14, 0.26)),
    ShapeClass("triangle", "grass", 1.0, (12, 70, 8), (150, 235, 95), (0.18, 0.32)),
    ShapeClass("star", "gravel", 1.0, (105, 85, 0), (255, 240, 110), (0.22, 0.36)),
    ShapeClass("ring", "hubble_deep_field", 1.2, (0, 60, 55), (110, 255, 230), (0.18, 0.30)),
    ShapeClass("cross", "camera", 1.5, (70, 0, 75), (250, 120, 250), (0.18, 0.32)),
)
"""All classes, in category-id order (category_id = position + 1)."""

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in SHAPE_CLASSES)


def class_by_name(name: str) -> ShapeClass:
    """The `ShapeClass` called `name`; ValueError naming the known classes otherwise."""
    for c in SHAPE_CLASSES:
        if c.name == name:
            return c
    raise ValueError(f"class name {name!r} is not one of {list(CLASS_NAMES)}")


def _polygon(points: np.ndarray, canvas: np.ndarray) -> None:
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 255)


def _regular(n: int, radius: float, centre: float, phase: float) -> np.ndarray:
    ang = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([centre + radius * np.cos(ang), centre + radius * np.sin(ang)], axis=1)


def shape_alpha(name: str, size: int) -> np.ndarray:
    """Anti-aliased alpha (size, size) uint8 of shape `name`, inscribed in the circle of radius
    size / 2 centred on the sprite (drawn 4x larger, then area-averaged down)."""
    class_by_name(name)
    if size < 2:
        raise ValueError(f"sprite size must be >= 2, got {size}")
    big = size * _SUPERSAMPLE
    c = (big - 1) / 2.0
    r = big / 2.0 - 0.5 * _SUPERSAMPLE
    canvas = np.zeros((big, big), np.uint8)
    if name == "disk":
        cv2.circle(canvas, (round(c), round(c)), round(r), 255, -1)
    elif name == "ring":
        cv2.circle(canvas, (round(c), round(c)), round(r), 255, -1)
        cv2.circle(canvas, (round(c), round(c)), round(r * 0.55), 0, -1)
    elif name == "square":
        _polygon(_regular(4, r, c, np.pi / 4), canvas)
    elif name == "triangle":
        _polygon(_regular(3, r, c, -np.pi / 2), canvas)
    elif name == "star":
        outer = _regular(5, r, c, -np.pi / 2)
        inner = _regular(5, r * 0.42, c, -np.pi / 2 + np.pi / 5)
        _polygon(np.stack([outer, inner], axis=1).reshape(-1, 2), canvas)
    else:  # cross
        half, arm = r * 0.32, r * 0.95
        cv2.rectangle(canvas, (round(c - arm), round(c - half)), (round(c + arm), round(c + half)),
                      255, -1)
        cv2.rectangle(canvas, (round(c - half), round(c - arm)), (round(c + half), round(c + arm)),
                      255, -1)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)


def make_sprite(rng: np.random.Generator, cls: ShapeClass, size: int) -> np.ndarray:
    """RGBA uint8 (size, size, 4): class texture (random crop and colour jitter) with the
    class' shape as alpha."""
    rgb = class_texture(rng, cls.texture, size, cls.texture_zoom, cls.dark, cls.light)
    return np.ascontiguousarray(np.dstack([rgb, shape_alpha(cls.name, size)]))


def sprite_pyramid(sprite: np.ndarray, min_size: int = 24) -> list[np.ndarray]:
    """The sprite and its successive halvings (INTER_AREA) down to about `min_size` pixels, so
    that small on-screen objects are resampled from a level of about their size (no aliasing)."""
    levels = [sprite]
    while levels[-1].shape[0] // 2 >= min_size:
        s = levels[-1].shape[0] // 2
        levels.append(cv2.resize(levels[-1], (s, s), interpolation=cv2.INTER_AREA))
    return levels
