"""The compiled MSDeformAttn op on CPU: agreement with the reference, gradients, validation."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from msda_cases import CASES, level_index, make_case

from spvis_model.ops import MSDeformAttn, ms_deform_attn, ms_deform_attn_reference

NAMES = ("output", "grad_value", "grad_loc", "grad_attn")


def _grads(fn, inputs: tuple, grad_out: torch.Tensor) -> list[torch.Tensor]:
    value, shapes, starts, loc, attn = (t.detach().clone() for t in inputs)
    for t in (value, loc, attn):
        t.requires_grad_(True)
    out = fn(value, shapes, starts, loc, attn)
    out.backward(grad_out)
    return [out.detach(), value.grad, loc.grad, attn.grad]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"L{len(c[0])}-D{c[2]}")
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
def test_forward_and_backward_match_reference(case, dtype, tol):
    inputs = make_case(*case, dtype=dtype)
    grad_out = torch.randn(inputs[0].shape[0], case[3], case[1] * case[2], dtype=dtype)
    ours = _grads(ms_deform_attn, inputs, grad_out)
    ref = _grads(ms_deform_attn_reference, inputs, grad_out)
    for name, a, b in zip(NAMES, ours, ref, strict=True):
        # Location gradients scale with the level size: compare relative to their magnitude.
        scale = max(1.0, b.abs().max().item()) if name == "grad_loc" else 1.0
        assert (a - b).abs().max().item() <= tol * scale, name


def test_samples_outside_read_zero():
    value, shapes, starts, loc, attn = make_case(((4, 5),), 1, 3, 4, 2)
    loc = torch.full_like(loc, 1.5)  # every sample lands outside the level
    out = ms_deform_attn(value, shapes, starts, loc, attn)
    assert torch.count_nonzero(out) == 0
    loc[..., 0] = 0.5  # x inside, y outside -> still zero
    assert torch.count_nonzero(ms_deform_attn(value, shapes, starts, loc, attn)) == 0


def test_exact_pixel_centre_returns_that_pixel():
    shapes = ((3, 4),)
    value, spatial, starts, _, _ = make_case(shapes, 1, 5, 1, 1, batch=1)
    y, x = 2, 1
    loc = torch.tensor([(x + 0.5) / 4, (y + 0.5) / 3], dtype=torch.float64).view(1, 1, 1, 1, 1, 2)
    attn = torch.ones(1, 1, 1, 1, 1, dtype=torch.float64)
    out = ms_deform_attn(value, spatial, starts, loc, attn)
    assert torch.allclose(out.view(-1), value[0, y * 4 + x, 0], atol=1e-12)


def test_gradcheck_float64():
    inputs = make_case(((4, 5), (2, 3)), 2, 3, 3, 2, batch=1)
    value, shapes, starts, loc, attn = inputs
    # Keep locations off exact pixel boundaries, where bilinear sampling has a kink.
    loc = loc.clamp(-0.2, 1.2)
    leaves = [t.clone().requires_grad_(True) for t in (value, loc, attn)]
    assert torch.autograd.gradcheck(
        lambda v, lc, a: ms_deform_attn(v, shapes, starts, lc, a), leaves, eps=1e-6, atol=1e-5)


def test_non_contiguous_inputs():
    value, shapes, starts, loc, attn = make_case(((6, 8), (3, 4)), 2, 8, 5, 3)
    expected = ms_deform_attn(value, shapes, starts, loc, attn)
    value_nc = value.transpose(2, 3).contiguous().transpose(2, 3)
    loc_nc = loc.transpose(0, 1).contiguous().transpose(0, 1)
    attn_nc = attn.permute(4, 3, 2, 1, 0).contiguous().permute(4, 3, 2, 1, 0)
    assert not value_nc.is_contiguous() and not loc_nc.is_contiguous()
    out = ms_deform_attn(value_nc, shapes, starts, loc_nc, attn_nc)
    assert torch.equal(out, expected)


def test_large_query_count_and_batch_one_head_one():
    # B*H = 1 < threads makes the CPU backward split queries over threads with private buffers.
    inputs = make_case(((9, 11), (5, 6)), 1, 4, 2000, 2, batch=1)
    grad_out = torch.randn(1, 2000, 4, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ours = _grads(ms_deform_attn, inputs, grad_out)
    finally:
        torch.set_num_threads(threads)
    ref = _grads(ms_deform_attn_reference, inputs, grad_out)
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-9)


# --- validation --------------------------------------------------------------------------------

def _valid():
    return list(make_case(((4, 5), (2, 3)), 2, 3, 3, 2, dtype=torch.float32))


@pytest.mark.parametrize("index,bad,message", [
    (0, lambda v: v[0], r"value must have shape \(B, S, H, D\), got \(26, 2, 3\)"),
    (1, lambda s: s[:, :1], r"spatial_shapes must have shape \(L, 2\), got \(2, 1\)"),
    (2, lambda s: s[:1], r"level_start_index must have shape \(L,\) = \(2,\), got \(1,\)"),
    (3, lambda lc: lc[..., :1], r"sampling_locations must have shape \(B, Q, H, L, P, 2\)"),
    (3, lambda lc: lc[:, :, :1], r"sampling_locations must have shape .* got \(2, 3, 1, 2, 2, 2\)"),
    (4, lambda a: a[..., :1], r"attention_weights must have shape \(B, Q, H, L, P\) = "
                              r"\(2, 3, 2, 2, 2\), got \(2, 3, 2, 2, 1\)"),
    (0, lambda v: v[:, :-1], r"value has S = 25 rows .* sum to 26"),
    (2, lambda s: s + 1, r"level_start_index\[0\] = 1, expected 0"),
    (0, lambda v: v.half(), r"value dtype torch.float16 is not supported on cpu"),
    (0, lambda v: v.long(), r"value must be a floating-point tensor"),
    (3, lambda lc: lc.double(), r"sampling_locations \(torch.float64\) and attention_weights"),
    (1, lambda s: s.float(), r"spatial_shapes must be int64"),
    (1, lambda s: s.to("meta"), r"spatial_shapes is on meta but value is on cpu"),
    (4, lambda a: a.to("meta"), r"attention_weights is on meta but value is on cpu"),
    (0, lambda v: v.tolist(), r"value must be a torch.Tensor, got list"),
])
def test_validation_errors_name_the_argument(index, bad, message):
    args = _valid()
    args[index] = bad(args[index])
    with pytest.raises(ValueError, match=message):
        ms_deform_attn(*args)


def test_locations_in_other_dtype_than_value_rejected_on_cpu():
    args = _valid()
    args[0] = args[0].double()
    with pytest.raises(ValueError, match=r"must equal value's dtype torch\.float64"):
        ms_deform_attn(*args)


def test_unbuilt_extension_says_how_to_build():
    # A fresh interpreter in which spvis_model._C cannot be imported, as on a checkout
    # where the build never ran: the call must fail and name the build command.
    code = textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "spvis_model._C":
                    raise ImportError("simulated: no compiled module")
                return None
        sys.meta_path.insert(0, Block())
        import torch
        from spvis_model.ops import ms_deform_attn, is_built
        assert not is_built()
        v = torch.zeros(1, 1, 1, 1); s = torch.tensor([[1, 1]]); i = torch.tensor([0])
        ms_deform_attn(v, s, i, torch.zeros(1, 1, 1, 1, 1, 2), torch.zeros(1, 1, 1, 1, 1))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode != 0
    assert "RuntimeError" in res.stderr and "make setup" in res.stderr, res.stderr


# --- module ------------------------------------------------------------------------------------

def test_module_compiled_matches_reference_and_trains():
    torch.manual_seed(0)
    shapes = ((8, 10), (4, 5), (2, 3))
    spatial, starts, s = level_index(shapes)
    attn = MSDeformAttn(d_model=48, n_levels=3, n_heads=4, n_points=2)
    ref = MSDeformAttn(d_model=48, n_levels=3, n_heads=4, n_points=2, implementation="reference")
    ref.load_state_dict(attn.state_dict())
    query = torch.randn(2, 7, 48)
    feats = torch.randn(2, s, 48)
    for points in (torch.rand(2, 7, 3, 2), torch.rand(2, 7, 3, 4)):
        out = attn(query, points, feats, spatial, starts)
        assert out.shape == (2, 7, 48)
        assert torch.allclose(out, ref(query, points, feats, spatial, starts), atol=1e-5)
    out.square().mean().backward()
    grads = [p.grad for p in attn.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert attn.sampling_offsets.weight.grad.abs().sum() > 0  # gradient reaches the offsets


@pytest.mark.parametrize("ref_batch", [2, 1])
def test_module_samples_at_reference_plus_offset_over_level_size(ref_batch):
    """The module's sampling locations, written out: reference point + offset / (W_l, H_l)
    for every head, level and point, each level its own size (the module computes them on
    flattened rows; a reference of batch 1 is shared by the batch)."""
    torch.manual_seed(0)
    shapes = ((6, 9), (3, 5), (2, 2))
    spatial, starts, s = level_index(shapes)
    attn = MSDeformAttn(d_model=32, n_levels=3, n_heads=4, n_points=3).double()
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(0, 0.5)
        attn.attention_weights.weight.normal_()
    query = torch.randn(2, 5, 32, dtype=torch.float64)
    feats = torch.randn(2, s, 32, dtype=torch.float64)
    points = torch.rand(ref_batch, 5, 3, 2, dtype=torch.float64)
    offsets = attn.sampling_offsets(query).view(2, 5, 4, 3, 3, 2)
    size_xy = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float64)
    loc = torch.empty(2, 5, 4, 3, 3, 2, dtype=torch.float64)
    for lvl in range(3):
        loc[:, :, :, lvl] = points[:, :, None, lvl, None, :] + offsets[:, :, :, lvl] / size_xy[lvl]
    weights = attn.attention_weights(query).view(2, 5, 4, 9).softmax(-1).view(2, 5, 4, 3, 3)
    value = attn.value_proj(feats).view(2, s, 4, 8)
    expected = attn.output_proj(ms_deform_attn_reference(value, spatial, starts, loc, weights))
    # Locations are computed in float32 (module.py), so float32 rounding is allowed.
    torch.testing.assert_close(attn(query, points, feats, spatial, starts), expected,
                               rtol=1e-5, atol=1e-5)


def test_module_initialisation_and_arguments():
    attn = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3)
    offsets = attn.sampling_offsets.bias.view(4, 2, 3, 2)
    # Head 0 points along +x at radii 1, 2, 3; attention starts uniform.
    assert torch.allclose(offsets[0, 0], torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]))
    assert torch.count_nonzero(attn.attention_weights.bias) == 0
    with pytest.raises(ValueError, match=r"d_model \(30\) must be divisible by n_heads \(4\)"):
        MSDeformAttn(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="n_points must be a positive int, got 0"):
        MSDeformAttn(n_points=0)
    with pytest.raises(ValueError, match="implementation must be"):
        MSDeformAttn(implementation="fast")
    spatial, starts, s = level_index(((4, 4), (2, 2), (1, 1)))
    with pytest.raises(ValueError, match="spatial_shapes has 3 levels"):
        attn(torch.randn(1, 2, 32), torch.rand(1, 2, 3, 2), torch.randn(1, s, 32), spatial, starts)


def test_level_layout_is_checked_without_device_reads():
    """A layout from `level_layout` (host values, cached per size) passes the op's checks with
    no read of the shape tensors; a value with the wrong number of rows is still refused, and
    hand-made shape tensors are still read and checked."""
    from spvis_model.ops.layout import level_layout
    from spvis_model.syncs import count_syncs

    shapes = [(6, 8), (3, 4)]
    spatial, start = level_layout(shapes, "cpu")
    assert level_layout(shapes, "cpu")[0] is spatial  # cached
    assert spatial.tolist() == [[6, 8], [3, 4]] and start.tolist() == [0, 48]
    gen = torch.Generator().manual_seed(0)
    value = torch.randn(1, 60, 2, 4, generator=gen)
    loc = torch.rand(1, 5, 2, 2, 3, 2, generator=gen)
    weights = torch.rand(1, 5, 2, 2, 3, generator=gen)
    with count_syncs() as count:
        out = ms_deform_attn(value, spatial, start, loc, weights)
    assert count.total == 0, count.summary()
    ref = ms_deform_attn_reference(value, spatial, start, loc, weights)
    assert torch.allclose(out, ref, atol=1e-5)
    with pytest.raises(ValueError, match="S = 59 rows"):
        ms_deform_attn(value[:, :59], spatial, start, loc, weights)
    with count_syncs() as count:
        ms_deform_attn(value, spatial.clone(), start.clone(), loc, weights)
    assert count.total >= 2  # hand-made tensors: read and checked as before
    with pytest.raises(ValueError, match="non-negative"):
        level_layout([(2, -1)], "cpu")
