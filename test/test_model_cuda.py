"""The model on CUDA: same results as on the CPU in float32; float16/bfloat16 run and agree.

Skipped without a CUDA device (conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spvis_model.config import preset
from spvis_model.model import SPVIS
from spvis_model.modeling.backbone import FrozenBatchNorm2d

pytestmark = pytest.mark.cuda


def clip(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = []
    for t in range(n):
        f = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
        f[30:70, 20 + 10 * t: 60 + 10 * t] = (220, 40, 40)
        frames.append(f)
    return frames


def run(model: SPVIS, frames: list[np.ndarray]):
    state = model.init_state()
    out = []
    for i, f in enumerate(frames):
        state, inst = model.step(state, f, 0.5 * i)
        out.append(inst)
    return state, out


def test_cuda_float32_matches_cpu(trained_tiny):
    cpu_model = trained_tiny
    gpu_model = SPVIS(cpu_model.cfg, pretrained_backbone=False)
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model = gpu_model.cuda().eval()
    _, cpu_out = run(cpu_model, clip())
    state, gpu_out = run(gpu_model, clip())
    assert state.query.is_cuda
    for a, b in zip(cpu_out, gpu_out, strict=True):
        assert np.array_equal(a.ids, b.ids)
        for ma, mb in zip(a.masks, b.masks, strict=True):
            assert (ma ^ mb).sum() <= 0.01 * ma.size  # a few boundary pixels may flip
        assert np.allclose(a.scores, b.scores, atol=1e-3)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_half_precision_runs_and_agrees(trained_tiny, precision):
    model = SPVIS(trained_tiny.cfg, pretrained_backbone=False)
    model.load_state_dict(trained_tiny.state_dict())
    model = model.cuda().eval()
    _, ref = run(model, clip())
    model.set_precision(precision)
    _, got = run(model, clip())
    for a, b in zip(ref, got, strict=True):
        assert len(a) == len(b)
        for ma, mb in zip(a.masks, b.masks, strict=True):
            inter, union = (ma & mb).sum(), (ma | mb).sum()
            assert union == 0 or inter / union > 0.9


def test_lite0_and_r50_step_on_cuda():
    for name in ("lite0", "r50"):
        cfg = preset(name)
        model = SPVIS(cfg, pretrained_backbone=False).cuda().eval().set_precision("bfloat16")
        state, out = run(model, clip(2))
        assert out[-1].masks.shape[1:] == (120, 160)
        assert state.nbytes() == model.init_state().nbytes()
    torch.cuda.synchronize()


@pytest.mark.parametrize(("eps", "passes"), [(1e-3, 1), (3e-4, 2)])
def test_refined_masks_on_cuda_equal_the_cpu_crops(eps, passes):
    """`mask_refine: guided` runs over the whole frame in batches on CUDA (no host read) and
    on per-mask crops on the CPU: the same masks from the same logits and frame, with one
    filter pass and with the shipped model's two."""
    from spvis_model.mask_refine import output_masks
    from spvis_model.model import FrameGeometry

    gen = torch.Generator().manual_seed(0)
    geom = FrameGeometry((480, 640), (240, 320), (256, 320))
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(80.0), indexing="ij")
    logits = torch.stack([4.0 * (1.0 - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt() / r)
                          for cy, cx, r in ((20, 20, 8), (40, 60, 5), (0, 79, 10))])
    logits = logits + 0.3 * torch.randn(logits.shape, generator=gen)
    frame = torch.randint(0, 256, (480, 640, 3), dtype=torch.uint8, generator=gen)
    cpu = output_masks(logits, geom, "guided", 5.0, eps, frame, passes=passes)
    gpu = output_masks(logits.cuda(), geom, "guided", 5.0, eps, frame.cuda(), passes=passes)
    assert cpu.any()
    differ = (cpu != gpu.cpu()).float().mean()
    assert float(differ) <= 1e-4, float(differ)


@pytest.mark.parametrize("name", ["lite0", "r50"])
def test_folded_backbones_on_cuda_match_the_cpu(name):
    """The BN fold runs on CUDA in the default layout; the CPU runs lite0 channels-last. Both
    compute the same features as the network written out unfolded (test_folding.py) up to
    float rounding (TF32 convolutions allowed on CUDA)."""
    torch.manual_seed(0)
    model = SPVIS(preset(name), pretrained_backbone=False).eval()
    with torch.no_grad():  # norms that are not the identity, so the fold has work to do
        for m in model.segmenter.backbone.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        cpu = model.segmenter.backbone(x)
        model = model.cuda()
        gpu = model.segmenter.backbone(x.cuda())
    for key, ref in cpu.items():
        scale = ref.abs().max().item()
        assert (gpu[key].cpu() - ref).abs().max().item() <= 1e-2 * scale, key
