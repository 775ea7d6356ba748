"""Swin transformer backbone with the state-dict layout of Mask2Former's ``D2SwinTransformer``.

Pure PyTorch (no timm, no detectron2). The ``backbone.*`` tensors of a Mask2Former, MinVIS or
DVIS Swin checkpoint map by name after stripping ``backbone.``:

- ``patch_embed.proj`` (conv 4x4 stride 4, 3 -> C) and ``patch_embed.norm`` (LayerNorm C);
- ``layers.{i}.blocks.{j}``: ``norm1``, ``attn.qkv`` (C_i -> 3 C_i), ``attn.proj``,
  ``attn.relative_position_bias_table`` ((2w - 1)^2, heads_i), the buffer
  ``attn.relative_position_index`` (w^2, w^2), ``norm2``, ``mlp.fc1`` (C_i -> 4 C_i),
  ``mlp.fc2``; blocks with odd j use windows shifted by w // 2;
- ``layers.{i}.downsample`` for i < 3 (patch merging): ``norm`` (LayerNorm 4 C_i) and
  ``reduction`` (4 C_i -> 2 C_i, no bias);
- ``norm0``..``norm3``: a LayerNorm on each output.

C_i = C * 2^i. Published variants (name: C, depths, heads, window w):

==========  ====  =============  ===============  ==
swin-t      96    2, 2, 6, 2     3, 6, 12, 24     7
swin-s      96    2, 2, 18, 2    3, 6, 12, 24     7
swin-b      128   2, 2, 18, 2    4, 8, 16, 32     12
swin-l      192   2, 2, 18, 2    6, 12, 24, 48    12
==========  ====  =============  ===============  ==

(Mask2Former's Swin-B and Swin-L are the 384-pixel, window-12 ImageNet models.) Behaviour
follows the reference: feature maps are zero-padded at the bottom/right to a multiple of the
window (after ``norm1``), also when smaller than the window; shifted windows use the attention
mask built on the padded map (-100 between tokens from different regions); no absolute
position embedding; outputs are taken before patch merging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import IMAGENET_PIXEL_MEAN, IMAGENET_PIXEL_STD, Backbone

MASK_VALUE = -100.0  # the reference's additive mask between tokens of different regions


@dataclass(frozen=True)
class SwinVariant:
    """The fixed architecture of a published Swin (depths and window; widths may be scaled)."""

    embed_dim: int
    depths: tuple[int, int, int, int]
    window_size: int

    def default_heads(self, embed_dim: int) -> tuple[int, int, int, int]:
        """The published heads: one per 32 channels in every stage."""
        base = max(1, embed_dim // 32)
        return (base, base * 2, base * 4, base * 8)


SWIN_VARIANTS: dict[str, SwinVariant] = {
    "swin-t": SwinVariant(96, (2, 2, 6, 2), 7),
    "swin-s": SwinVariant(96, (2, 2, 18, 2), 7),
    "swin-b": SwinVariant(128, (2, 2, 18, 2), 12),
    "swin-l": SwinVariant(192, (2, 2, 18, 2), 12),
}


def relative_position_index(window: int) -> Tensor:
    """(w^2, w^2) int64: index into the bias table of the offset between two window tokens.

    Token t = (row r, column c) in row-major order; the index of (t1, t2) is
    ``(r1 - r2 + w - 1) * (2w - 1) + (c1 - c2 + w - 1)``.
    """
    rows = torch.arange(window).repeat_interleave(window)
    cols = torch.arange(window).repeat(window)
    dr = rows[:, None] - rows[None, :] + window - 1
    dc = cols[:, None] - cols[None, :] + window - 1
    return dr * (2 * window - 1) + dc


def to_windows(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) with H, W multiples of ``window`` -> (B * nW, window^2, C), row-major
    windows, each row-major inside."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def from_windows(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`to_windows`: (B * nW, window^2, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def shifted_window_mask(hp: int, wp: int, window: int, shift: int,
                        device: torch.device) -> Tensor:
    """Additive attention mask of the shifted windows of an (hp, wp) padded map.

    The map is cut into 3 x 3 regions by the slices [0, -window), [-window, -shift),
    [-shift, end) per axis; after the cyclic shift two tokens of one window may attend to each
    other only when they come from the same region.

    Returns:
        (nW, window^2, window^2) float32, 0 or -100.
    """
    region = torch.zeros(hp, wp, device=device)
    bounds_h = (0, hp - window, hp - shift, hp)
    bounds_w = (0, wp - window, wp - shift, wp)
    label = 0
    for i in range(3):
        for j in range(3):
            region[max(bounds_h[i], 0):max(bounds_h[i + 1], 0),
                   max(bounds_w[j], 0):max(bounds_w[j + 1], 0)] = label
            label += 1
    ids = to_windows(region[None, :, :, None], window)[..., 0]  # (nW, window^2)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    Args:
        dim: channels C.
        num_heads: heads (must divide C).
        window: window side w.
    """

    relative_position_index: Tensor

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"WindowAttention: num_heads ({num_heads}) must divide dim ({dim})")
        self.num_heads = num_heads
        self.window = window
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """Attend within each window.

        Args:
            x: (B * nW, w^2, C) windows.
            mask: (nW, w^2, w^2) additive mask (shifted windows) or None.

        Returns:
            (B * nW, w^2, C).
        """
        bw, n, c = x.shape
        qkv = self.qkv(x).view(bw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B*nW, heads, n, d)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.num_heads).permute(2, 0, 1)  # (heads, n, n)
        if mask is None:
            attn_bias = bias[None].expand(bw, -1, -1, -1)
        else:
            nw = mask.shape[0]
            attn_bias = (bias[None, None] + mask[None, :, None].to(bias.dtype))
            attn_bias = attn_bias.expand(bw // nw, -1, -1, -1, -1).reshape(bw, self.num_heads,
                                                                             n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2: (..., C) -> (..., C) with a hidden width of ``hidden``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(..., C) -> (..., C)."""
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, both residual.

    Args:
        dim: channels C; num_heads: heads; window: window side w;
        shift: cyclic shift (0 for even blocks, w // 2 for odd ones).
    """

    def __init__(self, dim: int, num_heads: int, window: int, shift: int,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C); ``mask`` is the stage's shifted-window mask for the
        padded map (used only when this block shifts)."""
        h, w = x.shape[1], x.shape[2]
        y = self.norm1(x)
        pad_b, pad_r = (-h) % self.window, (-w) % self.window
        if pad_b or pad_r:
            y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(to_windows(y, self.window), mask if self.shift else None)
        y = from_windows(y, self.window, hp, wp)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y[:, :h, :w, :]
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated (order (0,0), (1,0), (0,1), (1,1)), LayerNorm, linear:
    (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C); odd sizes are zero-padded first."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C)."""
        h, w = x.shape[1], x.shape[2]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat((x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]),
                      -1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """``depth`` blocks alternating plain and shifted windows, then optional patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int,
                 downsample: bool) -> None:
        super().__init__()
        self.window, self.shift = window, window // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if j % 2 == 0 else window // 2)
            for j in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, H, W, C) -> (stage output (B, H, W, C), next stage's input (B, H', W', C'))."""
        h, w = x.shape[1], x.shape[2]
        hp, wp = math.ceil(h / self.window) * self.window, math.ceil(w / self.window) * self.window
        mask = shifted_window_mask(hp, wp, self.window, self.shift, x.device)
        for block in self.blocks:
            x = block(x, mask)
        return x, (self.downsample(x) if self.downsample is not None else x)


class PatchEmbed(nn.Module):
    """Conv 4x4 stride 4 and LayerNorm: (B, 3, H, W) -> (B, H/4, W/4, C)."""

    def __init__(self, embed_dim: int, patch: int = 4) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, embed_dim, patch, stride=patch)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, ceil(H/4), ceil(W/4), C)."""
        h, w = x.shape[-2:]
        if h % self.patch or w % self.patch:
            x = F.pad(x, (0, (-w) % self.patch, 0, (-h) % self.patch))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class SwinTransformer(Backbone):
    """Swin backbone: res2..res5 at strides 4..32 with C, 2C, 4C, 8C channels.

    Input ``(B, 3, H, W)`` RGB normalised with the ImageNet mean/std (0..255 scale), H and W
    multiples of 32. Outputs res2 ``(B, C, H/4, W/4)`` .. res5 ``(B, 8C, H/32, W/32)``.

    Args:
        embed_dim: C.
        depths: blocks per stage.
        num_heads: attention heads per stage (each divides its stage's width).
        window_size: window side w.
    """

    def __init__(self, embed_dim: int, depths: tuple[int, ...], num_heads: tuple[int, ...],
                 window_size: int) -> None:
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"SwinTransformer: depths {depths} and num_heads {num_heads} must "
                             "have 4 entries (one per stage)")
        if embed_dim <= 0 or window_size < 2 or min(depths) < 1:
            raise ValueError(f"SwinTransformer: embed_dim {embed_dim}, window_size "
                             f"{window_size}, depths {depths} must be positive (window >= 2)")
        self.pixel_mean = IMAGENET_PIXEL_MEAN
        self.pixel_std = IMAGENET_PIXEL_STD
        self.embed_dim, self.depths = embed_dim, tuple(depths)
        self.num_heads, self.window_size = tuple(num_heads), window_size
        self.patch_embed = PatchEmbed(embed_dim)
        dims = [embed_dim << i for i in range(4)]
        self.layers = nn.ModuleList(
            SwinStage(dims[i], depths[i], num_heads[i], window_size, downsample=i < 3)
            for i in range(4))
        for i, d in enumerate(dims):
            self.add_module(f"norm{i}", nn.LayerNorm(d))
        self.out_channels = {f"res{i + 2}": d for i, d in enumerate(dims)}
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, 3, H, W)`` -> res2..res5 ``(B, C * 2^i, H / 2^(i+2), W / 2^(i+2))``."""
        x = self.patch_embed(x)
        out: dict[str, Tensor] = {}
        for i, stage in enumerate(self.layers):
            y, x = stage(x)
            y = getattr(self, f"norm{i}")(y)
            out[f"res{i + 2}"] = y.permute(0, 3, 1, 2).contiguous()
        return out


def build_swin(name: str, width: int = 0, num_heads: tuple[int, ...] = ()) -> SwinTransformer:
    """A published Swin variant by name (``swin-t``, ``swin-s``, ``swin-b``, ``swin-l``).

    Args:
        width: patch-embedding channels C; 0 = the published one.
        num_heads: heads per stage; empty = the published C/32 x (1, 2, 4, 8).
    """
    if name not in SWIN_VARIANTS:
        raise ValueError(f"unknown Swin variant {name!r}; choices: {', '.join(SWIN_VARIANTS)}")
    v = SWIN_VARIANTS[name]
    dim = width or v.embed_dim
    heads = tuple(num_heads) if num_heads else v.default_heads(dim)
    return SwinTransformer(dim, v.depths, heads, v.window_size)
