"""Architecture options read from a source checkpoint's tensor shapes, never guessed.

From the shapes: backbone depth (blocks per stage) and width, Swin window and heads per
stage; pixel-decoder width, mask width, encoder layers, encoder FFN width and sampling
points; decoder width, queries, layers, FFN width and number of classes.

Not in any shape: the attention heads of the decoder and of the deformable encoder
(``nn.MultiheadAttention`` stores 3C x C whatever the heads; the encoder's offsets give only
heads x points). Every published Mask2Former / MinVIS / DVIS config uses
``MODEL.MASK_FORMER.NHEADS: 8`` for both (the pixel decoder reads the same field), so
``nheads`` defaults to 8. GroupNorm groups are not stored either; Mask2Former's "GN" is
always 32 groups.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from spvis_model.config import BackboneConfig, PixelDecoderConfig, SegmenterConfig
from spvis_model.modeling.backbone.resnet import RESNET_BLOCKS
from spvis_model.modeling.backbone.swin import SWIN_VARIANTS

from .errors import ImportCheckpointError

PUBLISHED_NHEADS = 8
PUBLISHED_NORM_GROUPS = 32
ENCODER_LEVELS = 3

PD = "sem_seg_head.pixel_decoder."
PRED = "sem_seg_head.predictor."


@dataclass
class Architecture:
    """What the shapes say, as spvis config sections.

    Attributes:
        backbone: name and widths (depth and window checked against the name).
        pixel_decoder, segmenter: the sections for ModelConfig.
        num_classes: K (the class head has K + 1 outputs, the last is "no object").
        summary: one line per option, "option = value (from key, shape)".
    """

    backbone: BackboneConfig
    pixel_decoder: PixelDecoderConfig
    segmenter: SegmenterConfig
    num_classes: int
    summary: list[str]


class _Shapes:
    """Shape look-ups that fail with the key's name."""

    def __init__(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        self.tensors, self.where = tensors, where
        self.summary: list[str] = []

    def shape(self, key: str, rank: int) -> tuple[int, ...]:
        if key not in self.tensors:
            raise ImportCheckpointError(f"{self.where}: key {key!r} is missing; it is needed "
                                        "to read the architecture")
        shape = tuple(self.tensors[key].shape)
        if len(shape) != rank:
            raise ImportCheckpointError(f"{self.where}: key {key!r} has shape {list(shape)}, "
                                        f"expected {rank} dimensions")
        return shape

    def dim(self, option: str, key: str, rank: int, axis: int) -> int:
        value = self.shape(key, rank)[axis]
        self.summary.append(f"{option} = {value} (from {key} {list(self.shape(key, rank))})")
        return value

    def count(self, option: str, prefix: str) -> int:
        """Number of consecutive indices i with keys starting ``prefix + f"{i}."``."""
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        found = {int(m.group(1)) for k in self.tensors if (m := pattern.match(k))}
        n = len(found)
        if found != set(range(n)):
            raise ImportCheckpointError(f"{self.where}: keys {prefix}<i>. have indices "
                                        f"{sorted(found)}, expected 0..{n - 1}")
        self.summary.append(f"{option} = {n} (count of {prefix}<i>.*)")
        return n


def infer_architecture(tensors: dict[str, torch.Tensor], backbone: str, *, where: str,
                       nheads: int = PUBLISHED_NHEADS) -> Architecture:
    """Read the architecture from source-layout keys (``backbone.*``, ``sem_seg_head.*``).

    Args:
        tensors: the source checkpoint's tensors by source key.
        backbone: the ``--backbone`` name; its depths (and Swin window) must match the file.
        where: the file name, for errors.
        nheads: decoder and encoder attention heads (not visible in shapes; published: 8).

    Raises:
        ImportCheckpointError: a missing key, a shape that contradicts another, or a backbone
            that is not the named one (the message says which it looks like).
    """
    s = _Shapes(tensors, where)
    bb = _backbone(s, backbone)
    pd = _pixel_decoder(s, nheads)
    sg, num_classes = _segmenter(s, nheads)
    if pd.mask_dim != sg.hidden_dim:
        raise ImportCheckpointError(f"{where}: pixel decoder mask_dim {pd.mask_dim} differs from "
                                    f"the decoder's hidden_dim {sg.hidden_dim}")
    in_proj = f"{PRED}input_proj.0.weight"
    if (in_proj in tensors) != (pd.conv_dim != sg.hidden_dim):
        raise ImportCheckpointError(
            f"{where}: {in_proj} is {'present' if in_proj in tensors else 'absent'} but the "
            f"pixel decoder width is {pd.conv_dim} and the decoder's {sg.hidden_dim} "
            "(ENFORCE_INPUT_PROJ is not supported)")
    return Architecture(bb, pd, sg, num_classes, s.summary)


def _backbone(s: _Shapes, name: str) -> BackboneConfig:
    is_swin = "backbone.patch_embed.proj.weight" in s.tensors
    is_resnet = "backbone.stem.conv1.weight" in s.tensors
    if not (is_swin or is_resnet):
        raise ImportCheckpointError(
            f"{s.where}: no backbone.patch_embed.proj.weight (Swin) and no "
            "backbone.stem.conv1.weight (ResNet): the backbone is not one spvis imports "
            "(R50, R101, Swin-T/S/B/L)")
    family = "swin" if is_swin else "resnet"
    if name.startswith("swin") != is_swin:
        raise ImportCheckpointError(f"{s.where}: --backbone {name} but the checkpoint's "
                                    f"backbone is a {'Swin' if is_swin else 'ResNet'} "
                                    f"({'patch_embed' if is_swin else 'stem'} keys)")
    if family == "resnet":
        width = s.dim("backbone.width", "backbone.stem.conv1.weight", 4, 0)
        blocks = tuple(s.count(f"backbone.res{i}.blocks", f"backbone.res{i}.") for i in range(2, 6))
        depth = int(name[1:])
        if blocks != RESNET_BLOCKS[depth]:
            looks = next((f"r{d}" for d, b in RESNET_BLOCKS.items() if b == blocks), "neither")
            raise ImportCheckpointError(
                f"{s.where}: --backbone {name} expects {RESNET_BLOCKS[depth]} blocks in "
                f"res2..res5, the checkpoint has {blocks} (looks like {looks})")
        return BackboneConfig(name=name, pretrained=False, width=width)
    variant = SWIN_VARIANTS[name]
    width = s.dim("backbone.width (Swin C)", "backbone.patch_embed.proj.weight", 4, 0)
    depths = tuple(s.count(f"backbone.layers.{i}.blocks", f"backbone.layers.{i}.blocks.")
                   for i in range(4))
    table = s.shape("backbone.layers.0.blocks.0.attn.relative_position_bias_table", 2)[0]
    window = (math.isqrt(table) + 1) // 2
    if (2 * window - 1) ** 2 != table:
        raise ImportCheckpointError(f"{s.where}: relative_position_bias_table has {table} rows, "
                                    "not (2w - 1)^2 for any window w")
    s.summary.append(f"backbone window = {window} (from relative_position_bias_table rows "
                     f"{table} = (2w - 1)^2)")
    if depths != variant.depths or window != variant.window_size:
        looks = next((n for n, v in SWIN_VARIANTS.items()
                      if v.depths == depths and v.window_size == window), "none of them")
        raise ImportCheckpointError(
            f"{s.where}: --backbone {name} expects depths {variant.depths} and window "
            f"{variant.window_size}, the checkpoint has depths {depths} and window {window} "
            f"(looks like {looks})")
    heads = [s.dim(f"backbone.num_heads[{i}]",
                   f"backbone.layers.{i}.blocks.0.attn.relative_position_bias_table", 2, 1)
             for i in range(4)]
    return BackboneConfig(name=name, pretrained=False, width=width, num_heads=heads)


def _pixel_decoder(s: _Shapes, nheads: int) -> PixelDecoderConfig:
    levels = s.count("pixel_decoder input levels", f"{PD}input_proj.")
    if levels != ENCODER_LEVELS:
        raise ImportCheckpointError(f"{s.where}: {levels} pixel-decoder input projections, spvis "
                                    f"supports {ENCODER_LEVELS} (res3, res4, res5)")
    conv_dim = s.dim("pixel_decoder.conv_dim", f"{PD}input_proj.0.0.weight", 4, 0)
    mask_dim = s.dim("pixel_decoder.mask_dim", f"{PD}mask_features.weight", 4, 0)
    layers = s.count("pixel_decoder.num_encoder_layers", f"{PD}transformer.encoder.layers.")
    enc = f"{PD}transformer.encoder.layers.0."
    ffn_dim = s.dim("pixel_decoder.ffn_dim", f"{enc}linear1.weight", 2, 0) if layers else 1024
    n_points = 4
    if layers:
        rows = s.shape(f"{enc}self_attn.attention_weights.weight", 2)[0]
        if rows % (nheads * ENCODER_LEVELS):
            raise ImportCheckpointError(
                f"{s.where}: {enc}self_attn.attention_weights.weight has {rows} rows, not a "
                f"multiple of heads x levels = {nheads} x {ENCODER_LEVELS}")
        n_points = rows // (nheads * ENCODER_LEVELS)
        s.summary.append(f"pixel_decoder.n_points = {n_points} (attention_weights rows {rows} "
                         f"/ ({nheads} heads x {ENCODER_LEVELS} levels))")
    return PixelDecoderConfig(conv_dim=conv_dim, mask_dim=mask_dim, num_encoder_layers=layers,
                              n_heads=nheads, n_points=n_points, ffn_dim=ffn_dim,
                              norm_groups=PUBLISHED_NORM_GROUPS)


def _segmenter(s: _Shapes, nheads: int) -> tuple[SegmenterConfig, int]:
    queries = s.dim("segmenter.num_queries", f"{PRED}query_feat.weight", 2, 0)
    hidden = s.dim("segmenter.hidden_dim", f"{PRED}query_feat.weight", 2, 1)
    layers = s.count("segmenter.dec_layers", f"{PRED}transformer_self_attention_layers.")
    for other in ("transformer_cross_attention_layers", "transformer_ffn_layers"):
        n = s.count(f"segmenter {other}", f"{PRED}{other}.")
        if n != layers:
            raise ImportCheckpointError(f"{s.where}: {n} {other} but {layers} "
                                        "transformer_self_attention_layers")
    ffn = s.dim("segmenter.dim_feedforward", f"{PRED}transformer_ffn_layers.0.linear1.weight",
                2, 0)
    logits = s.dim("class logits (K + 1)", f"{PRED}class_embed.weight", 2, 0)
    mlp = s.count("mask_embed layers", f"{PRED}mask_embed.layers.")
    if mlp != 3:
        raise ImportCheckpointError(f"{s.where}: mask_embed has {mlp} layers, expected 3")
    return (SegmenterConfig(hidden_dim=hidden, num_queries=queries, nheads=nheads,
                            dim_feedforward=ffn, dec_layers=layers), logits - 1)
