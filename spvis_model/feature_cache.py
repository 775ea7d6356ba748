"""Segmenter outputs computed once and stored, for everything that runs only the tracker.

Stage 2 freezes the segmenter, and tracker ablations and tuning compare trackers on the same
segmenter outputs. Both would otherwise spend ~95% of their time re-running the segmenter, so
its per-frame outputs are cached to disk once per (segmenter weights, dataset):

    cache = build_cache(model, "data/val/annotations.json", "cache/val")
    video = cache.video(video_id)                 # one file, loaded on demand
    feats = video.features(t, model.segmenter.decoder)   # FrameFeatures, as model.frame_features

Layout: ``<dir>/meta.json`` (format, segmenter digest, dataset, video ids) and one
``video_<id>.pt`` per video holding stacked tensors (T frames): ``query_embed`` (T, N, C) and
``pred_logits`` (T, N, K+1) in float32, ``mask_features`` (T, C, h, w) and ``memory``
(T, S, C_mem) in float16, ``spatial_shapes`` (L, 2), ``level_start_index`` (L,), ``stamps`` (T,)
float64, and the frame geometry. Mask logits are not stored: they are
``mask_embed(query_embed) · mask_features`` (exactly what the decoder computes), recomputed on
load. Files are read with ``torch.load(weights_only=True)``. A cache built from other segmenter
weights is refused (`CacheError` names the digests), so a stale cache cannot be used silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from spvis_model.atomic import atomic_write
from spvis_model.checkpoint import LOAD_ERRORS, describe_load_error
from spvis_model.model import SPVIS, FrameGeometry
from spvis_model.tracker.types import FrameFeatures

CACHE_FORMAT = "spvis-feature-cache"
CACHE_VERSION = 1


class CacheError(ValueError):
    """A cache directory or file is missing, corrupt, or from other segmenter weights."""


def segmenter_digest(model: SPVIS) -> str:
    """SHA-256 of the segmenter's weights (names and float32 bytes): a cache is valid for any
    checkpoint with this segmenter, whatever its tracker."""
    h = hashlib.sha256()
    for name, t in sorted(model.segmenter.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(dataclasses.asdict(model.cfg.input), sort_keys=True).encode())
    return h.hexdigest()


@dataclass
class CachedVideo:
    """One video's cached segmenter outputs (T frames); see the module docstring."""

    video_id: int
    stamps: torch.Tensor
    geometry: FrameGeometry
    query_embed: torch.Tensor
    pred_logits: torch.Tensor
    mask_features: torch.Tensor
    memory: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor

    def __len__(self) -> int:
        return self.query_embed.shape[0]

    def select(self, indices: Sequence[int]) -> CachedVideo:
        """The frames `indices` (in that order, repeats allowed) as a shorter video."""
        idx = torch.as_tensor(list(indices), dtype=torch.int64)
        return dataclasses.replace(
            self, stamps=self.stamps[idx], query_embed=self.query_embed[idx],
            pred_logits=self.pred_logits[idx], mask_features=self.mask_features[idx],
            memory=self.memory[idx])

    def features(self, t: int, heads: nn.Module, device: torch.device | str = "cpu"
                 ) -> FrameFeatures:
        """Frame t as the tracker's input (float32 on `device`); `heads` is the segmenter's
        decoder (its `mask_embed` gives the mask logits)."""
        query = self.query_embed[t].to(device)
        mask_features = self.mask_features[t].to(device).float()
        with torch.no_grad():
            masks = torch.einsum("nc,chw->nhw", heads.mask_embed(query), mask_features)
        return FrameFeatures(
            query_embed=query, pred_logits=self.pred_logits[t].to(device),
            pred_masks=masks, mask_features=mask_features,
            memory=self.memory[t].to(device).float(),
            spatial_shapes=self.spatial_shapes.to(device),
            level_start_index=self.level_start_index.to(device),
            valid_hw=self.geometry.valid_stride4)


class FeatureCache:
    """A cache directory (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CacheError(f"feature cache {self.root}: cannot read meta.json ({exc})") from exc
        self._names: dict[int, list[str]] | None = None
        if self.meta.get("format") != CACHE_FORMAT or self.meta.get("version") != CACHE_VERSION:
            raise CacheError(f"feature cache {self.root}: format {self.meta.get('format')!r} "
                             f"version {self.meta.get('version')!r}, expected {CACHE_FORMAT!r} "
                             f"version {CACHE_VERSION}")

    @property
    def video_ids(self) -> list[int]:
        return [int(v) for v in self.meta["video_ids"]]

    def check_model(self, model: SPVIS) -> None:
        """Raise CacheError unless the cache was built with this model's segmenter."""
        digest = segmenter_digest(model)
        if digest != self.meta.get("segmenter_digest"):
            raise CacheError(f"feature cache {self.root} was built with segmenter "
                             f"{str(self.meta.get('segmenter_digest'))[:12]}, the model's is "
                             f"{digest[:12]}: rebuild it (build_cache)")

    def video(self, video_id: int) -> CachedVideo:
        """Read one video's file (weights_only: no code runs). Raises CacheError naming the
        file and, for a file of the wrong structure, the key."""
        path = self.root / f"video_{int(video_id)}.pt"
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except LOAD_ERRORS as exc:
            raise CacheError(f"feature cache file {path}: not readable "
                             f"({describe_load_error(exc)})") from exc
        _check_video_file(path, data)
        g = data["geometry"].tolist()
        return CachedVideo(
            video_id=int(video_id), stamps=data["stamps"],
            geometry=FrameGeometry((g[0], g[1]), (g[2], g[3]), (g[4], g[5])),
            query_embed=data["query_embed"], pred_logits=data["pred_logits"],
            mask_features=data["mask_features"], memory=data["memory"],
            spatial_shapes=data["spatial_shapes"],
            level_start_index=data["level_start_index"])

    def frames(self, video_id: int) -> list[np.ndarray]:
        """The video's (H, W, 3) uint8 RGB frames, read again from the dataset the cache was
        built from (the cache keeps the segmenter's outputs, not the images; a published mask
        refined against its frame, `tracker.mask_refine`, needs them). Raises CacheError
        naming the dataset or the frame when it is not there."""
        from spvis_model.eval.data import load_ground_truth
        from spvis_model.eval.runner import read_frame

        data = self.meta.get("dataset")
        images = Path(self.meta.get("images") or Path(str(data)).parent / "JPEGImages")
        if self._names is None:
            try:
                gt = load_ground_truth(str(data))
            except (OSError, ValueError) as exc:
                raise CacheError(f"feature cache {self.root}: the dataset it was built from "
                                 f"({data}) does not load: {exc}") from exc
            self._names = {vid: list(v.file_names) for vid, v in gt.videos.items()}
        if int(video_id) not in self._names:
            raise CacheError(f"feature cache {self.root}: video {video_id} is not in {data}")
        try:
            return [read_frame(images, int(video_id), i, n)
                    for i, n in enumerate(self._names[int(video_id)])]
        except ValueError as exc:
            raise CacheError(f"feature cache {self.root}: {exc}") from exc

    def videos(self) -> Iterator[CachedVideo]:
        for vid in self.video_ids:
            yield self.video(vid)


_PER_FRAME_KEYS = ("stamps", "query_embed", "pred_logits", "mask_features", "memory")
_VIDEO_KEYS = (*_PER_FRAME_KEYS, "spatial_shapes", "level_start_index", "geometry")


def _check_video_file(path: Path, data: object) -> None:
    """Raise CacheError unless `data` has what `_segment_video` writes: every key a tensor,
    the per-frame ones with one row per frame (the same number, at least one) and `geometry`
    six integers."""
    if not isinstance(data, dict):
        raise CacheError(f"feature cache file {path}: holds a {type(data).__name__}, expected "
                         "a dict of tensors; rebuild the cache")
    for key in _VIDEO_KEYS:
        if key not in data:
            raise CacheError(f"feature cache file {path}: missing key {key!r}; rebuild the "
                             "cache")
        if not isinstance(data[key], torch.Tensor):
            raise CacheError(f"feature cache file {path}: key {key!r} holds a "
                             f"{type(data[key]).__name__}, expected a tensor; rebuild the cache")
    frames = {key: int(data[key].shape[0]) if data[key].dim() else -1
              for key in _PER_FRAME_KEYS}
    if min(frames.values()) < 1 or len(set(frames.values())) != 1:
        raise CacheError(f"feature cache file {path}: per-frame keys disagree on the number of "
                         f"frames ({frames}); rebuild the cache")
    geometry = data["geometry"]
    if geometry.shape != (6,) or geometry.is_floating_point() or geometry.is_complex():
        raise CacheError(f"feature cache file {path}: key 'geometry' has shape "
                         f"{tuple(geometry.shape)} and dtype {geometry.dtype}, expected 6 "
                         "integers; rebuild the cache")


def build_cache(model: SPVIS, data: str | Path, out_dir: str | Path,
                images: str | Path | None = None, video_ids: Sequence[int] | None = None,
                progress: bool = True) -> FeatureCache:
    """Run the segmenter over a YouTube-VIS dataset's videos and store its outputs.

    Args:
        model: the model whose segmenter is cached (eval mode, float32).
        data: dataset JSON; frames are read from `images` (default: JPEGImages/ beside it).
        out_dir: cache directory (created). Videos already cached with the same segmenter
            are kept, so an interrupted build resumes.
        video_ids: a subset of the dataset's videos (default: all).

    Returns:
        The cache.
    """
    from spvis_model.eval.data import load_ground_truth
    from spvis_model.eval.runner import read_frame, video_stamps

    gt = load_ground_truth(data)
    images = Path(images) if images is not None else Path(data).parent / "JPEGImages"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = [int(v) for v in (video_ids if video_ids is not None else gt.videos)]
    unknown = [v for v in ids if v not in gt.videos]
    if unknown:
        raise CacheError(f"build_cache: video id(s) {unknown} are not in {data}")
    digest = segmenter_digest(model)
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old.get("segmenter_digest") != digest:
            raise CacheError(f"feature cache {out} holds another segmenter's outputs; use an "
                             "empty directory")
    meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "segmenter_digest": digest,
            "model": model.cfg.name, "dataset": str(data), "images": str(images),
            "video_ids": ids}
    model.eval()
    for vid in tqdm(ids, desc="cache", disable=not progress):
        path = out / f"video_{vid}.pt"
        if path.exists():
            continue
        video = gt.videos[vid]
        tensors = _segment_video(model, [read_frame(images, vid, i, n)
                                         for i, n in enumerate(video.file_names)])
        tensors["stamps"] = torch.tensor(video_stamps(video), dtype=torch.float64)
        # Each writer its own temporary file: two builders of one cache do not collide.
        atomic_write(path, lambda f, t=tensors: torch.save(t, f))
    atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return FeatureCache(out)


@torch.inference_mode()
def _segment_video(model: SPVIS, frames: list[np.ndarray]) -> dict[str, torch.Tensor]:
    if not frames:
        raise CacheError("build_cache: a video without frames")
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("query_embed", "pred_logits",
                                                          "mask_features", "memory")}
    geom: FrameGeometry | None = None
    shapes = starts = None
    for frame in frames:
        images, g = model.preprocess(frame)
        if geom is not None and g != geom:
            raise CacheError(f"build_cache: frames of one video differ in size ({g.original} "
                             f"vs {geom.original})")
        geom = g
        seg = model.segment(images)
        rows["query_embed"].append(seg.decoder.query_embed[0].float().cpu())
        rows["pred_logits"].append(seg.decoder.pred_logits[0].float().cpu())
        rows["mask_features"].append(seg.pixels.mask_features[0].half().cpu())
        rows["memory"].append(seg.pixels.memory[0].half().cpu())
        shapes, starts = seg.pixels.spatial_shapes.cpu(), seg.pixels.level_start_index.cpu()
    out = {k: torch.stack(v) for k, v in rows.items()}
    out["spatial_shapes"], out["level_start_index"] = shapes, starts
    out["geometry"] = torch.tensor([*geom.original, *geom.resized, *geom.padded])
    return out
