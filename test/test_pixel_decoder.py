"""Pixel decoder and sine position encoding: shapes, Mask2Former key names, gradients, mixing."""

from __future__ import annotations

import math

import pytest
import torch

from spvis_model.modeling.pixel_decoder import (
    MSDeformAttnEncoder,
    MSDeformAttnPixelDecoder,
    PixelDecoderOutput,
)
from spvis_model.modeling.position_encoding import PositionEmbeddingSine

IN_CHANNELS = {"res2": 16, "res3": 24, "res4": 40, "res5": 48}
STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


def small_decoder(**kw) -> MSDeformAttnPixelDecoder:
    args = {"conv_dim": 32, "mask_dim": 24, "num_encoder_layers": 2, "n_heads": 4,
            "ffn_dim": 64, "norm_groups": 8}
    args.update(kw)
    return MSDeformAttnPixelDecoder(IN_CHANNELS, **args)


def features(batch: int = 2, h: int = 128, w: int = 128, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(batch, c, h // STRIDES[k], w // STRIDES[k], generator=g)
            for k, c in IN_CHANNELS.items()}


# --- position encoding ---------------------------------------------------------------------------

def test_position_encoding_matches_formula():
    pe = PositionEmbeddingSine(8, normalize=True)
    h, w = 4, 6
    pos = pe(torch.zeros(1, 3, h, w))
    assert pos.shape == (1, 16, h, w)
    y, x = 2, 5  # row 2, column 5 -> normalised positions 3/4 and 6/6 of 2π
    py, px = 3 / h * 2 * math.pi, 6 / w * 2 * math.pi
    for i in range(8):
        t = 10000 ** (2 * (i // 2) / 8)
        fn = math.sin if i % 2 == 0 else math.cos
        assert pos[0, i, y, x].item() == pytest.approx(fn(py / t), abs=1e-5)  # y half first
        assert pos[0, 8 + i, y, x].item() == pytest.approx(fn(px / t), abs=1e-5)
    assert len(pe.state_dict()) == 0  # nothing that a checkpoint would have to carry


def test_position_encoding_ignores_padding_and_resolution():
    pe = PositionEmbeddingSine(16, normalize=True)
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, 4:, :] = True  # bottom half is padding
    padded = pe(torch.zeros(1, 1, 8, 8), mask)
    unpadded = pe(torch.zeros(1, 1, 4, 8))
    torch.testing.assert_close(padded[..., :4, :], unpadded)
    with pytest.raises(ValueError, match="num_pos_feats"):
        PositionEmbeddingSine(7)
    with pytest.raises(ValueError, match="scale"):
        PositionEmbeddingSine(8, scale=1.0)


# --- shapes --------------------------------------------------------------------------------------

def test_output_shapes_small_config():
    dec = small_decoder()
    out = dec(features())
    assert isinstance(out, PixelDecoderOutput)
    assert out.mask_features.shape == (2, 24, 32, 32)
    assert [tuple(m.shape) for m in out.multi_scale_features] == [
        (2, 32, 4, 4), (2, 32, 8, 8), (2, 32, 16, 16)]
    assert out.spatial_shapes.dtype == torch.int64
    assert out.spatial_shapes.tolist() == [[4, 4], [8, 8], [16, 16]]
    assert out.level_start_index.dtype == torch.int64
    assert out.level_start_index.tolist() == [0, 16, 80]
    assert out.memory.shape == (2, 336, 32)
    assert out.memory_pos.shape == (2, 336, 32)
    # memory is the multi-scale features flattened row-major, in spatial_shapes order.
    flat = torch.cat([m.flatten(2).transpose(1, 2) for m in out.multi_scale_features], 1)
    torch.testing.assert_close(out.memory, flat)
    # memory_pos = sine encoding + that level's embedding.
    pe = dec.pe_layer(torch.zeros(1, 1, 8, 8)).flatten(2).transpose(1, 2)[0]
    level1 = out.memory_pos[0, 16:80]
    torch.testing.assert_close(level1, pe + dec.transformer.level_embed[1])


def test_non_square_and_odd_sizes():
    dec = small_decoder()
    feats = {"res2": torch.randn(1, 16, 30, 41), "res3": torch.randn(1, 24, 15, 21),
             "res4": torch.randn(1, 40, 8, 11), "res5": torch.randn(1, 48, 4, 6)}
    out = dec(feats)
    assert out.mask_features.shape == (1, 24, 30, 41)
    assert out.spatial_shapes.tolist() == [[4, 6], [8, 11], [15, 21]]
    assert out.memory.shape[1] == 24 + 88 + 315


def test_reference_points_are_pixel_centres():
    ref = MSDeformAttnEncoder.reference_points([(2, 3), (1, 2)], torch.device("cpu"))
    assert ref.shape == (1, 8, 2, 2)
    expected = torch.tensor([[1 / 6, 1 / 4], [3 / 6, 1 / 4], [5 / 6, 1 / 4],
                             [1 / 6, 3 / 4], [3 / 6, 3 / 4], [5 / 6, 3 / 4],
                             [1 / 4, 1 / 2], [3 / 4, 1 / 2]])
    torch.testing.assert_close(ref[0, :, 0], expected)
    torch.testing.assert_close(ref[0, :, 1], expected)


# --- behaviour -----------------------------------------------------------------------------------

def test_encoder_mixes_levels():
    """The coarsest input reaches the finest encoder level only through deformable attention."""
    torch.manual_seed(0)
    dec = small_decoder().eval()
    feats = features(batch=1)
    base = dec(feats).multi_scale_features[2]
    bumped = dict(feats)
    bumped["res5"] = feats["res5"] + 3.0 * torch.randn_like(feats["res5"])
    changed = dec(bumped).multi_scale_features[2]
    assert (changed - base).abs().max() > 1e-3
    no_encoder = small_decoder(num_encoder_layers=0).eval()
    assert len(no_encoder.transformer.encoder.layers) == 0
    torch.testing.assert_close(no_encoder(bumped).multi_scale_features[2],
                               no_encoder(feats).multi_scale_features[2])


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    dec = small_decoder()
    # MSDeformAttn starts with zero offset/weight matrices, which makes the gradient of the
    # level embedding exactly zero at init; perturb them as training would.
    with torch.no_grad():
        for layer in dec.transformer.encoder.layers:
            layer.self_attn.sampling_offsets.weight.normal_(0, 0.05)
            layer.self_attn.attention_weights.weight.normal_(0, 0.05)
    out = dec(features())
    g = torch.Generator().manual_seed(1)
    # Random projections: a plain sum right after a GroupNorm would have zero gradient.
    loss = (out.mask_features * torch.randn(out.mask_features.shape, generator=g)).sum()
    for m in out.multi_scale_features:
        loss = loss + (m * torch.randn(m.shape, generator=g)).sum()
    loss.backward()
    for name, p in dec.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


# --- checkpoint compatibility ---------------------------------------------------------------------

def mask2former_pixel_decoder_keys(num_layers: int) -> set[str]:
    """The keys of Mask2Former's sem_seg_head.pixel_decoder (R50 COCO instance config),
    written out from facebookresearch/Mask2Former mask2former/modeling/pixel_decoder/
    msdeformattn.py and detectron2's Conv2d (norm stored as `.norm`)."""
    keys = {"transformer.level_embed", "mask_features.weight", "mask_features.bias",
            "adapter_1.weight", "adapter_1.norm.weight", "adapter_1.norm.bias",
            "layer_1.weight", "layer_1.norm.weight", "layer_1.norm.bias"}
    for i in range(3):
        for j in range(2):
            keys |= {f"input_proj.{i}.{j}.weight", f"input_proj.{i}.{j}.bias"}
    for i in range(num_layers):
        p = f"transformer.encoder.layers.{i}."
        for m in ("self_attn.sampling_offsets", "self_attn.attention_weights",
                  "self_attn.value_proj", "self_attn.output_proj", "norm1", "linear1", "linear2",
                  "norm2"):
            keys |= {p + m + ".weight", p + m + ".bias"}
    return keys


def test_state_dict_keys_and_shapes_match_mask2former_r50():
    dec = MSDeformAttnPixelDecoder({"res2": 256, "res3": 512, "res4": 1024, "res5": 2048})
    sd = dec.state_dict()
    assert set(sd) == mask2former_pixel_decoder_keys(6)
    expected_shapes = {
        "input_proj.0.0.weight": (256, 2048, 1, 1),  # index 0 is res5
        "input_proj.2.0.weight": (256, 512, 1, 1),
        "input_proj.0.1.weight": (256,),
        "transformer.level_embed": (3, 256),
        "transformer.encoder.layers.0.self_attn.sampling_offsets.weight": (192, 256),
        "transformer.encoder.layers.0.self_attn.attention_weights.weight": (96, 256),
        "transformer.encoder.layers.5.linear1.weight": (1024, 256),
        "adapter_1.weight": (256, 256, 1, 1),
        "layer_1.weight": (256, 256, 3, 3),
        "mask_features.weight": (256, 256, 1, 1),
    }
    for k, shape in expected_shapes.items():
        assert tuple(sd[k].shape) == shape, k
    # A Mask2Former-format state dict loads strictly.
    dec.load_state_dict({k: torch.zeros_like(v) for k, v in sd.items()}, strict=True)


# --- errors --------------------------------------------------------------------------------------

def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match=r"norm_groups \(12\).*conv_dim \(32\)"):
        small_decoder(norm_groups=12)
    with pytest.raises(ValueError, match=r"missing.*res2"):
        MSDeformAttnPixelDecoder({"res3": 8, "res4": 8, "res5": 8}, conv_dim=32, norm_groups=8)
    dec = small_decoder()
    feats = features(batch=1)
    feats["res4"] = torch.randn(1, 7, 8, 8)
    with pytest.raises(ValueError, match=r"features\['res4'\]"):
        dec(feats)
    feats = features(batch=1)
    feats["res3"] = torch.randn(2, 24, 16, 16)
    with pytest.raises(ValueError, match="batch"):
        dec(feats)
