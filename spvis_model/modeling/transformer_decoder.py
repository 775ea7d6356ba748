"""Mask2Former's transformer decoder with masked attention.

N learnable queries are refined by L layers of [masked cross-attention -> self-attention -> FFN],
cycling through the pixel decoder's three scales (stride 32, 16, 8, 32, ...). Before every layer,
the masks predicted from the current queries restrict each query's cross-attention to the pixels
its mask covers (sigmoid >= 0.5); a query whose mask covers nothing at that scale attends
everywhere. Class logits and mask logits are predicted after the learnable query features and
after every layer (L + 1 predictions, the first L as deep-supervision outputs).

Parameter names follow Mask2Former's ``MultiScaleMaskedTransformerDecoder``
(``sem_seg_head.predictor`` in its checkpoints), so a checkpoint loads by name after stripping
that prefix. Note Mask2Former's ``DEC_LAYERS: 10`` config means ``dec_layers=9`` here (its
``from_config`` subtracts the prediction on the learnable query features).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from spvis_model.modeling.pixel_decoder import c2_xavier_fill
from spvis_model.modeling.position_encoding import PositionEmbeddingSine

#: The decoder always cycles through three feature scales.
NUM_FEATURE_LEVELS = 3


@dataclass
class DecoderOutput:
    """Predictions of the masked-attention decoder.

    Attributes:
        pred_logits: (B, N, K+1) class logits of the last layer; index K is "no object".
        pred_masks: (B, N, H/4, W/4) mask logits of the last layer.
        query_embed: (B, N, C) last layer's queries after ``decoder_norm`` (the per-frame query
            embeddings E_t the tracker consumes).
        aux_outputs: one {"pred_logits": (B, N, K+1), "pred_masks": (B, N, H/4, W/4)} per
            earlier prediction (learnable query features, then layers 1 .. L-1), for deep
            supervision.
    """

    pred_logits: torch.Tensor
    pred_masks: torch.Tensor
    query_embed: torch.Tensor
    aux_outputs: list[dict[str, torch.Tensor]]


def _xavier_matrices(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
    """Self-attention among the queries, with residual and LayerNorm (post- or pre-norm)."""

    def __init__(self, d_model: int, nhead: int, normalize_before: bool = False) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """(B, N, C) queries and (B, N, C) query positions -> (B, N, C)."""
        x = self.norm(tgt) if self.normalize_before else tgt
        q = k = x + query_pos
        out = tgt + self.self_attn(q, k, value=x, need_weights=False)[0]
        return out if self.normalize_before else self.norm(out)


class CrossAttentionLayer(nn.Module):
    """Queries attend to one flattened feature level, optionally under an attention mask."""

    def __init__(self, d_model: int, nhead: int, normalize_before: bool = False) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None,
                pos: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """Cross-attend.

        Args:
            tgt: (B, N, C) queries; query_pos: (B, N, C).
            memory: (B, S, C) features; pos: (B, S, C) their position encoding.
            memory_mask: (B * nhead, N, S) bool, True = may not attend; or None.

        Returns:
            (B, N, C).
        """
        x = self.norm(tgt) if self.normalize_before else tgt
        attn = self.multihead_attn(query=x + query_pos, key=memory + pos, value=memory,
                                   attn_mask=memory_mask, need_weights=False)[0]
        out = tgt + attn
        return out if self.normalize_before else self.norm(out)


class FFNLayer(nn.Module):
    """Two-layer ReLU feed-forward block with residual and LayerNorm."""

    def __init__(self, d_model: int, dim_feedforward: int, normalize_before: bool = False) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        x = self.norm(tgt) if self.normalize_before else tgt
        out = tgt + self.linear2(F.relu(self.linear1(x)))
        return out if self.normalize_before else self.norm(out)


class MLP(nn.Module):
    """``num_layers`` Linear layers (``.layers``) with ReLU between them."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out,
                                                                     strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., input_dim) -> (..., output_dim)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def masked_attention_mask(mask_logits: torch.Tensor, size: tuple[int, int],
                          num_heads: int) -> torch.Tensor:
    """Turn predicted masks into the cross-attention mask of the next layer.

    The logits are resized (bilinear) to the next layer's feature level; a pixel is blocked
    where sigmoid(logit) < 0.5. A query whose mask blocks every pixel is released to attend
    everywhere (otherwise its softmax would have no support).

    Args:
        mask_logits: (B, N, H, W).
        size: (h, w) of the feature level attended to next.
        num_heads: attention heads; the mask is repeated per head.

    Returns:
        (B * num_heads, N, h * w) bool, True = may not attend; batch-major, as
        ``nn.MultiheadAttention`` expects.
    """
    resized = F.interpolate(mask_logits.detach(), size=size, mode="bilinear",
                            align_corners=False)
    blocked = resized.sigmoid().flatten(2) < 0.5  # (B, N, h*w)
    blocked = blocked & ~blocked.all(-1, keepdim=True)
    return blocked.repeat_interleave(num_heads, dim=0)


class MaskedAttentionDecoder(nn.Module):
    """Mask2Former's multi-scale masked-attention transformer decoder.

    Args:
        in_channels: channels of the pixel decoder's multi-scale features (a 1x1 conv projects
            them to hidden_dim when they differ; none otherwise, as in Mask2Former).
        num_classes: K foreground classes; the class head has K + 1 outputs.
        hidden_dim: C, width of the queries.
        num_queries: N.
        nheads: attention heads (must divide hidden_dim).
        dim_feedforward: FFN hidden width.
        dec_layers: L transformer layers (Mask2Former's DEC_LAYERS minus one).
        mask_dim: channels of the pixel decoder's mask features.
        pre_norm: LayerNorm before each block instead of after.
    """

    def __init__(self, in_channels: int, *, num_classes: int, hidden_dim: int = 256,
                 num_queries: int = 100, nheads: int = 8, dim_feedforward: int = 2048,
                 dec_layers: int = 9, mask_dim: int = 256, pre_norm: bool = False) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("num_classes", num_classes),
                        ("hidden_dim", hidden_dim), ("num_queries", num_queries),
                        ("nheads", nheads), ("dim_feedforward", dim_feedforward),
                        ("dec_layers", dec_layers), ("mask_dim", mask_dim)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"MaskedAttentionDecoder: {name} must be a positive int, "
                                 f"got {v!r}")
        if hidden_dim % nheads:
            raise ValueError(f"MaskedAttentionDecoder: nheads ({nheads}) must divide hidden_dim "
                             f"({hidden_dim})")
        if hidden_dim % 4:
            raise ValueError("MaskedAttentionDecoder: hidden_dim must be a multiple of 4 (sine "
                             f"position encoding), got {hidden_dim}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.hidden_dim, self.mask_dim = hidden_dim, mask_dim
        self.num_queries, self.num_heads, self.num_layers = num_queries, nheads, dec_layers

        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, pre_norm) for _ in range(dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, pre_norm) for _ in range(dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, pre_norm) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)

        self.query_feat = nn.Embedding(num_queries, hidden_dim)  # learnable query features
        self.query_embed = nn.Embedding(num_queries, hidden_dim)  # learnable query positions
        self.level_embed = nn.Embedding(NUM_FEATURE_LEVELS, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(NUM_FEATURE_LEVELS):
            if in_channels != hidden_dim:
                conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
                c2_xavier_fill(conv)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Sequential())  # identity without state-dict keys

        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def predict(self, queries: torch.Tensor,
                mask_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the prediction heads on queries.

        Args:
            queries: (B, N, C) queries before ``decoder_norm`` (any N).
            mask_features: (B, mask_dim, H/4, W/4).

        Returns:
            class logits (B, N, K+1), mask logits (B, N, H/4, W/4), normed embeddings (B, N, C).
        """
        if queries.dim() != 3 or queries.shape[-1] != self.hidden_dim:
            raise ValueError(f"MaskedAttentionDecoder.predict: queries must be (B, N, "
                             f"{self.hidden_dim}), got {tuple(queries.shape)}")
        if (mask_features.dim() != 4 or mask_features.shape[1] != self.mask_dim
                or mask_features.shape[0] != queries.shape[0]):
            raise ValueError(f"MaskedAttentionDecoder.predict: mask_features must be "
                             f"({queries.shape[0]}, {self.mask_dim}, H, W), got "
                             f"{tuple(mask_features.shape)}")
        normed = self.decoder_norm(queries)
        logits = self.class_embed(normed)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(normed), mask_features)
        return logits, masks, normed

    def forward(self, multi_scale_features: list[torch.Tensor],
                mask_features: torch.Tensor) -> DecoderOutput:
        """Decode queries from the pixel decoder's outputs.

        Args:
            multi_scale_features: 3 maps (B, in_channels, h_l, w_l), lowest resolution first
                (layer i attends to map i mod 3).
            mask_features: (B, mask_dim, H/4, W/4).

        Returns:
            DecoderOutput with L aux outputs.
        """
        if len(multi_scale_features) != NUM_FEATURE_LEVELS:
            raise ValueError(f"MaskedAttentionDecoder: multi_scale_features must have "
                             f"{NUM_FEATURE_LEVELS} maps, got {len(multi_scale_features)}")
        bsz = mask_features.shape[0]
        srcs, poss, sizes = [], [], []
        for i, x in enumerate(multi_scale_features):
            if x.dim() != 4 or x.shape[0] != bsz or x.shape[1] != self.in_channels:
                raise ValueError(f"MaskedAttentionDecoder: multi_scale_features[{i}] must be "
                                 f"({bsz}, {self.in_channels}, h, w), got {tuple(x.shape)}")
            sizes.append((int(x.shape[-2]), int(x.shape[-1])))
            poss.append(self.pe_layer(x).flatten(2).transpose(1, 2))
            src = self.input_proj[i](x).flatten(2).transpose(1, 2)
            srcs.append(src + self.level_embed.weight[i].to(src.dtype))

        query_pos = self.query_embed.weight.unsqueeze(0).expand(bsz, -1, -1)
        output = self.query_feat.weight.unsqueeze(0).expand(bsz, -1, -1)

        logits, masks, normed = self.predict(output, mask_features)
        predictions = [(logits, masks)]
        for i in range(self.num_layers):
            level = i % NUM_FEATURE_LEVELS
            attn_mask = masked_attention_mask(masks, sizes[level], self.num_heads)
            output = self.transformer_cross_attention_layers[i](
                output, srcs[level], attn_mask, pos=poss[level], query_pos=query_pos)
            output = self.transformer_self_attention_layers[i](output, query_pos)
            output = self.transformer_ffn_layers[i](output)
            logits, masks, normed = self.predict(output, mask_features)
            predictions.append((logits, masks))
        return DecoderOutput(
            pred_logits=logits,
            pred_masks=masks,
            query_embed=normed,
            aux_outputs=[{"pred_logits": c, "pred_masks": m} for c, m in predictions[:-1]],
        )
