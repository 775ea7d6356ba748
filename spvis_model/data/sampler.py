"""Clip sampling for training: which video, which frames, at a random (low) frame rate.

Every clip is a pure function of (seed, epoch, index), so any worker or process computes the
same clip for the same dataset index (distributed training) and training resumes exactly from
(epoch, position)::

    ds = YTVISDataset(path)
    sampler = ClipSampler(ds, clip_len=3, stride_min=1, stride_max=10, seed=0)
    train = ClipDataset(ds, sampler, ClipAugment(), length=10_000)
    loader = DataLoader(train, batch_size=4, shuffle=False, collate_fn=collate_clips)
    for epoch in range(start_epoch, epochs):
        train.set_epoch(epoch)
        for clips in loader: ...

Index -> video: the videos are visited in rounds; index i of epoch e is video
``perm(seed, e, i // V)[i % V]`` (V = number of videos, perm a seeded permutation per round),
so an epoch of `length` indices shows every video length / V times, give or take one, and a
new epoch reshuffles. A `DistributedSampler(shuffle=False)` or plain slicing of the index range
splits the work between processes without changing the clips.

Index -> frames: a stride s is drawn uniformly from [stride_min, stride_max] and the clip is
``start + s * k`` for k = 0..clip_len-1 with a uniform start (frame order increasing). When the
video is too short for s, s shrinks to the largest stride that fits (below stride_min if need
be, down to 1); when it is shorter than clip_len frames, the clip is every frame followed by the
last frame repeated (stamps repeat too: time does not advance on the repeats).

With a multi-worker DataLoader, `set_epoch` reaches the workers only when they are created
after it (the default, ``persistent_workers=False``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from spvis_model.data.transforms import ClipTransform
from spvis_model.data.ytvis import Clip, YTVISDataset, collate_clips

__all__ = ["Clip", "ClipDataset", "ClipSampler", "ClipSpec", "clip_frame_indices",
           "collate_clips", "derive_seed"]

STREAM_VIDEO = 0
STREAM_FRAMES = 1
STREAM_AUGMENT = 2


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of non-negative integer keys (NumPy SeedSequence
    hashing: nearby keys give unrelated seeds). ValueError naming the key when one is negative
    or not an integer."""
    for k, key in enumerate(keys):
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
            raise ValueError(f"derive_seed: key {k} must be a non-negative integer, got {key!r}")
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def _rng(*keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(derive_seed(*keys)))


@dataclass(frozen=True)
class ClipSpec:
    """What to load: a video id, its frame indices (non-decreasing) and the stride used."""

    video_id: int
    frame_indices: tuple[int, ...]
    stride: int


def clip_frame_indices(length: int, clip_len: int, stride: int, start_u: float
                       ) -> tuple[list[int], int]:
    """Frame indices of a clip of `clip_len` frames from a video of `length` frames.

    Args:
        length: frames in the video (>= 1).
        clip_len: frames in the clip (>= 1).
        stride: wanted stride (>= 1); shrunk to the largest that fits.
        start_u: uniform number in [0, 1) choosing the first frame.

    Returns:
        (indices, stride used). When length < clip_len: every frame, then the last one repeated,
        stride 1.
    """
    if length < 1 or clip_len < 1 or stride < 1:
        raise ValueError(f"clip_frame_indices: length, clip_len and stride must be >= 1, got "
                         f"{length}, {clip_len}, {stride}")
    if length < clip_len:
        return list(range(length)) + [length - 1] * (clip_len - length), 1
    if clip_len == 1:
        return [min(int(start_u * length), length - 1)], stride
    stride = min(stride, (length - 1) // (clip_len - 1))
    span = (clip_len - 1) * stride + 1
    start = min(int(start_u * (length - span + 1)), length - span)
    return [start + stride * k for k in range(clip_len)], stride


class ClipSampler:
    """Deterministic clip sampler: `sample(index, epoch)` -> `ClipSpec`.

    Args:
        videos: a `YTVISDataset` or a mapping video id -> number of frames.
        clip_len: frames per clip (>= 1).
        stride_min, stride_max: range of the random frame stride (1 <= min <= max); the default
            1-10 shows the model frame rates from the dataset's down to a tenth of it.
        seed: base seed (>= 0).
        skip_empty: with a `YTVISDataset`, leave out videos without any non-crowd annotation.
    """

    def __init__(self, videos: YTVISDataset | Mapping[int, int], clip_len: int, *,
                 stride_min: int = 1, stride_max: int = 10, seed: int = 0,
                 skip_empty: bool = True) -> None:
        for name, value, lo in (("clip_len", clip_len, 1), ("stride_min", stride_min, 1),
                                ("stride_max", stride_max, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
                raise ValueError(f"ClipSampler: {name} = {value!r}: must be an integer >= {lo}")
        if stride_min > stride_max:
            raise ValueError(f"ClipSampler: stride_min = {stride_min} must be <= stride_max = "
                             f"{stride_max}")
        if isinstance(videos, YTVISDataset):
            lengths = {v.id: v.length for v in videos.videos
                       if not skip_empty or any(not t.iscrowd and t.frame_areas.any()
                                                for t in videos.tracks(v.id))}
        else:
            lengths = {}
            for vid, n in videos.items():
                if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                    raise ValueError(f"ClipSampler: video {vid!r} has length {n!r}: must be an "
                                     "integer >= 1")
                lengths[int(vid)] = int(n)
        if not lengths:
            raise ValueError("ClipSampler: no videos to sample from (empty dataset, or every "
                             "video without non-crowd annotations and skip_empty=True)")
        self.video_ids: list[int] = list(lengths)
        self.lengths: dict[int, int] = lengths
        self.clip_len = int(clip_len)
        self.stride_min = int(stride_min)
        self.stride_max = int(stride_max)
        self.seed = int(seed)
        self._perms: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        """Number of videos sampled from."""
        return len(self.video_ids)

    def _permutation(self, epoch: int, rnd: int) -> np.ndarray:
        key = (epoch, rnd)
        perm = self._perms.get(key)
        if perm is None:
            perm = _rng(self.seed, STREAM_VIDEO, epoch, rnd).permutation(len(self.video_ids))
            self._perms[key] = perm
            if len(self._perms) > 16:
                self._perms.popitem(last=False)
        return perm

    def sample(self, index: int, epoch: int) -> ClipSpec:
        """The clip of dataset index `index` in epoch `epoch` (both >= 0); a pure function of
        (seed, epoch, index) and the sampler's settings."""
        for name, value in (("index", index), ("epoch", epoch)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"ClipSampler.sample: {name} = {value!r}: must be an integer "
                                 ">= 0")
        n = len(self.video_ids)
        video_id = self.video_ids[int(self._permutation(int(epoch), int(index) // n)[index % n])]
        rng = _rng(self.seed, STREAM_FRAMES, int(epoch), int(index))
        stride = int(rng.integers(self.stride_min, self.stride_max + 1))
        start_u = float(rng.random())
        indices, used = clip_frame_indices(self.lengths[video_id], self.clip_len, stride, start_u)
        return ClipSpec(video_id, tuple(indices), used)


class ClipDataset(Dataset[Clip]):
    """Map-style torch dataset of `length` sampled, transformed clips.

    Item i of the current epoch is ``transform(dataset.load_clip(*sampler.sample(i, epoch)),
    generator)`` with a torch.Generator seeded from (sampler.seed, epoch, i): a pure function of
    (seed, epoch, i).

    Args:
        dataset: the frames and annotations.
        sampler: chooses the clip of each index.
        transform: called as ``transform(clip, generator)``; None keeps the clip as loaded.
        length: number of items per epoch (>= 1).
    """

    def __init__(self, dataset: YTVISDataset, sampler: ClipSampler,
                 transform: ClipTransform | None, length: int) -> None:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"ClipDataset: length = {length!r}: must be an integer >= 1")
        known = {v.id for v in dataset.videos}
        unknown = [vid for vid in sampler.video_ids if vid not in known]
        if unknown:
            raise ValueError(f"ClipDataset: the sampler's videos {unknown[:5]} are not in the "
                             "dataset")
        self.dataset = dataset
        self.sampler = sampler
        self.transform = transform
        self.length = int(length)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose clips `__getitem__` returns (reshuffles videos and frames)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"ClipDataset.set_epoch: epoch = {epoch!r}: must be an integer >= 0")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> ClipSpec:
        """The `ClipSpec` of item `index` in the current epoch."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                or not 0 <= index < self.length:
            raise IndexError(f"ClipDataset: index {index!r} is out of range [0, {self.length})")
        return self.sampler.sample(int(index), self.epoch)

    def __getitem__(self, index: int) -> Clip:
        spec = self.spec(index)
        clip = self.dataset.load_clip(spec.video_id, spec.frame_indices)
        if self.transform is None:
            return clip
        generator = torch.Generator()
        generator.manual_seed(derive_seed(self.sampler.seed, STREAM_AUGMENT, self.epoch,
                                          int(index)))
        return self.transform(clip, generator)
