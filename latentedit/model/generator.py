"""The StyleGAN2 generator: mapping network z -> w, and synthesis network W+ -> image.

One implementation serves rosinality and NVIDIA checkpoints (SPEC §1). The module tree is the
rosinality state-dict layout, so ``Generator(config).load_state_dict(sd, strict=True)`` loads
their ``g_ema`` directly.

Shapes: z ``[N, style_dim]``; W ``[N, w_dim]``; W+ ``[N, num_ws, w_dim]``; images ``[N, 3, size, size]``
(float, nominally [-1, 1], not clamped).

W+ row -> layer: conv1 <- 0, to_rgb1 <- 1; block j (resolution 8 * 2**j): up-conv <- 2j+1,
conv <- 2j+2, ToRGB <- 2j+3. Noise input i feeds styled conv i (conv1 is 0, ``convs.{k}`` is k+1).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import nn

from latentedit.model.latents import LatentSpaceMixin
from latentedit.model.layers import (
    MODULATION_STRATEGIES,
    ConstantInput,
    EqualLinear,
    PixelNorm,
    StyledConv,
    ToRGB,
)

NOISE_MODES = ("const", "random", "zero")


def config_f_channels(size: int, channel_multiplier: int = 2) -> dict[int, int]:
    """The public channel rule: 512 up to 32 px, then 256*cm, 128*cm, ... (NVIDIA: min(16384*cm // res, 512))."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
             256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    channels = {}
    res = 4
    while res <= size:
        channels[res] = table.get(res, max(1, 16384 * channel_multiplier // res))
        res *= 2
    return channels


@dataclasses.dataclass
class GeneratorConfig:
    """Architecture of a StyleGAN2 generator; every field can be inferred from a state dict.

    ``channels`` maps each resolution 4, 8, ..., size to its feature count. ``conv_clamp`` (NVIDIA ADA
    snapshots) clamps every activation to ±conv_clamp; None disables it.
    """

    size: int
    style_dim: int = 512
    n_mlp: int = 8
    channels: dict = None
    lr_mlp: float = 0.01
    blur_taps: tuple = (1, 3, 3, 1)
    conv_clamp: float | None = None

    def __post_init__(self):
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {self.size}")
        if self.channels is None:
            self.channels = config_f_channels(self.size)
        self.channels = {int(k): int(v) for k, v in self.channels.items()}
        missing = [r for r in self.resolutions if r not in self.channels]
        if missing:
            raise ValueError(f"channels lack resolutions {missing}")
        self.blur_taps = tuple(float(t) for t in self.blur_taps)

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def resolutions(self) -> list[int]:
        return [2 ** i for i in range(2, self.log_size + 1)]

    @property
    def num_ws(self) -> int:
        return 2 * self.log_size - 2

    @property
    def num_layers(self) -> int:
        return 2 * self.log_size - 3

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["channels"] = {str(k): v for k, v in self.channels.items()}
        data["blur_taps"] = list(self.blur_taps)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "channels" in kwargs and kwargs["channels"] is not None:
            kwargs["channels"] = {int(k): int(v) for k, v in kwargs["channels"].items()}
        return cls(**kwargs)


def noise_shape(index: int) -> tuple[int, int, int, int]:
    """Shape of stored noise buffer ``noises.noise_{index}``: ``[1, 1, r, r]`` with ``r = 2**((index+5)//2)``."""
    r = 2 ** ((index + 5) // 2)
    return (1, 1, r, r)


class MappingNetwork(nn.Sequential):
    """PixelNorm then ``n_mlp`` EqualLinear + leaky ReLU layers (lr_mul 0.01): z ``[N, D]`` -> w ``[N, D]``.

    A Sequential so that the keys are ``style.{1..n_mlp}.weight`` as in rosinality checkpoints.
    """

    def __init__(self, style_dim: int, n_mlp: int, lr_mul: float):
        layers = [PixelNorm()]
        layers += [EqualLinear(style_dim, style_dim, lr_mul=lr_mul, activation=True) for _ in range(n_mlp)]
        super().__init__(*layers)


class NoiseBuffers(nn.Module):
    """Holds the stored (``const``) noise maps as buffers ``noise_{i}`` of shape ``[1, 1, r, r]``."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        for i in range(num_layers):
            self.register_buffer(f"noise_{i}", torch.randn(noise_shape(i)))

    def maps(self) -> list[torch.Tensor]:
        return [getattr(self, f"noise_{i}") for i in range(self.num_layers)]


class Generator(LatentSpaceMixin, nn.Module):
    """StyleGAN2 generator (mapping + synthesis) with the rosinality state-dict layout.

    Attributes users rely on: ``size``, ``num_ws``, ``w_dim`` (= style_dim), ``num_layers`` (noise
    inputs), ``config``, ``w_avg [w_dim]`` (a non-persistent buffer set by the checkpoint loader, or
    computed by :meth:`compute_w_avg`), ``modulation`` (``auto``/``grouped``/``scaled``),
    ``cpu_micro_batch`` (on CPU, synthesis runs this many samples at a time; 0 or None: all at once;
    ``auto``: 1 from 256 px up, else all at once).
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        c = config.channels
        taps = config.blur_taps
        clamp = config.conv_clamp
        self.style = MappingNetwork(config.style_dim, config.n_mlp, config.lr_mlp)
        self.input = ConstantInput(c[4])
        self.conv1 = StyledConv(c[4], c[4], 3, config.style_dim, blur_taps=taps, conv_clamp=clamp)
        self.to_rgb1 = ToRGB(c[4], config.style_dim, upsample=False, blur_taps=taps, conv_clamp=clamp)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = c[4]
        for res in config.resolutions[1:]:
            out_channels = c[res]
            self.convs.append(StyledConv(in_channels, out_channels, 3, config.style_dim, upsample=True,
                                         blur_taps=taps, conv_clamp=clamp))
            self.convs.append(StyledConv(out_channels, out_channels, 3, config.style_dim, blur_taps=taps,
                                         conv_clamp=clamp))
            self.to_rgbs.append(ToRGB(out_channels, config.style_dim, upsample=True, blur_taps=taps,
                                      conv_clamp=clamp))
            in_channels = out_channels
        self.noises = NoiseBuffers(config.num_layers)
        self.register_buffer("w_avg", torch.zeros(config.style_dim), persistent=False)
        self.has_w_avg = False
        self.modulation = "auto"
        self.cpu_micro_batch: int | str = "auto"

    # ----------------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.config.size

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    @property
    def w_dim(self) -> int:
        return self.config.style_dim

    @property
    def z_dim(self) -> int:
        """Length of z (StyleGAN2: the same as w)."""
        return self.config.style_dim

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    # ----------------------------------------------------------------------------------------------
    def make_noise(self, mode: str | Sequence[torch.Tensor] | None, batch: int, device, dtype=torch.float32,
                   generator: torch.Generator | None = None) -> list[torch.Tensor | None]:
        """Noise inputs for :meth:`synthesis`: one tensor ``[1 or N, 1, r, r]`` per styled conv."""
        if mode is None or isinstance(mode, str):
            mode = mode or "const"
            if mode == "const":
                return [n.to(device=device, dtype=dtype) for n in self.noises.maps()]
            if mode == "random":
                return [torch.randn((batch, 1) + noise_shape(i)[2:], generator=generator, dtype=dtype).to(device)
                        if generator is not None else
                        torch.randn((batch, 1) + noise_shape(i)[2:], device=device, dtype=dtype)
                        for i in range(self.num_layers)]
            if mode == "zero":
                return [None] * self.num_layers
            raise ValueError(f"noise mode must be one of {NOISE_MODES} or a list of tensors, got {mode!r}")
        maps = list(mode)
        if len(maps) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} noise maps, got {len(maps)}")
        for i, n in enumerate(maps):
            if n is not None and tuple(n.shape[-2:]) != noise_shape(i)[2:]:
                raise ValueError(f"noise map {i} must be {noise_shape(i)[2]}x{noise_shape(i)[3]}, got "
                                 f"{tuple(n.shape)}")
        return maps

    def synthesis(self, w: torch.Tensor, noise_mode: str | Sequence[torch.Tensor] = "const",
                  modulation: str | None = None) -> torch.Tensor:
        """W ``[N, D]`` or W+ ``[N, num_ws, D]`` -> image ``[N, 3, size, size]``.

        ``noise_mode``: ``const`` (stored buffers), ``random`` (fresh N(0, 1)), ``zero``, or a list of
        ``num_layers`` tensors ``[1 or N, 1, r, r]``. ``modulation`` overrides :attr:`modulation`.
        """
        w_plus = self.broadcast_w(w)
        strategy = modulation or self.modulation
        if strategy not in MODULATION_STRATEGIES:
            raise ValueError(f"modulation must be one of {MODULATION_STRATEGIES}, got {strategy!r}")
        batch = w_plus.shape[0]
        noise = self.make_noise(noise_mode, batch, w_plus.device, w_plus.dtype)
        micro = self.cpu_micro_batch
        if micro == "auto":
            micro = 1 if self.size >= 256 else 0
        if w_plus.device.type == "cpu" and micro and batch > micro:
            # On CPU, large generators run one micro-batch at a time: one sample's activations stay in
            # cache, so at 256 px a batch of 4 costs 3.5x one sample instead of 5x. Small generators
            # (64 px training) lose from it: per-op overhead dominates (benchmarks/generator.py).
            chunks = []
            for start in range(0, batch, micro):
                stop = min(start + micro, batch)
                chunk_noise = [n if n is None or n.shape[0] == 1 else n[start:stop] for n in noise]
                chunks.append(self._synthesis(w_plus[start:stop], chunk_noise, strategy))
            return torch.cat(chunks)
        return self._synthesis(w_plus, noise, strategy)

    def _synthesis(self, w_plus: torch.Tensor, noise: list, strategy: str) -> torch.Tensor:
        batch = w_plus.shape[0]
        x = self.input(batch)
        x = self.conv1(x, w_plus[:, 0], noise[0], strategy)
        image = self.to_rgb1(x, w_plus[:, 1], None, strategy)
        row = 1
        for j, to_rgb in enumerate(self.to_rgbs):
            up_conv, conv = self.convs[2 * j], self.convs[2 * j + 1]
            x = up_conv(x, w_plus[:, row], noise[2 * j + 1], strategy)
            x = conv(x, w_plus[:, row + 1], noise[2 * j + 2], strategy)
            image = to_rgb(x, w_plus[:, row + 2], image, strategy)
            row += 2
        return image

    def forward(self, z: torch.Tensor, truncation: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode: str | Sequence[torch.Tensor] = "const") -> torch.Tensor:
        """z ``[N, D]`` -> image ``[N, 3, size, size]`` (mapping, truncation, synthesis)."""
        w = self.truncate(self.mapping(z), truncation, truncation_cutoff)
        return self.synthesis(w, noise_mode)
