"""Instances: what the model reports for one frame, at the frame's own resolution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Instances:
    """Tracked instances in one frame (N of them), as numpy arrays on the CPU.

    Attributes:
        ids: (N,) int64 persistent track ids (unique per stream, never reused).
        labels: (N,) int64 class indices into the model's class_names.
        label_names: N class names.
        scores: (N,) float32 in [0, 1].
        boxes: (N, 4) float32 (x1, y1, x2, y2) in pixels, x2/y2 exclusive.
        masks: (N, H, W) bool at the frame's resolution.
        visibility: (N,) float32 in [0, 1].
        first_seen: (N,) float64 stamp of the frame where each id first appeared.
        track_scores: (N,) float32 in [0, 1], each track's learned probability of being right
            (stage 2's score model) when the model has one, else None; (0,) on a frame with
            no instances when the model has one, so arrays of a stream concatenate. The MinVIS
            baseline (`tracker.association = "minvis"`) has no track scores: always None.
            Result files rank whole tracks by it (spvis_model.eval.results); `scores` is what
            is published per frame.
    """

    ids: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    scores: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    visibility: np.ndarray
    first_seen: np.ndarray
    track_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the frame."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @classmethod
    def empty(cls, height: int, width: int, track_scores: bool = False) -> Instances:
        """No instances on a (height, width) frame; `track_scores`: the model has a score
        model, so `track_scores` is a (0,) float32 array rather than None."""
        return cls(ids=np.zeros(0, np.int64), labels=np.zeros(0, np.int64), label_names=[],
                   scores=np.zeros(0, np.float32), boxes=np.zeros((0, 4), np.float32),
                   masks=np.zeros((0, height, width), bool),
                   visibility=np.zeros(0, np.float32), first_seen=np.zeros(0, np.float64),
                   track_scores=np.zeros(0, np.float32) if track_scores else None)
