"""Backbone inference speed-ups that must not change the function: a fixed batch norm folded
into the convolution before it (folding.conv_norm), and lite0's channels-last CPU inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spvis_model.modeling.backbone import EfficientNetLite0, FrozenBatchNorm2d, build_backbone
from spvis_model.modeling.backbone.efficientnet_lite import SamePadConv2d
from spvis_model.modeling.backbone.folding import conv_norm, fixed_norm_affine


def _random_bn(bn: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean"):
            getattr(bn, name).copy_(torch.randn(getattr(bn, name).shape, generator=gen))
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=gen) * 2 + 0.1)
    return bn


def _conv(kind: str, groups: int) -> nn.Conv2d:
    if kind == "same_stride2":  # TF SAME with stride 2: asymmetric padding done by pad()
        return SamePadConv2d(8, 8, 3, stride=2, groups=groups)
    if kind == "bias_padding":  # a conv with its own bias and symmetric padding
        return nn.Conv2d(8, 8, 3, padding=1, groups=groups, bias=True)
    return nn.Conv2d(8, 8, 1, bias=False)


@pytest.mark.parametrize("kind,groups", [("same_stride2", 8), ("same_stride2", 1),
                                         ("bias_padding", 1), ("pointwise", 1)])
@pytest.mark.parametrize("norm_kind", ["frozen", "bn_eval"])
def test_folded_conv_norm_equals_conv_then_norm(kind, groups, norm_kind):
    torch.manual_seed(0)
    conv = _conv(kind, groups)
    norm = _random_bn(FrozenBatchNorm2d(8, eps=1e-3) if norm_kind == "frozen"
                      else nn.BatchNorm2d(8, eps=1e-3).eval(), seed=1)
    x = torch.randn(2, 8, 11, 14)
    expected = norm(conv(x))
    padded = conv.pad(x) if isinstance(conv, SamePadConv2d) else x
    assert fixed_norm_affine(norm) is not None
    torch.testing.assert_close(conv_norm(conv, norm, padded), expected, rtol=1e-5, atol=1e-5)


def test_training_batchnorm_is_not_folded_and_uses_batch_statistics():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(4, 6, 1, bias=False), _random_bn(nn.BatchNorm2d(6), seed=2).train()
    x = torch.randn(3, 4, 5, 5)
    assert fixed_norm_affine(bn) is None
    out = conv_norm(conv, bn, x)
    # Batch statistics: every channel of the output has mean bias, std weight (not the
    # running statistics, which a fold would use).
    torch.testing.assert_close(out.mean((0, 2, 3)), bn.bias.detach(), rtol=1e-4, atol=1e-4)
    assert bn.num_batches_tracked.item() == 1


def test_gradients_reach_the_convolution_through_the_fold():
    torch.manual_seed(0)
    conv, norm = nn.Conv2d(4, 6, 3, padding=1, bias=False), _random_bn(FrozenBatchNorm2d(6), 3)
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    conv_norm(conv, norm, x).square().sum().backward()
    folded_w, folded_x = conv.weight.grad.clone(), x.grad.clone()
    conv.weight.grad, x.grad = None, None
    norm(conv(x)).square().sum().backward()
    torch.testing.assert_close(folded_w, conv.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(folded_x, x.grad, rtol=1e-4, atol=1e-4)
    assert not list(norm.parameters())  # the frozen norm has no parameters to train


def _unfolded_lite0_features(model: EfficientNetLite0, x: torch.Tensor) -> dict:
    """lite0's forward written out without the fold: conv, then each BN as its own module."""
    out, y = {}, torch.relu(model._bn0(model._conv_stem(x))).clamp(max=6)
    for idx, block in enumerate(model._blocks):
        z = y
        if block.has_expand:
            z = block._bn0(block._expand_conv(z)).clamp(0, 6)
        z = block._bn1(block._depthwise_conv(z)).clamp(0, 6)
        z = block._bn2(block._project_conv(z))
        y = z + y if block.residual else z
        if idx in model._taps:
            out[model._taps[idx]] = y
    return out


@pytest.mark.parametrize("norm", ["frozen_bn", "bn"])
def test_lite0_inference_layouts_match_the_unfolded_network(norm):
    torch.manual_seed(0)
    model = EfficientNetLite0(norm=norm).eval()
    for m in model.modules():
        if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d)):
            _random_bn(m, seed=int(torch.randint(0, 1000, ())))
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        expected = _unfolded_lite0_features(model, x)
        nhwc = model(x)  # CPU, no autograd: channels-last
        model.cpu_channels_last = False
        nchw = model(x)
    for name, ref in expected.items():
        scale = ref.abs().max().item()
        for got in (nhwc[name], nchw[name]):
            assert got.is_contiguous(), name  # the pixel decoder gets the default layout
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-4 * scale)


def test_r50_folded_features_match_the_unfolded_network():
    torch.manual_seed(0)
    model = build_backbone("r50", pretrained=False).eval()
    for i, m in enumerate(model.modules()):
        if isinstance(m, FrozenBatchNorm2d):
            _random_bn(m, seed=i)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        folded = model(x)["res3"]
        stem = model.stem
        y = torch.relu(stem.conv1.norm(nn.Conv2d.forward(stem.conv1, x)))
        y = torch.nn.functional.max_pool2d(y, 3, 2, 1)

        def convnorm(c, t):
            return c.norm(nn.Conv2d.forward(c, t))

        for stage in (model.res2, model.res3):
            for blk in stage:
                z = torch.relu(convnorm(blk.conv1, y))
                z = torch.relu(convnorm(blk.conv2, z))
                z = convnorm(blk.conv3, z)
                y = torch.relu(z + (convnorm(blk.shortcut, y) if blk.shortcut is not None else y))
    torch.testing.assert_close(folded, y, rtol=0, atol=1e-4 * y.abs().max().item())
