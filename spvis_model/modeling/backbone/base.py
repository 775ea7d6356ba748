"""The backbone interface the segmenter codes against.

A backbone maps a normalised image batch to four feature maps:

- input ``x``: ``(B, 3, H, W)`` float, RGB, already ``(x - pixel_mean) / pixel_std`` with the
  backbone's own ``pixel_mean``/``pixel_std`` (0..255 scale); ``H`` and ``W`` multiples of
  ``size_divisibility`` (32).
- output: ``{"res2": (B, C2, H/4, W/4), "res3": (B, C3, H/8, W/8), "res4": (B, C4, H/16, W/16),
  "res5": (B, C5, H/32, W/32)}`` with ``C* = out_channels[name]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

FEATURE_NAMES: tuple[str, ...] = ("res2", "res3", "res4", "res5")
FEATURE_STRIDES: dict[str, int] = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}

IMAGENET_PIXEL_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_PIXEL_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)


class Backbone(nn.Module):
    """Base class: validates the input, then calls :meth:`forward_features`.

    Subclasses set ``out_channels``, ``pixel_mean`` and ``pixel_std`` in ``__init__`` and
    implement :meth:`forward_features`.

    Attributes:
        out_channels: channels of each output map, keys ``res2``..``res5``.
        strides: stride of each output map relative to the input: 4, 8, 16, 32.
        pixel_mean: RGB mean on the 0..255 scale that the caller subtracts before ``forward``.
        pixel_std: RGB std on the 0..255 scale that the caller divides by before ``forward``.
        size_divisibility: ``H`` and ``W`` must be multiples of this (32).
    """

    out_channels: dict[str, int]
    strides: dict[str, int]
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    size_divisibility: int = 32

    def __init__(self) -> None:
        super().__init__()
        self.strides = dict(FEATURE_STRIDES)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Feature maps of a normalised image batch.

        Args:
            x: ``(B, 3, H, W)`` float, normalised with ``pixel_mean``/``pixel_std``;
                ``H``, ``W`` multiples of ``size_divisibility``.

        Returns:
            ``{"res2": (B, C2, H/4, W/4), ..., "res5": (B, C5, H/32, W/32)}``.
        """
        self.check_input(x)
        return self.forward_features(x)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """The network itself, on an input already checked by :meth:`check_input`."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_features")

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` naming ``x`` and its shape/dtype unless it is a valid input."""
        if not isinstance(x, Tensor):
            raise TypeError(f"backbone input x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"backbone input x must be (B, 3, H, W), got shape {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            raise ValueError(f"backbone input x must be floating point, got dtype {x.dtype}")
        h, w = x.shape[-2:]
        d = self.size_divisibility
        if h % d or w % d or h == 0 or w == 0:
            raise ValueError(
                f"backbone input x must have H and W positive multiples of size_divisibility={d}, "
                f"got H={h}, W={w} (shape {tuple(x.shape)}); pad the batch first"
            )

    def output_shapes(self) -> dict[str, tuple[int, int]]:
        """``{name: (channels, stride)}`` for the four outputs, in order res2..res5."""
        return {name: (self.out_channels[name], self.strides[name]) for name in FEATURE_NAMES}


def norm_affine(mean: Tensor, var: Tensor, eps: float, weight: Tensor | None = None,
                bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """A batch norm with fixed statistics as ``x * scale + shift``: ``(scale, shift)``, each
    ``(C,)``, in float32 or wider (``weight`` / ``bias`` None: no affine part)."""
    dtype = torch.promote_types(var.dtype, torch.float32)
    scale = (var.to(dtype) + eps).rsqrt()
    if weight is not None:
        scale = scale * weight.to(dtype)
    shift = -mean.to(dtype) * scale
    if bias is not None:
        shift = shift + bias.to(dtype)
    return scale, shift


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (all buffers, no parameters).

    The state dict holds ``weight``, ``bias``, ``running_mean`` and ``running_var`` (as
    detectron2's FrozenBatchNorm2d), plus ``num_batches_tracked`` when
    ``with_num_batches_tracked`` is set, so that it can stand in for ``nn.BatchNorm2d`` in a
    checkpoint saved from one (the value is kept, never used).

    Shapes: input ``(B, C, H, W)``, output ``(B, C, H, W)``; computes
    ``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` per channel.
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(
        self, num_features: int, eps: float = 1e-5, *, with_num_batches_tracked: bool = False
    ) -> None:
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"num_features must be positive, got {num_features}")
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        if with_num_batches_tracked:
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def scale_shift(self) -> tuple[Tensor, Tensor]:
        """The per-channel affine map ``(scale, shift)``, each ``(C,)``, in float32 or wider."""
        return norm_affine(self.running_mean, self.running_var, self.eps, self.weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``; the affine map is computed in float32 or wider."""
        scale, shift = self.scale_shift()
        return x * scale.to(x.dtype).view(1, -1, 1, 1) + shift.to(x.dtype).view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        """Shown by ``print(module)``."""
        return f"{self.num_features}, eps={self.eps}"
