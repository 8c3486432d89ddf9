"""The StyleGAN2 residual discriminator (rosinality layout), used for training.

Image ``[N, 3, size, size]`` -> score ``[N, 1]``. Minibatch-stddev with group 4 and 1 feature, so
scores depend on the batch (N must be divisible by min(N, 4)).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
from torch import nn

from latentedit.model.generator import config_f_channels
from latentedit.model.layers import Blur, EqualConv2d, EqualLinear
from latentedit.ops import FusedLeakyReLU


@dataclasses.dataclass
class DiscriminatorConfig:
    size: int
    channels: dict = None
    blur_taps: tuple = (1, 3, 3, 1)
    stddev_group: int = 4

    def __post_init__(self):
        if self.channels is None:
            self.channels = config_f_channels(self.size)
        self.channels = {int(k): int(v) for k, v in self.channels.items()}
        self.blur_taps = tuple(float(t) for t in self.blur_taps)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["channels"] = {str(k): v for k, v in self.channels.items()}
        data["blur_taps"] = list(self.blur_taps)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "DiscriminatorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU]; with ``downsample`` the conv has stride 2 after a blur.

    A Sequential so the keys are ``{i}.kernel``, ``{i}.weight``, ``{i}.bias`` as in rosinality.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 blur_taps: Sequence[float] = (1, 3, 3, 1), bias: bool = True, activate: bool = True):
        layers = []
        if downsample:
            excess = (len(blur_taps) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_taps, pad=((excess + 1) // 2, excess // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """``(conv2(conv1(x)) + skip(x)) / sqrt(2)``, halving the resolution."""

    def __init__(self, in_channels: int, out_channels: int, blur_taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_taps=blur_taps)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_taps=blur_taps)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, blur_taps=blur_taps, bias=False,
                              activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_features: int = 1) -> torch.Tensor:
    """Append the per-group standard deviation (averaged over C/features, H, W) as extra channels."""
    batch, channels, height, width = x.shape
    group = min(batch, group_size)
    if batch % group:
        raise ValueError(f"batch size {batch} must be divisible by the minibatch-stddev group {group}")
    y = x.reshape(group, -1, num_features, channels // num_features, height, width)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)
    y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)  # [N/group, features, 1, 1]
    y = y.repeat(group, 1, height, width)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        c = config.channels
        log_size = int(math.log2(config.size))
        blocks = [ConvLayer(3, c[config.size], 1)]
        in_channels = c[config.size]
        for i in range(log_size, 2, -1):
            out_channels = c[2 ** (i - 1)]
            blocks.append(ResBlock(in_channels, out_channels, config.blur_taps))
            in_channels = out_channels
        self.convs = nn.Sequential(*blocks)
        self.final_conv = ConvLayer(in_channels + 1, c[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(c[4] * 4 * 4, c[4], activation=True), EqualLinear(c[4], 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.convs(image)
        x = minibatch_stddev(x, self.config.stddev_group)
        x = self.final_conv(x)
        return self.final_linear(x.flatten(1))
