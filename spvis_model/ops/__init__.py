"""Compiled operators: multi-scale deformable attention (MSDeformAttn)."""

from spvis_model.ops._ext import is_built, with_cuda
from spvis_model.ops.module import MSDeformAttn
from spvis_model.ops.ms_deform_attn import ms_deform_attn, validate_ms_deform_attn_args
from spvis_model.ops.reference import ms_deform_attn_reference

__all__ = [
    "MSDeformAttn",
    "is_built",
    "ms_deform_attn",
    "ms_deform_attn_reference",
    "validate_ms_deform_attn_args",
    "with_cuda",
]
