"""Building blocks of StyleGAN2, one small class per concept.

Parameter and buffer names follow the rosinality layout (SPEC §1.1) so that the state dict mirrors
the module tree and rosinality checkpoints load with ``strict=True``. All weights are stored at
N(0, 1) scale and multiplied by their equalized-learning-rate constant at run time.
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentedit.ops import FusedLeakyReLU, fused_leaky_relu, upfirdn2d

MODULATION_STRATEGIES = ("auto", "grouped", "scaled")


def make_blur_kernel(taps: Sequence[float], gain: float = 1.0) -> torch.Tensor:
    """Separable FIR kernel ``outer(taps, taps)``, normalised to sum ``gain``. Shape ``[K, K]``."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None] if k.ndim == 1 else k
    return k / k.sum() * gain


class PixelNorm(nn.Module):
    """``x * rsqrt(mean(x**2, dim=1) + 1e-8)``; normalises z to the sphere of radius sqrt(D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: ``y = x @ (W * lr_mul / sqrt(in)).T + b * lr_mul``.

    With ``activation=True`` the bias is added inside a fused leaky ReLU (slope 0.2, gain sqrt(2)).
    Parameters: ``weight [out, in]``, ``bias [out]``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, lr_mul={self.lr_mul}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate. Parameters: ``weight [out, in, k, k]``, optional ``bias [out]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class Blur(nn.Module):
    """FIR filter with padding: ``upfirdn2d(x, kernel, pad=pad)``. Buffer: ``kernel [K, K]``."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(taps, gain))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x upsampling by zero insertion and FIR filter: ``upfirdn2d(x, kernel, up=2, pad=(2, 1))`` for 4 taps."""

    def __init__(self, taps: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_blur_kernel(taps, factor ** 2))
        excess = len(taps) - factor
        self.pad = ((excess + 1) // 2 + factor - 1, excess // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


def float32_region(like: torch.Tensor):
    """Autocast switched off on ``like``'s device: styles, demodulation factors and the RGB skip image stay
    float32 when the convolutions run in bf16/fp16 (:mod:`latentedit.precision`). Without autocast (float32, the
    default) it is a no-op context, so the float32 path does no extra work."""
    if not torch.is_autocast_enabled(like.device.type):
        return contextlib.nullcontext()
    return torch.autocast(like.device.type, enabled=False)


def auto_strategy(x: torch.Tensor, styles: torch.Tensor) -> str:
    """The modulation strategy ``auto`` picks, from ``benchmarks/generator.py`` measurements.

    On CPU ``scaled`` always: even at batch 1 it beats ``grouped`` (256 px config-f, 2 cores: forward
    0.34 vs 0.45 s, forward+backward 1.0 vs 1.3 s), because with per-sample weights the backward pass
    must also form the gradient of the modulated weights. On GPU ``grouped`` when no gradient is needed
    and the batch is 1 (one fused convolution), ``scaled`` otherwise -- NVIDIA's own choice.
    """
    if x.device.type == "cuda" and x.shape[0] == 1 and not (torch.is_grad_enabled() and
                                                          (x.requires_grad or styles.requires_grad)):
        return "grouped"
    return "scaled"


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution (StyleGAN2), optionally with 2x upsampling.

    ``W' = W * s / sqrt(in * k**2)`` with ``s = modulation(w)`` per input channel, and, when
    ``demodulate``, ``W' *= rsqrt(sum_{in, kh, kw} W'**2 + 1e-8)`` per output channel.
    The up-conv is a stride-2 transposed convolution (size 2H+1) followed by a blur padded (1, 1).

    Two equivalent strategies (agree to ~1e-5), chosen per call by ``strategy``:
    ``grouped`` builds per-sample weights and runs one grouped convolution; ``scaled`` multiplies the
    activations by ``s``, runs one shared convolution and multiplies the output by the
    demodulation factors. ``auto`` is :func:`auto_strategy`. 1x1 convolutions (ToRGB) always run as a
    batched matrix product, which is the same arithmetic.

    Parameters: ``weight [1, out, in, k, k]``; ``modulation`` (EqualLinear style_dim -> in, bias 1).
    Input ``x [N, in, H, W]``, ``w [N, style_dim]``; output ``[N, out, H', W']``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, blur_taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2
        if upsample:
            factor = 2
            excess = (len(blur_taps) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_taps, pad=((excess + 1) // 2 + factor - 1, excess // 2 + 1), gain=factor ** 2)

    def styles(self, w: torch.Tensor) -> torch.Tensor:
        """Per-sample input-channel scales including the weight gain, ``[N, in]``, float32 under autocast."""
        with float32_region(w):
            return self.modulation(w) * self.scale

    def demodulation(self, styles: torch.Tensor) -> torch.Tensor:
        """``rsqrt(sum_{in,kh,kw} (W * s)**2 + 1e-8)`` as ``[N, out]``, float32 under autocast."""
        with float32_region(styles):
            weight_energy = self.weight[0].square().sum(dim=(2, 3))  # [out, in]
            return torch.rsqrt(styles.square() @ weight_energy.t() + 1e-8)

    def forward(self, x: torch.Tensor, w: torch.Tensor, strategy: str = "auto") -> torch.Tensor:
        batch = x.shape[0]
        styles = self.styles(w)
        if self.kernel_size == 1 and not self.upsample:
            return self._forward_pointwise(x, styles)
        if strategy == "auto":
            strategy = auto_strategy(x, styles)
        if strategy == "grouped":
            return self._forward_grouped(x, styles)
        if strategy == "scaled":
            return self._forward_scaled(x, styles)
        raise ValueError(f"unknown modulation strategy {strategy!r}; use one of {MODULATION_STRATEGIES}")

    def _forward_pointwise(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        # A 1x1 convolution is a batched matrix product; BLAS beats the convolution kernels here by
        # 3-5x (ToRGB at 1024 px), forward and backward.
        batch, _, height, width = x.shape
        weight = self.weight[0, :, :, 0, 0] * styles[:, None, :]  # [N, out, in]
        if self.demodulate:
            weight = weight * self.demodulation(styles)[:, :, None]
        out = torch.matmul(weight.to(x.dtype), x.reshape(batch, self.in_channels, height * width))
        return out.reshape(batch, self.out_channels, height, width)

    def _forward_grouped(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        weight = self.weight * styles[:, None, :, None, None]  # [N, out, in, k, k]
        if self.demodulate:
            weight = weight * self.demodulation(styles)[:, :, None, None, None]
        k = self.kernel_size
        x = x.reshape(1, batch * self.in_channels, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * self.in_channels, self.out_channels, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=batch)
            out = out.reshape(batch, self.out_channels, out.shape[2], out.shape[3])
            return self.blur(out)
        weight = weight.reshape(batch * self.out_channels, self.in_channels, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.reshape(batch, self.out_channels, out.shape[2], out.shape[3])

    def _forward_scaled(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        x = x * styles[:, :, None, None].to(x.dtype)
        weight = self.weight[0]
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            out = out * self.demodulation(styles)[:, :, None, None].to(out.dtype)
        return self.blur(out) if self.upsample else out

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, kernel={self.kernel_size}, "
                f"demodulate={self.demodulate}, upsample={self.upsample}")


class NoiseInjection(nn.Module):
    """``x + weight * noise``; ``noise [N, 1, H, W]`` broadcasts over channels. Parameter ``weight [1]``."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            return x
        # Cast so that reduced-precision activations (bf16/fp16 autocast) stay reduced: adding a float32
        # tensor would promote every activation after the first noise input back to float32.
        return x + (self.weight * noise).to(x.dtype)


class ConstantInput(nn.Module):
    """The learned 4x4 starting tensor. Parameter ``input [1, C, 4, 4]``."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias + leaky ReLU (x sqrt 2), optionally clamped to ``±conv_clamp``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_taps: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, demodulate=True,
                                    upsample=upsample, blur_taps=blur_taps)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None, strategy: str = "auto"):
        x = self.conv(x, w, strategy)
        x = self.noise(x, noise)
        x = self.activate(x)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, plus bias ``[1, 3, 1, 1]``, plus the upsampled skip image."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True,
                 blur_taps: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None, channels_out: int = 3):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_taps)
        self.conv = ModulatedConv2d(in_channels, channels_out, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, channels_out, 1, 1))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None, strategy: str = "auto"):
        out = self.conv(x, w, strategy) + self.bias
        if self.conv_clamp is not None:
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        if skip is not None:
            with float32_region(skip):  # the RGB image is accumulated in float32 even under bf16/fp16 autocast
                out = out + self.upsample(skip)
        return out
