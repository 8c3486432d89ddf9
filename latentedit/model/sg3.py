"""The StyleGAN3 (alias-free) generator: mapping network z -> w, and synthesis network W+ -> image.

Everything about the architecture lives in :class:`SG3Config`, which the checkpoint loaders fill from a
snapshot's pickled attributes and tensor shapes (never from flags): channels, kernel sizes, up/down
factors, paddings, filter shapes, sizes, sampling rates and cutoffs. The same module serves StyleGAN3-T
(separable 1-D filters, 3x3 convolutions) and StyleGAN3-R (1x1 convolutions, full 2-D radial down filters
in the non-critically-sampled layers): the difference is only in the config and the stored filters.

Shapes: z ``[N, z_dim]``; W ``[N, w_dim]``; W+ ``[N, num_ws, w_dim]`` with ``num_ws = len(layers) + 1``;
row 0 drives the Fourier-feature input (through its affine), row ``i + 1`` drives synthesis layer ``i``
(the last layer is ToRGB). Images ``[N, img_channels, size, size]``, nominally [-1, 1], not clamped.

State dict (the module tree, laid out like the StyleGAN2 generator's ``style`` / ``input`` / layers):
``style.fc{i}.{weight,bias}`` (NVIDIA ``mapping.fc{i}``); ``input.{weight, affine.weight, affine.bias,
transform, freqs, phases}`` (``synthesis.input``); ``layers.{i}.{weight, bias, affine.weight, affine.bias,
magnitude_ema[, up_filter][, down_filter]}`` (``synthesis.<layer_names[i]>``). The mean w is the non-persistent buffer
``w_avg`` (as in :class:`~latentedit.model.generator.Generator`), set by the loader. There are no noise
inputs: ``noise_mode`` arguments are accepted and ignored.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentedit.model.latents import LatentSpaceMixin
from latentedit.ops.filtered_lrelu import filtered_lrelu, filtered_lrelu_output_size

SG3_MODULATIONS = ("auto", "grouped", "scaled")


@dataclasses.dataclass
class SG3LayerConfig:
    """One synthesis layer. ``in_size`` / ``out_size`` are ``[width, height]`` including the margin.

    Used by the forward pass: channels, ``kernel_size``, ``is_torgb``, ``up``, ``down``, ``padding``
    ``[x0, x1, y0, y1]``, the filter shapes (``[]`` = no filter, ``[K]`` separable, ``[K, K]`` full 2-D) and
    ``conv_clamp``. Descriptive (checked against the geometry, reported by ``info``): sizes, sampling rates,
    cutoffs, half widths, ``is_critically_sampled``, ``name`` (NVIDIA's, e.g. ``L4_52_48``).
    """

    in_channels: int
    out_channels: int
    kernel_size: int
    up: int
    down: int
    padding: list
    up_filter_shape: list
    down_filter_shape: list
    is_torgb: bool = False
    conv_clamp: float | None = 256.0
    in_size: list | None = None
    out_size: list | None = None
    in_sampling_rate: float | None = None
    out_sampling_rate: float | None = None
    in_cutoff: float | None = None
    out_cutoff: float | None = None
    in_half_width: float | None = None
    out_half_width: float | None = None
    is_critically_sampled: bool = False
    name: str = ""

    def __post_init__(self):
        self.padding = [int(p) for p in self.padding]
        self.up_filter_shape = [int(k) for k in self.up_filter_shape]
        self.down_filter_shape = [int(k) for k in self.down_filter_shape]
        if len(self.padding) != 4:
            raise ValueError(f"padding must have 4 entries, got {self.padding}")
        for shape in (self.up_filter_shape, self.down_filter_shape):
            if len(shape) > 2 or (len(shape) == 2 and shape[0] != shape[1]) or any(k < 1 for k in shape):
                raise ValueError(f"filter shapes must be [], [K] or [K, K], got {shape}")
        if min(self.in_channels, self.out_channels, self.kernel_size, self.up, self.down) < 1:
            raise ValueError("channels, kernel size and up/down factors must be >= 1")

    @property
    def radial(self) -> bool:
        """True when the down filter is a full 2-D (radial) filter."""
        return len(self.down_filter_shape) == 2

    def output_size(self, in_size: Sequence[int]) -> list[int]:
        """``[width, height]`` of the output for an input ``[width, height]``."""
        conv = (in_size[1] + self.kernel_size - 1, in_size[0] + self.kernel_size - 1)
        fu = torch.empty(self.up_filter_shape) if self.up_filter_shape else None
        fd = torch.empty(self.down_filter_shape) if self.down_filter_shape else None
        height, width = filtered_lrelu_output_size(conv, fu, fd, self.up, self.down, self.padding)
        return [width, height]


@dataclasses.dataclass
class SG3Config:
    """Architecture of a StyleGAN3 generator.

    ``mapping_layers`` fully connected layers (leaky ReLU, learning-rate multiplier ``mapping_lr_mul``) map
    z ``[N, z_dim]`` to w ``[N, w_dim]``. The input layer samples ``input_channels`` Fourier features on an
    ``input_size`` ``[width, height]`` grid at ``input_sampling_rate``, bandwidth ``input_bandwidth``. Then
    ``layers`` run in order and the result is multiplied by ``output_scale``.
    """

    z_dim: int
    w_dim: int
    mapping_layers: int
    input_channels: int
    input_size: list
    input_sampling_rate: float
    input_bandwidth: float
    layers: list
    img_resolution: int
    img_channels: int = 3
    mapping_lr_mul: float = 0.01
    output_scale: float = 0.25
    margin_size: int | None = None

    def __post_init__(self):
        self.input_size = [int(s) for s in self.input_size]
        self.layers = [layer if isinstance(layer, SG3LayerConfig) else SG3LayerConfig(**layer)
                       for layer in self.layers]
        if not self.layers or not self.layers[-1].is_torgb:
            raise ValueError("the last synthesis layer must be the ToRGB layer")
        if self.layers[-1].out_channels != self.img_channels:
            raise ValueError(f"ToRGB has {self.layers[-1].out_channels} outputs, img_channels is {self.img_channels}")
        if self.layers[0].in_channels != self.input_channels:
            raise ValueError("the first layer's input channels differ from the input layer's channels")
        size = self.input_size
        for index, layer in enumerate(self.layers):
            if index and layer.in_channels != self.layers[index - 1].out_channels:
                raise ValueError(f"layer {index} takes {layer.in_channels} channels, its predecessor gives "
                                 f"{self.layers[index - 1].out_channels}")
            if layer.in_size is not None and [int(s) for s in layer.in_size] != size:
                raise ValueError(f"layer {index} ({layer.name}) expects a {layer.in_size} input, gets {size}")
            size = layer.output_size(size)
            if size[0] < 1 or size[1] < 1:
                raise ValueError(f"layer {index} ({layer.name}) would produce an empty output")
            if layer.out_size is not None and [int(s) for s in layer.out_size] != size:
                raise ValueError(f"layer {index} ({layer.name}): its padding, factors and filters give a {size} "
                                 f"output, but it states {layer.out_size}")
        if size != [self.img_resolution, self.img_resolution]:
            raise ValueError(f"the synthesis network produces {size}, not {self.img_resolution}x{self.img_resolution}")

    @property
    def num_ws(self) -> int:
        return len(self.layers) + 1

    @property
    def size(self) -> int:
        return self.img_resolution

    @property
    def kind(self) -> str:
        """``stylegan3-r`` when any down filter is radial (2-D), else ``stylegan3-t``."""
        return "stylegan3-r" if any(layer.radial for layer in self.layers) else "stylegan3-t"

    @property
    def conv_clamp(self) -> float | None:
        values = {layer.conv_clamp for layer in self.layers}
        return values.pop() if len(values) == 1 else None

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["architecture"] = "stylegan3"
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SG3Config:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        layer_fields = {f.name for f in dataclasses.fields(SG3LayerConfig)}
        kwargs["layers"] = [SG3LayerConfig(**{k: v for k, v in dict(layer).items() if k in layer_fields})
                            for layer in kwargs.get("layers", [])]
        return cls(**kwargs)


def make_transform(translate: Sequence[float] = (0.0, 0.0), angle: float = 0.0) -> torch.Tensor:
    """The input transform ``[3, 3]`` for an image translated by ``translate`` and rotated by ``angle``
    degrees, in the convention of NVIDIA's ``gen_images.py --translate --rotate`` (translation in the input
    layer's coordinates, where the image spans ``size / sampling_rate`` units).

    It is the inverse of ``[[c, s, tx], [-s, c, ty], [0, 0, 1]]`` (``c, s = cos, sin(angle)``), because the
    input layer maps output coordinates to feature coordinates.
    """
    radians = math.radians(float(angle))
    c, s = math.cos(radians), math.sin(radians)
    forward = np.array([[c, s, float(translate[0])], [-s, c, float(translate[1])], [0.0, 0.0, 1.0]])
    return torch.from_numpy(np.linalg.inv(forward)).float()


class FullyConnected(nn.Module):
    """``y = x @ (weight * weight_gain).T + bias * bias_gain``; with ``lrelu``, ``leaky_relu(y, 0.2) * sqrt(2)``.

    Parameters: ``weight [out, in]``, ``bias [out]``. ``weight_gain = lr_mul / sqrt(in)``, ``bias_gain = lr_mul``.
    """

    def __init__(self, in_features: int, out_features: int, lr_mul: float = 1.0, activation: str = "linear",
                 bias_init: float | Sequence[float] = 0.0):
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"activation must be 'linear' or 'lrelu', got {activation!r}")
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features) + torch.as_tensor(bias_init, dtype=torch.float32) / lr_mul)
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.addmm((self.bias * self.bias_gain)[None], x, (self.weight * self.weight_gain).t())
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * math.sqrt(2.0)
        return x

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, activation={self.activation}"


class SG3Mapping(nn.Module):
    """z ``[N, z_dim]`` -> w ``[N, w_dim]``: normalise z's second moment, then ``fc0 .. fc{L-1}`` (leaky ReLU)."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, lr_mul: float):
        super().__init__()
        self.num_layers = num_layers
        for index in range(num_layers):
            self.add_module(f"fc{index}", FullyConnected(z_dim if index == 0 else w_dim, w_dim, lr_mul, "lrelu"))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for index in range(self.num_layers):
            x = getattr(self, f"fc{index}")(x)
        return x


class FourierInput(nn.Module):
    """The Fourier-feature input: w ``[N, w_dim]`` -> features ``[N, C, height, width]``.

    ``affine(w)`` gives ``(r_c, r_s, t_x, t_y)``; divided by ``|(r_c, r_s)|`` it is a rotation and a
    translation, which are combined with the stored user ``transform`` (``T = R @ Tr @ transform``) and
    applied to the frequencies (``freqs @ T[:2, :2]``) and phases (``+ freqs @ T[:2, 2]``). Frequencies
    beyond the bandwidth are damped linearly to 0 at half the sampling rate. The features
    ``sin(2 pi (f . p + phase))`` are sampled at the pixel centres ``p = (i + 0.5 - size / 2) / sampling_rate``
    and mixed by ``weight / sqrt(C)``.

    Parameters: ``weight [C, C]``, ``affine`` (w_dim -> 4). Buffers: ``transform [3, 3]``, ``freqs [C, 2]``,
    ``phases [C]``.
    """

    def __init__(self, w_dim: int, channels: int, size: Sequence[int], sampling_rate: float, bandwidth: float):
        super().__init__()
        self.channels = channels
        self.size = [int(s) for s in size]
        self.sampling_rate = float(sampling_rate)
        self.bandwidth = float(bandwidth)
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = FullyConnected(w_dim, 4, bias_init=[1.0, 0.0, 0.0, 0.0])
        with torch.no_grad():
            self.affine.weight.zero_()
        freqs = torch.randn(channels, 2)
        radii = freqs.norm(dim=1, keepdim=True)
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * self.bandwidth
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand(channels) - 0.5)

    def _pixel_centres(self, length: int, device) -> torch.Tensor:
        return (torch.arange(length, device=device, dtype=torch.float32) + 0.5 - length / 2) / self.sampling_rate

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        batch = w.shape[0]
        t = self.affine(w)  # [N, 4]
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        rotation = torch.eye(3, device=w.device, dtype=w.dtype).repeat(batch, 1, 1)
        rotation[:, 0, 0] = t[:, 0]
        rotation[:, 0, 1] = -t[:, 1]
        rotation[:, 1, 0] = t[:, 1]
        rotation[:, 1, 1] = t[:, 0]
        translation = torch.eye(3, device=w.device, dtype=w.dtype).repeat(batch, 1, 1)
        translation[:, 0, 2] = -t[:, 2]
        translation[:, 1, 2] = -t[:, 3]
        transform = rotation @ translation @ self.transform[None].to(w.dtype)  # [N, 3, 3]
        freqs = self.freqs[None].to(w.dtype)  # [1, C, 2]
        phases = self.phases[None].to(w.dtype) + (freqs @ transform[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = freqs @ transform[:, :2, :2]  # [N, C, 2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        xs = self._pixel_centres(self.size[0], w.device).to(w.dtype)  # [W]
        ys = self._pixel_centres(self.size[1], w.device).to(w.dtype)  # [H]
        # f . p = fx * x + fy * y, as [N, H, W, C]
        arg = (xs[None, None, :, None] * freqs[:, None, None, :, 0]
               + ys[None, :, None, None] * freqs[:, None, None, :, 1])
        features = torch.sin((arg + phases[:, None, None, :]) * (2 * math.pi)) * amplitudes[:, None, None, :]
        features = features @ (self.weight / math.sqrt(self.channels)).t()  # [N, H, W, C]
        return features.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, size={self.size}, sampling_rate={self.sampling_rate:g}, "
                f"bandwidth={self.bandwidth:g}")


class SG3Layer(nn.Module):
    """One alias-free synthesis layer: modulated conv, then :func:`~latentedit.ops.filtered_lrelu.filtered_lrelu`.

    Modulated conv (``x [N, I, H, W]``, ``w [N, w_dim]`` -> ``[N, O, H + k - 1, W + k - 1]``, a "full"
    convolution with padding ``k - 1``): ``s = affine(w)``. Non-ToRGB layers first normalise the weight by its
    RMS per output channel and ``s`` by its RMS over the whole batch, modulate, and demodulate
    (``rsqrt(sum_{i,kh,kw} W'^2 + 1e-8)`` per sample and output channel). ToRGB scales ``s`` by
    ``1 / sqrt(I k^2)`` and does not demodulate. All layers then multiply by the input gain
    ``rsqrt(magnitude_ema)`` (after demodulation, so it is not cancelled).

    Then bias, upsampling by ``up`` with ``up_filter``, leaky ReLU (slope 0.2, gain sqrt 2; ToRGB: linear,
    gain 1), clamp to ``±conv_clamp`` and downsampling by ``down`` with ``down_filter``, with ``padding``.

    Parameters: ``weight [O, I, k, k]``, ``bias [O]``, ``affine`` (w_dim -> I, bias 1). Buffers:
    ``magnitude_ema []``, ``up_filter`` / ``down_filter`` (``[K]`` or ``[K, K]``; absent without a filter).
    """

    def __init__(self, w_dim: int, config: SG3LayerConfig):
        super().__init__()
        self.config = config
        c = config
        self.is_torgb = c.is_torgb
        self.kernel_size = c.kernel_size
        self.affine = FullyConnected(w_dim, c.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c.out_channels, c.in_channels, c.kernel_size, c.kernel_size))
        self.bias = nn.Parameter(torch.zeros(c.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", self._placeholder_filter(c.up_filter_shape))
        self.register_buffer("down_filter", self._placeholder_filter(c.down_filter_shape))

    @staticmethod
    def _placeholder_filter(shape: list) -> torch.Tensor | None:
        # The loader overwrites it with the stored filter; this only fixes the shape (a unit-DC box).
        if not shape:
            return None
        taps = torch.full(shape, 1.0)
        return taps / taps.sum()

    def modulated_conv(self, x: torch.Tensor, w: torch.Tensor, strategy: str) -> torch.Tensor:
        styles = self.affine(w)  # [N, I]
        weight = self.weight
        demodulate = not self.is_torgb
        if demodulate:
            weight = weight * weight.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
            styles = styles * styles.square().mean().rsqrt()
        else:
            styles = styles / math.sqrt(weight.shape[1] * weight.shape[2] * weight.shape[3])
        input_gain = self.magnitude_ema.rsqrt()
        batch, in_channels = x.shape[:2]
        padding = self.kernel_size - 1
        if strategy == "auto":
            strategy = "scaled"
        if strategy == "grouped":
            wmod = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
            if demodulate:
                wmod = wmod * (wmod.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
            wmod = (wmod * input_gain).reshape(-1, in_channels, self.kernel_size, self.kernel_size)
            out = F.conv2d(x.reshape(1, batch * in_channels, *x.shape[2:]), wmod.to(x.dtype), padding=padding,
                           groups=batch)
            return out.reshape(batch, -1, *out.shape[2:])
        if strategy != "scaled":
            raise ValueError(f"modulation must be one of {SG3_MODULATIONS}, got {strategy!r}")
        if self.kernel_size == 1:
            wmod = weight[None, :, :, 0, 0] * styles[:, None, :]  # [N, O, I]
            if demodulate:
                wmod = wmod * (wmod.square().sum(dim=2, keepdim=True) + 1e-8).rsqrt()
            out = torch.matmul((wmod * input_gain).to(x.dtype), x.reshape(batch, in_channels, -1))
            return out.reshape(batch, -1, *x.shape[2:])
        out = F.conv2d(x * (styles * input_gain)[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=padding)
        if demodulate:
            energy = weight.square().sum(dim=(2, 3))  # [O, I]
            out = out * (styles.square() @ energy.t() + 1e-8).rsqrt()[:, :, None, None].to(out.dtype)
        return out

    def forward(self, x: torch.Tensor, w: torch.Tensor, strategy: str = "auto") -> torch.Tensor:
        x = self.modulated_conv(x, w, strategy)
        c = self.config
        gain, slope = (1.0, 1.0) if self.is_torgb else (math.sqrt(2.0), 0.2)
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, c.up, c.down, c.padding, gain=gain,
                              slope=slope, clamp=c.conv_clamp)

    def extra_repr(self) -> str:
        c = self.config
        return (f"name={c.name}, in={c.in_channels}, out={c.out_channels}, kernel={c.kernel_size}, up={c.up}, "
                f"down={c.down}, padding={c.padding}, torgb={c.is_torgb}, radial={c.radial}")


class _NoNoise(nn.Module):
    """StyleGAN3 has no noise inputs; this stands in for :class:`~latentedit.model.generator.NoiseBuffers`."""

    num_layers = 0

    def maps(self) -> list[torch.Tensor]:
        return []


class SG3Generator(LatentSpaceMixin, nn.Module):
    """StyleGAN3 generator (mapping + synthesis) with the interface of :class:`~latentedit.model.Generator`.

    Attributes: ``config`` (:class:`SG3Config`), ``size``, ``z_dim``, ``w_dim``, ``num_ws``, ``num_layers``
    (noise inputs: 0), ``w_avg [w_dim]`` (non-persistent, set by the loader), ``has_w_avg``, ``modulation``
    (``auto`` = ``scaled``, or ``grouped``: NVIDIA's arithmetic order; the two agree to ~1e-6),
    ``cpu_micro_batch`` (on CPU, synthesis runs this many samples at a time; ``auto``, the default: 1; 0 or
    None: the whole batch at once, NVIDIA's batch arithmetic). One at a time is the faster on CPU (W+ batch
    of 4, one thread: forward 0.38 s instead of 0.47 s, forward + backward 1.0 s instead of 1.13 s) and makes
    every sample's render independent of the batch it is in, bit for bit: the batch-wide style RMS and the
    batched filters otherwise change the rounding (~1e-6), so that an edit at strength 0 or a re-render
    with ``generate --latent`` would not reproduce an inversion's PNG exactly.
    ``noise_mode`` arguments are accepted and ignored.
    """

    architecture = "stylegan3"

    def __init__(self, config: SG3Config):
        super().__init__()
        self.config = config
        self.style = SG3Mapping(config.z_dim, config.w_dim, config.mapping_layers, config.mapping_lr_mul)
        self.input = FourierInput(config.w_dim, config.input_channels, config.input_size,
                                  config.input_sampling_rate, config.input_bandwidth)
        self.layers = nn.ModuleList(SG3Layer(config.w_dim, layer) for layer in config.layers)
        self.output_scale = config.output_scale
        self.noises = _NoNoise()
        self.register_buffer("w_avg", torch.zeros(config.w_dim), persistent=False)
        self.has_w_avg = False
        self.modulation = "auto"
        self.cpu_micro_batch: int | str = "auto"

    # ----------------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.config.img_resolution

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    @property
    def w_dim(self) -> int:
        return self.config.w_dim

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    @property
    def num_layers(self) -> int:
        return 0

    def set_transform(self, transform: torch.Tensor | None) -> None:
        """Set the input layer's user transform ``[3, 3]`` (see :func:`make_transform`); None: identity."""
        value = torch.eye(3) if transform is None else torch.as_tensor(transform, dtype=torch.float32)
        if tuple(value.shape) != (3, 3):
            raise ValueError(f"the input transform must be [3, 3], got {tuple(value.shape)}")
        self.input.transform.copy_(value)

    # ----------------------------------------------------------------------------------------------
    def make_noise(self, mode=None, batch: int = 1, device=None, dtype=torch.float32, generator=None) -> list:
        """No noise inputs: always ``[]`` (any mode is accepted)."""
        return []

    def synthesis(self, w: torch.Tensor, noise_mode=None, modulation: str | None = None) -> torch.Tensor:
        """W ``[N, w_dim]`` or W+ ``[N, num_ws, w_dim]`` -> image ``[N, img_channels, size, size]``.

        ``noise_mode`` is ignored (no noise inputs). ``modulation`` overrides :attr:`modulation`. On CPU the
        batch runs :attr:`cpu_micro_batch` samples at a time (default one: see the class docstring).
        """
        strategy = modulation or self.modulation
        if strategy not in SG3_MODULATIONS:
            raise ValueError(f"modulation must be one of {SG3_MODULATIONS}, got {strategy!r}")
        w_plus = self.broadcast_w(w)
        micro = self.cpu_micro_batch
        if micro == "auto":
            micro = 1
        if w_plus.device.type == "cpu" and micro and w_plus.shape[0] > micro:
            return torch.cat([self._synthesis(w_plus[start:start + micro], strategy)
                              for start in range(0, w_plus.shape[0], micro)])
        return self._synthesis(w_plus, strategy)

    def _synthesis(self, w_plus: torch.Tensor, strategy: str) -> torch.Tensor:
        x = self.input(w_plus[:, 0])
        for index, layer in enumerate(self.layers):
            x = layer(x, w_plus[:, index + 1], strategy)
        return x * self.output_scale

    def forward(self, z: torch.Tensor, truncation: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode=None) -> torch.Tensor:
        """z ``[N, z_dim]`` -> image (mapping, truncation, synthesis)."""
        return self.synthesis(self.truncate(self.mapping(z), truncation, truncation_cutoff))
