"""Fused bias + leaky ReLU: ``y = leaky_relu(x + b[c], alpha) * gain``.

Shapes: ``x [N, C, ...]`` (any number of trailing dims), ``b [C]``. Defaults: ``alpha = 0.2``,
``gain = sqrt(2)``, as in StyleGAN2. Gradients:
``dx = dy * gain * (y > 0 ? 1 : alpha)``, ``db = sum over all dims but 1 of dx``; the double backward
``d(dy) = (d_dx + d_db[c]) * gain * (y > 0 ? 1 : alpha)``. ``alpha`` is honoured on every backend.

:func:`fused_leaky_relu_native` is the specification; :func:`fused_leaky_relu` dispatches.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_GAIN = math.sqrt(2.0)


def _bias_view(bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return bias.reshape([1, -1] + [1] * (x.ndim - 2))


def fused_leaky_relu_native(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                            gain: float = DEFAULT_GAIN) -> torch.Tensor:
    """Reference implementation in plain PyTorch ops; differentiable to any order by autograd."""
    if bias is not None:
        if bias.ndim != 1 or bias.shape[0] != x.shape[1]:
            raise ValueError(f"bias must have shape [{x.shape[1]}], got {tuple(bias.shape)}")
        x = x + _bias_view(bias.to(x.dtype), x)
    return F.leaky_relu(x, negative_slope) * gain


class _FusedLeakyReLUCompiled(torch.autograd.Function):
    """``y = leaky_relu(x + b[c], alpha) * gain`` by a compiled kernel; ``x [N, C, ...]``, ``b [C]`` or None.

    Backward: ``dx = _MaskScaleCompiled(dy, y)`` and ``db = sum over all dims but 1 of dx``. The mask depends
    on ``y > 0`` only, which equals ``x + b > 0`` for ``gain > 0`` and ``alpha >= 0`` (the dispatcher
    sends other values to the native path).
    """

    @staticmethod
    def forward(ctx, x, bias, module, alpha, gain):
        y = module.fused_leaky_relu(x, bias, alpha, gain)
        ctx.save_for_backward(y)
        ctx.module, ctx.alpha, ctx.gain = module, alpha, gain
        return y

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        grad_x = _MaskScaleCompiled.apply(grad_y.contiguous(), y, ctx.module, ctx.alpha, ctx.gain)
        grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_bias = grad_x.sum(dim=[0] + list(range(2, grad_x.ndim)))
        return grad_x, grad_bias, None, None, None


class _MaskScaleCompiled(torch.autograd.Function):
    """``dx = dy * gain * (y > 0 ? 1 : alpha)``: linear in ``dy`` with a piecewise-constant factor,
    so its own backward is the same Function applied to the incoming gradient (and zero w.r.t. ``y``).
    This gives the double backward ``d(dy) = (d_dx + d_db[c]) * gain * (y > 0 ? 1 : alpha)``, the
    ``d_db`` part arriving through the autograd graph of the ``db`` sum."""

    @staticmethod
    def forward(ctx, grad_y, y, module, alpha, gain):
        ctx.save_for_backward(y)
        ctx.module, ctx.alpha, ctx.gain = module, alpha, gain
        return module.fused_leaky_relu_grad(grad_y, y, alpha, gain)

    @staticmethod
    def backward(ctx, grad_grad_x):
        (y,) = ctx.saved_tensors
        grad_grad_y = _MaskScaleCompiled.apply(grad_grad_x.contiguous(), y, ctx.module, ctx.alpha, ctx.gain)
        return grad_grad_y, None, None, None, None


def fused_leaky_relu_compiled(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                              gain: float = DEFAULT_GAIN, *, module) -> torch.Tensor:
    """Bias + leaky ReLU + gain through ``module``, a compiled extension (see :mod:`latentedit.ops._build`).

    Same semantics and shapes as :func:`fused_leaky_relu_native` for ``gain > 0`` and
    ``negative_slope >= 0``. ``bias`` is cast to ``x``'s dtype; its gradient flows back through the cast.
    """
    if not gain > 0 or not negative_slope >= 0:
        raise ValueError(f"the compiled fused_leaky_relu needs gain > 0 and negative_slope >= 0, "
                         f"got gain={gain}, negative_slope={negative_slope}")
    if bias is not None:
        if bias.ndim != 1 or x.ndim < 2 or bias.shape[0] != x.shape[1]:
            raise ValueError(f"bias must have shape [{x.shape[1] if x.ndim > 1 else '?'}], got {tuple(bias.shape)}")
        bias = bias.to(dtype=x.dtype).contiguous()
    return _FusedLeakyReLUCompiled.apply(x.contiguous(), bias, module, float(negative_slope), float(gain))


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     gain: float = DEFAULT_GAIN, backend: str | None = None) -> torch.Tensor:
    """Bias + leaky ReLU + gain with backend dispatch: ``x [N, C, ...]``, ``bias [C]`` or None -> like ``x``.

    ``backend``: None (read ``LATENTEDIT_OPS``, default 'auto'), 'auto', 'native' or 'compiled'; see
    :mod:`latentedit.ops.backend` for which inputs the compiled kernels take.
    """
    from latentedit.ops import backend as ops_backend

    module = ops_backend.fused_leaky_relu_module(x, bias, negative_slope, gain, backend)
    if module is None:
        return fused_leaky_relu_native(x, bias, negative_slope, gain)
    return fused_leaky_relu_compiled(x, bias, negative_slope, gain, module=module)


class FusedLeakyReLU(nn.Module):
    """Learnable per-channel bias followed by leaky ReLU and gain. Parameter: ``bias [channels]``."""

    def __init__(self, channels: int, bias: bool = True, negative_slope: float = 0.2, gain: float = DEFAULT_GAIN):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.negative_slope = negative_slope
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.gain)
