"""Stage-2 clips from cached segmenter outputs (`spvis_model.feature_cache`).

The segmenter is frozen in stage 2, so its outputs are computed once per video and stored;
each training clip then costs only the tracker. `CachedClipDataset` samples clips exactly like
`ClipDataset` (a `ClipSampler`: random video, random stride, a pure function of
(seed, epoch, index)) and returns `CachedClip`s, which `TrackerTask` consumes in place of
frames. Image augmentation does not apply (the features are fixed); the task's own
augmentations (frame drops, disappearance, noisy matching) and the random strides do.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from spvis_model.data.sampler import ClipSampler
from spvis_model.data.ytvis import YTVISDataset
from spvis_model.feature_cache import CachedVideo, FeatureCache


@dataclass
class CachedClip:
    """T frames of one video: cached segmenter outputs plus their ground truth.

    Attributes:
        cached: the clip's frames of the cache (T of them, in clip order).
        stamps: (T,) float64 seconds.
        labels: T int64 tensors (n_t,) class indices; masks: T bool tensors (n_t, H, W) at
            the frame's original size; track_ids: T int64 tensors (n_t,).
        segmenter_digest: the cache's segmenter (the model trained on it must have it).
    """

    cached: CachedVideo
    stamps: torch.Tensor
    labels: list[torch.Tensor]
    masks: list[torch.Tensor]
    track_ids: list[torch.Tensor]
    video_id: int
    frame_indices: tuple[int, ...]
    segmenter_digest: str


class CachedClipDataset(Dataset[CachedClip]):
    """`length` clips per epoch from the videos of `cache` (ground truth from `videos`).

    Args:
        cache: segmenter outputs of (a subset of) the dataset's videos.
        videos: the dataset (annotations; frames are never read).
        clip_len, stride_min, stride_max, seed: as `ClipSampler`.
        length: items per epoch.
        keep_videos: cached videos kept in memory (least recently used go first).
    """

    def __init__(self, cache: FeatureCache, videos: YTVISDataset, clip_len: int, *,
                 stride_min: int = 1, stride_max: int = 10, seed: int = 0, length: int = 1000,
                 keep_videos: int = 4) -> None:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"CachedClipDataset: length = {length!r}: must be an integer >= 1")
        known = {v.id for v in videos.videos}
        missing = [v for v in cache.video_ids if v not in known]
        if missing:
            raise ValueError(f"CachedClipDataset: cached videos {missing[:5]} are not in the "
                             "dataset")
        annotated = {v: videos.video(v).length for v in cache.video_ids
                     if any(not t.iscrowd and t.frame_areas.any() for t in videos.tracks(v))}
        self.sampler = ClipSampler(annotated, clip_len, stride_min=stride_min,
                                   stride_max=stride_max, seed=seed)
        self.cache = cache
        self.videos = videos
        self.length = int(length)
        self.epoch = 0
        self.keep_videos = keep_videos
        self._loaded: OrderedDict[int, CachedVideo] = OrderedDict()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _video(self, video_id: int) -> CachedVideo:
        video = self._loaded.pop(video_id, None)
        if video is None:
            video = self.cache.video(video_id)
        self._loaded[video_id] = video
        while len(self._loaded) > self.keep_videos:
            self._loaded.popitem(last=False)
        return video

    def __getitem__(self, index: int) -> CachedClip:
        if not 0 <= index < self.length:
            raise IndexError(f"CachedClipDataset: index {index} is out of range "
                             f"[0, {self.length})")
        spec = self.sampler.sample(int(index), self.epoch)
        video = self._video(spec.video_id)
        labels, masks, ids = [], [], []
        for t in spec.frame_indices:
            lab, m, i = self.videos.frame_targets(spec.video_id, t)
            labels.append(lab)
            masks.append(m)
            ids.append(i)
        clip = video.select(spec.frame_indices)
        return CachedClip(cached=clip, stamps=clip.stamps, labels=labels, masks=masks,
                          track_ids=ids, video_id=spec.video_id,
                          frame_indices=tuple(spec.frame_indices),
                          segmenter_digest=str(self.cache.meta["segmenter_digest"]))
