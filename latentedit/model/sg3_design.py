"""StyleGAN3 architectures designed from the paper's rules, for benchmarks and tests at real sizes.

A loaded snapshot never goes through this module: its architecture and filters come from the file
(:mod:`latentedit.checkpoints.nvidia_sg3`). What is here builds the *shape* of NVIDIA's ``stylegan3-t`` and
``stylegan3-r`` configurations at any resolution, so that ``benchmarks/generator.py --sg3 t256`` can time an
alias-free generator of the size users run without a trained snapshot (random weights).

The layer plan follows Karras et al. 2021 (Alias-Free GAN), Appendix F: 14 layers plus ToRGB, the last 2
critically sampled; cutoffs rise geometrically from 2 to ``resolution / 2`` and stopbands from 2^2.1 to
``resolution / 2 * 2^0.3``; each layer's sampling rate is the power of two above twice its stopband (at most the
resolution), its size that rate plus a 10-sample margin on each side (the last two layers: the resolution);
channels are ``min(channel_base / 2 / cutoff, channel_max)``. Inside a layer the nonlinearity runs at twice the
larger of the two rates (ToRGB: once), so ``up = tmp_rate / in_rate`` and ``down = tmp_rate / out_rate``;
filters have ``6 * factor`` taps (none for a factor of 1 or ToRGB), the R-type down filter is radial except in
the critically sampled layers, and the padding centres the output samples on the input's.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from latentedit.model.sg3 import SG3Config, SG3Generator, SG3LayerConfig

#: (channel_base, channel_max, conv_kernel, radial) of NVIDIA's two alias-free configurations.
KINDS = {"t": (32768, 512, 3, False), "r": (65536, 1024, 1, True)}


def kaiser_beta(taps: int, width: float, rate: float) -> float:
    """Kaiser's window parameter for a ``taps``-tap low-pass filter with transition ``width`` at ``rate``."""
    attenuation = 2.285 * (taps - 1) * math.pi * (width / (rate / 2)) + 7.95
    if attenuation > 50:
        return 0.1102 * (attenuation - 8.7)
    if attenuation > 21:
        return 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    return 0.0


def design_lowpass(taps: int, cutoff: float, width: float, rate: float, radial: bool = False) -> torch.Tensor | None:
    """A Kaiser-windowed sinc ``[taps]`` (or jinc ``[taps, taps]`` when ``radial``) with unit DC gain; None for
    one tap (no filter)."""
    if taps == 1:
        return None
    position = (np.arange(taps) - (taps - 1) / 2) / rate
    window = np.kaiser(taps, kaiser_beta(taps, width, rate))
    if not radial:
        f = np.sinc(2 * cutoff * position) * window
        return torch.tensor(f / f.sum(), dtype=torch.float32)
    from scipy.special import j1

    r = np.hypot(*np.meshgrid(position, position))
    safe = np.where(r == 0, 1.0, r)
    f = np.where(r == 0, math.pi * cutoff, j1(2 * math.pi * cutoff * safe) / safe) * np.outer(window, window)
    return torch.tensor(f / f.sum(), dtype=torch.float32)


def design_sg3_config(resolution: int, kind: str = "t", w_dim: int = 512, z_dim: int = 512, mapping_layers: int = 2,
                      num_layers: int = 14, num_critical: int = 2, margin: int = 10,
                      channel_base: int | None = None, channel_max: int | None = None) -> SG3Config:
    """The ``stylegan3-<kind>`` architecture (``kind`` 't' or 'r') at ``resolution`` px (see the module docstring).

    Returns an :class:`~latentedit.model.sg3.SG3Config` with ``num_layers + 1`` layers (``num_ws = num_layers + 2``);
    ``channel_base`` / ``channel_max`` default to NVIDIA's for the kind (T: 32768 / 512, R: 65536 / 1024).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if resolution < 16 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 16, got {resolution}")
    base, cmax, conv_kernel, radial = KINDS[kind]
    base, cmax = channel_base or base, channel_max or cmax
    last_cutoff = resolution / 2
    first_cutoff, first_stopband, last_stopband = 2.0, 2 ** 2.1, last_cutoff * 2 ** 0.3
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1.0)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = (rates + margin * 2).astype(int)
    sizes[-2:] = resolution
    channels = np.rint(np.minimum(base / 2 / cutoffs, cmax)).astype(int)
    channels[-1] = 3
    layers = []
    for index in range(num_layers + 1):
        prev = max(index - 1, 0)
        torgb = index == num_layers
        critical = index >= num_layers - num_critical
        kernel = 1 if torgb else conv_kernel
        tmp_rate = max(rates[prev], rates[index]) * (1 if torgb else 2)
        up, down = int(round(tmp_rate / rates[prev])), int(round(tmp_rate / rates[index]))
        up_taps = 6 * up if up > 1 and not torgb else 1
        down_taps = 6 * down if down > 1 and not torgb else 1
        down_radial = radial and not critical
        pad_total = (sizes[index] - 1) * down + 1 - (sizes[prev] + kernel - 1) * up + up_taps + down_taps - 2
        pad_lo = (pad_total + up) // 2
        pad_hi = pad_total - pad_lo
        layers.append(SG3LayerConfig(
            in_channels=int(channels[prev]), out_channels=int(channels[index]), kernel_size=kernel, up=up, down=down,
            padding=[pad_lo, pad_hi, pad_lo, pad_hi], up_filter_shape=[up_taps] if up_taps > 1 else [],
            down_filter_shape=([down_taps] * (2 if down_radial else 1)) if down_taps > 1 else [], is_torgb=torgb,
            conv_clamp=256.0, in_size=[int(sizes[prev])] * 2, out_size=[int(sizes[index])] * 2,
            in_sampling_rate=float(rates[prev]), out_sampling_rate=float(rates[index]),
            in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[index]),
            in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[index]),
            is_critically_sampled=bool(critical), name=f"L{index}_{sizes[index]}_{channels[index]}"))
    return SG3Config(z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers, input_channels=int(channels[0]),
                     input_size=[int(sizes[0])] * 2, input_sampling_rate=float(rates[0]),
                     input_bandwidth=float(cutoffs[0]), layers=layers, img_resolution=resolution, img_channels=3,
                     margin_size=margin)


def random_sg3_generator(config: SG3Config, seed: int = 0) -> SG3Generator:
    """An :class:`~latentedit.model.sg3.SG3Generator` with random weights (seeded) and designed filters: what a
    benchmark of the architecture needs (its images are meaningless)."""
    torch.manual_seed(seed)
    generator = SG3Generator(config)
    with torch.no_grad():
        for layer in generator.layers:
            c = layer.config
            tmp_rate = max(c.in_sampling_rate, c.out_sampling_rate) * (1 if c.is_torgb else 2)
            if c.up_filter_shape:
                layer.up_filter.copy_(design_lowpass(c.up_filter_shape[0], c.in_cutoff, c.in_half_width * 2,
                                                     tmp_rate))
            if c.down_filter_shape:
                layer.down_filter.copy_(design_lowpass(c.down_filter_shape[0], c.out_cutoff, c.out_half_width * 2,
                                                       tmp_rate, radial=c.radial))
    return generator.eval()


__all__ = ["KINDS", "design_lowpass", "design_sg3_config", "kaiser_beta", "random_sg3_generator"]
