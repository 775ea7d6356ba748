"""The synthetic video renderer: what each video shows and its ground truth (the writer and
`spvis generate` are `spvis_model.data.synthetic`, the config `spvis_model.data.synthetic_config`).

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
  "real_mix" (training) and "real_heldout" (the false-positive test) use it;
- optionally people cut out of registered photos walking behind everything, unlabelled
  (`spvis_model.data.real_movers`, `movers`): small real things that move on their own.

Ground truth per object and frame: the *visible* mask (what is not hidden by anything in front;
masks of one frame never overlap), its box and area, and `occlusion` = 1 - visible / full area
inside the frame (None when the object is out of frame). A frame where less than
`min_visible_area` pixels of the object can be seen has segmentation None.

API (every name importable from `spvis_model.data.synthetic`)::

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

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from spvis_model.data.motion import Box, camera_path, frame_times, object_path
from spvis_model.data.real_movers import Mover, draw_mover, plan_movers
from spvis_model.data.real_scene import RealBackdrop, choose_media, real_panel_texture
from spvis_model.data.shapes import CLASS_NAMES, class_by_name, make_sprite, sprite_pyramid
from spvis_model.data.synthetic_config import SyntheticConfig
from spvis_model.data.textures import BACKGROUNDS, background_canvas

_NOISE_MARGIN = 64


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
        movers: the cut-out name of each unlabelled walking person (`config.movers`).
    """

    def __init__(self, config: SyntheticConfig, index: int) -> None:
        config.validate()
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f"video index must be an integer >= 0, got {index!r}")
        self.config = config
        self.index = int(index)
        self.name = f"video_{self.index:05d}"
        # spawn(n)'s first children are spawn(n - 1)'s: the older streams are unchanged.
        plan_rng, sprite_rng, frame_rng, real_rng, mover_rng = (
            np.random.default_rng(s)
            for s in np.random.SeedSequence([config.seed, self.index]).spawn(5))
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
        # People walking behind everything, in object-free clips too (their own stream).
        self._movers: list[Mover] = (plan_movers(mover_rng, cfg, self.stamps, view, m)
                                     if cfg.movers[1] > 0 else [])
        self.movers = [mv.name for mv in self._movers]
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
        if cfg.class_pool > 0 and (cfg.class_pool_prob >= 1.0
                                   or rng.random() < cfg.class_pool_prob):
            # Same-class crowds: the video's objects share a few classes (drawn after the
            # default ones, so the default random stream is unchanged; no draw for the share
            # at 1, so a pooled set from before the share existed keeps its bytes).
            pool = rng.permutation(n_classes)[:min(cfg.class_pool, n_classes)]
            kinds = [int(pool[int(rng.integers(len(pool)))]) for _ in range(n)]
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
        for mover in self._movers:
            draw_mover(image, mover, t, z, ox, oy)
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


class TrackBuilder:
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
    builder = TrackBuilder(video)
    frames = []
    for frame in video.frames():
        builder.add(frame)
        frames.append(frame.image)
    return frames, [float(s) for s in video.stamps], builder.visible_tracks()
