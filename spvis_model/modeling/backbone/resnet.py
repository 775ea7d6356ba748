"""ResNet-50 / ResNet-101 laid out as detectron2's ``build_resnet_backbone`` (as Mask2Former,
MinVIS and DVIS configure it).

Module names, and so state-dict keys, follow detectron2, so the ``backbone.*`` tensors of a
Mask2Former R50 / R101 checkpoint map by name after stripping the ``backbone.`` prefix:

- ``stem.conv1.weight`` (64, 3, 7, 7) and ``stem.conv1.norm.{weight,bias,running_mean,
  running_var}``;
- ``res2``..``res5``: 3, 4, 6, 3 (R50) or 3, 4, 23, 3 (R101) bottleneck blocks, each with
  ``conv1``/``conv2``/``conv3`` (1x1, 3x3, 1x1; no bias) and a ``.norm``; the first block of
  each stage also has ``shortcut`` (1x1, stride of the stage) and ``shortcut.norm``.

Norm is :class:`FrozenBatchNorm2d` (buffers only, eps 1e-5; Mask2Former leaves
``MODEL.RESNETS.NORM`` at detectron2's default ``"FrozenBN"``), the stride of a stage sits in
the 3x3 conv (``STRIDE_IN_1X1: False``), stem is conv 7x7/2 + ReLU + max-pool 3x3/2.
Channels at the published width 64: res2 256, res3 512, res4 1024, res5 2048. A smaller
``width`` w (stem w, res2 bottleneck w, output 4w, doubling per stage) is detectron2's
``STEM_OUT_CHANNELS = WIDTH_PER_GROUP = w``, ``RES2_OUT_CHANNELS = 4w``; the tests use it for
small reference fixtures.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .base import IMAGENET_PIXEL_MEAN, IMAGENET_PIXEL_STD, Backbone, FrozenBatchNorm2d
from .folding import conv_norm

#: (blocks, bottleneck channels, out channels, first stride) of res2..res5 in ResNet-50.
R50_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (3, 64, 256, 1),
    (4, 128, 512, 2),
    (6, 256, 1024, 2),
    (3, 512, 2048, 2),
)
R50_STEM_CHANNELS = 64
#: Bottleneck blocks of res2..res5 by depth (detectron2's ``num_blocks_per_stage``).
RESNET_BLOCKS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
#: The published width: stem and res2 bottleneck channels.
RESNET_WIDTH = 64


def resnet_stages(depth: int, width: int = RESNET_WIDTH) -> tuple[tuple[int, int, int, int], ...]:
    """(blocks, bottleneck channels, out channels, first stride) of res2..res5.

    Args:
        depth: 50 or 101.
        width: stem / res2 bottleneck channels (64 published).
    """
    if depth not in RESNET_BLOCKS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_BLOCKS)}, got {depth!r}")
    if not isinstance(width, int) or width <= 0:
        raise ValueError(f"ResNet width must be a positive int, got {width!r}")
    return tuple((n, width << i, (4 * width) << i, 1 if i == 0 else 2)
                 for i, n in enumerate(RESNET_BLOCKS[depth]))


class ConvNorm2d(nn.Conv2d):
    """Conv2d followed by a norm held as ``self.norm`` (detectron2's ``Conv2d`` key layout).

    Shapes: ``(B, C_in, H, W) -> (B, C_out, H', W')`` as the convolution; no activation.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
        padding: int = 0,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.norm = FrozenBatchNorm2d(out_channels)
        # detectron2's c2_msra_fill: He normal with fan_out.
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H', W')``: conv then norm, the norm folded into
        the conv (``folding.conv_norm``)."""
        return conv_norm(self, self.norm, x)


class BasicStem(nn.Module):
    """Conv 7x7 stride 2 + FrozenBN + ReLU + max-pool 3x3 stride 2: ``(B, 3, H, W) ->
    (B, 64, H/4, W/4)``."""

    def __init__(self, out_channels: int = R50_STEM_CHANNELS) -> None:
        super().__init__()
        self.conv1 = ConvNorm2d(3, out_channels, 7, stride=2, padding=3)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W) -> (B, 64, H/4, W/4)``."""
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (stride here) -> 1x1, each with FrozenBN, ReLU after the first two and
    after the residual sum; a projection ``shortcut`` when channels change.

    Shapes: ``(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)``.
    """

    def __init__(
        self, in_channels: int, bottleneck_channels: int, out_channels: int, stride: int
    ) -> None:
        super().__init__()
        self.shortcut: ConvNorm2d | None = None
        if in_channels != out_channels:
            self.shortcut = ConvNorm2d(in_channels, out_channels, 1, stride=stride)
        self.conv1 = ConvNorm2d(in_channels, bottleneck_channels, 1)
        self.conv2 = ConvNorm2d(bottleneck_channels, bottleneck_channels, 3, stride=stride,
                                padding=1)
        self.conv3 = ConvNorm2d(bottleneck_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)``."""
        y = F.relu_(self.conv1(x))
        y = F.relu_(self.conv2(y))
        y = self.conv3(y)
        y = y + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu_(y)


class ResNet(Backbone):
    """ResNet-50 or -101 with FrozenBN, random init (weights come from a checkpoint).

    Outputs (input ``(B, 3, H, W)`` normalised with the ImageNet RGB mean/std on the 0..255
    scale), at width w (64 published): res2 ``(B, 4w, H/4, W/4)``, res3 ``(B, 8w, H/8, W/8)``,
    res4 ``(B, 16w, H/16, W/16)``, res5 ``(B, 32w, H/32, W/32)``.

    Every tensor of a FrozenBN is a buffer, so the trainable parameters are only the conv
    weights (as Mask2Former's ``FREEZE_AT: 0``).

    Args:
        depth: 50 or 101.
        width: stem and res2 bottleneck channels.
    """

    def __init__(self, depth: int = 50, width: int = RESNET_WIDTH) -> None:
        super().__init__()
        stages = resnet_stages(depth, width)
        self.depth = depth
        self.pixel_mean = IMAGENET_PIXEL_MEAN
        self.pixel_std = IMAGENET_PIXEL_STD
        self.stem = BasicStem(width)
        in_ch = width
        self.out_channels = {}
        for i, (n_blocks, mid, out_ch, stride) in enumerate(stages):
            name = f"res{i + 2}"
            blocks = [
                BottleneckBlock(in_ch if b == 0 else out_ch, mid, out_ch, stride if b == 0 else 1)
                for b in range(n_blocks)
            ]
            self.add_module(name, nn.Sequential(*blocks))
            self.out_channels[name] = out_ch
            in_ch = out_ch

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, 3, H, W)`` -> res2..res5 (4w, 8w, 16w, 32w channels at H/4..H/32)."""
        out: dict[str, Tensor] = {}
        x = self.stem(x)
        for name in ("res2", "res3", "res4", "res5"):
            x = getattr(self, name)(x)
            out[name] = x
        return out


class ResNet50(ResNet):
    """ResNet-50 (3, 4, 6, 3 blocks): 256, 512, 1024, 2048 channels at the published width."""

    def __init__(self, width: int = RESNET_WIDTH) -> None:
        super().__init__(50, width)


class ResNet101(ResNet):
    """ResNet-101 (3, 4, 23, 3 blocks): 256, 512, 1024, 2048 channels at the published width."""

    def __init__(self, width: int = RESNET_WIDTH) -> None:
        super().__init__(101, width)
