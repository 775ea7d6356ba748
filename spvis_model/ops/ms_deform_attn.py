"""Multi-scale deformable attention: argument validation and autograd around the compiled op."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from spvis_model.ops import _ext
from spvis_model.ops.layout import known_layout

_CPU_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _expect(name: str, t: object, expected: str, ok: bool) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not ok:
        raise ValueError(f"{name} must have shape {expected}, got {_shape(t)}")


def validate_ms_deform_attn_args(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    *,
    check_dtype_for_kernels: bool = True,
) -> None:
    """Raise ValueError naming the argument, the expected and the actual shape/dtype/device."""
    _expect("value", value, "(B, S, H, D)", isinstance(value, torch.Tensor) and value.dim() == 4)
    b, s, h, _ = value.shape
    _expect("spatial_shapes", spatial_shapes, "(L, 2)",
            isinstance(spatial_shapes, torch.Tensor) and spatial_shapes.dim() == 2
            and spatial_shapes.shape[1] == 2)
    n_levels = spatial_shapes.shape[0]
    _expect("level_start_index", level_start_index, f"(L,) = ({n_levels},)",
            isinstance(level_start_index, torch.Tensor) and level_start_index.dim() == 1
            and level_start_index.shape[0] == n_levels)
    loc_ok = (isinstance(sampling_locations, torch.Tensor) and sampling_locations.dim() == 6
              and sampling_locations.shape[0] == b and sampling_locations.shape[2] == h
              and sampling_locations.shape[3] == n_levels and sampling_locations.shape[5] == 2)
    _expect("sampling_locations", sampling_locations, f"(B, Q, H, L, P, 2) = ({b}, Q, {h}, "
            f"{n_levels}, P, 2)", loc_ok)
    q, n_points = sampling_locations.shape[1], sampling_locations.shape[4]
    _expect("attention_weights", attention_weights, f"(B, Q, H, L, P) = ({b}, {q}, {h}, "
            f"{n_levels}, {n_points})",
            isinstance(attention_weights, torch.Tensor)
            and tuple(attention_weights.shape) == (b, q, h, n_levels, n_points))

    for name, t in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index),
                    ("sampling_locations", sampling_locations),
                    ("attention_weights", attention_weights)):
        if t.device != value.device:
            raise ValueError(f"{name} is on {t.device} but value is on {value.device}: "
                             "all inputs must be on one device")
    for name, t in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index)):
        if t.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{name} must be int64 (or int32), got {t.dtype}")

    if not value.is_floating_point():
        raise ValueError(f"value must be a floating-point tensor, got {value.dtype}")
    if sampling_locations.dtype != attention_weights.dtype:
        raise ValueError(f"sampling_locations ({sampling_locations.dtype}) and attention_weights "
                         f"({attention_weights.dtype}) must have the same dtype")
    if check_dtype_for_kernels:
        allowed = _CUDA_DTYPES if value.is_cuda else _CPU_DTYPES
        if value.dtype not in allowed:
            raise ValueError(f"value dtype {value.dtype} is not supported on {value.device.type}; "
                             f"supported: {', '.join(str(d) for d in allowed)}")
        loc_ok_dtype = sampling_locations.dtype == value.dtype or (
            value.dtype in (torch.float16, torch.bfloat16)
            and sampling_locations.dtype == torch.float32)
        if not loc_ok_dtype:
            raise ValueError(f"sampling_locations/attention_weights dtype "
                             f"{sampling_locations.dtype} must equal value's dtype {value.dtype} "
                             "(or be float32 when value is float16/bfloat16)")

    known = known_layout(spatial_shapes, level_start_index)
    if known is not None:  # built from host values by level_layout: no device read
        if known[0] != s:
            raise ValueError(f"value has S = {s} rows (shape {_shape(value)}) but spatial_shapes "
                             f"{list(known[1])} sum to {known[0]}")
        return
    shapes = spatial_shapes.tolist()
    starts = level_start_index.tolist()
    total = 0
    for lvl, ((hl, wl), start) in enumerate(zip(shapes, starts, strict=True)):
        if hl < 0 or wl < 0:
            raise ValueError(f"spatial_shapes[{lvl}] = ({hl}, {wl}) must be non-negative")
        if start != total:
            raise ValueError(f"level_start_index[{lvl}] = {start}, expected {total} "
                             "(the running sum of H_l * W_l)")
        total += hl * wl
    if total != s:
        raise ValueError(f"value has S = {s} rows (shape {_shape(value)}) but spatial_shapes "
                         f"{shapes} sum to {total}")


class _MSDeformAttnFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, value: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                sampling_locations: torch.Tensor,
                attention_weights: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ext = _ext.load()
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights)
        return ext.ms_deform_attn_forward(value, spatial_shapes, level_start_index,
                                          sampling_locations, attention_weights)

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx,
                 grad_output: torch.Tensor) -> tuple:  # type: ignore[override]
        value, spatial_shapes, level_start_index, loc, attn = ctx.saved_tensors
        grad_value, grad_loc, grad_attn = _ext.load().ms_deform_attn_backward(
            value, spatial_shapes, level_start_index, loc, attn, grad_output)
        return grad_value, None, None, grad_loc, grad_attn


# torch.compile runs the op as it is, between two compiled graphs: the kernels are a pybind11
# module that Dynamo cannot trace (without this it breaks the graph there anyway, with a
# warning per call site).
@torch.compiler.disable
def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention with the compiled CPU / CUDA kernels.

    Args:
        value: (B, S, H, D) with S = sum over levels of H_l * W_l. float32/float64 on CPU;
            float16/bfloat16/float32/float64 on CUDA.
        spatial_shapes: (L, 2) int64 rows (H_l, W_l).
        level_start_index: (L,) int64 offset of each level in S.
        sampling_locations: (B, Q, H, L, P, 2) normalised (x, y) in [0, 1]; the pixel sampled
            is loc * size - 0.5 (grid_sample, align_corners=False), outside reads as zero.
            Same dtype as value, or float32 when value is float16/bfloat16.
        attention_weights: (B, Q, H, L, P), same dtype as sampling_locations.

    Returns:
        (B, Q, H * D) in value's dtype (accumulated in float32 for half types).
        Differentiable w.r.t. value, sampling_locations and attention_weights.

    Raises:
        ValueError: an argument has the wrong rank, size, dtype or device.
        RuntimeError: the compiled op is not built (the message says how to build it).
    """
    validate_ms_deform_attn_args(value, spatial_shapes, level_start_index, sampling_locations,
                                 attention_weights)
    ext = _ext.load()
    if value.is_cuda and not ext.with_cuda():
        raise RuntimeError("value is on CUDA but spvis_model._C was built without CUDA kernels; "
                           "rebuild on a machine with a CUDA build of torch and nvcc "
                           f"({_ext.BUILD_HINT})")
    return _MSDeformAttnFunction.apply(value, spatial_shapes, level_start_index,
                                       sampling_locations, attention_weights)
