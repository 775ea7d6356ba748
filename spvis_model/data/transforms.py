"""Clip transforms: the same geometry for every frame of a clip and for its masks.

`ClipAugment` (training) applies, in this order and with one set of random parameters per
clip:

1. random crop (probability `crop_prob`): each side keeps a uniform fraction in
   [`crop_min_frac`, 1] of the frame, at a uniform position. A window that would leave no
   instance (in any frame) with at least `min_mask_area` pixels is drawn again, up to
   `crop_retries` times; if every window fails the clip is not cropped (it is only cropped to
   nothing when it had no instances to begin with);
2. resize, aspect kept: the shorter side becomes a uniform integer in `min_size`, capped so the
   longer side is at most `max_size` (Mask2Former's ResizeShortestEdge);
3. horizontal flip (probability `flip_prob`);
4. masks with fewer than `min_mask_area` pixels are dropped from their frame (labels and track
   ids with them);
5. size divisibility (`size_divisibility` > 1): "pad" adds zero rows / columns at the bottom
   and right (the clip's `image_size` keeps the content size; `SPVIS.preprocess` pads the same
   way, but after normalisation, so a trainer should zero the padding after normalising),
   "resize" folds the rounding to multiples into the resize of step 2 (aspect changes slightly).

Images are resized bilinearly (antialiased when shrinking), masks with nearest-exact
(pixel-centre aligned, so masks stay on their objects). All randomness comes from the
torch.Generator passed in, so a clip's augmentation is a pure function of the generator's seed
(`ClipDataset` seeds it from (seed, epoch, index)).

`ClipResize` (evaluation) only resizes: by default like `SPVIS.preprocess` (longer side =
`max_size`), or shorter side = `min_size` capped by `max_size`; then the same divisibility step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch.nn import functional as F

from spvis_model.config import ConfigError
from spvis_model.data.ytvis import Clip

__all__ = ["DIVISIBILITY_MODES", "ClipAugment", "ClipResize", "ClipTransform", "crop_clip",
           "drop_small_masks", "flip_clip", "pad_clip", "resize_clip"]

DIVISIBILITY_MODES: tuple[str, ...] = ("pad", "resize")


class ClipTransform(Protocol):
    """A clip transform: ``transform(clip, generator) -> clip`` (the generator is the only
    source of randomness; deterministic transforms ignore it)."""

    def __call__(self, clip: Clip, generator: torch.Generator) -> Clip: ...


def _check_int(owner: str, name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{owner}.{name} = {value!r}: must be an integer >= {lo}")


def _check_prob(owner: str, name: str, value: object, lo: float = 0.0,
                lo_open: bool = False) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= 1)
    if not ok:
        bracket = "(" if lo_open else "["
        raise ConfigError(f"{owner}.{name} = {value!r}: must be a number in {bracket}{lo}, 1]")


def _check_divisibility(owner: str, size_divisibility: int, mode: str) -> None:
    _check_int(owner, "size_divisibility", size_divisibility, 0)
    if mode not in DIVISIBILITY_MODES:
        raise ConfigError(f"{owner}.divisibility_mode = {mode!r}: must be one of "
                          f"{list(DIVISIBILITY_MODES)}")


def _scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(1, round(h * scale)), max(1, round(w * scale))


def _round_to(size: tuple[int, int], d: int) -> tuple[int, int]:
    return max(d, round(size[0] / d) * d), max(d, round(size[1] / d) * d)


def _split(flat: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
    return list(torch.split(flat, counts, dim=0))


def _all_masks(clip: Clip) -> torch.Tensor:
    """Every frame's masks concatenated: bool (sum n_t, H, W)."""
    if not clip.masks:
        return torch.zeros((0, *clip.frames.shape[-2:]), dtype=torch.bool)
    return torch.cat(clip.masks, dim=0)


def resize_clip(clip: Clip, size: tuple[int, int]) -> Clip:
    """Resize frames (bilinear, antialiased when shrinking) and masks (nearest-exact) to
    `size` = (height, width). `image_size` becomes `size`; empty masks are kept."""
    h, w = clip.frames.shape[-2:]
    if (h, w) == tuple(size):
        return replace(clip, image_size=(h, w))
    shrink = size[0] < h or size[1] < w
    frames = F.interpolate(clip.frames, size=size, mode="bilinear", align_corners=False,
                           antialias=shrink)
    counts = [m.shape[0] for m in clip.masks]
    flat = _all_masks(clip)
    if flat.shape[0]:
        flat = F.interpolate(flat[None].to(torch.uint8), size=size, mode="nearest-exact")[0]
        flat = flat.bool()
    else:
        flat = flat.new_zeros((0, *size))
    return replace(clip, frames=frames, masks=_split(flat, counts), image_size=tuple(size))


def crop_clip(clip: Clip, top: int, left: int, height: int, width: int) -> Clip:
    """Crop every frame and mask to rows [top, top + height) and columns [left, left + width).
    Empty masks are kept (see `drop_small_masks`)."""
    h, w = clip.frames.shape[-2:]
    if not (0 <= top < top + height <= h and 0 <= left < left + width <= w):
        raise ValueError(f"crop_clip: window top={top} left={left} height={height} "
                         f"width={width} does not fit a {h}x{w} (HxW) clip")
    ys, xs = slice(top, top + height), slice(left, left + width)
    return replace(clip, frames=clip.frames[:, :, ys, xs].contiguous(),
                   masks=[m[:, ys, xs].contiguous() for m in clip.masks],
                   image_size=(height, width))


def flip_clip(clip: Clip) -> Clip:
    """Mirror every frame and mask left-right (the content must fill the frame: flip before
    padding)."""
    return replace(clip, frames=clip.frames.flip(-1), masks=[m.flip(-1) for m in clip.masks])


def drop_small_masks(clip: Clip, min_area: int) -> Clip:
    """Remove, per frame, instances whose mask has fewer than `min_area` pixels."""
    labels, masks, ids = [], [], []
    for lab, msk, tid in zip(clip.labels, clip.masks, clip.track_ids, strict=True):
        keep = msk.flatten(1).sum(1) >= min_area
        labels.append(lab[keep])
        masks.append(msk[keep])
        ids.append(tid[keep])
    return replace(clip, labels=labels, masks=masks, track_ids=ids)


def pad_clip(clip: Clip, divisor: int) -> Clip:
    """Zero-pad frames and masks at the bottom / right to multiples of `divisor`; `image_size`
    keeps the content size."""
    h, w = clip.frames.shape[-2:]
    ph, pw = math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor
    if (ph, pw) == (h, w):
        return clip
    frames = clip.frames.new_zeros((*clip.frames.shape[:2], ph, pw))
    frames[:, :, :h, :w] = clip.frames
    masks = []
    for m in clip.masks:
        padded = m.new_zeros((m.shape[0], ph, pw))
        padded[:, :h, :w] = m
        masks.append(padded)
    return replace(clip, frames=frames, masks=masks, image_size=(h, w))


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator, dtype=torch.float64))


def _randint(lo: int, hi: int, generator: torch.Generator) -> int:
    """Uniform integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (), generator=generator))


@dataclass
class ClipAugment:
    """Clip-consistent training augmentation (see the module docstring for the steps).

    Attributes:
        min_size: (lo, hi) range of the resized shorter side, pixels.
        max_size: cap on the resized longer side, pixels.
        flip_prob: probability of a horizontal flip, [0, 1].
        crop_prob: probability of a random crop, [0, 1].
        crop_min_frac: smallest kept fraction of each side in a crop, (0, 1].
        size_divisibility: make the output size a multiple of this (0 or 1: off).
        divisibility_mode: "pad" (zeros at the bottom / right) or "resize".
        min_mask_area: masks smaller than this (pixels, after resizing) are dropped; a crop
            must keep one instance at least this large (before resizing).
        crop_retries: crop windows drawn again when one would keep no instance.
    """

    min_size: tuple[int, int] = (288, 512)
    max_size: int = 768
    flip_prob: float = 0.5
    crop_prob: float = 0.5
    crop_min_frac: float = 0.6
    size_divisibility: int = 32
    divisibility_mode: str = "pad"
    min_mask_area: int = 1
    crop_retries: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.min_size, list):
            self.min_size = tuple(self.min_size)
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError("ClipAugment.<field> = <value>: <rule>") on the first bad field."""
        ms = self.min_size
        if (not isinstance(ms, tuple) or len(ms) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in ms)
                or ms[0] > ms[1]):
            raise ConfigError(f"ClipAugment.min_size = {ms!r}: must be a (lo, hi) pair of "
                              "integers with 1 <= lo <= hi")
        _check_int("ClipAugment", "max_size", self.max_size, 1)
        _check_prob("ClipAugment", "flip_prob", self.flip_prob)
        _check_prob("ClipAugment", "crop_prob", self.crop_prob)
        _check_prob("ClipAugment", "crop_min_frac", self.crop_min_frac, lo_open=True)
        _check_divisibility("ClipAugment", self.size_divisibility, self.divisibility_mode)
        _check_int("ClipAugment", "min_mask_area", self.min_mask_area, 1)
        _check_int("ClipAugment", "crop_retries", self.crop_retries, 0)

    def _crop_window(self, clip: Clip, generator: torch.Generator
                     ) -> tuple[int, int, int, int] | None:
        """(top, left, height, width) of an accepted crop, or None (no crop)."""
        h, w = clip.frames.shape[-2:]
        flat = _all_masks(clip)
        has_instances = bool(flat.shape[0]) and bool(
            (flat.flatten(1).sum(1) >= self.min_mask_area).any())
        for _ in range(self.crop_retries + 1):
            fh = self.crop_min_frac + (1.0 - self.crop_min_frac) * _uniform(generator)
            fw = self.crop_min_frac + (1.0 - self.crop_min_frac) * _uniform(generator)
            ch, cw = max(1, min(h, round(h * fh))), max(1, min(w, round(w * fw)))
            top, left = _randint(0, h - ch, generator), _randint(0, w - cw, generator)
            if not has_instances:
                return top, left, ch, cw
            kept = flat[:, top:top + ch, left:left + cw].flatten(1).sum(1)
            if bool((kept >= self.min_mask_area).any()):
                return top, left, ch, cw
        return None

    def __call__(self, clip: Clip, generator: torch.Generator) -> Clip:
        """Augment `clip` with randomness from `generator`; returns a new Clip (frames
        (T, 3, H', W'), masks (n_t, H', W'), `orig_size` unchanged)."""
        if self.crop_prob > 0 and _uniform(generator) < self.crop_prob:
            window = self._crop_window(clip, generator)
            if window is not None:
                clip = crop_clip(clip, *window)
        h, w = clip.frames.shape[-2:]
        short = _randint(self.min_size[0], self.min_size[1], generator)
        scale = min(short / min(h, w), self.max_size / max(h, w))
        size = _scaled_size(h, w, scale)
        d = self.size_divisibility
        if d > 1 and self.divisibility_mode == "resize":
            size = _round_to(size, d)
        clip = resize_clip(clip, size)
        if self.flip_prob > 0 and _uniform(generator) < self.flip_prob:
            clip = flip_clip(clip)
        clip = drop_small_masks(clip, self.min_mask_area)
        if d > 1 and self.divisibility_mode == "pad":
            clip = pad_clip(clip, d)
        return clip


@dataclass
class ClipResize:
    """Evaluation transform: resize only (deterministic).

    Attributes:
        max_size: longer side in pixels (`SPVIS.preprocess` / `InputConfig.max_size`), or the
            cap on it when `min_size` is given.
        min_size: None (longer side = max_size) or the shorter side, capped by max_size.
        size_divisibility: make the output size a multiple of this (0 or 1: off).
        divisibility_mode: "pad" or "resize" (see `ClipAugment`).
    """

    max_size: int = 640
    min_size: int | None = None
    size_divisibility: int = 32
    divisibility_mode: str = "pad"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError("ClipResize.<field> = <value>: <rule>") on the first bad field."""
        _check_int("ClipResize", "max_size", self.max_size, 1)
        if self.min_size is not None:
            _check_int("ClipResize", "min_size", self.min_size, 1)
        _check_divisibility("ClipResize", self.size_divisibility, self.divisibility_mode)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the resized content for a (height, width) frame (before
        padding)."""
        scale = self.max_size / max(height, width)
        if self.min_size is not None:
            scale = min(self.min_size / min(height, width), scale)
        size = _scaled_size(height, width, scale)
        d = self.size_divisibility
        if d > 1 and self.divisibility_mode == "resize":
            size = _round_to(size, d)
        return size

    def __call__(self, clip: Clip, generator: torch.Generator | None = None) -> Clip:
        """Resize (and pad) `clip`; `generator` is ignored."""
        del generator
        h, w = clip.frames.shape[-2:]
        clip = resize_clip(clip, self.output_size(h, w))
        d = self.size_divisibility
        if d > 1 and self.divisibility_mode == "pad":
            clip = pad_clip(clip, d)
        return clip
