"""The segmenter as a traceable graph: what `spvis export` writes to ONNX.

`ExportSegmenter` wraps a trained `Segmenter` (same modules, same weights, nothing copied) and
re-states its forward pass so that a trace keeps every size symbolic: feature-map sizes come
from tensor shapes, never from Python ints or `.tolist()`, so a graph exported with dynamic
height/width computes the same thing at every size the backbone itself takes. Eager outputs of
`ExportSegmenter` equal `Segmenter`'s (tested), and the ONNX graph's equal both within float
tolerance (test/test_export_parity.py).

Multi-scale deformable attention (the pixel decoder's encoder) comes in two forms:

- ``grid_sample``: standard ONNX ops only. Per level, the value map is sampled with
  ``F.grid_sample`` (ONNX GridSample, opset >= 16; bilinear, zero padding,
  ``align_corners=False``: the pixel sampled is ``loc * size - 0.5``, as the compiled op) and the
  samples are weighted and summed. Any ONNX runtime runs it (onnxruntime, TensorRT >= 8.6).
- ``trt_plugin``: one node per attention call, op type ``MultiscaleDeformableAttnPlugin_TRT``
  in domain ``trt``, with the five inputs of TensorRT's plugin in its order and types (value
  ``(B, S, M, D)``, spatial_shapes ``(L, 2)`` int32, level_start_index ``(L,)`` int32,
  sampling_locations ``(B, Q, M, L, P, 2)``, attention_weights ``(B, Q, M, L, P)``, the
  floating inputs all in value's type), one output ``(B, Q, M, D)``, and the attributes
  TensorRT's ONNX parser reads to find a plugin (``plugin_version``, ``plugin_namespace``).
  The plugin itself has no parameters. Only TensorRT runs this form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spvis_model.modeling.pixel_decoder import ENCODER_FEATURES, MSDeformAttnEncoderLayer
from spvis_model.modeling.segmenter import Segmenter
from spvis_model.modeling.transformer_decoder import (
    NUM_FEATURE_LEVELS,
    CrossAttentionLayer,
    SelfAttentionLayer,
    masked_attention_mask,
)
from spvis_model.ops import MSDeformAttn

#: How MSDeformAttn is written into the graph.
MSDA_FORMS: tuple[str, ...] = ("grid_sample", "trt_plugin")
#: TensorRT's multi-scale deformable attention plugin, as its ONNX parser looks it up.
PLUGIN_OP = "MultiscaleDeformableAttnPlugin_TRT"
PLUGIN_DOMAIN = "trt"
#: Version 1 (IPluginV2DynamicExt) exists from TensorRT 8.5 on; version 2 (IPluginV3, same
#: inputs and output) from 10.11, where version 1 is deprecated.
PLUGIN_VERSIONS: tuple[str, ...] = ("1", "2")
#: The graph's input and outputs, in order.
INPUT_NAME = "images"
OUTPUT_NAMES: tuple[str, ...] = ("pred_logits", "pred_masks", "query_embed", "mask_features",
                                 "memory")
#: Precisions the graph can be written in (inputs and outputs stay float32).
GRAPH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16}
#: Backbones whose traced graph takes other sizes (`spvis export --dynamic` verified at a second
#: size: tiny in the tests, r50 by hand; r101 is the same ResNet code). lite0 (TF "SAME" padding
#: computed from the traced size) and Swin (window partitioning reshapes with the traced size)
#: are refused by that verification.
DYNAMIC_BACKBONES: tuple[str, ...] = ("tiny", "r50", "r101")


def msda_grid_sample(value: Tensor, locations: Tensor, weights: Tensor,
                     level_sizes: list[tuple[int, int]]) -> Tensor:
    """Multi-scale deformable attention from GridSample, with every size symbolic.

    Args:
        value: (B, S, H, D), S = sum of h_l * w_l, levels flattened row-major in order.
        locations: (B, Q, H, L, P, 2) normalised (x, y), float32 (kept at full precision even
            when value is float16: the sample is taken in float32 and cast back).
        weights: (B, Q, H, L, P), float32.
        level_sizes: L pairs (h_l, w_l) read from tensor shapes (symbolic under a trace).

    Returns:
        (B, Q, H * D) in value's dtype.
    """
    b, n_heads, d = value.shape[0], value.shape[2], value.shape[3]
    q = locations.shape[1]
    v = value.float()
    per_level = v.split([h * w for h, w in level_sizes], dim=1)
    grids = 2.0 * locations - 1.0
    out: Tensor | None = None
    for lvl, (h, w) in enumerate(level_sizes):
        # (B, h*w, H, D) -> (B*H, D, h, w)
        vl = per_level[lvl].flatten(2).transpose(1, 2).reshape(-1, d, h, w)
        # (B, Q, H, P, 2) -> (B*H, Q, P, 2)
        grid = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled = F.grid_sample(vl, grid, mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # (B*H, D, Q, P)
        # (B, Q, H, P) -> (B*H, 1, Q, P)
        wl = weights[:, :, :, lvl].transpose(1, 2).flatten(0, 1).unsqueeze(1)
        term = (sampled * wl).sum(-1)  # (B*H, D, Q)
        out = term if out is None else out + term
    assert out is not None
    # (B*H, D, Q) -> (B, H*D, Q) -> (B, Q, H*D)
    out = out.reshape(b, n_heads * d, q).transpose(1, 2)
    return out.to(value.dtype)


class TrtPluginMSDA(torch.autograd.Function):
    """TensorRT's plugin as one ONNX node; computed with `msda_grid_sample` when traced.

    forward(value (B, S, M, D), spatial_shapes (L, 2) int32, level_start_index (L,) int32,
    sampling_locations (B, Q, M, L, P, 2), attention_weights (B, Q, M, L, P), plugin_version)
    -> (B, Q, M, D); the three floating inputs share value's dtype (the plugin's rule).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, value: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor, locations: Tensor,
                weights: Tensor, plugin_version: str) -> Tensor:  # type: ignore[override]
        del ctx, level_start_index, plugin_version
        sizes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
        out = msda_grid_sample(value, locations.float(), weights.float(), sizes)
        return out.unflatten(-1, (value.shape[2], value.shape[3]))

    @staticmethod
    def symbolic(g: torch.Graph, value: torch.Value, spatial_shapes: torch.Value,
                 level_start_index: torch.Value, locations: torch.Value, weights: torch.Value,
                 plugin_version: str) -> torch.Value:
        out = g.op(f"{PLUGIN_DOMAIN}::{PLUGIN_OP}", value, spatial_shapes, level_start_index,
                   locations, weights, plugin_version_s=plugin_version, plugin_namespace_s="")
        value_sizes = value.type().varyingSizes()  # type: ignore[attr-defined]
        loc_sizes = locations.type().varyingSizes()  # type: ignore[attr-defined]
        if value_sizes is not None and loc_sizes is not None:
            out.setType(value.type().with_sizes(  # type: ignore[attr-defined]
                [value_sizes[0], loc_sizes[1], value_sizes[2], value_sizes[3]]))
        return out


class ExportSegmenter(nn.Module):
    """`Segmenter` re-stated for tracing: images in, the tracker's five inputs out.

    Args:
        segmenter: the trained segmenter (its modules are used, not copied); must be in eval
            mode (dropout off).
        msda: "grid_sample" or "trt_plugin" (see the module docstring).
        precision: "float32" or "float16": the dtype the graph computes in; the input and the
            outputs are float32 either way (casts at both ends).
        plugin_version: the TensorRT plugin version written on each plugin node ("1" or "2").

    forward(images (B, 3, H, W) float32, normalised, H and W multiples of 32) returns
    (pred_logits (B, N, K+1), pred_masks (B, N, H/4, W/4), query_embed (B, N, C),
    mask_features (B, C_mask, H/4, W/4), memory (B, S, C_pd)), all float32, S = sum of the
    encoder levels' sizes at strides 32, 16, 8.
    """

    def __init__(self, segmenter: Segmenter, msda: str = "grid_sample",
                 precision: str = "float32", plugin_version: str = "1") -> None:
        super().__init__()
        if msda not in MSDA_FORMS:
            raise ValueError(f"msda = {msda!r}: must be one of {', '.join(MSDA_FORMS)}")
        if precision not in GRAPH_DTYPES:
            raise ValueError(f"precision = {precision!r}: must be one of "
                             f"{', '.join(GRAPH_DTYPES)}")
        if plugin_version not in PLUGIN_VERSIONS:
            raise ValueError(f"plugin_version = {plugin_version!r}: must be one of "
                             f"{', '.join(PLUGIN_VERSIONS)}")
        self.segmenter = segmenter
        self.msda = msda
        self.dtype = GRAPH_DTYPES[precision]
        self.plugin_version = plugin_version

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        x = images.to(self.dtype)
        features = self.segmenter.backbone.forward_features(x)
        mask_features, multi_scale, memory = self._pixel_decoder(features)
        logits, masks, query_embed = self._decoder(multi_scale, mask_features)
        return (logits.float(), masks.float(), query_embed.float(), mask_features.float(),
                memory.float())

    # --- pixel decoder --------------------------------------------------------------------------
    def _pixel_decoder(self, features: dict[str, Tensor]) -> tuple[Tensor, list[Tensor], Tensor]:
        """Backbone features -> (mask_features (B, C_mask, H/4, W/4), 3 maps (B, C, h_l, w_l)
        stride 32 first, memory (B, S, C)); as MSDeformAttnPixelDecoder.forward."""
        pd = self.segmenter.sem_seg_head.pixel_decoder
        srcs = [proj(features[k]) for proj, k in zip(pd.input_proj, ENCODER_FEATURES,
                                                     strict=True)]
        pos = [pd.pe_layer(features[k]) for k in ENCODER_FEATURES]
        sizes = [(s.shape[-2], s.shape[-1]) for s in srcs]
        # (L, 2) int64 rows (h_l, w_l) and (L,) offsets, from the shapes (Shape ops in a graph).
        spatial_shapes = torch.stack([torch._shape_as_tensor(s)[2:] for s in srcs])
        level_start_index = torch.cat((spatial_shapes.new_zeros(1),
                                       spatial_shapes.prod(1).cumsum(0)[:-1]))
        level_embed = pd.transformer.level_embed
        src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos_flat = torch.cat([p.flatten(2).transpose(1, 2) + level_embed[i].to(p.dtype)
                              for i, p in enumerate(pos)], 1)
        ref = _reference_points(srcs)
        memory = src_flat
        for layer in pd.transformer.encoder.layers:
            memory = self._encoder_layer(layer, memory, pos_flat, ref, spatial_shapes,
                                         level_start_index, sizes)
        bsz, channels = memory.shape[0], memory.shape[2]
        multi_scale = [m.transpose(1, 2).reshape(bsz, channels, h, w) for m, (h, w) in
                       zip(memory.split([h * w for h, w in sizes], dim=1), sizes, strict=True)]
        lateral = pd.adapter_1(features["res2"])
        top_down = F.interpolate(multi_scale[-1], size=lateral.shape[-2:], mode="bilinear",
                                 align_corners=False)
        fpn = pd.layer_1(lateral + top_down)
        return pd.mask_features(fpn), multi_scale, memory

    def _encoder_layer(self, layer: MSDeformAttnEncoderLayer, src: Tensor, pos: Tensor,
                       ref: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                       sizes: list[tuple[int, int]]) -> Tensor:
        """(B, S, C) -> (B, S, C); as MSDeformAttnEncoderLayer.forward in eval mode."""
        attn = self._msdeform_attn(layer.self_attn, src + pos, ref, src, spatial_shapes,
                                   level_start_index, sizes)
        src = layer.norm1(src + attn)
        ffn = layer.linear2(F.relu(layer.linear1(src)))
        return layer.norm2(src + ffn)

    def _msdeform_attn(self, m: MSDeformAttn, query: Tensor, ref: Tensor, input_flatten: Tensor,
                       spatial_shapes: Tensor, level_start_index: Tensor,
                       sizes: list[tuple[int, int]]) -> Tensor:
        """MSDeformAttn.forward for 2-D reference points, no padding mask: query (B, Q, C),
        ref (B, Q, L, 2), input_flatten (B, S, C) -> (B, Q, C)."""
        h, n_l, n_p = m.n_heads, m.n_levels, m.n_points
        # Sizes read from shapes (symbolic under a trace; unflatten would freeze them).
        b, q, s = query.shape[0], query.shape[1], input_flatten.shape[1]
        value = m.value_proj(input_flatten).reshape(b, s, h, m.d_model // h)
        offsets = m.sampling_offsets(query).float().reshape(b, q, h, n_l, n_p, 2)
        weights = m.attention_weights(query).float().reshape(b, q, h, n_l * n_p)
        weights = weights.softmax(-1).reshape(b, q, h, n_l, n_p)
        normaliser = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).float()
        locations = (ref.float()[:, :, None, :, None, :]
                     + offsets / normaliser[None, None, None, :, None, :])
        if self.msda == "grid_sample":
            out = msda_grid_sample(value, locations, weights, sizes)
        else:
            out = TrtPluginMSDA.apply(value, spatial_shapes.to(torch.int32),
                                      level_start_index.to(torch.int32),
                                      locations.to(value.dtype), weights.to(value.dtype),
                                      self.plugin_version).reshape(b, q, m.d_model)
        return m.output_proj(out)

    # --- transformer decoder --------------------------------------------------------------------
    def _decoder(self, multi_scale: list[Tensor],
                 mask_features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """As MaskedAttentionDecoder.forward, last layer only: (class logits (B, N, K+1),
        mask logits (B, N, H/4, W/4), normed queries (B, N, C))."""
        dec = self.segmenter.decoder
        srcs, poss, sizes = [], [], []
        for i, x in enumerate(multi_scale):
            sizes.append((x.shape[-2], x.shape[-1]))
            poss.append(dec.pe_layer(x).flatten(2).transpose(1, 2))
            src = dec.input_proj[i](x).flatten(2).transpose(1, 2)
            srcs.append(src + dec.level_embed.weight[i].to(src.dtype))
        bsz = mask_features.shape[0]
        query_pos = dec.query_embed.weight.unsqueeze(0).expand(bsz, -1, -1)
        output = dec.query_feat.weight.unsqueeze(0).expand(bsz, -1, -1)
        logits, masks, normed = dec.predict(output, mask_features)
        for i in range(dec.num_layers):
            level = i % NUM_FEATURE_LEVELS
            attn_mask = masked_attention_mask(masks, sizes[level], dec.num_heads)
            output = _cross_attention(dec.transformer_cross_attention_layers[i], output,
                                      srcs[level], attn_mask, poss[level], query_pos)
            output = _self_attention(dec.transformer_self_attention_layers[i], output,
                                     query_pos)
            output = dec.transformer_ffn_layers[i](output)
            logits, masks, normed = dec.predict(output, mask_features)
        return logits, masks, normed


def _attention(mha: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor,
               blocked: Tensor | None) -> Tensor:
    """nn.MultiheadAttention (batch_first, packed in-projection, eval) with every size
    symbolic (its own forward reads sizes as Python ints, which a trace freezes).

    Args:
        query: (B, N, C); key, value: (B, S, C).
        blocked: (B * heads, N, S) bool, True = may not attend (batch-major), or None.

    Returns:
        (B, N, C).
    """
    if not mha.batch_first or not mha._qkv_same_embed_dim or mha.bias_k is not None \
            or mha.add_zero_attn or mha.in_proj_bias is None:
        raise ValueError("export: nn.MultiheadAttention must be batch_first with a packed, "
                         "biased in-projection and no bias_k/add_zero_attn (as the decoder "
                         "builds it)")
    heads, c = mha.num_heads, mha.embed_dim
    head_dim = c // heads
    b, n, s = query.shape[0], query.shape[1], key.shape[1]
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    q = F.linear(query, w_q, b_q).reshape(b, n, heads, head_dim).transpose(1, 2)
    k = F.linear(key, w_k, b_k).reshape(b, s, heads, head_dim).transpose(1, 2)
    v = F.linear(value, w_v, b_v).reshape(b, s, heads, head_dim).transpose(1, 2)
    scores = (q * head_dim ** -0.5) @ k.transpose(-2, -1)  # (B, heads, N, S)
    if blocked is not None:
        scores = scores.masked_fill(blocked.reshape(b, heads, n, s), float("-inf"))
    attn = scores.float().softmax(-1).to(v.dtype)
    out = (attn @ v).transpose(1, 2).reshape(b, n, c)
    return F.linear(out, mha.out_proj.weight, mha.out_proj.bias)


def _cross_attention(layer: CrossAttentionLayer, tgt: Tensor, memory: Tensor,
                     blocked: Tensor | None, pos: Tensor, query_pos: Tensor) -> Tensor:
    """CrossAttentionLayer.forward: tgt (B, N, C), memory/pos (B, S, C) -> (B, N, C)."""
    x = layer.norm(tgt) if layer.normalize_before else tgt
    out = tgt + _attention(layer.multihead_attn, x + query_pos, memory + pos, memory, blocked)
    return out if layer.normalize_before else layer.norm(out)


def _self_attention(layer: SelfAttentionLayer, tgt: Tensor, query_pos: Tensor) -> Tensor:
    """SelfAttentionLayer.forward: (B, N, C) -> (B, N, C)."""
    x = layer.norm(tgt) if layer.normalize_before else tgt
    q = x + query_pos
    out = tgt + _attention(layer.self_attn, q, q, x, None)
    return out if layer.normalize_before else layer.norm(out)


def _reference_points(srcs: list[Tensor]) -> Tensor:
    """Pixel centres of every level, normalised: (1, S, L, 2) (x, y), as
    MSDeformAttnEncoder.reference_points, but from shapes (cumulative sums of ones) so that a
    trace keeps the sizes symbolic. (i + 1) - 0.5 is exact in float32, so the values are
    bit-identical to (arange + 0.5) / size."""
    refs = []
    for s in srcs:
        ones = torch.ones_like(s[0, 0], dtype=torch.float32)  # (h, w)
        ys = (ones.cumsum(0) - 0.5) / ones.sum(0, keepdim=True)
        xs = (ones.cumsum(1) - 0.5) / ones.sum(1, keepdim=True)
        refs.append(torch.stack((xs.reshape(-1), ys.reshape(-1)), -1))
    ref = torch.cat(refs, 0)
    return ref[None, :, None, :].expand(1, -1, len(srcs), 2)
