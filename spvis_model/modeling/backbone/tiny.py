"""A small random-init conv net with the backbone interface, for tests and smoke runs."""

from __future__ import annotations

from torch import Tensor, nn

from .base import IMAGENET_PIXEL_MEAN, IMAGENET_PIXEL_STD, Backbone


def _conv_gn_relu(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """3x3 conv (stride ``stride``, padding 1) + GroupNorm + ReLU: ``(B, in_ch, H, W) ->
    (B, out_ch, H/stride, W/stride)``."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(8, out_ch // 4), out_ch),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(Backbone):
    """Two 3x3 convs per stage; GroupNorm so that outputs do not depend on the batch.

    Outputs (input ``(B, 3, H, W)``): res2 ``(B, c0, H/4, W/4)``, res3 ``(B, c1, H/8, W/8)``,
    res4 ``(B, c2, H/16, W/16)``, res5 ``(B, c3, H/32, W/32)`` with
    ``channels = (c0, c1, c2, c3)``, default ``(16, 32, 64, 128)``.
    """

    def __init__(self, channels: tuple[int, int, int, int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        if len(channels) != 4 or any(c < 4 or c % 4 for c in channels):
            raise ValueError(
                f"channels must be 4 positive multiples of 4, got {tuple(channels)}"
            )
        c2, c3, c4, c5 = channels
        self.pixel_mean = IMAGENET_PIXEL_MEAN
        self.pixel_std = IMAGENET_PIXEL_STD
        self.out_channels = {"res2": c2, "res3": c3, "res4": c4, "res5": c5}
        # Stem: two stride-2 convs -> stride 4.
        self.stem = nn.Sequential(_conv_gn_relu(3, c2, 2), _conv_gn_relu(c2, c2, 2))
        self.res2 = _conv_gn_relu(c2, c2, 1)
        self.res3 = nn.Sequential(_conv_gn_relu(c2, c3, 2), _conv_gn_relu(c3, c3, 1))
        self.res4 = nn.Sequential(_conv_gn_relu(c3, c4, 2), _conv_gn_relu(c4, c4, 1))
        self.res5 = nn.Sequential(_conv_gn_relu(c4, c5, 2), _conv_gn_relu(c5, c5, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, 3, H, W)`` -> the four maps at strides 4, 8, 16, 32."""
        r2 = self.res2(self.stem(x))
        r3 = self.res3(r2)
        r4 = self.res4(r3)
        r5 = self.res5(r4)
        return {"res2": r2, "res3": r3, "res4": r4, "res5": r5}
