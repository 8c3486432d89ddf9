"""filtered_lrelu: bias, upsample, leaky ReLU, clamp and downsample -- StyleGAN3's alias-free nonlinearity.

Semantics, for ``x [N, C, H, W]``:

1. add the bias: ``x[:, c] += b[c]`` (``b [C]``, or None for no bias);
2. upsample: an :func:`~latentedit.ops.upfirdn2d.upfirdn2d` with ``up``, ``pad = padding`` and the filter
   ``fu`` scaled so that the whole 2-D filter sums to ``up**2`` times its own sum (zero insertion keeps
   one sample in ``up**2``, so a unit-DC filter keeps the signal's DC);
3. ``y = leaky_relu(y, slope) * gain``, then, when ``clamp`` is not None, ``y = clamp(y, -clamp, clamp)``;
4. downsample: an upfirdn2d with the filter ``fd`` (unscaled), no padding, keeping every ``down``-th sample.

Filters: None (the identity, one tap), a 1-D tensor ``[K]`` (separable: applied along the width, then along
the height; its 2-D equivalent is ``outer(f, f)``) or a 2-D tensor ``[Ky, Kx]`` (applied as is, e.g. the
radial down filters of StyleGAN3-R). A filter is a true convolution (symmetric filters make the
distinction moot). Filters are treated as constants: no gradient flows to them.

``padding``: an int, ``(p0, p1)`` for both axes or ``(x0, x1, y0, y1)``; it is applied on the upsampled
grid, and a negative value crops. Output size per axis:
``(in * up + p0 + p1 - (Ku - 1) - (Kd - 1) + down - 1) // down``, where ``Ku`` / ``Kd`` are the filter
lengths along that axis (1 for None).

Defaults: ``gain = sqrt(2)``, ``slope = 0.2``, ``clamp = None`` (StyleGAN3 uses 256; its ToRGB layer uses
``gain = 1, slope = 1``, i.e. only bias and clamp).

:func:`filtered_lrelu_native` is the specification, in plain PyTorch ops, differentiable to any order.
:func:`filtered_lrelu` dispatches like the other ops (:mod:`latentedit.ops.backend`, ``LATENTEDIT_OPS``);
:func:`filtered_lrelu_compiled` runs a given compiled extension: the C++ kernel does the whole op per
``[H, W]`` plane (bias, both FIR stages, activation) in per-thread buffers, the CUDA module chains the
upfirdn2d kernel with one activation kernel. The compiled forward records, at the upsampled resolution,
which samples were negative, positive or clamped (one byte each); the backward is the same two-stage kernel
run on the output gradient with the filters flipped, up and down swapped, and that mask applied as the
derivative of the activation. That map is linear in its input, so its backward is the same kernel again
(transposed back): derivatives of every order exist, and all beyond the first are those of a piecewise-linear
function, as with autograd through the native path. Nothing is compiled at import.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from latentedit.ops.upfirdn2d import gradient_padding, output_size, parse_padding, upfirdn2d_native

DEFAULT_GAIN = math.sqrt(2.0)


def _taps(f: torch.Tensor | None) -> tuple[int, int]:
    """``(Kx, Ky)`` of a filter: None -> (1, 1), ``[K]`` -> (K, K), ``[Ky, Kx]`` -> (Kx, Ky)."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    if f.ndim == 2:
        return f.shape[1], f.shape[0]
    raise ValueError(f"filtered_lrelu filters must be None, [K] or [Ky, Kx], got shape {tuple(f.shape)}")


def filtered_lrelu_output_size(in_size: tuple[int, int], fu: torch.Tensor | None, fd: torch.Tensor | None,
                               up: int, down: int, padding: int | Sequence[int]) -> tuple[int, int]:
    """``(H_out, W_out)`` for an input ``(H, W)`` (see the module docstring)."""
    x0, x1, y0, y1 = parse_padding(padding)
    ux, uy = _taps(fu)
    dx, dy = _taps(fd)
    height = (in_size[0] * up + y0 + y1 - (uy - 1) - (dy - 1) + down - 1) // down
    width = (in_size[1] * up + x0 + x1 - (ux - 1) - (dx - 1) + down - 1) // down
    return height, width


def _fir(x: torch.Tensor, f: torch.Tensor | None, up: int, down: int, pad: tuple[int, int, int, int],
         gain: float) -> torch.Tensor:
    """One upfirdn2d with filter ``f`` (None, separable [K] or full [Ky, Kx]) whose 2-D sum is scaled by ``gain``."""
    x0, x1, y0, y1 = pad
    if f is None:
        f = torch.ones(1, dtype=x.dtype, device=x.device)
    f = f.detach().to(device=x.device, dtype=x.dtype)
    if f.ndim == 2:
        return upfirdn2d_native(x, f * gain, up=up, down=down, pad=pad)
    axis_gain = math.sqrt(gain)  # applied once per axis
    x = upfirdn2d_native(x, (f * axis_gain)[None, :], up=(up, 1), down=(down, 1), pad=(x0, x1, 0, 0))
    return upfirdn2d_native(x, (f * axis_gain)[:, None], up=(1, up), down=(1, down), pad=(0, 0, y0, y1))


def _validate(x, fu, fd, b, up, down, padding):
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu expects x of shape [N, C, H, W], got {tuple(x.shape)}")
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[1]):
        raise ValueError(f"bias must have shape [{x.shape[1]}], got {tuple(b.shape)}")
    if int(up) < 1 or int(down) < 1:
        raise ValueError(f"up and down must be >= 1, got {up}, {down}")
    height, width = filtered_lrelu_output_size((x.shape[2], x.shape[3]), fu, fd, int(up), int(down), padding)
    if height < 1 or width < 1:
        raise ValueError(f"filtered_lrelu output would be empty ({height}x{width}) for input {tuple(x.shape)}")


def filtered_lrelu_native(x: torch.Tensor, fu: torch.Tensor | None = None, fd: torch.Tensor | None = None,
                          b: torch.Tensor | None = None, up: int = 1, down: int = 1,
                          padding: int | Sequence[int] = 0, gain: float = DEFAULT_GAIN, slope: float = 0.2,
                          clamp: float | None = None) -> torch.Tensor:
    """Reference implementation: ``x [N, C, H, W]`` -> ``[N, C, H_out, W_out]`` (see the module docstring)."""
    _validate(x, fu, fd, b, up, down, padding)
    up, down = int(up), int(down)
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    x = _fir(x, fu, up, 1, parse_padding(padding), float(up * up))
    x = torch.nn.functional.leaky_relu(x, slope) if slope != 1 else x
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-float(clamp), float(clamp))
    return _fir(x, fd, 1, down, (0, 0, 0, 0), 1.0)


class _Stage(NamedTuple):
    """One FIR stage of the compiled kernel: ``f`` ([K] separable or [Ky, Kx], already scaled), factors and
    padding per axis, and the ``(H, W)`` it reads and writes."""

    f: torch.Tensor
    up: int
    down: int
    pad: tuple[int, int, int, int]
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]

    @staticmethod
    def make(f: torch.Tensor, up: int, down: int, pad: tuple[int, int, int, int],
             in_hw: tuple[int, int]) -> "_Stage":
        taps_x = f.shape[-1]
        taps_y = f.shape[0]
        x0, x1, y0, y1 = pad
        out_hw = (output_size(in_hw[0], up, down, y0, y1, taps_y), output_size(in_hw[1], up, down, x0, x1, taps_x))
        return _Stage(f.contiguous(), up, down, pad, in_hw, out_hw)

    def params(self) -> list[int]:
        """The kernel's ``[up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1]``."""
        return [self.up, self.up, self.down, self.down, *self.pad]

    def transposed(self) -> "_Stage":
        """The stage that computes this one's gradient w.r.t. its input (see ``gradient_padding``)."""
        f = torch.flip(self.f, list(range(self.f.ndim))).contiguous()
        x0, _, y0, _ = self.pad
        gx = gradient_padding(self.in_hw[1], self.out_hw[1], self.up, self.down, x0, self.f.shape[-1])
        gy = gradient_padding(self.in_hw[0], self.out_hw[0], self.up, self.down, y0, self.f.shape[0])
        return _Stage(f, self.down, self.up, (*gx, *gy), self.out_hw, self.in_hw)


def _kernel_filter(f: torch.Tensor | None, gain: float, like: torch.Tensor) -> torch.Tensor:
    """``f`` as the kernel takes it: one tap for None, the 2-D sum scaled by ``gain`` (per axis for [K])."""
    if f is None:
        f = torch.ones(1)
    f = f.detach().to(device=like.device, dtype=like.dtype)
    return f * (gain if f.ndim == 2 else math.sqrt(gain))


def _planes(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0] * t.shape[1], t.shape[2], t.shape[3])


class _MaskedFirPair(torch.autograd.Function):
    """``y = stage2(scale[mask] * stage1(x))``, linear in x: the backward of the compiled filtered_lrelu and,
    transposed, its own backward."""

    @staticmethod
    def forward(ctx, x, mask, module, stage1, stage2, gain, slope):
        y, _ = module.filtered_lrelu(_planes(x.contiguous()), None, stage1.f, stage1.params(), stage2.f,
                                     stage2.params(), mask, gain, slope, -1.0, False)
        ctx.save_for_backward(mask)
        ctx.module, ctx.stages, ctx.scales = module, (stage1, stage2), (gain, slope)
        return y.reshape(x.shape[0], x.shape[1], y.shape[1], y.shape[2])

    @staticmethod
    def backward(ctx, grad_y):
        (mask,) = ctx.saved_tensors
        stage1, stage2 = ctx.stages
        grad_x = _MaskedFirPair.apply(grad_y, mask, ctx.module, stage2.transposed(), stage1.transposed(), *ctx.scales)
        return grad_x, None, None, None, None, None, None


class _FilteredLReLUCompiled(torch.autograd.Function):
    """filtered_lrelu by a compiled kernel; gradients flow to ``x`` and ``b`` (filters are constants)."""

    @staticmethod
    def forward(ctx, x, b, module, stage1, stage2, gain, slope, clamp):
        record = any(ctx.needs_input_grad[:2])  # the mask is only needed for a backward
        y, mask = module.filtered_lrelu(_planes(x), b, stage1.f, stage1.params(), stage2.f, stage2.params(), None,
                                        gain, slope, -1.0 if clamp is None else float(clamp), bool(record))
        ctx.save_for_backward(mask)
        ctx.module, ctx.stages, ctx.scales = module, (stage1, stage2), (gain, slope)
        return y.reshape(x.shape[0], x.shape[1], y.shape[1], y.shape[2])

    @staticmethod
    def backward(ctx, grad_y):
        (mask,) = ctx.saved_tensors
        stage1, stage2 = ctx.stages
        grad_x = _MaskedFirPair.apply(grad_y, mask, ctx.module, stage2.transposed(), stage1.transposed(), *ctx.scales)
        grad_b = grad_x.sum(dim=(0, 2, 3)) if ctx.needs_input_grad[1] else None
        return (grad_x if ctx.needs_input_grad[0] else None), grad_b, None, None, None, None, None, None


def filtered_lrelu_compiled(x: torch.Tensor, fu: torch.Tensor | None = None, fd: torch.Tensor | None = None,
                            b: torch.Tensor | None = None, up: int = 1, down: int = 1,
                            padding: int | Sequence[int] = 0, gain: float = DEFAULT_GAIN, slope: float = 0.2,
                            clamp: float | None = None, *, module) -> torch.Tensor:
    """filtered_lrelu through ``module``, a compiled extension (see :mod:`latentedit.ops._build`); same
    semantics, shapes and validation as :func:`filtered_lrelu_native`."""
    _validate(x, fu, fd, b, up, down, padding)
    up, down = int(up), int(down)
    x = x.contiguous()
    stage1 = _Stage.make(_kernel_filter(fu, float(up * up), x), up, 1, parse_padding(padding),
                         (x.shape[2], x.shape[3]))
    stage2 = _Stage.make(_kernel_filter(fd, 1.0, x), 1, down, (0, 0, 0, 0), stage1.out_hw)
    if b is not None:
        b = b.to(device=x.device, dtype=x.dtype).contiguous()
    return _FilteredLReLUCompiled.apply(x, b, module, stage1, stage2, float(gain), float(slope), clamp)


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None = None, fd: torch.Tensor | None = None,
                   b: torch.Tensor | None = None, up: int = 1, down: int = 1, padding: int | Sequence[int] = 0,
                   gain: float = DEFAULT_GAIN, slope: float = 0.2, clamp: float | None = None,
                   backend: str | None = None) -> torch.Tensor:
    """filtered_lrelu with backend dispatch: ``x [N, C, H, W]`` -> ``[N, C, H_out, W_out]``.

    ``backend``: None (read ``LATENTEDIT_OPS``, default 'auto'), 'auto', 'native' or 'compiled'; see
    :mod:`latentedit.ops.backend` for which inputs the compiled kernels take.
    """
    from latentedit.ops import backend as ops_backend

    _validate(x, fu, fd, b, up, down, padding)
    module = ops_backend.filtered_lrelu_module(x, fu, fd, b, backend)
    if module is None:
        return filtered_lrelu_native(x, fu, fd, b, up, down, padding, gain, slope, clamp)
    return filtered_lrelu_compiled(x, fu, fd, b, up, down, padding, gain, slope, clamp, module=module)


__all__ = ["filtered_lrelu", "filtered_lrelu_compiled", "filtered_lrelu_native", "filtered_lrelu_output_size"]
