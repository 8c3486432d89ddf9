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
There is no compiled kernel for this op yet: :func:`filtered_lrelu` always runs the native path, whatever
``LATENTEDIT_OPS`` says. Nothing is compiled at import.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from latentedit.ops.upfirdn2d import parse_padding, upfirdn2d_native

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


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None = None, fd: torch.Tensor | None = None,
                   b: torch.Tensor | None = None, up: int = 1, down: int = 1, padding: int | Sequence[int] = 0,
                   gain: float = DEFAULT_GAIN, slope: float = 0.2, clamp: float | None = None,
                   backend: str | None = None) -> torch.Tensor:
    """filtered_lrelu with the ops' dispatch signature. Only the native backend exists so far, so every
    ``backend`` value ('auto', 'native', 'compiled' or None) runs :func:`filtered_lrelu_native`."""
    return filtered_lrelu_native(x, fu, fd, b, up, down, padding, gain, slope, clamp)


__all__ = ["filtered_lrelu", "filtered_lrelu_native", "filtered_lrelu_output_size"]
