"""Real footage inside a synthetic video: the background clip (or photo) and panel textures.

`RealBackdrop` is the background of one synthetic video cut from a registered real video or
photo (`spvis_model.data.real_media`). A video plays in real time along the synthetic video's
own stamps: frame t shows source frame ``floor((start + stamps[t]) * fps)``, so jittered and
dropped synthetic frames are uneven steps in the real footage too. The start is random, chosen
so that the clip fits in the source when it can; a clip longer than the source wraps to the
first frame (one cut). Every frame of the clip is cut with the same `CanvasCrop` (window, flip,
colour change); the generator's camera pan and zoom are applied on top by the renderer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from spvis_model.data.real_media import MEDIA, RealMedia, get_media, media_frame
from spvis_model.data.textures import CanvasCrop


def choose_media(rng: np.random.Generator, names: Sequence[str], video_prob: float,
                 exclude: Sequence[str] = ()) -> RealMedia:
    """A registered medium from `names` (minus `exclude`, unless that leaves none): a video with
    probability `video_prob` when both kinds are there, then uniformly within the kind."""
    pool_names = [n for n in names if n not in exclude] or list(names)
    if not pool_names:
        raise ValueError("choose_media: names is empty")
    videos = [n for n in pool_names if MEDIA[n].kind == "video"]
    photos = [n for n in pool_names if MEDIA[n].kind == "photo"]
    if videos and photos:
        pool = videos if rng.random() < video_prob else photos
    else:
        pool = videos or photos
    return MEDIA[pool[int(rng.integers(len(pool)))]]


class RealBackdrop:
    """The world canvas of a synthetic video, frame by frame, from a real video or photo.

    Args:
        rng: draws the start time and the crop (a stream of its own, so the other streams of
            the video are untouched).
        media: the registered video or photo.
        stamps: float64 (T,), seconds of the synthetic frames from the first.
        width, height: canvas size in pixels (the world, larger than the view).
        scale: (min, max) side of the crop as a fraction of the largest window with the
            canvas' aspect ratio that fits in the source.
        jitter: colour jitter, 1 = the photo backgrounds' (saturation, gain, offset), 0 = none.

    Attributes:
        media: the registry entry.
        source_frames: int64 (T,), the source frame shown at each synthetic frame (all 0 for a
            photo).
        start: seconds into the source of the first frame.
        crop: the `CanvasCrop` used for every frame.
    """

    def __init__(self, rng: np.random.Generator, media: str | RealMedia, stamps: np.ndarray,
                 width: int, height: int, scale: tuple[float, float] = (0.6, 1.0),
                 jitter: float = 1.0) -> None:
        self.media = get_media(media)
        stamps = np.asarray(stamps, np.float64)
        if self.media.kind == "video" and self.media.fps is not None:
            fps = self.media.fps
            span = float(stamps[-1] - stamps[0]) if len(stamps) else 0.0
            slack = self.media.duration - span - 1.0 / fps
            self.start = float(rng.uniform(0.0, slack)) if slack > 0 else 0.0
            index = np.floor((self.start + stamps - stamps[0]) * fps + 1e-9).astype(np.int64)
            self.source_frames = np.mod(index, self.media.frames)
        else:
            self.start = 0.0
            self.source_frames = np.zeros(len(stamps), np.int64)
        self.source_frames.setflags(write=False)
        self.crop = CanvasCrop.draw(rng, self.media.width, self.media.height, width, height,
                                    scale, jitter)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def canvas(self, t: int) -> np.ndarray:
        """The (height, width, 3) uint8 RGB world canvas of synthetic frame `t` (read-only:
        cached)."""
        k = int(self.source_frames[t])
        hit = self._cache.get(k)
        if hit is not None:
            self._cache.move_to_end(k)
            return hit
        canvas = self.crop.apply_fast(media_frame(self.media.name, k))
        canvas.setflags(write=False)
        self._cache[k] = canvas
        if len(self._cache) > 4:
            self._cache.popitem(last=False)
        return canvas


def real_panel_texture(rng: np.random.Generator, media: RealMedia, width: int, height: int
                       ) -> tuple[np.ndarray, int]:
    """A (height, width, 3) uint8 RGB panel texture cut from one random frame of `media` (the
    photo itself for a photo), with the photo backgrounds' crop and colour jitter; returns it
    and the source frame index."""
    k = int(rng.integers(media.frames)) if media.kind == "video" else 0
    crop = CanvasCrop.draw(rng, media.width, media.height, max(2, width), max(2, height))
    return np.ascontiguousarray(crop.apply_fast(media_frame(media.name, k))), k

