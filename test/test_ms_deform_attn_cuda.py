"""The CUDA kernels of MSDeformAttn: agreement with the CPU kernels, half types, edge sizes.

Skipped without a CUDA device (see conftest.py); run on the GPU machine.
"""

from __future__ import annotations

import pytest
import torch
from msda_cases import CASES, make_case

from spvis_model.ops import MSDeformAttn, ms_deform_attn

pytestmark = pytest.mark.cuda


NAMES = ("output", "grad_value", "grad_loc", "grad_attn")


def _run(inputs: tuple, grad_out: torch.Tensor) -> list[torch.Tensor]:
    value, shapes, starts, loc, attn = (t.detach().clone() for t in inputs)
    for t in (value, loc, attn):
        t.requires_grad_(True)
    out = ms_deform_attn(value, shapes, starts, loc, attn)
    out.backward(grad_out.to(out.device, out.dtype))
    return [t.detach().cpu().double() for t in (out, value.grad, loc.grad, attn.grad)]


def _cuda(inputs: tuple, dtype: torch.dtype | None = None,
          loc_dtype: torch.dtype | None = None) -> tuple:
    value, shapes, starts, loc, attn = inputs
    dtype = dtype or value.dtype
    loc_dtype = loc_dtype or dtype
    return (value.cuda().to(dtype), shapes.cuda(), starts.cuda(), loc.cuda().to(loc_dtype),
            attn.cuda().to(loc_dtype))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"L{len(c[0])}-D{c[2]}")
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_cuda_matches_cpu(case, dtype, tol):
    inputs = make_case(*case, dtype=dtype)
    grad_out = torch.randn(2, case[3], case[1] * case[2], dtype=dtype)
    cpu = _run(inputs, grad_out)
    gpu = _run(_cuda(inputs), grad_out)
    for name, a, b in zip(NAMES, gpu, cpu, strict=True):
        scale = max(1.0, b.abs().max().item())
        assert (a - b).abs().max().item() <= tol * scale, name


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("loc_dtype", ["same", "float32"])
def test_half_types_close_to_float32(half, loc_dtype):
    case = (((16, 20), (8, 10), (4, 5)), 4, 32, 64, 4)
    inputs = make_case(*case, dtype=torch.float32, spread=0.1)
    grad_out = torch.randn(2, 64, 128)
    loc_t = half if loc_dtype == "same" else torch.float32
    got = _run(_cuda(inputs, half, loc_t), grad_out)
    # Kernel precision: float32 on the same (rounded) inputs. Accumulation is in float32, so
    # what is left is the rounding of the results to the half type.
    value, shapes, starts, loc, attn = inputs
    rounded = (value.to(half).float(), shapes, starts, loc.to(loc_t).float(),
               attn.to(loc_t).float())
    ref = _run(_cuda(rounded), grad_out.to(half).float())
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2}[half]
    for name, a, b in zip(NAMES, got, ref, strict=True):
        err = (a - b).norm() / b.norm().clamp_min(1e-12)
        assert err <= tol, f"{name}: relative error {err:.3g} > {tol}"
    # End to end against unrounded float32 inputs: output and value gradient stay close.
    exact = _run(_cuda(inputs), grad_out)
    for name, a, b in zip(NAMES[:2], got[:2], exact[:2], strict=True):
        err = (a - b).norm() / b.norm().clamp_min(1e-12)
        assert err <= 5 * tol, f"{name} vs float32 inputs: relative error {err:.3g}"


def test_channels_over_1024_and_many_queries():
    # D > 1024 (one head) and B*Q beyond one grid's worth of blocks.
    inputs = make_case(((3, 4), (2, 2)), 1, 1030, 5, 2, batch=1, dtype=torch.float32)
    grad_out = torch.randn(1, 5, 1030)
    for a, b in zip(_run(_cuda(inputs), grad_out), _run(inputs, grad_out), strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    inputs = make_case(((6, 7),), 2, 3, 300_000, 1, batch=1, dtype=torch.float32)
    grad_out = torch.randn(1, 300_000, 6)
    for a, b in zip(_run(_cuda(inputs), grad_out), _run(inputs, grad_out), strict=True):
        assert torch.allclose(a, b, atol=1e-3)


def test_cuda_mixed_devices_and_cpu_only_dtype_errors():
    value, shapes, starts, loc, attn = _cuda(make_case(((4, 5),), 1, 2, 3, 1, dtype=torch.float32))
    with pytest.raises(ValueError, match="spatial_shapes is on cpu but value is on cuda:0"):
        ms_deform_attn(value, shapes.cpu(), starts, loc, attn)
    with pytest.raises(ValueError, match=r"must equal value's dtype torch.float32"):
        ms_deform_attn(value, shapes, starts, loc.half(), attn.half())


def test_module_under_autocast():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=64, n_levels=2, n_heads=2, n_points=4).cuda()
    shapes = torch.tensor([[8, 8], [4, 4]], device="cuda")
    starts = torch.tensor([0, 64], device="cuda")
    query, feats = torch.randn(2, 10, 64, device="cuda"), torch.randn(2, 80, 64, device="cuda")
    points = torch.rand(2, 10, 2, 2, device="cuda")
    ref = attn(query, points, feats, shapes, starts)
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast("cuda", dtype=dtype):
            out = attn(query, points, feats, shapes, starts)
        assert out.dtype == dtype
        assert (out.float() - ref).norm() / ref.norm() < 3e-2
        out.float().sum().backward()


def _shifted(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A contiguous CUDA copy of t that starts one element into its storage, and that storage."""
    flat = torch.zeros(t.numel() + 1, dtype=dtype, device="cuda")
    flat[1:] = t.flatten().to("cuda", dtype)
    view = flat[1:].view(t.shape)
    assert view.is_contiguous() and view.data_ptr() % 16 != 0
    return view, flat


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_misaligned_views(dtype):
    # Contiguous views that start one element into their storage cannot use vector loads.
    value, shapes, starts, loc, attn = make_case(((6, 8), (3, 4)), 2, 32, 9, 3, dtype=torch.float32)
    grad_out = torch.randn(2, 9, 64)
    expected = _run(_cuda((value, shapes, starts, loc, attn), dtype, torch.float32), grad_out)
    value_s, flat = _shifted(value, dtype)
    flat.requires_grad_(True)
    value_s = flat[1:].view(value.shape)
    loc_c, attn_c = loc.float().cuda().requires_grad_(), attn.float().cuda().requires_grad_()
    out = ms_deform_attn(value_s, shapes.cuda(), starts.cuda(), loc_c, attn_c)
    grad_s, _ = _shifted(grad_out, dtype)
    g_flat, g_loc, g_attn = torch.autograd.grad(out, (flat, loc_c, attn_c), grad_s)
    got = [t.detach().cpu().double() for t in (out, g_flat[1:].view(value.shape), g_loc, g_attn)]
    for name, a, b in zip(NAMES, got, expected, strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3), name
