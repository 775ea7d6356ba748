"""Fixed 2D sine positional encoding (DETR / Mask2Former ``PositionEmbeddingSine``)."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine encoding of each pixel's (y, x) position, half the channels per axis.

    Channel layout (matches Mask2Former, so pretrained weights see the same encoding): the first
    ``num_pos_feats`` channels encode y, the next ``num_pos_feats`` encode x; within each half,
    channel ``2i`` is ``sin(p / T^(2i/F))`` and ``2i + 1`` is ``cos(p / T^(2i/F))``, where ``p`` is
    the 1-based pixel index along the axis (counting only non-padded pixels), divided by the
    axis length and multiplied by ``scale`` when ``normalize`` is set.

    The module has no parameters or buffers, so it adds no keys to a state dict.

    Args:
        num_pos_feats: F, channels per axis (even); the output has 2F channels. Mask2Former uses
            C / 2 for a C-channel feature map.
        temperature: T.
        normalize: divide positions by the (unpadded) axis length, so the encoding does not
            depend on the resolution.
        scale: multiplier of normalised positions (default 2π); only allowed with ``normalize``.
    """

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000.0,
                 normalize: bool = False, scale: float | None = None) -> None:
        super().__init__()
        if not isinstance(num_pos_feats, int) or num_pos_feats <= 0 or num_pos_feats % 2:
            raise ValueError("PositionEmbeddingSine: num_pos_feats must be a positive even int, "
                             f"got {num_pos_feats!r}")
        if temperature <= 0:
            raise ValueError(f"PositionEmbeddingSine: temperature must be > 0, got {temperature!r}")
        if scale is not None and not normalize:
            raise ValueError(f"PositionEmbeddingSine: scale={scale!r} needs normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = float(temperature)
        self.normalize = normalize
        self.scale = 2.0 * math.pi if scale is None else float(scale)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode the positions of a feature map.

        Args:
            x: (B, C, H, W); only its shape, device and dtype are used.
            mask: optional (B, H, W) bool, True on padded pixels (they are not counted).

        Returns:
            (B, 2F, H, W) in x's dtype when x is floating point, else float32.
        """
        if x.dim() != 4:
            raise ValueError(f"PositionEmbeddingSine: x must be (B, C, H, W), got {tuple(x.shape)}")
        b, _, h, w = x.shape
        if mask is None:
            not_mask = torch.ones((b, h, w), device=x.device, dtype=torch.float32)
        else:
            if mask.shape != (b, h, w) or mask.dtype != torch.bool:
                raise ValueError(f"PositionEmbeddingSine: mask must be bool {(b, h, w)}, got "
                                 f"{mask.dtype} {tuple(mask.shape)}")
            not_mask = (~mask).to(torch.float32)
        y_embed = not_mask.cumsum(1)
        x_embed = not_mask.cumsum(2)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        f = self.num_pos_feats
        dim_t = torch.arange(f, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / f)
        pos_x = x_embed[..., None] / dim_t  # (B, H, W, F)
        pos_y = y_embed[..., None] / dim_t
        # Interleave sin (even channels) and cos (odd channels).
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        pos = torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
        return pos.to(x.dtype) if x.is_floating_point() else pos

    def extra_repr(self) -> str:
        return (f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
                f"normalize={self.normalize}, scale={self.scale:.4f}")
