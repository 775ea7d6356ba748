"""The per-frame segmenter: backbone -> pixel decoder -> masked-attention decoder.

Module names follow Mask2Former (`backbone`, `sem_seg_head.pixel_decoder`,
`sem_seg_head.predictor`) so Mask2Former-format segmenter weights map by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spvis_model.config import ModelConfig
from spvis_model.modeling.backbone import build_backbone
from spvis_model.modeling.pixel_decoder import MSDeformAttnPixelDecoder, PixelDecoderOutput
from spvis_model.modeling.transformer_decoder import DecoderOutput, MaskedAttentionDecoder


@dataclass
class SegmenterOutput:
    """Decoder predictions plus the pixel decoder's features (the tracker reads both)."""

    decoder: DecoderOutput
    pixels: PixelDecoderOutput


class SemSegHead(nn.Module):
    def __init__(self, pixel_decoder: MSDeformAttnPixelDecoder,
                 predictor: MaskedAttentionDecoder) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor


class Segmenter(nn.Module):
    """Mask2Former-style segmenter.

    Args:
        cfg: model configuration.
        pretrained_backbone: load the backbone's ImageNet weights (default: cfg's choice).
    """

    def __init__(self, cfg: ModelConfig, pretrained_backbone: bool | None = None) -> None:
        super().__init__()
        pretrained = cfg.backbone.pretrained if pretrained_backbone is None else pretrained_backbone
        self.backbone = build_backbone(cfg.backbone.name, pretrained=pretrained,
                                       width=cfg.backbone.width,
                                       num_heads=tuple(cfg.backbone.num_heads))
        pd, sg = cfg.pixel_decoder, cfg.segmenter
        pixel_decoder = MSDeformAttnPixelDecoder(
            dict(self.backbone.out_channels), conv_dim=pd.conv_dim, mask_dim=pd.mask_dim,
            num_encoder_layers=pd.num_encoder_layers, n_heads=pd.n_heads, n_points=pd.n_points,
            ffn_dim=pd.ffn_dim, norm_groups=pd.norm_groups)
        predictor = MaskedAttentionDecoder(
            pd.conv_dim, num_classes=cfg.num_classes, hidden_dim=sg.hidden_dim,
            num_queries=sg.num_queries, nheads=sg.nheads, dim_feedforward=sg.dim_feedforward,
            dec_layers=sg.dec_layers, mask_dim=pd.mask_dim)
        self.sem_seg_head = SemSegHead(pixel_decoder, predictor)

    @property
    def decoder(self) -> MaskedAttentionDecoder:
        return self.sem_seg_head.predictor

    def forward(self, images: torch.Tensor) -> SegmenterOutput:
        """images (B, 3, H, W) normalised, H and W multiples of 32."""
        features = self.backbone(images)
        pixels = self.sem_seg_head.pixel_decoder(features)
        decoder = self.sem_seg_head.predictor(pixels.multi_scale_features, pixels.mask_features)
        return SegmenterOutput(decoder=decoder, pixels=pixels)
