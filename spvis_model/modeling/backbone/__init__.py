"""Backbones of the segmenter: ``build_backbone(name, pretrained=...)`` -> :class:`Backbone`.

Every backbone maps ``(B, 3, H, W)`` (RGB normalised with its own ``pixel_mean``/``pixel_std``,
``H``, ``W`` multiples of 32) to ``{"res2", "res3", "res4", "res5"}`` at strides 4, 8, 16, 32.
"""

from spvis_model.state_dict import StateDictMismatch, StateDictMismatchError, load_state_dict_exact

from .base import FEATURE_NAMES, FEATURE_STRIDES, Backbone, FrozenBatchNorm2d
from .build import BACKBONE_NAMES, CHECKPOINT_BACKBONES, build_backbone
from .efficientnet_lite import (
    LITE0_HEAD_KEYS,
    LITE0_PIXEL_MEAN,
    LITE0_PIXEL_STD,
    EfficientNetLite0,
    load_lite0_weights,
    read_lite0_state_dict,
)
from .resnet import ResNet, ResNet50, ResNet101
from .swin import SWIN_VARIANTS, SwinTransformer, build_swin
from .tiny import TinyBackbone

__all__ = [
    "BACKBONE_NAMES",
    "CHECKPOINT_BACKBONES",
    "FEATURE_NAMES",
    "FEATURE_STRIDES",
    "LITE0_HEAD_KEYS",
    "LITE0_PIXEL_MEAN",
    "LITE0_PIXEL_STD",
    "SWIN_VARIANTS",
    "Backbone",
    "EfficientNetLite0",
    "FrozenBatchNorm2d",
    "ResNet",
    "ResNet50",
    "ResNet101",
    "StateDictMismatch",
    "StateDictMismatchError",
    "SwinTransformer",
    "TinyBackbone",
    "build_backbone",
    "build_swin",
    "load_lite0_weights",
    "load_state_dict_exact",
    "read_lite0_state_dict",
]
