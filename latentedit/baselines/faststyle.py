"""Seed 004's networks for StarGAN-style translation: a FastStyleNet generator and a PatchGAN critic.

Both plug into the StarGAN trainer (``latentedit stargan train --generator faststyle --discriminator patch``)
and keep its interfaces: ``generator(images, labels) -> images`` and ``critic(images) -> (realness map,
class logits)``; the losses (WGAN-GP, auxiliary domain classification, cycle reconstruction) are unchanged.

Generator (:class:`FastStyleNet`, Johnson et al. 2016's image transformation network as the seed uses it),
input ``image [N, 3, H, W]`` in [-1, 1] concatenated with the target label ``[N, c_dim]`` tiled to ``H x W``
(``3 + c_dim`` channels), every convolution with reflection padding:

- Conv9x9 s1 -> IN -> ReLU (``conv_dim``, 32 in the seed),
- Conv3x3 s2 -> IN -> ReLU (``2 conv_dim``), Conv3x3 s2 -> IN -> ReLU (``4 conv_dim``),
- ``repeat_num`` (5) residual blocks at ``4 conv_dim``: Conv3x3 -> IN -> ReLU -> Conv3x3 -> IN, plus the input,
- two fractionally strided convolutions, ConvTranspose3x3 s2 p1 output-padding 1 -> IN -> ReLU (``2 conv_dim``,
  ``conv_dim``),
- Conv9x9 s1 (with bias) -> tanh (3 channels).

IN is ``InstanceNorm2d(affine=True)`` without running statistics, so training and eval mode normalise alike;
convolutions followed by IN have no bias (IN's shift replaces it). The network is fully convolutional: ``H``
and ``W`` only need to be multiples of 4, so a model trained at 256 px runs at 512 px (the seed's test size).
At the seed's settings (conv_dim 32, 5 blocks, 10 categories) it has 1,703,555 parameters; with 4 categories
(toyfaces hair colours) 1,688,003.

Critic (:class:`PatchCritic`): cycleGAN's PatchGAN (:class:`latentedit.baselines.cyclegan.NLayerDiscriminator`)
without normalisation (a WGAN-GP critic must not couple the samples of a batch, and the gradient penalty is
per sample), plus StarGAN's auxiliary domain-classification head on the PatchGAN's last feature map:

- Conv4x4 s2 p1 (``conv_dim``, bias) -> LeakyReLU 0.2, then ``n_layers - 1`` more Conv4x4 s2 p1 widening to
  ``conv_dim * min(2^k, 8)`` -> LeakyReLU 0.2, then Conv4x4 s1 p1 (``conv_dim * min(2^n, 8)``) -> LeakyReLU 0.2:
  the features,
- realness head: the PatchGAN's Conv4x4 s1 p1 -> 1 channel (bias): one score per 70x70 patch with 3 layers
  (256 px -> a 30x30 map, 64 px -> 6x6),
- classification head: Conv4x4 s1 p1 -> ``c_dim`` channels (no bias), averaged over the map -> ``[N, c_dim]``
  logits. (StarGAN's head is one convolution whose kernel covers the whole map; averaging per-patch logits
  does the same job without fixing the image size.)

At 256 px with conv_dim 64, 3 layers and 10 categories it has 2,846,657 parameters (the PatchGAN's
2,764,737 plus 81,920 in the classification head); 2,797,505 with 4 categories. Weights keep PyTorch's default
initialisation, as StarGAN's networks do.

:func:`layer_table` lists the layers of either network with their output shapes and parameter counts (the
tables of ``docs/faststyle.md`` are printed from it).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentedit.baselines.cyclegan import NLayerDiscriminator
from latentedit.errors import InputError

GENERATORS = ("stargan", "faststyle")
DISCRIMINATORS = ("stargan", "patch")
ARCHITECTURE = "faststyle"
#: The seed's sizes: the generator's first width and residual blocks; the critic's first width and depth.
SEED_G_CONV_DIM, SEED_G_REPEAT_NUM = 32, 5
SEED_D_CONV_DIM, SEED_D_LAYERS = 64, 3


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class FastStyleNetConfig:
    """Shape of a :class:`FastStyleNet`: label size ``c_dim``, first width ``conv_dim`` (the bottleneck has
    ``4 conv_dim``) and ``repeat_num`` residual blocks. The same fields as
    :class:`latentedit.baselines.stargan.StarGANGeneratorConfig`, so generator files store either alike."""

    c_dim: int = 5
    conv_dim: int = SEED_G_CONV_DIM
    repeat_num: int = SEED_G_REPEAT_NUM

    def validate(self) -> None:
        for name, minimum in (("c_dim", 1), ("conv_dim", 1), ("repeat_num", 0)):
            _check_int(f"generator {name}", getattr(self, name), minimum)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FastStyleNetConfig":
        raw = json.loads(text)
        return cls(c_dim=int(raw["c_dim"]), conv_dim=int(raw["conv_dim"]), repeat_num=int(raw["repeat_num"]))


@dataclasses.dataclass(frozen=True)
class PatchCriticConfig:
    """Shape of a :class:`PatchCritic`: label size ``c_dim``, first width ``conv_dim``, ``n_layers`` stride-2
    convolutions (3 = the 70x70 PatchGAN) and the training ``image_size`` (only checked: the critic is fully
    convolutional)."""

    image_size: int = 256
    c_dim: int = 5
    conv_dim: int = SEED_D_CONV_DIM
    n_layers: int = SEED_D_LAYERS

    @property
    def min_side(self) -> int:
        """Smallest image side that leaves a score map: ``3 * 2^n_layers``."""
        return 3 * 2 ** self.n_layers

    def validate(self) -> None:
        for name in ("image_size", "c_dim", "conv_dim", "n_layers"):
            _check_int(f"discriminator {name}", getattr(self, name), 1)
        if self.image_size < self.min_side:
            raise InputError(f"the PatchGAN critic with {self.n_layers} layers needs images of at least "
                             f"{self.min_side} px, got {self.image_size}; lower --d-repeat-num")


# --------------------------------------------------------------------------------------------------
# Layers

def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


class _ConvLayer(nn.Module):
    """Reflection padding ``k // 2`` + Conv k x k (stride ``stride``), then IN -> ReLU unless ``last``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, last: bool = False):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, bias=last)
        self.norm = None if last else _norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pad(x))
        return x if self.norm is None else F.relu(self.norm(x))


class _UpLayer(nn.Module):
    """Fractionally strided convolution: ConvTranspose3x3 s2 p1 output-padding 1 (doubles H and W) -> IN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, 2, 1, output_padding=1, bias=False)
        self.norm = _norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class _Residual(nn.Module):
    """``x + IN(conv3x3(ReLU(IN(conv3x3(x)))))`` with reflection padding, at constant width."""

    def __init__(self, channels: int):
        super().__init__()
        self.first = _ConvLayer(channels, channels, 3)
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(channels, channels, 3, bias=False)
        self.norm = _norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.conv(self.pad(self.first(x))))


# --------------------------------------------------------------------------------------------------
# Networks

class FastStyleNet(nn.Module):
    """The FastStyleNet generator (module docstring). ``forward(images [N, 3, H, W] in [-1, 1], labels
    [N, c_dim]) -> images [N, 3, H, W]`` in (-1, 1); ``H, W`` multiples of 4, any size."""

    architecture = ARCHITECTURE

    def __init__(self, config: FastStyleNetConfig | None = None):
        super().__init__()
        config = config if config is not None else FastStyleNetConfig()
        config.validate()
        self.config = config
        width = config.conv_dim
        self.stem = _ConvLayer(3 + config.c_dim, width, 9)
        self.down = nn.Sequential(_ConvLayer(width, 2 * width, 3, 2), _ConvLayer(2 * width, 4 * width, 3, 2))
        self.blocks = nn.Sequential(*[_Residual(4 * width) for _ in range(config.repeat_num)])
        self.up = nn.Sequential(_UpLayer(4 * width, 2 * width), _UpLayer(2 * width, width))
        self.to_rgb = _ConvLayer(width, 3, 9, last=True)

    @property
    def c_dim(self) -> int:
        return self.config.c_dim

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"images must be [N, 3, H, W], got {list(images.shape)}")
        if images.shape[2] % 4 or images.shape[3] % 4:
            raise InputError(f"image height and width must be multiples of 4, got {list(images.shape[2:])}")
        if min(images.shape[2:]) < 8:
            raise InputError(f"FastStyleNet needs images of at least 8x8 px, got {list(images.shape[2:])}")
        if labels.shape != (images.shape[0], self.config.c_dim):
            raise InputError(f"labels must be [N={images.shape[0]}, c_dim={self.config.c_dim}], got "
                             f"{list(labels.shape)}")
        label_map = labels.to(images.dtype)[:, :, None, None].expand(-1, -1, images.shape[2], images.shape[3])
        x = self.stem(torch.cat([images, label_map], dim=1))
        x = self.up(self.blocks(self.down(x)))
        return torch.tanh(self.to_rgb(x))


class PatchCritic(nn.Module):
    """The PatchGAN critic with a domain-classification head (module docstring). ``forward(images [N, 3, H, W])
    -> (realness [N, 1, h, w], class logits [N, c_dim])``, ``h = H / 2^n - 2``."""

    architecture = "patch"

    def __init__(self, config: PatchCriticConfig | None = None):
        super().__init__()
        config = config if config is not None else PatchCriticConfig()
        config.validate()
        self.config = config
        self.patch = NLayerDiscriminator(3, config.conv_dim, config.n_layers, norm="none")
        width = config.conv_dim * min(2 ** config.n_layers, 8)
        self.classify = nn.Conv2d(width, config.c_dim, 4, 1, 1, bias=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"the critic takes [N, 3, H, W] images, got {list(images.shape)}")
        if min(images.shape[2:]) < self.config.min_side:
            raise InputError(f"the critic needs images of at least {self.config.min_side} px, got "
                             f"{list(images.shape[2:])}")
        layers = self.patch.model
        features = images
        for layer in list(layers)[:-1]:
            features = layer(features)
        return layers[-1](features), self.classify(features).mean(dim=(2, 3))


# --------------------------------------------------------------------------------------------------
# Building and describing

def build_generator(kind: str, c_dim: int, conv_dim: int, repeat_num: int) -> nn.Module:
    """``stargan`` (:class:`~latentedit.baselines.stargan.StarGANGenerator`) or ``faststyle`` (:class:`FastStyleNet`)."""
    from latentedit.baselines import stargan

    if kind == "stargan":
        return stargan.StarGANGenerator(stargan.StarGANGeneratorConfig(c_dim=c_dim, conv_dim=conv_dim,
                                                                       repeat_num=repeat_num))
    if kind == "faststyle":
        return FastStyleNet(FastStyleNetConfig(c_dim=c_dim, conv_dim=conv_dim, repeat_num=repeat_num))
    raise InputError(f"--generator must be one of {', '.join(GENERATORS)}, got {kind!r}")


def generator_config(kind: str, c_dim: int, conv_dim: int, repeat_num: int):
    """The config object of :func:`build_generator` (validated)."""
    from latentedit.baselines import stargan

    if kind not in GENERATORS:
        raise InputError(f"--generator must be one of {', '.join(GENERATORS)}, got {kind!r}")
    cls = stargan.StarGANGeneratorConfig if kind == "stargan" else FastStyleNetConfig
    config = cls(c_dim=c_dim, conv_dim=conv_dim, repeat_num=repeat_num)
    config.validate()
    return config


def discriminator_config(kind: str, image_size: int, c_dim: int, conv_dim: int, repeat_num: int):
    """StarGAN's discriminator config (``repeat_num`` strided convs) or :class:`PatchCriticConfig`
    (``repeat_num`` = its ``n_layers``)."""
    from latentedit.baselines import stargan

    if kind == "stargan":
        return stargan.StarGANDiscriminatorConfig(image_size=image_size, c_dim=c_dim, conv_dim=conv_dim,
                                                  repeat_num=repeat_num)
    if kind == "patch":
        return PatchCriticConfig(image_size=image_size, c_dim=c_dim, conv_dim=conv_dim, n_layers=repeat_num)
    raise InputError(f"--discriminator must be one of {', '.join(DISCRIMINATORS)}, got {kind!r}")


def build_discriminator(config) -> nn.Module:
    """The network of a :func:`discriminator_config`."""
    from latentedit.baselines import stargan

    if isinstance(config, PatchCriticConfig):
        return PatchCritic(config)
    return stargan.StarGANDiscriminator(config)


def default_sizes(generator: str, discriminator: str) -> dict[str, int]:
    """The defaults of ``--g-conv-dim``, ``--g-repeat-num`` and ``--d-repeat-num`` for each kind: StarGAN's
    (64, 6, 6) or the seed's (FastStyleNet 32, 5; PatchGAN 3 layers)."""
    faststyle, patch = generator == "faststyle", discriminator == "patch"
    return {"g_conv_dim": SEED_G_CONV_DIM if faststyle else 64, "g_repeat_num": SEED_G_REPEAT_NUM if faststyle else 6,
            "d_repeat_num": SEED_D_LAYERS if patch else 6}


def layer_table(network: nn.Module, image_size: int) -> list[dict]:
    """One row per convolution, normalisation and activation of ``network`` run on one ``image_size`` image:
    ``{"name", "layer", "output": [C, H, W], "parameters"}`` in execution order (padding layers omitted)."""
    rows: list[dict] = []
    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d, nn.ReLU, nn.LeakyReLU)
    names = {module: name for name, module in network.named_modules()}

    def describe(module: nn.Module) -> str:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            kernel, stride = module.kernel_size[0], module.stride[0]
            kind = "ConvT" if isinstance(module, nn.ConvTranspose2d) else "Conv"
            return f"{kind}{kernel}x{kernel} s{stride} {module.in_channels}->{module.out_channels}" + (
                "" if module.bias is None else " +bias")
        if isinstance(module, nn.InstanceNorm2d):
            return "InstanceNorm" + (" (affine)" if module.affine else "")
        if isinstance(module, nn.LeakyReLU):
            return f"LeakyReLU {module.negative_slope:g}"
        return type(module).__name__

    def hook(module, _inputs, output):
        rows.append({"name": names[module], "layer": describe(module), "output": list(output.shape[1:]),
                     "parameters": sum(p.numel() for p in module.parameters(recurse=False))})

    handles = [module.register_forward_hook(hook) for module in network.modules() if isinstance(module, kinds)]
    try:
        with torch.no_grad():
            images = torch.zeros(1, 3, image_size, image_size)
            if hasattr(network, "c_dim"):
                network(images, torch.zeros(1, network.c_dim))
            else:
                network(images)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def format_layer_table(rows: Sequence[dict]) -> str:
    """A Markdown table of :func:`layer_table` rows (functional ReLUs are not modules and do not appear)."""
    lines = ["| module | layer | output | parameters |", "|---|---|---|---:|"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['layer']} | {' x '.join(map(str, row['output']))} | "
                     f"{row['parameters']:,} |")
    return "\n".join(lines)


def category_targets(count: int, c_dim: int) -> list[torch.Tensor]:
    """One ``[count, c_dim]`` one-hot target per category, in order (the grid of exclusive categories)."""
    eye = torch.eye(c_dim)
    return [eye[k].expand(count, c_dim).clone() for k in range(c_dim)]
