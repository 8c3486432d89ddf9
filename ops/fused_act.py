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


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     gain: float = DEFAULT_GAIN, backend: str | None = None) -> torch.Tensor:
    """Bias + leaky ReLU + gain with backend dispatch (see :mod:`latentedit.ops.backend`)."""
    from latentedit.ops import backend as ops_backend

    impl = ops_backend.fused_leaky_relu_impl(x, backend)
    if impl is None:
        return fused_leaky_relu_native(x, bias, negative_slope, gain)
    return impl(x, bias, negative_slope, gain)


class FusedLeakyReLU(nn.Module):
    """Learnable per-channel bias followed by leaky ReLU and gain. Parameter: ``bias [channels]``."""

    def __init__(self, channels: int, bias: bool = True, negative_slope: float = 0.2, gain: float = DEFAULT_GAIN):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.negative_slope = negative_slope
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.gain)
