"""Masked-attention transformer decoder: shapes, Mask2Former key names, gradients, masking."""

from __future__ import annotations

import pytest
import torch

from spvis_model.modeling.transformer_decoder import (
    DecoderOutput,
    MaskedAttentionDecoder,
    masked_attention_mask,
)

SIZES = [(4, 4), (8, 8), (16, 16)]  # strides 32, 16, 8 of a 128 x 128 image


def small_decoder(in_channels: int = 24, **kw) -> MaskedAttentionDecoder:
    args = {"num_classes": 5, "hidden_dim": 32, "num_queries": 10, "nheads": 4,
            "dim_feedforward": 64, "dec_layers": 3, "mask_dim": 32}
    args.update(kw)
    return MaskedAttentionDecoder(in_channels, **args)


def inputs(batch: int = 2, channels: int = 24, mask_dim: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(batch, channels, h, w, generator=g) for h, w in SIZES]
    return feats, torch.randn(batch, mask_dim, 32, 32, generator=g)


def test_output_shapes_and_deep_supervision():
    dec = small_decoder()
    out = dec(*inputs())
    assert isinstance(out, DecoderOutput)
    assert out.pred_logits.shape == (2, 10, 6)
    assert out.pred_masks.shape == (2, 10, 32, 32)
    assert out.query_embed.shape == (2, 10, 32)
    assert len(out.aux_outputs) == 3  # learnable query features + layers 1, 2
    for aux in out.aux_outputs:
        assert set(aux) == {"pred_logits", "pred_masks"}
        assert aux["pred_logits"].shape == (2, 10, 6)
        assert aux["pred_masks"].shape == (2, 10, 32, 32)
    # Layers differ: the first aux output (query features only) is not the final prediction.
    assert not torch.allclose(out.aux_outputs[0]["pred_masks"], out.pred_masks)


def test_pre_norm_runs():
    out = small_decoder(pre_norm=True)(*inputs(batch=1))
    assert out.pred_masks.shape == (1, 10, 32, 32)
    assert torch.isfinite(out.pred_masks).all()


def test_predict_reproduces_the_last_layer_heads():
    dec = small_decoder()
    captured = {}
    dec.transformer_ffn_layers[-1].register_forward_hook(
        lambda _m, _i, output: captured.setdefault("queries", output))
    feats, mask_features = inputs()
    out = dec(feats, mask_features)
    logits, masks, normed = dec.predict(captured["queries"], mask_features)
    torch.testing.assert_close(logits, out.pred_logits)
    torch.testing.assert_close(masks, out.pred_masks)
    torch.testing.assert_close(normed, out.query_embed)
    # Any number of queries (e.g. the tracker's refined ones).
    logits, masks, normed = dec.predict(torch.randn(2, 3, 32), mask_features)
    assert logits.shape == (2, 3, 6)
    assert masks.shape == (2, 3, 32, 32)
    assert normed.shape == (2, 3, 32)


def test_gradients_reach_every_parameter():
    dec = small_decoder()
    out = dec(*inputs())
    g = torch.Generator().manual_seed(1)
    loss = (out.pred_masks * torch.randn(out.pred_masks.shape, generator=g)).sum()
    loss = loss + (out.pred_logits * torch.randn(out.pred_logits.shape, generator=g)).sum()
    for aux in out.aux_outputs:
        loss = loss + (aux["pred_masks"] * torch.randn(aux["pred_masks"].shape, generator=g)).sum()
    loss.backward()
    for name, p in dec.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().max() > 0, name


# --- masked attention ----------------------------------------------------------------------------

def test_attention_mask_blocks_outside_the_predicted_mask():
    logits = torch.full((2, 3, 32, 32), -10.0)
    logits[0, 0, 8:16, 16:24] = 10.0  # query 0 of image 0 covers one 8x8 block = pixel (1, 2)
    logits[1, 1] = 10.0  # query 1 of image 1 covers everything
    # query 2 (and query 0 of image 1) cover nothing -> released
    mask = masked_attention_mask(logits, (4, 4), num_heads=2)
    assert mask.shape == (4, 3, 16) and mask.dtype == torch.bool
    allowed = torch.zeros(16, dtype=torch.bool)
    allowed[1 * 4 + 2] = True
    for head in range(2):  # batch-major: rows 0, 1 are image 0's heads
        assert torch.equal(mask[head, 0], ~allowed)
        assert not mask[head, 1].any()  # fully blocked row released
        assert not mask[head, 2].any()
        assert not mask[2 + head, 0].any()
        assert not mask[2 + head, 1].any()  # covers everything


def _one_query_decoder_with_mask(region: bool) -> tuple[MaskedAttentionDecoder, torch.Tensor]:
    """A 1-query, 1-layer decoder whose first predicted mask is +10 on the 8x8 block at rows
    8:16, cols 16:24 (pixel (1, 2) of the 4x4 level it attends to) and -10 elsewhere; or -10
    everywhere when region is False."""
    torch.manual_seed(0)
    dec = small_decoder(in_channels=32, num_queries=1, dec_layers=1).eval()
    with torch.no_grad():
        e = dec.mask_embed(dec.decoder_norm(dec.query_feat.weight))[0]  # (mask_dim,)
        unit = e / e.dot(e)
        mask_features = (-10.0 * unit)[None, :, None, None].repeat(1, 1, 32, 32)
        if region:
            mask_features[0, :, 8:16, 16:24] = (10.0 * unit)[:, None, None]
        first = dec.predict(dec.query_feat.weight[None], mask_features)[1]
    expected = torch.full((32, 32), -10.0)
    if region:
        expected[8:16, 16:24] = 10.0
    torch.testing.assert_close(first[0, 0], expected, atol=1e-3, rtol=0)
    return dec, mask_features


def test_query_ignores_features_outside_its_mask():
    dec, mask_features = _one_query_decoder_with_mask(region=True)
    feats, _ = inputs(batch=1, channels=32)
    with torch.no_grad():
        base = dec(feats, mask_features).query_embed
        outside = [f.clone() for f in feats]
        outside[0][0, :, 0, 0] += 5.0
        outside[0][0, :, 3, 1] -= 5.0
        outside[0][0, :, 1, 3] += 5.0
        inside = [f.clone() for f in feats]
        inside[0][0, :, 1, 2] += 5.0
        torch.testing.assert_close(dec(outside, mask_features).query_embed, base,
                                   atol=1e-6, rtol=0)
        assert (dec(inside, mask_features).query_embed - base).abs().max() > 1e-3


def test_query_with_empty_mask_attends_everywhere():
    dec, mask_features = _one_query_decoder_with_mask(region=False)
    feats, _ = inputs(batch=1, channels=32)
    with torch.no_grad():
        base = dec(feats, mask_features).query_embed
        outside = [f.clone() for f in feats]
        outside[0][0, :, 0, 0] += 5.0
        assert (dec(outside, mask_features).query_embed - base).abs().max() > 1e-3


# --- checkpoint compatibility ---------------------------------------------------------------------

def mask2former_predictor_keys(num_layers: int, with_input_proj: bool) -> set[str]:
    """The keys of Mask2Former's sem_seg_head.predictor, written out from
    facebookresearch/Mask2Former mask2former/modeling/transformer_decoder/
    mask2former_transformer_decoder.py (MultiScaleMaskedTransformerDecoder)."""
    keys = {"decoder_norm.weight", "decoder_norm.bias", "query_feat.weight", "query_embed.weight",
            "level_embed.weight", "class_embed.weight", "class_embed.bias"}
    for j in range(3):
        keys |= {f"mask_embed.layers.{j}.weight", f"mask_embed.layers.{j}.bias"}
    if with_input_proj:
        for j in range(3):
            keys |= {f"input_proj.{j}.weight", f"input_proj.{j}.bias"}
    attn = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
    for i in range(num_layers):
        keys |= {f"transformer_self_attention_layers.{i}.self_attn.{a}" for a in attn}
        keys |= {f"transformer_cross_attention_layers.{i}.multihead_attn.{a}" for a in attn}
        for p in (f"transformer_self_attention_layers.{i}.norm",
                  f"transformer_cross_attention_layers.{i}.norm",
                  f"transformer_ffn_layers.{i}.linear1", f"transformer_ffn_layers.{i}.linear2",
                  f"transformer_ffn_layers.{i}.norm"):
            keys |= {p + ".weight", p + ".bias"}
    return keys


def test_state_dict_keys_and_shapes_match_mask2former_coco():
    dec = MaskedAttentionDecoder(256, num_classes=80)
    sd = dec.state_dict()
    assert set(sd) == mask2former_predictor_keys(9, with_input_proj=False)
    expected_shapes = {
        "query_feat.weight": (100, 256),
        "query_embed.weight": (100, 256),
        "level_embed.weight": (3, 256),
        "class_embed.weight": (81, 256),
        "mask_embed.layers.2.weight": (256, 256),
        "transformer_self_attention_layers.0.self_attn.in_proj_weight": (768, 256),
        "transformer_cross_attention_layers.8.multihead_attn.out_proj.weight": (256, 256),
        "transformer_ffn_layers.0.linear1.weight": (2048, 256),
    }
    for k, shape in expected_shapes.items():
        assert tuple(sd[k].shape) == shape, k
    dec.load_state_dict({k: torch.zeros_like(v) for k, v in sd.items()}, strict=True)
    # Different input width: a 1x1 projection per level, as in Mask2Former.
    assert set(small_decoder(in_channels=24).state_dict()) == mask2former_predictor_keys(
        3, with_input_proj=True)


def test_bad_inputs_raise_naming_them():
    with pytest.raises(ValueError, match=r"nheads \(5\)"):
        small_decoder(nheads=5)
    dec = small_decoder()
    feats, mask_features = inputs()
    with pytest.raises(ValueError, match="3 maps"):
        dec(feats[:2], mask_features)
    feats[1] = torch.randn(2, 7, 8, 8)
    with pytest.raises(ValueError, match=r"multi_scale_features\[1\]"):
        dec(feats, mask_features)
    with pytest.raises(ValueError, match="mask_features"):
        dec.predict(torch.randn(2, 10, 32), torch.randn(2, 5, 32, 32))
