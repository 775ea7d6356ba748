"""Backbones: output maps, the strict lite0 weight loading, ImageNet sanity, the R50 layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spvis_model.modeling.backbone import (
    BACKBONE_NAMES,
    LITE0_HEAD_KEYS,
    Backbone,
    EfficientNetLite0,
    FrozenBatchNorm2d,
    StateDictMismatchError,
    build_backbone,
    load_lite0_weights,
    read_lite0_state_dict,
)

STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
CHANNELS = {
    "tiny": {"res2": 16, "res3": 32, "res4": 64, "res5": 128},
    "lite0": {"res2": 24, "res3": 40, "res4": 112, "res5": 320},
    "r50": {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048},
}
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
MILITARY_UNIFORM = 652  # ImageNet-1k class index (0-based) of "military uniform"


@pytest.fixture(scope="module")
def lite0_ckpt() -> dict[str, torch.Tensor]:
    return read_lite0_state_dict()


@pytest.fixture(scope="module")
def lite0_classifier(lite0_ckpt) -> EfficientNetLite0:
    model = EfficientNetLite0(with_classifier=True)
    assert load_lite0_weights(model, dict(lite0_ckpt), source="test") == []
    return model.eval()


@pytest.fixture(scope="module")
def grace_hopper() -> torch.Tensor:
    """The photo matplotlib ships, short side resized to 224, centre 224x224: (1, 3, 224, 224)
    RGB on the 0..255 scale."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mpimg

    img = np.array(mpimg.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    assert img.dtype == np.uint8 and img.shape == (600, 512, 3)
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None]
    h, w = x.shape[-2:]
    scale = 224 / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bicubic",
                      antialias=True, align_corners=False).clamp(0, 255)
    h, w = x.shape[-2:]
    top, left = (h - 224) // 2, (w - 224) // 2
    return x[..., top:top + 224, left:left + 224]


def _normalise(x: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.mark.parametrize(("name", "size"), [("tiny", (128, 128)), ("tiny", (64, 96)),
                                            ("lite0", (128, 96)), ("r50", (64, 64))])
def test_output_keys_shapes_strides_channels(name, size):
    torch.manual_seed(0)
    model = build_backbone(name, pretrained=False).eval()
    assert isinstance(model, Backbone)
    assert model.out_channels == CHANNELS[name]
    assert model.strides == STRIDES
    assert model.size_divisibility == 32
    h, w = size
    with torch.no_grad():
        out = model(torch.randn(2, 3, h, w))
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for key, feat in out.items():
        s = STRIDES[key]
        assert feat.shape == (2, CHANNELS[name][key], h // s, w // s), key
        assert torch.isfinite(feat).all(), key


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_pixel_normalisation(name):
    model = build_backbone(name, pretrained=False)
    if name == "lite0":
        assert model.pixel_mean == (127.0, 127.0, 127.0)
        assert model.pixel_std == (128.0, 128.0, 128.0)
    else:
        assert model.pixel_mean == IMAGENET_MEAN
        assert model.pixel_std == IMAGENET_STD


def test_unknown_name_and_r50_pretrained_raise():
    with pytest.raises(ValueError, match=r"'r18'.*tiny, lite0, r50"):
        build_backbone("r18")
    with pytest.raises(ValueError, match=r"r50.*pretrained=True.*Mask2Former"):
        build_backbone("r50", pretrained=True)


def test_bad_input_is_named():
    model = build_backbone("tiny", pretrained=False)
    with pytest.raises(ValueError, match=r"H=100, W=128"):
        model(torch.zeros(1, 3, 100, 128))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*\(1, 1, 64, 64\)"):
        model(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"dtype torch.uint8"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_lite0_pretrained_loads_every_key(lite0_ckpt):
    model = build_backbone("lite0", pretrained=True)
    own = model.state_dict()
    # Every model tensor came from the checkpoint (no random init left) ...
    assert set(own) == set(lite0_ckpt) - set(LITE0_HEAD_KEYS)
    for key, value in own.items():
        assert torch.equal(value, lite0_ckpt[key]), key
    # ... and the checkpoint holds nothing beyond the model and the named head keys.
    assert set(LITE0_HEAD_KEYS) <= set(lite0_ckpt)
    assert len(lite0_ckpt) == 296
    # The feature extractor has no head modules (no unused parameters).
    assert not any(k.startswith(("_conv_head", "_fc")) for k in own)


def test_lite0_feature_extractor_skips_exactly_the_head(lite0_ckpt):
    model = EfficientNetLite0(with_classifier=False)
    skipped = load_lite0_weights(model, dict(lite0_ckpt), source="test")
    assert sorted(skipped) == sorted(LITE0_HEAD_KEYS)


def test_lite0_mismatches_are_named(lite0_ckpt):
    model = EfficientNetLite0(with_classifier=True)

    missing = dict(lite0_ckpt)
    del missing["_blocks.7._depthwise_conv.weight"]
    with pytest.raises(StateDictMismatchError, match=r"missing keys \(1\): "
                       r"_blocks\.7\._depthwise_conv\.weight") as err:
        load_lite0_weights(model, missing, source="missing.pth")
    assert "missing.pth" in str(err.value)
    assert err.value.mismatch.missing == ["_blocks.7._depthwise_conv.weight"]

    reshaped = dict(lite0_ckpt)
    reshaped["_blocks.3._bn1.running_var"] = torch.ones(97)
    with pytest.raises(StateDictMismatchError,
                       match=r"_blocks\.3\._bn1\.running_var: expected \[144\], got \[97\]"):
        load_lite0_weights(model, reshaped, source="reshaped.pth")

    extra = dict(lite0_ckpt)
    extra["_blocks.16._project_conv.weight"] = torch.zeros(1)
    with pytest.raises(StateDictMismatchError, match=r"unexpected keys \(1\): "
                       r"_blocks\.16\._project_conv\.weight"):
        load_lite0_weights(model, extra, source="extra.pth")

    # Head keys are only tolerated for the feature extractor, never missing for the classifier.
    no_fc = {k: v for k, v in lite0_ckpt.items() if not k.startswith("_fc.")}
    with pytest.raises(StateDictMismatchError, match=r"_fc\.weight"):
        load_lite0_weights(model, no_fc, source="no_fc.pth")
    # A failed check loads nothing.
    assert torch.equal(model._fc.bias, torch.zeros(1000))


def test_lite0_imagenet_grace_hopper(lite0_classifier, grace_hopper):
    """Grace Hopper in US Navy uniform: 'military uniform' must be in the top-5 (it is top-1,
    p ~0.43, next 'mortarboard' ~0.07). Random or misloaded weights fail this; finer errors
    (padding, BN eps, ReLU6) are caught by test_lite0_matches_reference_package.
    """
    x = _normalise(grace_hopper, lite0_classifier.pixel_mean, lite0_classifier.pixel_std)
    with torch.no_grad():
        probs = lite0_classifier.classify(x).softmax(-1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert MILITARY_UNIFORM in top5, (top5, probs[MILITARY_UNIFORM].item())
    assert top5[0] == MILITARY_UNIFORM, (top5, probs[MILITARY_UNIFORM].item())


def test_lite0_normalisation_matches_stem_bn_statistics(lite0_classifier, grace_hopper):
    """The stem conv output on a real photo should have about the variance the stem BN saw
    in training. (x-127)/128 gives a median ratio ~1; ImageNet mean/std gives ~5x."""
    bn = lite0_classifier._bn0

    def median_var_ratio(mean: tuple, std: tuple) -> float:
        with torch.no_grad():
            y = lite0_classifier._conv_stem(_normalise(grace_hopper, mean, std))
        return (y.var(dim=(0, 2, 3)) / bn.running_var).median().item()

    ours = median_var_ratio(lite0_classifier.pixel_mean, lite0_classifier.pixel_std)
    imagenet = median_var_ratio(IMAGENET_MEAN, IMAGENET_STD)
    assert 0.5 < ours < 2.0, ours
    assert imagenet > 3.0, imagenet


def test_lite0_matches_reference_package(lite0_ckpt, lite0_classifier):
    """Same logits as the efficientnet-lite-pytorch implementation the weights came with."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(lite0_ckpt, strict=True)
    ref.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = lite0_classifier.classify(x), ref(x)
    assert (ours - theirs).abs().max().item() < 1e-4


def test_classify_needs_head():
    with pytest.raises(RuntimeError, match="with_classifier=True"):
        EfficientNetLite0().classify(torch.zeros(1, 3, 32, 32))


def test_r50_detectron2_key_layout():
    model = build_backbone("r50", pretrained=False)
    sd = model.state_dict()
    for key in ("stem.conv1.weight", "stem.conv1.norm.weight", "stem.conv1.norm.bias",
                "stem.conv1.norm.running_mean", "stem.conv1.norm.running_var",
                "res2.0.shortcut.weight", "res2.0.shortcut.norm.running_var",
                "res3.0.conv2.weight", "res4.5.conv1.norm.weight", "res5.2.conv3.norm.bias"):
        assert key in sd, key
    assert not any("num_batches_tracked" in k for k in sd)
    assert tuple(sd["stem.conv1.weight"].shape) == (64, 3, 7, 7)
    assert tuple(sd["res5.2.conv3.weight"].shape) == (2048, 512, 1, 1)
    # A shortcut only on the first block of each stage; 3/4/6/3 blocks.
    shortcuts = sorted({k.split(".shortcut")[0] for k in sd if ".shortcut." in k})
    assert shortcuts == ["res2.0", "res3.0", "res4.0", "res5.0"]
    assert [len(getattr(model, f"res{i}")) for i in range(2, 6)] == [3, 4, 6, 3]
    # Stride in the 3x3 conv (STRIDE_IN_1X1=False).
    assert model.res3[0].conv1.stride == (1, 1)
    assert model.res3[0].conv2.stride == (2, 2)
    assert model.res3[0].shortcut.stride == (2, 2)
    # 53 convs, each with a FrozenBN, and nothing else trainable.
    norms = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(norms) == 53
    assert all(not list(n.parameters()) for n in norms)
    params = dict(model.named_parameters())
    assert len(params) == 53 and all(k.endswith(".weight") and ".norm" not in k for k in params)
    assert sum(p.numel() for p in params.values()) == 23_454_912


def test_frozen_bn_matches_batchnorm_eval():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(8, eps=1e-3)
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    frozen = FrozenBatchNorm2d(8, eps=1e-3, with_num_batches_tracked=True)
    frozen.load_state_dict(bn.state_dict(), strict=True)
    frozen.train()
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    torch.testing.assert_close(frozen(x), bn.eval()(x))
    frozen(x).sum().backward()  # gradients flow to the input, none to the norm
    assert x.grad is not None and not list(frozen.parameters())
