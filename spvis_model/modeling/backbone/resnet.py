"""ResNet-50 laid out as detectron2's ``build_resnet_backbone`` (as Mask2Former configures it).

Module names, and so state-dict keys, follow detectron2, so the ``backbone.*`` tensors of a
Mask2Former R50 checkpoint map by name after stripping the ``backbone.`` prefix:

- ``stem.conv1.weight`` (64, 3, 7, 7) and ``stem.conv1.norm.{weight,bias,running_mean,
  running_var}``;
- ``res2``..``res5``: 3, 4, 6, 3 bottleneck blocks, each with ``conv1``/``conv2``/``conv3``
  (1x1, 3x3, 1x1; no bias) and a ``.norm``; the first block of each stage also has
  ``shortcut`` (1x1, stride of the stage) and ``shortcut.norm``.

Norm is :class:`FrozenBatchNorm2d` (buffers only, eps 1e-5; Mask2Former leaves
``MODEL.RESNETS.NORM`` at detectron2's default ``"FrozenBN"``), the stride of a stage sits in
the 3x3 conv (``STRIDE_IN_1X1: False``), stem is conv 7x7/2 + ReLU + max-pool 3x3/2.
Channels: res2 256, res3 512, res4 1024, res5 2048.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .base import IMAGENET_PIXEL_MEAN, IMAGENET_PIXEL_STD, Backbone, FrozenBatchNorm2d

#: (blocks, bottleneck channels, out channels, first stride) of res2..res5 in ResNet-50.
R50_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (3, 64, 256, 1),
    (4, 128, 512, 2),
    (6, 256, 1024, 2),
    (3, 512, 2048, 2),
)
R50_STEM_CHANNELS = 64


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
        """``(B, C_in, H, W) -> (B, C_out, H', W')``: conv then norm."""
        return self.norm(super().forward(x))


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


class ResNet50(Backbone):
    """ResNet-50 with FrozenBN, random init (weights come from a Mask2Former checkpoint).

    Outputs (input ``(B, 3, H, W)`` normalised with the ImageNet RGB mean/std on the 0..255
    scale): res2 ``(B, 256, H/4, W/4)``, res3 ``(B, 512, H/8, W/8)``,
    res4 ``(B, 1024, H/16, W/16)``, res5 ``(B, 2048, H/32, W/32)``.

    Every tensor of a FrozenBN is a buffer, so the trainable parameters are only the conv
    weights (as Mask2Former's ``FREEZE_AT: 0``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.pixel_mean = IMAGENET_PIXEL_MEAN
        self.pixel_std = IMAGENET_PIXEL_STD
        self.stem = BasicStem(R50_STEM_CHANNELS)
        in_ch = R50_STEM_CHANNELS
        self.out_channels = {}
        for i, (n_blocks, mid, out_ch, stride) in enumerate(R50_STAGES):
            name = f"res{i + 2}"
            blocks = [
                BottleneckBlock(in_ch if b == 0 else out_ch, mid, out_ch, stride if b == 0 else 1)
                for b in range(n_blocks)
            ]
            self.add_module(name, nn.Sequential(*blocks))
            self.out_channels[name] = out_ch
            in_ch = out_ch

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, 3, H, W)`` -> res2..res5 (256, 512, 1024, 2048 channels at H/4..H/32)."""
        out: dict[str, Tensor] = {}
        x = self.stem(x)
        for name in ("res2", "res3", "res4", "res5"):
            x = getattr(self, name)(x)
            out[name] = x
        return out
