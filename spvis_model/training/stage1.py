"""Stage 1: train the segmenter. Every frame of every clip is an independent image.

Frames arrive at training size (the data set resized them), so the task only normalises them
with the model's pixel mean/std and pads bottom/right with zeros to a common size that is a
multiple of 32, exactly as `SPVIS.preprocess` does at inference. Ground-truth masks are padded
the same way (False), so predictions and targets cover the same padded image. The loss is
Mask2Former's (`SetCriterion`: Hungarian matching, class CE ×2 with no-object weight 0.1, mask
BCE ×5 and dice ×5 on importance-sampled points) with deep supervision over every aux output,
plus, when `contrast_weight` > 0, the instance-contrastive term of
`spvis_model.training.instance_contrast` on the last layer's query embeddings (clips of two or
more frames).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from spvis_model.training.criterion import SetCriterion
from spvis_model.training.instance_contrast import instance_contrast_loss

if TYPE_CHECKING:
    from spvis_model.model import SPVIS


class SegmenterTask:
    """Stage-1 task (the `Task` protocol of spvis_model.training.tasks).

    Args (keyword, from TrainConfig.task_options):
        num_points: points per mask for the mask losses and the matcher (Mask2Former: 12544).
        class_weight, mask_weight, dice_weight, eos_coef: SetCriterion's weights.
        oversample_ratio, importance_sample_ratio: SetCriterion's point sampling.
        deep_supervision: also supervise every aux output (default True).
        contrast_weight: weight of the instance-contrastive term (0: off, the default; it
            needs clips of two or more frames).
        contrast_temperature: its softmax temperature (> 0).

    Logs: loss_ce, loss_mask, loss_dice (last layer, unweighted), loss_aux (weighted sum of the
    aux layers' terms), num_masks (ground-truth masks in this rank's batch) and, with the
    contrastive term on, loss_contrast (unweighted) and contrast_anchors.
    """

    name = "segmenter"
    find_unused_parameters = False  # every segmenter parameter gets a gradient on every step

    def __init__(self, *, num_points: int = 12544, class_weight: float = 2.0,
                 mask_weight: float = 5.0, dice_weight: float = 5.0, eos_coef: float = 0.1,
                 oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75,
                 deep_supervision: bool = True, contrast_weight: float = 0.0,
                 contrast_temperature: float = 0.1) -> None:
        if not isinstance(deep_supervision, bool):
            raise ValueError(f"deep_supervision = {deep_supervision!r}: must be a bool")
        for name, value, zero_ok in (("contrast_weight", contrast_weight, True),
                                     ("contrast_temperature", contrast_temperature, False)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and (value > 0 or (zero_ok and value == 0))):
                raise ValueError(f"{name} = {value!r}: must be a finite number "
                                 f"{'>= 0' if zero_ok else '> 0'}")
        self.deep_supervision = deep_supervision
        self.contrast_weight = float(contrast_weight)
        self.contrast_temperature = float(contrast_temperature)
        self._criterion_args: dict[str, Any] = dict(
            num_points=num_points, class_weight=class_weight, mask_weight=mask_weight,
            dice_weight=dice_weight, eos_coef=eos_coef, oversample_ratio=oversample_ratio,
            importance_sample_ratio=importance_sample_ratio)
        SetCriterion(1, **self._criterion_args)  # validate the options now
        self._criterion: SetCriterion | None = None

    def criterion(self, num_classes: int) -> SetCriterion:
        if self._criterion is None or self._criterion.num_classes != num_classes:
            self._criterion = SetCriterion(num_classes, **self._criterion_args)
        return self._criterion

    def trainable_parameters(self, model: SPVIS) -> list[nn.Parameter]:
        """Every segmenter parameter that requires grad (backbone, pixel decoder, decoder)."""
        return [p for p in model.segmenter.parameters() if p.requires_grad]

    def loss(self, model: SPVIS, clips: list[Any],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Set-prediction loss over all frames of `clips` as one image batch.

        `generator` is unused: the criterion's point sampling draws from the global torch RNG,
        which the trainer seeds per rank and restores on resume.
        """
        del generator
        images, targets = batch_frames(model, clips)
        decoder = model.segment(images).decoder
        outputs: Any = decoder
        if not self.deep_supervision:
            outputs = {"pred_logits": decoder.pred_logits, "pred_masks": decoder.pred_masks}
        out = self.criterion(model.cfg.num_classes)(outputs, targets)
        total = out.total()
        logs = {k: float(out.losses[k].detach()) for k in ("loss_ce", "loss_mask", "loss_dice")}
        aux = [out.weight_dict[k] * v for k, v in out.losses.items() if k not in logs]
        if aux:
            logs["loss_aux"] = float(torch.stack(aux).sum().detach())
        logs["num_masks"] = float(sum(len(t["labels"]) for t in targets))
        if self.contrast_weight > 0:
            contrast, anchors = instance_contrast_loss(
                decoder.query_embed, [int(c.frames.shape[0]) for c in clips], out.indices,
                [ids for c in clips for ids in c.track_ids], self.contrast_temperature)
            total = total + self.contrast_weight * contrast
            logs["loss_contrast"] = float(contrast.detach())
            logs["contrast_anchors"] = float(anchors)
        return total, logs


def batch_frames(model: SPVIS, clips: list[Any]) -> tuple[torch.Tensor,
                                                         list[dict[str, torch.Tensor]]]:
    """All frames of `clips` as one normalised, zero-padded image batch, and their targets.

    Padding is zero *after* normalisation, as in `SPVIS.preprocess`: both the padding added
    here and any the data pipeline already added (a Clip whose `image_size` is smaller than its
    frames, e.g. from `ClipAugment(size_divisibility=32)`).

    Args:
        model: gives pixel_mean / pixel_std and the device.
        clips: Clips: frames (T, 3, H, W) uint8 RGB, labels T × (n_t,) int64, masks
            T × (n_t, H, W) bool, optionally image_size (content height, width). Clips may
            differ in H and W.

    Returns:
        images (ΣT, 3, Hp, Wp) float32 with Hp, Wp the largest H, W rounded up to 32; and ΣT
        target dicts {"labels": (n_t,) int64, "masks": (n_t, Hp, Wp) bool} on the model's device.
    """
    if not clips:
        raise ValueError("clips: empty batch")
    for clip in clips:
        _check_clip(clip)
    dev = model.device
    hp = math.ceil(max(int(c.frames.shape[2]) for c in clips) / 32) * 32
    wp = math.ceil(max(int(c.frames.shape[3]) for c in clips) / 32) * 32
    images, targets = [], []
    for clip in clips:
        h, w = int(clip.frames.shape[2]), int(clip.frames.shape[3])
        x = (clip.frames.to(dev).float() - model.pixel_mean) / model.pixel_std
        ih, iw = _content_size(clip)
        if (ih, iw) != (h, w):  # the data pipeline padded the uint8 frames: zero the padding
            x[:, :, ih:, :] = 0.0
            x[:, :, :, iw:] = 0.0
        images.append(F.pad(x, (0, wp - w, 0, hp - h)))
        for labels, masks in zip(clip.labels, clip.masks, strict=True):
            targets.append({"labels": labels.to(dev),
                            "masks": F.pad(masks.to(dev), (0, wp - w, 0, hp - h))})
    return torch.cat(images), targets


def _content_size(clip: Any) -> tuple[int, int]:
    h, w = int(clip.frames.shape[2]), int(clip.frames.shape[3])
    size = getattr(clip, "image_size", None)
    if size is None:
        return h, w
    ih, iw = int(size[0]), int(size[1])
    if not (0 < ih <= h and 0 < iw <= w):
        raise ValueError(f"clip {getattr(clip, 'video_id', '?')!r}: image_size = {tuple(size)} "
                         f"must fit inside the frames ({h}, {w})")
    return ih, iw


def _check_clip(clip: Any) -> None:
    name = f"clip {getattr(clip, 'video_id', '?')!r}"
    frames = clip.frames
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.dim() != 4 \
            or frames.shape[1] != 3:
        got = (f"{frames.dtype} {tuple(frames.shape)}" if isinstance(frames, torch.Tensor)
               else type(frames).__name__)
        raise ValueError(f"{name}: frames must be a (T, 3, H, W) uint8 tensor, got {got}")
    t, _, h, w = frames.shape
    if len(clip.labels) != t or len(clip.masks) != t:
        raise ValueError(f"{name}: {t} frames but {len(clip.labels)} label and "
                         f"{len(clip.masks)} mask entries")
    for i, (labels, masks) in enumerate(zip(clip.labels, clip.masks, strict=True)):
        if labels.dim() != 1 or labels.dtype != torch.int64:
            raise ValueError(f"{name}: labels[{i}] must be (n,) int64, got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        if masks.dtype != torch.bool or masks.dim() != 3 \
                or tuple(masks.shape) != (labels.shape[0], h, w):
            raise ValueError(f"{name}: masks[{i}] must be ({labels.shape[0]}, {h}, {w}) bool, "
                             f"got {masks.dtype} {tuple(masks.shape)}")
