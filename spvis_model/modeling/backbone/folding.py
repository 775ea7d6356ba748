"""A convolution and the batch norm after it, run as one convolution when the norm is fixed.

A batch norm whose statistics do not change (:class:`FrozenBatchNorm2d`, or ``nn.BatchNorm2d``
in eval mode) is a per-channel affine map ``y * scale + shift``. Folded into the preceding
convolution's weight (``w * scale`` per output channel) and bias (``b * scale + shift``), the
pair is one convolution: the same values up to float rounding, and one pass over the output
instead of three (convolution, multiply, add). The folded weights are computed on every call
from the current parameters (a few thousand multiplies against millions for the
activations), so loading new weights or training the convolution needs no cache to refresh,
and gradients reach the convolution's weight as before.
"""

from __future__ import annotations

from torch import Tensor, nn

from .base import FrozenBatchNorm2d, norm_affine


def fixed_norm_affine(norm: nn.Module) -> tuple[Tensor, Tensor] | None:
    """``(scale, shift)``, each ``(C,)``, of a norm whose statistics are fixed; ``None`` for
    any other norm (a training-mode ``BatchNorm2d`` normalises by the batch's statistics)."""
    if isinstance(norm, FrozenBatchNorm2d):
        return norm.scale_shift()
    if (isinstance(norm, nn.BatchNorm2d) and not norm.training
            and norm.running_mean is not None and norm.running_var is not None):
        return norm_affine(norm.running_mean, norm.running_var, norm.eps,
                           norm.weight if norm.affine else None,
                           norm.bias if norm.affine else None)
    return None


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor) -> Tensor:
    """``norm(conv(x))`` with a fixed norm folded into the convolution.

    Args:
        conv: a zero-padded ``nn.Conv2d`` (its own ``padding`` is applied here; any padding
            done in a subclass's ``forward``, such as TF "SAME", must already be in ``x``).
        norm: the norm after it; one that is not fixed runs as a separate module.
        x: ``(B, C_in, H, W)``.

    Returns:
        ``(B, C_out, H', W')``, the convolution's output size.
    """
    affine = fixed_norm_affine(norm)
    if affine is None:
        return norm(conv._conv_forward(x, conv.weight, conv.bias))
    scale, shift = affine
    weight = conv.weight * scale.to(conv.weight.dtype).view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias.to(shift.dtype) * scale + shift
    return conv._conv_forward(x, weight, bias.to(weight.dtype))
