"""The pure-PyTorch Swin backbone against Mask2Former's D2SwinTransformer (window 12, as its
Swin-B/L; the window-7 Swin-T path is covered end to end by test_import_equivalence), its key
layout, and the published variants; and the R101 key layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spvis_model.importers import read_source_file
from spvis_model.modeling.backbone import SWIN_VARIANTS, SwinTransformer, build_backbone
from spvis_model.modeling.backbone.swin import relative_position_index, shifted_window_mask
from spvis_model.state_dict import load_state_dict_exact

FIXTURES = Path(__file__).parent / "fixtures" / "import"


def backbone_keys(fixture: str) -> dict[str, tuple[int, ...]]:
    tensors = read_source_file(FIXTURES / fixture).tensors
    return {k[len("backbone."):]: tuple(v.shape) for k, v in tensors.items()
            if k.startswith("backbone.")}


def test_window12_swin_matches_reference():
    z = np.load(FIXTURES / "swin_w12_backbone.npz")
    state = {k[len("weight/"):]: torch.from_numpy(z[k]) for k in z.files
             if k.startswith("weight/")}
    model = SwinTransformer(8, (2, 2, 2, 2), (1, 2, 4, 8), 12).eval()
    load_state_dict_exact(model, state, source="swin_w12_backbone.npz")
    with torch.inference_mode():
        out = model(torch.from_numpy(z["input"]))
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for name, feat in out.items():
        ref = torch.from_numpy(z[f"out/{name}"])
        assert feat.shape == ref.shape
        assert float((feat - ref).abs().max() / ref.abs().max()) <= 1e-4, name


def test_swin_t_key_layout_is_mask2formers():
    ours = {k: tuple(v.shape) for k, v in
            build_backbone("swin-t", pretrained=False, width=8,
                           num_heads=(1, 2, 4, 8)).state_dict().items()}
    assert ours == backbone_keys("m2f_coco_swin_t.pkl")


def test_relative_position_index_equals_the_published_buffer():
    tensors = read_source_file(FIXTURES / "m2f_coco_swin_t.pkl").tensors
    ref = tensors["backbone.layers.0.blocks.0.attn.relative_position_index"]
    assert torch.equal(relative_position_index(7), ref.long())


def test_shifted_window_mask_separates_regions():
    mask = shifted_window_mask(14, 14, 7, 3, torch.device("cpu"))
    assert mask.shape == (4, 49, 49)
    assert (mask[0] == 0).all()  # the top-left window holds one region only
    assert (mask[3] != 0).any() and set(mask.unique().tolist()) == {0.0, -100.0}
    small = shifted_window_mask(12, 12, 12, 6, torch.device("cpu"))  # map == window
    assert small.shape == (1, 144, 144) and (small != 0).any()


@pytest.mark.parametrize("name,dim,heads,window", [
    ("swin-t", 96, (3, 6, 12, 24), 7), ("swin-s", 96, (3, 6, 12, 24), 7),
    ("swin-b", 128, (4, 8, 16, 32), 12), ("swin-l", 192, (6, 12, 24, 48), 12)])
def test_published_variants(name, dim, heads, window):
    v = SWIN_VARIANTS[name]
    assert (v.embed_dim, v.default_heads(v.embed_dim), v.window_size) == (dim, heads, window)


def test_swin_t_published_shapes():
    model = build_backbone("swin-t", pretrained=False)
    assert model.out_channels == {"res2": 96, "res3": 192, "res4": 384, "res5": 768}
    n = sum(p.numel() for p in model.parameters())
    assert 27_400_000 < n < 27_600_000  # Swin-T without its classifier: 27.5 M
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, 64, 96))
    assert out["res5"].shape == (1, 768, 2, 3)


def test_r101_key_layout_is_detectron2s():
    ours = {k: tuple(v.shape) for k, v in
            build_backbone("r101", pretrained=False, width=4).state_dict().items()}
    assert ours == backbone_keys("m2f_coco_r101.pkl")
    published = build_backbone("r101", pretrained=False)
    assert published.out_channels == {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
    # ResNet-101 without fc (44.5 M - 2.05 M), FrozenBN statistics are buffers: 42.39 M
    assert 42_300_000 < sum(p.numel() for p in published.parameters()) < 42_500_000


def test_checkpoint_backbones_refuse_pretrained_and_misplaced_widths():
    for name in ("r101", "swin-t", "swin-l"):
        with pytest.raises(ValueError, match=rf"build_backbone\('{name}', pretrained=True\)"):
            build_backbone(name, pretrained=True)
    with pytest.raises(ValueError, match=r"width=8.*apply only to"):
        build_backbone("tiny", width=8)
    with pytest.raises(ValueError, match=r"num_heads=\(1, 2, 4, 8\) applies to Swin only"):
        build_backbone("r50", pretrained=False, num_heads=(1, 2, 4, 8))
