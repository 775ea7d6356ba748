"""Backbones of the segmenter: ``build_backbone(name, pretrained=...)`` -> :class:`Backbone`.

Every backbone maps ``(B, 3, H, W)`` (RGB normalised with its own ``pixel_mean``/``pixel_std``,
``H``, ``W`` multiples of 32) to ``{"res2", "res3", "res4", "res5"}`` at strides 4, 8, 16, 32.
"""

from spvis_model.state_dict import StateDictMismatch, StateDictMismatchError, load_state_dict_exact

from .base import FEATURE_NAMES, FEATURE_STRIDES, Backbone, FrozenBatchNorm2d
from .build import BACKBONE_NAMES, build_backbone
from .efficientnet_lite import (
    LITE0_HEAD_KEYS,
    LITE0_PIXEL_MEAN,
    LITE0_PIXEL_STD,
    EfficientNetLite0,
    load_lite0_weights,
    read_lite0_state_dict,
)
from .resnet import ResNet50
from .tiny import TinyBackbone

__all__ = [
    "BACKBONE_NAMES",
    "FEATURE_NAMES",
    "FEATURE_STRIDES",
    "LITE0_HEAD_KEYS",
    "LITE0_PIXEL_MEAN",
    "LITE0_PIXEL_STD",
    "Backbone",
    "EfficientNetLite0",
    "FrozenBatchNorm2d",
    "ResNet50",
    "StateDictMismatch",
    "StateDictMismatchError",
    "TinyBackbone",
    "build_backbone",
    "load_lite0_weights",
    "load_state_dict_exact",
    "read_lite0_state_dict",
]
