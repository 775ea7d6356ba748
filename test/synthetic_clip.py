"""Tiny synthetic scenes for model tests: a disk and a square moving over a textured background.

`scene(...)` draws one frame and returns the per-object visible masks (depth order applied);
`crossing_clip(...)` is the fixed test clip in which the two objects cross; `random_scene(...)`
draws randomised training frames.
"""

from __future__ import annotations

import numpy as np
import torch

CLASSES = ["disk", "square"]
H, W = 64, 96


def _background(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    base = 60 + 40 * np.sin(xx / rng.uniform(6, 14)) * np.cos(yy / rng.uniform(6, 14))
    img = np.stack([base * rng.uniform(0.6, 1.0) for _ in range(3)], -1)
    img += rng.normal(0, 8, img.shape)
    return img


def _shape_mask(kind: int, cx: float, cy: float, size: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    if kind == 0:
        return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= size ** 2
    return (np.abs(xx + 0.5 - cx) <= size) & (np.abs(yy + 0.5 - cy) <= size)


def scene(objects: list[tuple[int, float, float, float, tuple[int, int, int]]],
          rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw objects back to front.

    Args:
        objects: (class, cx, cy, size, rgb) in drawing order (last is in front).

    Returns:
        (H, W, 3) uint8 frame and each object's visible mask (H, W) bool, in input order.
    """
    img = _background(rng)
    full = [_shape_mask(k, cx, cy, s) for k, cx, cy, s, _ in objects]
    for (_, _, _, _, rgb), m in zip(objects, full, strict=True):
        img[m] = np.asarray(rgb, float) + rng.normal(0, 6, (int(m.sum()), 3))
    visible = []
    for i, m in enumerate(full):
        v = m.copy()
        for front in full[i + 1:]:
            v &= ~front
        visible.append(v)
    return np.clip(img, 0, 255).astype(np.uint8), visible


def random_scene(rng: np.random.Generator) -> tuple[np.ndarray, list[int], list[np.ndarray]]:
    """A training frame: one or both objects at random places, random depth order."""
    objects = []
    for kind in (0, 1):
        if rng.random() < 0.85:
            colour = (200, 40, 40) if kind == 0 else (40, 60, 210)
            jitter = tuple(int(c + rng.integers(-30, 31)) for c in colour)
            objects.append((kind, rng.uniform(8, W - 8), rng.uniform(8, H - 8),
                            rng.uniform(7, 11), jitter))
    rng.shuffle(objects)
    img, masks = scene(objects, rng)
    return img, [o[0] for o in objects], masks


def crossing_clip(frames: int = 20,
                  seed: int = 7) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """The test clip: the disk moves right, the square moves left in front of it; they overlap
    in the middle frames. Returns frames and, per frame, [disk mask, square mask] (visible)."""
    rng = np.random.default_rng(seed)
    imgs, masks = [], []
    for t in range(frames):
        a = t / max(frames - 1, 1)
        disk = (0, 12 + a * 72, 30 + 4 * np.sin(3 * a), 9.0, (200, 40, 40))
        square = (1, 84 - a * 72, 34, 8.0, (40, 60, 210))
        img, vis = scene([disk, square], rng)
        imgs.append(img)
        masks.append(vis)
    return imgs, masks


def targets_for(labels: list[int], masks: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """A SetCriterion target dict (drops fully hidden objects)."""
    keep = [i for i, m in enumerate(masks) if m.any()]
    if not keep:
        return {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, H, W)}
    return {"labels": torch.tensor([labels[i] for i in keep]),
            "masks": torch.from_numpy(np.stack([masks[i] for i in keep])).float()}
