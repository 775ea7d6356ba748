"""Mask2Former's multi-scale deformable-attention pixel decoder.

Backbone features res3, res4, res5 (strides 8, 16, 32) are projected to ``conv_dim`` channels,
refined jointly by a deformable-attention transformer encoder (every pixel of every level
attends to a few sampled points on all three levels), and res2 (stride 4) is merged in by one
FPN step to give the per-pixel mask features that the transformer decoder's queries dot with.

Parameter names follow Mask2Former's ``MSDeformAttnPixelDecoder`` (``sem_seg_head.pixel_decoder``
in its checkpoints, default config: encoder on res3-res5, ``COMMON_STRIDE`` 4, ``NORM`` "GN"),
so a checkpoint's state dict loads by name after stripping that prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from spvis_model.modeling.position_encoding import PositionEmbeddingSine
from spvis_model.ops import MSDeformAttn
from spvis_model.ops.layout import level_layout

#: Backbone feature names the decoder reads, finest first (strides 4, 8, 16, 32).
FEATURE_NAMES: tuple[str, ...] = ("res2", "res3", "res4", "res5")
#: Levels of the deformable encoder, lowest resolution first (Mask2Former's order).
ENCODER_FEATURES: tuple[str, ...] = ("res5", "res4", "res3")


@dataclass
class PixelDecoderOutput:
    """What the pixel decoder gives the transformer decoder (and the tracker).

    Attributes:
        mask_features: (B, mask_dim, H/4, W/4) per-pixel embeddings that mask logits are
            computed from.
        multi_scale_features: 3 maps (B, conv_dim, h_l, w_l) at strides 32, 16, 8 (lowest
            resolution first): the encoder output reshaped per level.
        memory: (B, S, conv_dim) encoder output, S = sum_l h_l * w_l, levels concatenated in the
            order of ``spatial_shapes``, each flattened row-major.
        memory_pos: (B, S, conv_dim) sine position encoding + level embedding the encoder used.
        spatial_shapes: (3, 2) int64 rows (h_l, w_l), stride 32 first.
        level_start_index: (3,) int64 offset of each level in S.
    """

    mask_features: torch.Tensor
    multi_scale_features: list[torch.Tensor]
    memory: torch.Tensor
    memory_pos: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor


class Conv2dNorm(nn.Conv2d):
    """A Conv2d followed by a norm (and optionally ReLU), with the norm stored as ``.norm``.

    Mirrors detectron2's ``Conv2d(..., norm=...)`` so the state-dict keys are ``<name>.weight``
    and ``<name>.norm.weight``/``<name>.norm.bias`` as in Mask2Former's checkpoints.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 norm: nn.Module, relu: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                         bias=False)
        self.norm = norm
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


class MSDeformAttnEncoderLayer(nn.Module):
    """One post-norm encoder layer: deformable self-attention, then a ReLU FFN.

    Args:
        d_model: C.
        d_ffn: hidden width of the FFN.
        dropout: dropout after attention and in the FFN.
        n_levels, n_heads, n_points: of the deformable attention.
    """

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int,
                 n_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor) -> torch.Tensor:
        """Refine every pixel of every level.

        Args:
            src: (B, S, C) flattened levels.
            pos: (B, S, C) position + level embedding, added to the attention query only.
            reference_points: (B, S, L, 2) normalised (x, y).
            spatial_shapes: (L, 2) int64; level_start_index: (L,) int64.

        Returns:
            (B, S, C).
        """
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes,
                              level_start_index)
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class MSDeformAttnEncoder(nn.Module):
    """A stack of encoder layers (``.layers``), Mask2Former's ``MSDeformAttnTransformerEncoder``."""

    def __init__(self, num_layers: int, d_model: int, d_ffn: int, dropout: float,
                 n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MSDeformAttnEncoderLayer(d_model, d_ffn, dropout, n_levels, n_heads, n_points)
            for _ in range(num_layers))

    @staticmethod
    def reference_points(shapes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
        """Pixel centres of every level, normalised to [0, 1].

        Args:
            shapes: L pairs (H_l, W_l) (a Python list: no device round trip).

        Returns:
            (1, S, L, 2) (x, y); the same point is used on every level (no padding, so the
            valid ratios of Deformable DETR are all 1).
        """
        refs = []
        for h, w in shapes:
            ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
            xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
            ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")
            refs.append(torch.stack((ref_x.reshape(-1), ref_y.reshape(-1)), -1))
        ref = torch.cat(refs, 0)
        return ref[None, :, None, :].expand(1, -1, len(shapes), 2)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor) -> torch.Tensor:
        """Run the layers.

        Args:
            src: (B, S, C) flattened levels; pos: (B, S, C) their embeddings.
            reference_points: (1 or B, S, L, 2), see ``reference_points``.
            spatial_shapes: (L, 2) int64; level_start_index: (L,) int64.

        Returns:
            (B, S, C).
        """
        ref = reference_points.expand(src.shape[0], -1, -1, -1)
        out = src
        for layer in self.layers:
            out = layer(out, pos, ref, spatial_shapes, level_start_index)
        return out


class MSDeformAttnEncoderOnly(nn.Module):
    """Encoder plus the learned per-level embedding (Mask2Former's
    ``MSDeformAttnTransformerEncoderOnly``; keys ``level_embed`` and ``encoder.layers.*``)."""

    def __init__(self, d_model: int, n_heads: int, num_encoder_layers: int, ffn_dim: int,
                 dropout: float, n_levels: int, n_points: int) -> None:
        super().__init__()
        self.encoder = MSDeformAttnEncoder(num_encoder_layers, d_model, ffn_dim, dropout,
                                           n_levels, n_heads, n_points)
        self.level_embed = nn.Parameter(torch.empty(n_levels, d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier for matrices, Deformable DETR's init for the attention, N(0, 1) level embed."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)


class MSDeformAttnPixelDecoder(nn.Module):
    """Deformable-attention pixel decoder (Mask2Former's ``MSDeformAttnPixelDecoder``).

    Args:
        in_channels: channels of the backbone features; must have "res2".."res5" (strides 4, 8,
            16, 32). Other keys are ignored.
        conv_dim: width C of the projected features and of the encoder.
        mask_dim: channels of ``mask_features``.
        num_encoder_layers: deformable encoder layers (0: the projected features pass through).
        n_heads: attention heads of the encoder (must divide conv_dim).
        n_points: sampling points per head and level.
        ffn_dim: hidden width of the encoder FFNs (Mask2Former fixes it at 1024).
        dropout: encoder dropout (Mask2Former's configs use 0.0).
        norm_groups: GroupNorm groups of every conv norm (must divide conv_dim).
    """

    def __init__(self, in_channels: dict[str, int], *, conv_dim: int = 256, mask_dim: int = 256,
                 num_encoder_layers: int = 6, n_heads: int = 8, n_points: int = 4,
                 ffn_dim: int = 1024, dropout: float = 0.0, norm_groups: int = 32) -> None:
        super().__init__()
        missing = [k for k in FEATURE_NAMES if k not in in_channels]
        if missing:
            raise ValueError(f"MSDeformAttnPixelDecoder: in_channels needs keys {FEATURE_NAMES}, "
                             f"missing {missing} in {in_channels!r}")
        for k in FEATURE_NAMES:
            if not isinstance(in_channels[k], int) or in_channels[k] <= 0:
                raise ValueError(f"MSDeformAttnPixelDecoder: in_channels[{k!r}] must be a "
                                 f"positive int, got {in_channels[k]!r}")
        for name, v in (("conv_dim", conv_dim), ("mask_dim", mask_dim), ("n_heads", n_heads),
                        ("n_points", n_points), ("ffn_dim", ffn_dim),
                        ("norm_groups", norm_groups)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"MSDeformAttnPixelDecoder: {name} must be a positive int, "
                                 f"got {v!r}")
        if not isinstance(num_encoder_layers, int) or num_encoder_layers < 0:
            raise ValueError("MSDeformAttnPixelDecoder: num_encoder_layers must be an int >= 0, "
                             f"got {num_encoder_layers!r}")
        if conv_dim % norm_groups:
            raise ValueError(f"MSDeformAttnPixelDecoder: norm_groups ({norm_groups}) must divide "
                             f"conv_dim ({conv_dim})")
        if conv_dim % 2:
            raise ValueError(f"MSDeformAttnPixelDecoder: conv_dim must be even (half the "
                             f"channels encode x, half y), got {conv_dim}")
        if conv_dim % n_heads:
            raise ValueError(f"MSDeformAttnPixelDecoder: n_heads ({n_heads}) must divide "
                             f"conv_dim ({conv_dim})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MSDeformAttnPixelDecoder: dropout must be in [0, 1), got {dropout}")
        self.in_channels = {k: in_channels[k] for k in FEATURE_NAMES}
        self.conv_dim, self.mask_dim = conv_dim, mask_dim
        n_levels = len(ENCODER_FEATURES)

        # Index 0 projects res5, 1 res4, 2 res3 (lowest resolution first).
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[k], conv_dim, kernel_size=1),
                          nn.GroupNorm(norm_groups, conv_dim))
            for k in ENCODER_FEATURES)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1.0)
            nn.init.zeros_(proj[0].bias)

        self.transformer = MSDeformAttnEncoderOnly(
            d_model=conv_dim, n_heads=n_heads, num_encoder_layers=num_encoder_layers,
            ffn_dim=ffn_dim, dropout=dropout, n_levels=n_levels, n_points=n_points)
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        # Mask2Former uses a 1x1 conv here (its code says "use 1x1 conv instead").
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        c2_xavier_fill(self.mask_features)

        # One FPN step: stride 8 (finest encoder level) -> stride 4 (res2).
        self.adapter_1 = Conv2dNorm(in_channels["res2"], conv_dim, 1,
                                    norm=nn.GroupNorm(norm_groups, conv_dim))
        self.layer_1 = Conv2dNorm(conv_dim, conv_dim, 3, norm=nn.GroupNorm(norm_groups, conv_dim),
                                  relu=True)
        c2_xavier_fill(self.adapter_1)
        c2_xavier_fill(self.layer_1)

    def forward(self, features: dict[str, torch.Tensor]) -> PixelDecoderOutput:
        """Decode backbone features.

        Args:
            features: "res2".."res5" -> (B, C_k, H_k, W_k) at strides 4, 8, 16, 32 of the image
                (sizes as the backbone gives them; the FPN step resizes to res2's size).

        Returns:
            PixelDecoderOutput (shapes in its docstring).
        """
        self._check_features(features)
        srcs, pos = [], []
        for proj, k in zip(self.input_proj, ENCODER_FEATURES, strict=True):
            x = features[k]
            srcs.append(proj(x))
            pos.append(self.pe_layer(x))
        bsz = srcs[0].shape[0]
        shapes = [(int(s.shape[-2]), int(s.shape[-1])) for s in srcs]
        # Made from host values once per input size (no per-frame upload, no device reads
        # when the op checks them): spvis_model.ops.layout.
        spatial_shapes, level_start_index = level_layout(shapes, srcs[0].device)

        level_embed = self.transformer.level_embed
        src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos_flat = torch.cat([p.flatten(2).transpose(1, 2) + level_embed[i].to(p.dtype)
                              for i, p in enumerate(pos)], 1)
        ref = MSDeformAttnEncoder.reference_points(shapes, src_flat.device)
        memory = self.transformer.encoder(src_flat, pos_flat, ref, spatial_shapes,
                                          level_start_index)

        splits = [h * w for h, w in shapes]
        multi_scale = [
            m.transpose(1, 2).reshape(bsz, self.conv_dim, h, w)
            for m, (h, w) in zip(memory.split(splits, dim=1), shapes, strict=True)
        ]
        lateral = self.adapter_1(features["res2"])
        top_down = F.interpolate(multi_scale[-1], size=lateral.shape[-2:], mode="bilinear",
                                 align_corners=False)
        fpn = self.layer_1(lateral + top_down)
        return PixelDecoderOutput(
            mask_features=self.mask_features(fpn),
            multi_scale_features=multi_scale,
            memory=memory,
            memory_pos=pos_flat,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
        )

    def _check_features(self, features: dict[str, torch.Tensor]) -> None:
        bsz = None
        for k in FEATURE_NAMES:
            if k not in features:
                raise ValueError(f"MSDeformAttnPixelDecoder: features is missing {k!r} "
                                 f"(has {sorted(features)})")
            x = features[k]
            if x.dim() != 4 or x.shape[1] != self.in_channels[k]:
                raise ValueError(f"MSDeformAttnPixelDecoder: features[{k!r}] must be (B, "
                                 f"{self.in_channels[k]}, H, W), got {tuple(x.shape)}")
            if min(x.shape[-2:]) < 1:
                raise ValueError(f"MSDeformAttnPixelDecoder: features[{k!r}] is empty: "
                                 f"{tuple(x.shape)}")
            if bsz is None:
                bsz = x.shape[0]
            elif x.shape[0] != bsz:
                raise ValueError(f"MSDeformAttnPixelDecoder: features[{k!r}] has batch "
                                 f"{x.shape[0]}, res2 has {bsz}")


def c2_xavier_fill(conv: nn.Conv2d) -> None:
    """Caffe2's "XavierFill" as detectron2 uses it: kaiming_uniform(a=1) weight, zero bias."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
