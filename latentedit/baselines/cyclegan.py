"""Networks of the two-domain baselines, CycleGAN (Zhu et al. 2017) and pix2pix (Isola et al. 2017), and their files.

The layer layouts are those of the reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix, SPEC §7), so
that at its defaults every network has the official number of parameters; the code and the module names are this
project's own. Images are ``[N, C, H, W]`` in [-1, 1]; every generator ends in tanh.

Normalisation (``norm``): ``instance`` = ``InstanceNorm2d(affine=False, track_running_stats=False)`` (no
parameters), ``batch`` = ``BatchNorm2d(affine=True, track_running_stats=True)``, ``none``. As in the reference, a
convolution followed by instance norm (or by nothing) has a bias and one followed by batch norm has none.

Generators (:class:`GeneratorConfig`, names as the reference's ``--netG``):

- ``resnet_<B>blocks`` (:class:`ResnetGenerator`; ``resnet_9blocks`` and ``resnet_6blocks`` in the reference):
  ReflectionPad 3 + Conv7x7 (ngf) -> norm -> ReLU; two Conv3x3 s2 p1 (2 ngf, 4 ngf) -> norm -> ReLU; B residual
  blocks at 4 ngf (ReflectionPad 1, Conv3x3, norm, ReLU, [Dropout 0.5], ReflectionPad 1, Conv3x3, norm; plus the
  input); two ConvTranspose3x3 s2 p1 output-padding 1 (2 ngf, ngf) -> norm -> ReLU; ReflectionPad 3 + Conv7x7 (with
  bias) -> tanh. ``H, W`` multiples of 4. ngf 64, instance norm: 11,378,179 parameters (9 blocks), 7,837,699 (6).
- ``unet_<S>`` (:class:`UnetGenerator`, ``log2 S`` downsamplings, so ``unet_256`` has 8 and ``unet_128`` 7) or
  ``unet_d<D>`` (D downsamplings): nested skip blocks. Going down, Conv4x4 s2 p1 to ngf, 2 ngf, 4 ngf, then 8 ngf
  for every further level; LeakyReLU 0.2 before every down-conv but the first, norm after every down-conv but the
  outermost and the innermost. Coming up, ReLU -> ConvTranspose4x4 s2 p1 -> norm (none and tanh at the outermost),
  Dropout 0.5 after the up-conv of the ``D - 5`` levels just outside the innermost when ``dropout``; each level's
  output is concatenated with its input (the skip). ``H, W`` multiples of ``2^D``. ngf 64, batch norm, 8 levels:
  54,413,955 parameters (instance norm: 54,409,603; 7 levels with batch norm: 41,828,995).

Discriminators (:class:`DiscriminatorConfig`):

- ``basic`` / ``n_layers`` (:class:`NLayerDiscriminator`, the PatchGAN): Conv4x4 s2 p1 (ndf, bias, no norm) ->
  LeakyReLU 0.2; ``n_layers - 1`` more Conv4x4 s2 p1 widening ``ndf * min(2^k, 8)`` -> norm -> LeakyReLU; one
  Conv4x4 s1 p1 (``ndf * min(2^n, 8)``) -> norm -> LeakyReLU; Conv4x4 s1 p1 -> 1 channel (bias). ``basic`` is 3
  layers: 70x70 receptive field, 256 px -> a 30x30 score map, 128 -> 14x14, 64 -> 6x6; ndf 64: 2,764,737
  parameters on 3 channels with instance norm, 2,768,705 on 6 channels with batch norm (pix2pix). Receptive field
  of n layers: 16 (1), 34 (2), 70 (3), 142 (4) px.
- ``pixel`` (:class:`PixelDiscriminator`, 1x1): Conv1x1 ndf -> LeakyReLU -> Conv1x1 2 ndf -> norm -> LeakyReLU
  -> Conv1x1 1; 8,705 parameters on 3 channels with instance norm.
- ``global_local`` (:class:`GlobalLocalDiscriminator`, seed 003; the seed's own layers are unpublished, so this
  design is ours): the PatchGAN above as the local branch, and a global branch with its own weights that sees the
  whole image: Conv4x4 s2 p1 layers (widths ``ndf * min(2^k, 8)``, norm after all but the first, LeakyReLU 0.2)
  until the map is 4x4 (so its receptive field covers the image), then flatten and one linear layer -> one score
  per image. ``forward`` returns ``[local map [N, 1, h, w], global score [N, 1]]``; the GAN losses average each
  output and add them (Iizuka et al.'s global + local idea with the two scores kept separate rather than fused,
  so the local term is exactly the PatchGAN's). Needs ``image_size`` (a power of two >= 8).
- ``multiscale`` (:class:`MultiscaleDiscriminator`, pix2pixHD's alternative): ``num_scales`` PatchGANs, the
  k-th on the input average-pooled k times (3x3, stride 2, padding 1, padding not counted); a list of score maps.
  No feature matching.

Weights start from normal(0, 0.02) (conv, transposed conv and linear), biases 0, batch-norm scales normal(1,
0.02) (:func:`init_weights`).

Translator files (:func:`save_translator` / :func:`load_translator`): safetensors with every generator tensor
under a prefix (CycleGAN: ``g_ab.`` A->B and ``g_ba.`` B->A; pix2pix: ``g.``), and the metadata ``format``
(``latentedit-cyclegan`` or ``latentedit-pix2pix``), ``generator`` (JSON :class:`GeneratorConfig`), ``domains``
(JSON ``{"a": ..., "b": ...}`` naming the domains), ``direction`` (pix2pix: what its one generator does,
``a2b`` or ``b2a``), ``image_size``, plus free-form extras. Loading uses strict state dicts.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from latentedit.errors import CheckpointError, InputError

NORMS = ("instance", "batch", "none")
DISCRIMINATORS = ("basic", "n_layers", "pixel", "global_local", "multiscale")
CYCLEGAN_FORMAT = "latentedit-cyclegan"
PIX2PIX_FORMAT = "latentedit-pix2pix"
FORMATS = {"cyclegan": CYCLEGAN_FORMAT, "pix2pix": PIX2PIX_FORMAT}
DIRECTIONS = ("a2b", "b2a")
#: Shipped translators: name -> (kind, file name inside ``latentedit/pretrained/``).
SHIPPED_TRANSLATORS = {"cyclegan_black2blond64": ("cyclegan", "cyclegan_black2blond64.safetensors"),
                       "pix2pix_black2blond64": ("pix2pix", "pix2pix_black2blond64.safetensors")}


def parameter_count(module: nn.Module) -> int:
    """Number of trainable scalars (buffers such as running statistics excluded)."""
    return sum(param.numel() for param in module.parameters())


# --------------------------------------------------------------------------------------------------
# Configurations

def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise InputError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Shape of a generator: ``arch`` ``resnet`` (``blocks`` residual blocks) or ``unet`` (``downs``
    downsamplings), first width ``ngf``, ``norm``, ``dropout`` (reference ``--no_dropout`` inverted), channels."""

    arch: str = "resnet"
    blocks: int = 9
    downs: int = 8
    ngf: int = 64
    norm: str = "instance"
    dropout: bool = False
    in_channels: int = 3
    out_channels: int = 3

    @property
    def name(self) -> str:
        """The reference-style name: ``resnet_9blocks``, ``unet_256`` (``unet_d<D>`` for D < 3)."""
        if self.arch == "resnet":
            return f"resnet_{self.blocks}blocks"
        return f"unet_{2 ** self.downs}" if self.downs >= 3 else f"unet_d{self.downs}"

    @property
    def multiple(self) -> int:
        """Image height and width must be multiples of this."""
        return 4 if self.arch == "resnet" else 2 ** self.downs

    def validate(self) -> None:
        if self.arch not in ("resnet", "unet"):
            raise InputError(f"generator arch must be resnet or unet, got {self.arch!r}")
        _check_int("generator blocks", self.blocks, 0)
        _check_int("U-Net downsamplings", self.downs, 1)
        for name in ("ngf", "in_channels", "out_channels"):
            _check_int(f"generator {name}", getattr(self, name), 1)
        _check_norm(self.norm)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping) -> "GeneratorConfig":
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in raw.items() if key in known})

    @classmethod
    def from_json(cls, text: str) -> "GeneratorConfig":
        return cls.from_dict(json.loads(text))


def generator_config(name: str, image_size: int | None = None, *, ngf: int = 64, norm: str = "instance",
                     dropout: bool = False, in_channels: int = 3, out_channels: int = 3) -> GeneratorConfig:
    """A :class:`GeneratorConfig` from a ``--netG`` name: ``resnet_<B>blocks``, ``unet_<S>`` (S a power of two:
    ``log2 S`` downsamplings), ``unet_d<D>``, or ``unet`` (as deep as ``image_size`` allows: ``log2`` of it)."""
    match = re.fullmatch(r"resnet_(\d+)blocks", name)
    common = dict(ngf=ngf, norm=norm, dropout=dropout, in_channels=in_channels, out_channels=out_channels)
    if match:
        config = GeneratorConfig(arch="resnet", blocks=int(match.group(1)), **common)
    elif name == "unet":
        if image_size is None or image_size < 2 or image_size & (image_size - 1):
            raise InputError(f"--netG unet needs a power-of-two image size, got {image_size}")
        config = GeneratorConfig(arch="unet", downs=int(math.log2(image_size)), **common)
    elif re.fullmatch(r"unet_(\d+)", name):
        size = int(name.split("_")[1])
        if size < 8 or size & (size - 1):
            raise InputError(f"--netG {name}: the number after unet_ is a power of two >= 8 (unet_128, unet_256)")
        config = GeneratorConfig(arch="unet", downs=int(math.log2(size)), **common)
    elif re.fullmatch(r"unet_d(\d+)", name):
        config = GeneratorConfig(arch="unet", downs=int(name[6:]), **common)
    else:
        raise InputError(f"unknown generator {name!r}; use resnet_9blocks, resnet_6blocks (any resnet_<N>blocks), "
                         "unet_256, unet_128 (any unet_<power of two>), unet_d<N> or unet")
    config.validate()
    if image_size is not None and image_size % config.multiple:
        raise InputError(f"--netG {name} needs image sides that are multiples of {config.multiple}; --image-size is "
                         f"{image_size}" + (f" (use --netG unet_{image_size} or unet)" if config.arch == "unet" else ""))
    return config


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Shape of a discriminator: ``arch`` (:data:`DISCRIMINATORS`), ``n_layers`` (PatchGAN depth; ``basic`` is 3),
    first width ``ndf``, ``norm``, input channels (3; 6 for pix2pix's conditional D), ``image_size`` (needed by
    ``global_local``) and ``num_scales`` (``multiscale``)."""

    arch: str = "basic"
    n_layers: int = 3
    ndf: int = 64
    norm: str = "instance"
    in_channels: int = 3
    image_size: int = 256
    num_scales: int = 2

    def validate(self) -> None:
        if self.arch not in DISCRIMINATORS:
            raise InputError(f"discriminator must be one of {', '.join(DISCRIMINATORS)}, got {self.arch!r}")
        for name, minimum in (("n_layers", 1), ("ndf", 1), ("in_channels", 1), ("image_size", 1),
                              ("num_scales", 1)):
            _check_int(f"discriminator {name}", getattr(self, name), minimum)
        _check_norm(self.norm)
        if self.arch == "basic" and self.n_layers != 3:
            raise InputError("the basic discriminator has 3 layers; use n_layers for another depth")
        if self.arch == "global_local" and (self.image_size < 8 or self.image_size & (self.image_size - 1)):
            raise InputError(f"the global_local discriminator needs a power-of-two image size >= 8, got "
                             f"{self.image_size}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping) -> "DiscriminatorConfig":
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in raw.items() if key in known})


# --------------------------------------------------------------------------------------------------
# Layers

def norm_layer(norm: str, channels: int) -> nn.Module:
    """The normalisation of the reference: non-affine instance norm without running statistics, affine batch
    norm with them, or nothing (:class:`nn.Identity`)."""
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if norm == "none":
        return nn.Identity()
    raise InputError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def _conv_bias(norm: str) -> bool:
    """The reference's rule: a conv followed by batch norm has no bias; any other has one."""
    return norm != "batch"


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """normal(0, gain) weights and zero biases for every (transposed) conv and linear layer; batch-norm scales
    normal(1, gain), shifts 0. Returns ``module``."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, gain)
            nn.init.zeros_(layer.bias)
    return module


class ResidualBlock(nn.Module):
    """``x + norm(conv3x3(pad(ReLU(norm(conv3x3(pad(x)))))))`` at ``channels`` ``[N, C, H, W] -> [N, C, H, W]``,
    reflection padding, optional Dropout(0.5) between the halves."""

    def __init__(self, channels: int, norm: str, dropout: bool):
        super().__init__()
        bias = _conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                                   norm_layer(norm, channels), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """The ResNet generator (module docstring): ``[N, in, H, W] -> [N, out, H, W]`` in (-1, 1), H and W
    multiples of 4."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        config.validate()
        self.config = config
        ngf, norm, bias = config.ngf, config.norm, _conv_bias(config.norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(config.in_channels, ngf, 7, bias=bias),
                                   norm_layer(norm, ngf), nn.ReLU(True)]
        for k in range(2):
            width = ngf * 2 ** k
            layers += [nn.Conv2d(width, 2 * width, 3, 2, 1, bias=bias), norm_layer(norm, 2 * width), nn.ReLU(True)]
        layers += [ResidualBlock(4 * ngf, norm, config.dropout) for _ in range(config.blocks)]
        for k in (2, 1):
            width = ngf * 2 ** k
            layers += [nn.ConvTranspose2d(width, width // 2, 3, 2, 1, output_padding=1, bias=bias),
                       norm_layer(norm, width // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, config.out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.config.in_channels, self.config.multiple)
        return self.model(x)


class UnetLevel(nn.Module):
    """One level of the U-Net: ``[N, outer, H, W] -> [N, 2 outer, H, W]`` (input and output concatenated), or
    ``-> [N, out, H, W]`` at the outermost level; ``inner`` is the width of the level below (``submodule``)."""

    def __init__(self, outer: int, inner: int, norm: str, *, in_channels: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        in_channels = outer if in_channels is None else in_channels
        bias = _conv_bias(norm)
        down_conv = nn.Conv2d(in_channels, inner, 4, 2, 1, bias=bias)
        if outermost:
            down = [down_conv]
            up = [nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1), nn.Tanh()]
        elif submodule is None:  # innermost
            down = [nn.LeakyReLU(0.2, True), down_conv]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), norm_layer(norm, outer)]
        else:
            down = [nn.LeakyReLU(0.2, True), down_conv, norm_layer(norm, inner)]
            up = [nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=bias), norm_layer(norm, outer)]
            if dropout:
                up.append(nn.Dropout(0.5))
        middle = [] if submodule is None else [submodule]
        self.model = nn.Sequential(*down, *middle, *up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], dim=1)


class UnetGenerator(nn.Module):
    """The U-Net generator (module docstring): ``[N, in, H, W] -> [N, out, H, W]`` in (-1, 1), H and W
    multiples of ``2^downs``."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        config.validate()
        self.config = config
        ngf, norm, downs = config.ngf, config.norm, config.downs
        widths = [ngf * min(2 ** k, 8) for k in range(downs)]  # the output width of each down-conv, outer first
        level = UnetLevel(widths[-2] if downs > 1 else ngf, widths[-1], norm)  # innermost
        if downs == 1:
            level = None
        for k in range(downs - 2, 0, -1):
            # The reference's dropout levels: those between two 8 ngf levels (``downs - 5`` of them).
            dropout = config.dropout and k >= 4
            level = UnetLevel(widths[k - 1], widths[k], norm, submodule=level, dropout=dropout)
        self.model = UnetLevel(config.out_channels, ngf, norm, in_channels=config.in_channels, submodule=level,
                               outermost=True)
        if downs == 1:  # one level: down-conv straight into the up-conv, no skip below
            self.model = nn.Sequential(nn.Conv2d(config.in_channels, ngf, 4, 2, 1, bias=_conv_bias(norm)),
                                       nn.ReLU(True), nn.ConvTranspose2d(ngf, config.out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.config.in_channels, self.config.multiple)
        return self.model(x)


def build_generator(config: GeneratorConfig, init: bool = True) -> nn.Module:
    """The generator for ``config``, with :func:`init_weights` applied unless ``init`` is False."""
    network = ResnetGenerator(config) if config.arch == "resnet" else UnetGenerator(config)
    return init_weights(network) if init else network


class NLayerDiscriminator(nn.Module):
    """The PatchGAN (module docstring): ``[N, C, H, W] -> [N, 1, h, w]`` realness logits,
    ``h = H / 2^n - 2`` (256 -> 30 and 64 -> 6 with n = 3 layers); each score sees a square patch (70 px with
    3 layers)."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        bias = _conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for k in range(1, n_layers):
            new = ndf * min(2 ** k, 8)
            layers += [nn.Conv2d(width, new, 4, 2, 1, bias=bias), norm_layer(norm, new), nn.LeakyReLU(0.2, True)]
            width = new
        new = ndf * min(2 ** n_layers, 8)
        layers += [nn.Conv2d(width, new, 4, 1, 1, bias=bias), norm_layer(norm, new), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(new, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """The 1x1 PatchGAN: ``[N, C, H, W] -> [N, 1, H, W]``, one score per pixel."""

    def __init__(self, in_channels: int, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        bias = _conv_bias(norm)
        self.model = nn.Sequential(nn.Conv2d(in_channels, ndf, 1), nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(ndf, 2 * ndf, 1, bias=bias), norm_layer(norm, 2 * ndf),
                                   nn.LeakyReLU(0.2, True), nn.Conv2d(2 * ndf, 1, 1, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GlobalBranch(nn.Module):
    """The global half of :class:`GlobalLocalDiscriminator`: ``[N, C, S, S] -> [N, 1]``, strided 4x4 convs down
    to 4x4, then a linear layer over the whole map."""

    def __init__(self, in_channels: int, ndf: int, norm: str, image_size: int):
        super().__init__()
        self.image_size = image_size
        steps = int(math.log2(image_size)) - 2
        layers: list[nn.Module] = []
        width = in_channels
        for k in range(steps):
            new = ndf * min(2 ** k, 8)
            layers.append(nn.Conv2d(width, new, 4, 2, 1, bias=k == 0 or _conv_bias(norm)))
            if k > 0:
                layers.append(norm_layer(norm, new))
            layers.append(nn.LeakyReLU(0.2, True))
            width = new
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(width * 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != (self.image_size, self.image_size):
            raise InputError(f"the global discriminator branch takes {self.image_size}x{self.image_size} images, got "
                             f"{list(x.shape[2:])}")
        return self.score(self.features(x).flatten(1))


class GlobalLocalDiscriminator(nn.Module):
    """Seed 003's discriminator (module docstring): ``[N, C, S, S] -> [local [N, 1, h, w], global [N, 1]]``."""

    def __init__(self, in_channels: int, ndf: int, n_layers: int, norm: str, image_size: int):
        super().__init__()
        self.local = NLayerDiscriminator(in_channels, ndf, n_layers, norm)
        self.global_branch = GlobalBranch(in_channels, ndf, norm, image_size)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.local(x), self.global_branch(x)]


class MultiscaleDiscriminator(nn.Module):
    """pix2pixHD's multi-scale PatchGAN: ``[N, C, H, W] -> [maps at H, H/2, ...]`` (``num_scales`` of them)."""

    def __init__(self, in_channels: int, ndf: int, n_layers: int, norm: str, num_scales: int):
        super().__init__()
        self.scales = nn.ModuleList(NLayerDiscriminator(in_channels, ndf, n_layers, norm) for _ in range(num_scales))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for k, scale in enumerate(self.scales):
            if k:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs


def build_discriminator(config: DiscriminatorConfig, init: bool = True) -> nn.Module:
    """The discriminator for ``config``, with :func:`init_weights` applied unless ``init`` is False."""
    config.validate()
    if config.arch in ("basic", "n_layers"):
        network = NLayerDiscriminator(config.in_channels, config.ndf, config.n_layers, config.norm)
    elif config.arch == "pixel":
        network = PixelDiscriminator(config.in_channels, config.ndf, config.norm)
    elif config.arch == "global_local":
        network = GlobalLocalDiscriminator(config.in_channels, config.ndf, config.n_layers, config.norm,
                                           config.image_size)
    else:
        network = MultiscaleDiscriminator(config.in_channels, config.ndf, config.n_layers, config.norm,
                                          config.num_scales)
    return init_weights(network) if init else network


def patch_receptive_field(n_layers: int) -> int:
    """Side in pixels of the patch one PatchGAN score sees: 16, 34, 70, 142 for 1 to 4 layers."""
    field = 1
    for _ in range(2):  # the two stride-1 convs, from the output back
        field += 3
    for _ in range(n_layers):
        field = 2 * field + 2
    return field


def _check_images(x: torch.Tensor, channels: int, multiple: int) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise InputError(f"images must be [N, {channels}, H, W], got {list(x.shape)}")
    if x.shape[2] % multiple or x.shape[3] % multiple:
        raise InputError(f"this generator needs image sides that are multiples of {multiple}, got {list(x.shape[2:])}")


# --------------------------------------------------------------------------------------------------
# GAN losses and the image pool

GAN_MODES = ("lsgan", "vanilla")


def _as_list(outputs) -> list[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def gan_loss(outputs, target_is_real: bool, mode: str = "lsgan") -> torch.Tensor:
    """The adversarial loss of discriminator ``outputs`` (a tensor, or a list for the multi-output
    discriminators: the per-output losses are added): ``lsgan`` = mean squared error to 1 (real) or 0 (fake),
    ``vanilla`` = binary cross-entropy with logits against the same targets."""
    total = None
    for output in _as_list(outputs):
        target = torch.full_like(output, 1.0 if target_is_real else 0.0)
        if mode == "lsgan":
            loss = F.mse_loss(output, target)
        elif mode == "vanilla":
            loss = F.binary_cross_entropy_with_logits(output, target)
        else:
            raise InputError(f"GAN loss must be one of {', '.join(GAN_MODES)}, got {mode!r}")
        total = loss if total is None else total + loss
    return total


class ImagePool:
    """The reference's history of generated images (Shrivastava et al.): ``query(images [N, C, H, W])`` returns
    ``[N, C, H, W]``. While fewer than ``size`` are stored, each image is stored and returned; after that, with
    probability 0.5 a random stored image is returned and replaced by the new one, else the new one is returned.
    ``size`` 0 returns the input. Draws from torch's global RNG (so a checkpoint's RNG state resumes it);
    :meth:`state` / :meth:`load_state` give the stored images as one tensor."""

    def __init__(self, size: int):
        self.size = int(size)
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return images
        chosen = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                chosen.append(image)
            elif float(torch.rand(())) > 0.5:
                index = int(torch.randint(len(self.images), ()))
                chosen.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                chosen.append(image)
        return torch.cat(chosen)

    def state(self) -> torch.Tensor:
        """The stored images ``[K, C, H, W]`` on the CPU (``[0]`` when empty)."""
        return torch.cat(self.images).cpu() if self.images else torch.zeros(0)

    def load_state(self, stored: torch.Tensor, device: torch.device | str = "cpu") -> None:
        self.images = [image.unsqueeze(0).to(device) for image in stored] if stored.numel() else []


# --------------------------------------------------------------------------------------------------
# Translator files

@dataclasses.dataclass
class Translator:
    """A loaded translator: ``kind`` (``cyclegan`` / ``pix2pix``), ``generators`` (``{"a2b": G, "b2a": G}`` for
    CycleGAN, one entry for pix2pix), ``domains`` (``{"a": name, "b": name}``), ``image_size``, the ``path`` and
    its raw ``metadata``."""

    kind: str
    generators: dict
    config: GeneratorConfig
    domains: dict
    image_size: int
    path: Path
    metadata: dict

    def generator(self, direction: str) -> nn.Module:
        if direction not in DIRECTIONS:
            raise InputError(f"--direction must be a2b or b2a, got {direction!r}")
        if direction not in self.generators:
            raise InputError(f"this {self.kind} model translates {' and '.join(self.generators)} only, not "
                             f"{direction} ({self.path})")
        return self.generators[direction]


def _prefixes(kind: str, direction: str = "a2b") -> dict[str, str]:
    """State-dict prefix per direction inside a file of ``kind``."""
    return {"a2b": "g_ab.", "b2a": "g_ba."} if kind == "cyclegan" else {direction: "g."}


def save_translator(path: str | os.PathLike, kind: str, generators: Mapping[str, nn.Module], config: GeneratorConfig,
                    domains: Mapping[str, str], image_size: int, extra_metadata: Mapping[str, str] | None = None) -> None:
    """Write the generators (``{"a2b": G_AB, "b2a": G_BA}`` for CycleGAN, one of them for pix2pix) atomically as
    safetensors with the metadata of the module docstring."""
    from latentedit.io import safetensors_bytes, write_bytes

    if kind not in FORMATS:
        raise InputError(f"translator kind must be cyclegan or pix2pix, got {kind!r}")
    if kind == "cyclegan" and set(generators) != set(DIRECTIONS):
        raise InputError("a CycleGAN file holds both generators, a2b and b2a")
    if kind == "pix2pix" and len(generators) != 1:
        raise InputError("a pix2pix file holds one generator")
    direction = next(iter(generators))
    prefixes = _prefixes(kind, direction)
    tensors = {}
    for name, generator in generators.items():
        for key, tensor in generator.state_dict().items():
            tensors[prefixes[name] + key] = tensor.detach().cpu().contiguous()
    metadata = {str(k): str(v) for k, v in (extra_metadata or {}).items()}
    metadata.update({"format": FORMATS[kind], "generator": config.to_json(), "domains": json.dumps(dict(domains)),
                     "image_size": str(int(image_size))})
    if kind == "pix2pix":
        metadata["direction"] = direction
    write_bytes(path, safetensors_bytes(tensors, metadata))


def shipped_translator_path(name: str) -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("latentedit.pretrained") / SHIPPED_TRANSLATORS[name][1]))


def resolve_translator_checkpoint(name_or_path: str | os.PathLike, kind: str) -> Path:
    """The file for ``--ckpt``: a file as-is, a run folder (its ``translator.safetensors``) or a shipped name."""
    from latentedit.baselines.translation_train import EXPORT_NAME

    path = Path(name_or_path)
    if path.is_dir():
        candidate = path / EXPORT_NAME
        if candidate.is_file():
            return candidate
        raise CheckpointError(f"{path} is a folder without {EXPORT_NAME}; pass a {kind} file or its run folder")
    if path.is_file():
        return path
    name = str(name_or_path)
    if name in SHIPPED_TRANSLATORS and SHIPPED_TRANSLATORS[name][0] == kind:
        location = shipped_translator_path(name)
        if not location.is_file():
            raise CheckpointError(f"the shipped {kind} model '{name}' is not installed (expected {location}); train "
                                  f"one with 'latentedit {kind} train ... -o RUN' and pass --ckpt RUN")
        return location
    known = [n for n, (k, _) in SHIPPED_TRANSLATORS.items() if k == kind]
    raise CheckpointError(f"{name}: {kind} file not found, and not a shipped name (known: {', '.join(known)})")


def load_translator(name_or_path: str | os.PathLike, kind: str, device: str | torch.device = "cpu") -> Translator:
    """Load a file written by :func:`save_translator` of ``kind`` (or a run folder, or a shipped name), generators
    in eval mode on ``device``. :class:`CheckpointError` when the file is missing, of another kind (a StarGAN or
    the other translator) or its tensors do not fit its stored config."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if kind not in FORMATS:
        raise InputError(f"translator kind must be cyclegan or pix2pix, got {kind!r}")
    path = resolve_translator_checkpoint(name_or_path, kind)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises several unrelated types for a bad header
        raise CheckpointError(f"{path}: not a readable safetensors file ({' '.join(str(error).split())})") from None
    found = metadata.get("format")
    if found != FORMATS[kind]:
        other = {v: k for k, v in FORMATS.items()}.get(found)
        hint = f"; it is a {other} model: use 'latentedit {other} ...'" if other else ""
        raise CheckpointError(f"{path}: not a latentedit {kind} model (metadata format {found!r}, expected "
                              f"{FORMATS[kind]!r}){hint}")
    try:
        config = GeneratorConfig.from_json(metadata["generator"])
        config.validate()
        domains = json.loads(metadata["domains"])
        image_size = int(metadata["image_size"])
        direction = metadata.get("direction", "a2b")
        if kind == "pix2pix" and direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r}")
    except (KeyError, ValueError, TypeError, InputError) as error:
        raise CheckpointError(f"{path}: {kind} metadata is missing or malformed ({error})") from None
    tensors = load_file(str(path))
    generators = {}
    for name, prefix in _prefixes(kind, direction).items():
        generator = build_generator(config, init=False)
        state = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        try:
            generator.load_state_dict(state, strict=True)
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0]
            raise CheckpointError(f"{path}: weights do not match the stored {kind} generator config "
                                  f"({first_line})") from None
        generators[name] = generator.to(device).eval()
    unused = [key for key in tensors if not any(key.startswith(p) for p in _prefixes(kind, direction).values())]
    if unused:
        raise CheckpointError(f"{path}: unexpected tensors {', '.join(unused[:3])} in a {kind} file")
    return Translator(kind, generators, config, dict(domains), image_size, path, metadata)


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(layer, nn.BatchNorm2d) for layer in module.modules())


@torch.no_grad()
def translate(generator: nn.Module, images: torch.Tensor, batch_size: int = 16, norm_stats: str = "image"
              ) -> torch.Tensor:
    """``generator(images [N, 3, S, S])`` -> ``[N, 3, S, S]`` on the CPU, dropout off.

    Batch norm (pix2pix) follows the reference's test script, which leaves the networks in training mode:
    ``norm_stats="image"`` (default) normalises each image with its own statistics (one image at a time, as
    the reference tests with batch 1; the stored running averages are left unchanged); ``"running"`` uses the
    running averages (the reference's ``--eval``). Instance-norm generators are unaffected and run in batches.
    Unlike the reference test script, dropout is off, so translations are deterministic.
    """
    if norm_stats not in ("image", "running"):
        raise InputError(f"norm statistics must be image or running, got {norm_stats!r}")
    device = next(generator.parameters()).device
    batch_norms = [layer for layer in generator.modules() if isinstance(layer, nn.BatchNorm2d)]
    per_image = bool(batch_norms) and norm_stats == "image"
    saved = [(layer.training, layer.momentum, None if layer.num_batches_tracked is None
              else layer.num_batches_tracked.clone()) for layer in batch_norms]
    generator.eval()
    if per_image:
        for layer in batch_norms:
            layer.train()
            layer.momentum = 0.0  # batch statistics, running averages untouched
    try:
        step = 1 if per_image else batch_size
        outputs = [generator(images[begin:begin + step].to(device)).cpu() for begin in range(0, images.shape[0], step)]
    finally:
        for layer, (training, momentum, tracked) in zip(batch_norms, saved):
            layer.train(training)
            layer.momentum = momentum
            if tracked is not None:
                layer.num_batches_tracked.copy_(tracked)
    return torch.cat(outputs) if outputs else images.new_zeros(images.shape)
