"""StarGAN (Choi et al. 2018): generator, discriminator, translation labels, and generator files.

The networks follow the official implementation (SPEC §6); module and state-dict names are this
project's own.

Generator (:class:`StarGANGenerator`), input ``image [N, 3, H, W]`` in [-1, 1] concatenated with the
target label ``[N, c_dim]`` tiled to ``H x W`` (``3 + c_dim`` channels):

- Conv7x7 s1 p3 -> IN -> ReLU (``conv_dim``),
- two Conv4x4 s2 p1 -> IN -> ReLU (``2 conv_dim``, ``4 conv_dim``),
- ``repeat_num`` residual blocks at ``4 conv_dim``: Conv3x3 -> IN -> ReLU -> Conv3x3 -> IN, plus the input,
- two ConvTranspose4x4 s2 p1 -> IN -> ReLU (``2 conv_dim``, ``conv_dim``),
- Conv7x7 s1 p3 -> tanh (3 channels).

No convolution has a bias; padding is zeros; IN is ``InstanceNorm2d(affine=True,
track_running_stats=True)``. ``H`` and ``W`` must be multiples of 4. At the defaults (conv_dim 64,
c_dim 5, 6 blocks) it has 8,430,528 parameters, independent of the image size.

Normalisation always uses each image's own statistics, in training and in ``eval()`` mode alike. The
official code never switches its generator to eval mode, so its test-time translations use instance
statistics too; the running averages are tracked during training (so the state holds what the
official architecture holds) but are never used to normalise.

Discriminator (:class:`StarGANDiscriminator`), input ``image [N, 3, S, S]``:

- Conv4x4 s2 p1 (3 -> ``conv_dim``, with bias) -> LeakyReLU(0.01), then ``repeat_num - 1`` more
  Conv4x4 s2 p1 (with bias) -> LeakyReLU(0.01), each doubling the channels; no normalisation,
- realness head: Conv3x3 s1 p1 -> 1 channel, no bias: a patch map ``[N, 1, S / 2^r, S / 2^r]``,
- classification head: Conv k x k (``k = S / 2^repeat_num``), no bias -> ``[N, c_dim]`` logits.

At 128 px, conv_dim 64, 6 layers and c_dim 5 it has 44,762,048 parameters.

Translation labels (:func:`single_attribute_targets`, used for sample grids, and :func:`apply_changes`,
used by ``stargan transfer``): hair colours (``Black_Hair``, ``Blond_Hair``, ``Brown_Hair``,
``Gray_Hair``, whichever the model has) are exclusive: setting one to 1 clears the others.

Generator files (:func:`save_stargan_generator` / :func:`load_stargan_generator`): safetensors with every
state tensor (float32 weights, running statistics, int64 step counters) and the metadata
``format = latentedit-stargan-generator``, ``config`` (JSON of :class:`StarGANGeneratorConfig`),
``attribute_names`` (JSON list, label order), ``image_size`` and ``crop_size`` (the training
transform), plus free-form extras (iterations, data, ...). Files of other generator kinds add
``architecture`` (``faststyle``: :class:`latentedit.baselines.faststyle.FastStyleNet`; absent means StarGAN's
generator) and models trained on exclusive categories (a class-folder layout) add ``label_mode = exclusive``:
their labels are one-hot over the categories in ``attribute_names``. StarGAN files on attributes carry neither
key, so their bytes are unchanged.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentedit.errors import CheckpointError, InputError

#: Hair-colour attributes (CelebA names); a face has at most one, so setting one clears the others.
HAIR_COLOURS: tuple[str, ...] = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
#: The attributes of the StarGAN paper's CelebA model, in its label order.
DEFAULT_ATTRIBUTES: tuple[str, ...] = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")

GENERATOR_FORMAT = "latentedit-stargan-generator"
#: The StarGAN ``--ckpt`` commands use when none is given.
DEFAULT_STARGAN = "stargan_toyfaces64"
#: Shipped StarGAN name -> file name inside ``latentedit/pretrained/``.
SHIPPED_STARGANS = {"stargan_toyfaces64": "stargan_toyfaces64.safetensors"}


# --------------------------------------------------------------------------------------------------
# Configurations

@dataclasses.dataclass(frozen=True)
class StarGANGeneratorConfig:
    """Shape of a :class:`StarGANGenerator`: label size ``c_dim``, width ``conv_dim`` of the first
    layer (the bottleneck has ``4 conv_dim``), and ``repeat_num`` residual blocks."""

    c_dim: int = 5
    conv_dim: int = 64
    repeat_num: int = 6

    def validate(self) -> None:
        """Raise :class:`InputError` when a field is not a positive integer (repeat_num may be 0)."""
        for name, minimum in (("c_dim", 1), ("conv_dim", 1), ("repeat_num", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < minimum:
                raise InputError(f"generator {name} must be an integer >= {minimum}, got {value!r}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StarGANGeneratorConfig":
        raw = json.loads(text)
        return cls(c_dim=int(raw["c_dim"]), conv_dim=int(raw["conv_dim"]), repeat_num=int(raw["repeat_num"]))


@dataclasses.dataclass(frozen=True)
class StarGANDiscriminatorConfig:
    """Shape of a :class:`StarGANDiscriminator`: input ``image_size`` (a multiple of
    ``2 ** repeat_num``), label size ``c_dim``, first width ``conv_dim``, ``repeat_num`` strided convs."""

    image_size: int = 128
    c_dim: int = 5
    conv_dim: int = 64
    repeat_num: int = 6

    @property
    def class_kernel(self) -> int:
        """Kernel of the classification head: the side of the last feature map, ``image_size / 2^repeat_num``."""
        return self.image_size // 2 ** self.repeat_num

    def validate(self) -> None:
        """Raise :class:`InputError` for non-positive fields or an image size the layers cannot halve."""
        for name in ("image_size", "c_dim", "conv_dim", "repeat_num"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"discriminator {name} must be a positive integer, got {value!r}")
        if self.image_size % 2 ** self.repeat_num:
            raise InputError(f"the image size {self.image_size} must be a multiple of 2^{self.repeat_num} = "
                             f"{2 ** self.repeat_num} for {self.repeat_num} discriminator layers; change "
                             "--image-size or --d-repeat-num (e.g. 6 layers at 128 px, 5 at 64 px)")


# --------------------------------------------------------------------------------------------------
# Layers

class InstanceStatsNorm(nn.InstanceNorm2d):
    """``InstanceNorm2d(affine=True, track_running_stats=True)`` that normalises with each image's own
    statistics in eval mode too (see the module docstring); in training mode it also updates the
    running averages, exactly as the parent does."""

    def __init__(self, channels: int):
        super().__init__(channels, affine=True, track_running_stats=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        return F.instance_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class _ConvNormReLU(nn.Module):
    """``conv -> InstanceStatsNorm -> ReLU`` around a given (bias-free) convolution."""

    def __init__(self, conv: nn.Module, channels: int):
        super().__init__()
        self.conv = conv
        self.norm = InstanceStatsNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class _ResidualBlock(nn.Module):
    """``x + IN(conv3x3(ReLU(IN(conv3x3(x)))))`` at constant width."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm_a = InstanceStatsNorm(channels)
        self.conv_b = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm_b = InstanceStatsNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.norm_b(self.conv_b(F.relu(self.norm_a(self.conv_a(x)))))
        return x + residual


# --------------------------------------------------------------------------------------------------
# Networks

class StarGANGenerator(nn.Module):
    """The StarGAN generator (module docstring). ``forward(images [N, 3, H, W] in [-1, 1], labels
    [N, c_dim] (0/1 floats)) -> images [N, 3, H, W]`` in (-1, 1); ``H, W`` multiples of 4."""

    def __init__(self, config: StarGANGeneratorConfig | None = None):
        super().__init__()
        config = config if config is not None else StarGANGeneratorConfig()
        config.validate()
        self.config = config
        width = config.conv_dim
        self.stem = _ConvNormReLU(nn.Conv2d(3 + config.c_dim, width, 7, 1, 3, bias=False), width)
        self.down = nn.Sequential(
            _ConvNormReLU(nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), 2 * width),
            _ConvNormReLU(nn.Conv2d(2 * width, 4 * width, 4, 2, 1, bias=False), 4 * width),
        )
        self.blocks = nn.Sequential(*[_ResidualBlock(4 * width) for _ in range(config.repeat_num)])
        self.up = nn.Sequential(
            _ConvNormReLU(nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False), 2 * width),
            _ConvNormReLU(nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), width),
        )
        self.to_rgb = nn.Conv2d(width, 3, 7, 1, 3, bias=False)

    @property
    def c_dim(self) -> int:
        return self.config.c_dim

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"images must be [N, 3, H, W], got {list(images.shape)}")
        if images.shape[2] % 4 or images.shape[3] % 4:
            raise InputError(f"image height and width must be multiples of 4, got {list(images.shape[2:])}")
        if labels.shape != (images.shape[0], self.config.c_dim):
            raise InputError(f"labels must be [N={images.shape[0]}, c_dim={self.config.c_dim}], got "
                             f"{list(labels.shape)}")
        label_map = labels.to(images.dtype)[:, :, None, None].expand(-1, -1, images.shape[2], images.shape[3])
        x = self.stem(torch.cat([images, label_map], dim=1))
        x = self.up(self.blocks(self.down(x)))
        return torch.tanh(self.to_rgb(x))


class StarGANDiscriminator(nn.Module):
    """The StarGAN discriminator (module docstring). ``forward(images [N, 3, S, S]) -> (realness
    [N, 1, S / 2^r, S / 2^r], class logits [N, c_dim])`` with ``S = config.image_size``."""

    def __init__(self, config: StarGANDiscriminatorConfig | None = None):
        super().__init__()
        config = config if config is not None else StarGANDiscriminatorConfig()
        config.validate()
        self.config = config
        layers: list[nn.Module] = []
        in_channels, out_channels = 3, config.conv_dim
        for _ in range(config.repeat_num):
            layers += [nn.Conv2d(in_channels, out_channels, 4, 2, 1), nn.LeakyReLU(0.01)]
            in_channels, out_channels = out_channels, out_channels * 2
        self.trunk = nn.Sequential(*layers)
        self.realness = nn.Conv2d(in_channels, 1, 3, 1, 1, bias=False)
        self.classify = nn.Conv2d(in_channels, config.c_dim, config.class_kernel, bias=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise InputError(f"the discriminator takes [N, 3, {size}, {size}] images, got {list(images.shape)}")
        features = self.trunk(images)
        return self.realness(features), self.classify(features).flatten(1)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable scalars (buffers such as running statistics excluded)."""
    return sum(param.numel() for param in module.parameters())


# --------------------------------------------------------------------------------------------------
# Labels

def hair_indices(attribute_names: Sequence[str]) -> list[int]:
    """Positions of the hair-colour attributes (:data:`HAIR_COLOURS`) in ``attribute_names``."""
    return [i for i, name in enumerate(attribute_names) if name in HAIR_COLOURS]


def single_attribute_targets(labels: torch.Tensor, attribute_names: Sequence[str]) -> list[torch.Tensor]:
    """The official translation targets: one ``[N, c_dim]`` label tensor per attribute, in order.

    For a hair colour: that colour set to 1 and every other hair colour to 0. For any other
    attribute: that attribute flipped (``1 - value``). ``labels [N, c_dim]`` holds 0/1 values.
    """
    if labels.ndim != 2 or labels.shape[1] != len(attribute_names):
        raise InputError(f"labels must be [N, {len(attribute_names)}], got {list(labels.shape)}")
    hair = hair_indices(attribute_names)
    targets = []
    for index in range(len(attribute_names)):
        target = labels.clone()
        if index in hair:
            target[:, hair] = 0
            target[:, index] = 1
        else:
            target[:, index] = 1 - target[:, index]
        targets.append(target)
    return targets


def parse_assignments(items: Sequence[str], attribute_names: Sequence[str], option: str = "--set") -> dict[str, int]:
    """``["Blond_Hair=1", "Male=0"]`` (or comma-joined items) -> ``{"Blond_Hair": 1, "Male": 0}``.

    Names must be in ``attribute_names`` and values 0 or 1; raises :class:`InputError` naming ``option``
    for a malformed item, an unknown name (listing the valid ones), a bad value, or a name given twice
    with different values.
    """
    assignments: dict[str, int] = {}
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name:
                raise InputError(f"{option} takes NAME=0|1 (e.g. {option} Blond_Hair=1), got {part!r}")
            if name not in attribute_names:
                raise InputError(f"{option}: unknown attribute {name!r}; this model has: {', '.join(attribute_names)}")
            if value not in ("0", "1"):
                raise InputError(f"{option}: {name} must be 0 or 1, got {value!r}")
            if assignments.get(name, int(value)) != int(value):
                raise InputError(f"{option}: {name} is given both 0 and 1")
            assignments[name] = int(value)
    return assignments


def apply_changes(labels: torch.Tensor, attribute_names: Sequence[str], changes: Mapping[str, int]) -> torch.Tensor:
    """Target labels ``[N, c_dim]``: ``labels`` (0/1) with ``changes`` (name -> 0|1) applied.

    A hair colour set to 1 clears the other hair colours first; every other change sets the one
    attribute as given; attributes not named keep their values. Setting two hair colours to 1 is an
    :class:`InputError`.
    """
    names = list(attribute_names)
    unknown = [name for name in changes if name not in names]
    if unknown:
        raise InputError(f"unknown attribute(s) {', '.join(unknown)}; this model has: {', '.join(names)}")
    chosen_hair = [name for name in changes if name in HAIR_COLOURS and changes[name] == 1]
    if len(chosen_hair) > 1:
        raise InputError(f"hair colours are exclusive; set only one of {', '.join(chosen_hair)} to 1")
    target = labels.clone().float()
    if chosen_hair:
        target[:, hair_indices(names)] = 0
    for name, value in changes.items():
        target[:, names.index(name)] = float(value)
    return target


# --------------------------------------------------------------------------------------------------
# Generator files

@dataclasses.dataclass(frozen=True)
class StarGANInfo:
    """What a generator file says about its model: ``attribute_names`` (label order), the training
    transform (``image_size``, ``crop_size``), the ``path`` it was read from and its raw ``metadata``."""

    attribute_names: tuple[str, ...]
    image_size: int
    crop_size: int
    path: Path
    metadata: dict
    architecture: str = "stargan"
    exclusive: bool = False


def shipped_stargan_path(name: str = DEFAULT_STARGAN) -> Path:
    """Where the shipped StarGAN ``name`` is (or would be) installed inside ``latentedit/pretrained/``."""
    import importlib.resources

    return Path(str(importlib.resources.files("latentedit.pretrained") / SHIPPED_STARGANS[name]))


def resolve_stargan_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """The generator file for ``--ckpt``: an existing file as-is, or a shipped name
    (:data:`SHIPPED_STARGANS`). Raises :class:`CheckpointError` for a folder, a shipped model that is
    not installed, or anything else."""
    path = Path(name_or_path)
    if path.exists():
        if path.is_dir():
            candidate = path / "generator.safetensors"
            if candidate.is_file():  # a training run folder
                return candidate
            raise CheckpointError(f"{path} is a folder without generator.safetensors; pass a StarGAN generator file")
        return path
    name = str(name_or_path)
    if name in SHIPPED_STARGANS:
        location = shipped_stargan_path(name)
        if not location.is_file():
            raise CheckpointError(f"the shipped StarGAN '{name}' is not installed (expected {location}); train "
                                  "one with 'latentedit stargan train ... -o RUN' and pass --ckpt "
                                  "RUN/generator.safetensors")
        return location
    raise CheckpointError(f"{name}: StarGAN generator file not found, and not a shipped name (known: "
                          f"{', '.join(sorted(SHIPPED_STARGANS))})")


def save_stargan_generator(generator: StarGANGenerator, path: str | os.PathLike, attribute_names: Sequence[str],
                           image_size: int, crop_size: int, extra_metadata: Mapping[str, str] | None = None,
                           exclusive: bool = False) -> None:
    """Write ``generator`` (all state tensors, on the CPU) as safetensors at ``path``, atomically, with the
    metadata described in the module docstring. ``extra_metadata`` values are stored as strings. ``generator``
    may also be a :class:`~latentedit.baselines.faststyle.FastStyleNet`; ``exclusive`` marks one-hot category
    labels."""

    from latentedit.io import safetensors_bytes, write_bytes

    if len(attribute_names) != generator.c_dim:
        raise InputError(f"{len(attribute_names)} attribute names for a generator with c_dim {generator.c_dim}")
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in generator.state_dict().items()}
    metadata = {str(k): str(v) for k, v in (extra_metadata or {}).items()}
    metadata.update({"format": GENERATOR_FORMAT, "config": generator.config.to_json(),
                     "attribute_names": json.dumps(list(attribute_names)), "image_size": str(int(image_size)),
                     "crop_size": str(int(crop_size))})
    architecture = getattr(generator, "architecture", "stargan")
    if architecture != "stargan":
        metadata["architecture"] = architecture
    if exclusive:
        metadata["label_mode"] = "exclusive"
    write_bytes(path, safetensors_bytes(tensors, metadata))


def load_stargan_generator(name_or_path: str | os.PathLike = DEFAULT_STARGAN,
                           device: str | torch.device = "cpu") -> tuple[StarGANGenerator, StarGANInfo]:
    """Load a generator written by :func:`save_stargan_generator` (or a shipped name, or a run folder)
    in eval mode on ``device``. Raises :class:`CheckpointError` when the file is missing, is not a
    StarGAN generator file, or its tensors do not match its stored config."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = resolve_stargan_checkpoint(name_or_path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises several unrelated types for a bad header
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") != GENERATOR_FORMAT:
        raise CheckpointError(f"{path}: not a latentedit StarGAN generator (metadata format is "
                              f"{metadata.get('format')!r}, expected {GENERATOR_FORMAT!r})")
    architecture = metadata.get("architecture", "stargan")
    try:
        if architecture == "stargan":
            config = StarGANGeneratorConfig.from_json(metadata["config"])
            generator = StarGANGenerator(config)
        elif architecture == "faststyle":
            from latentedit.baselines import faststyle

            config = faststyle.FastStyleNetConfig.from_json(metadata["config"])
            generator = faststyle.FastStyleNet(config)
        else:
            raise CheckpointError(f"{path}: unknown generator architecture {architecture!r} (known: stargan, "
                                  "faststyle); is latentedit older than the file?")
        names = tuple(str(n) for n in json.loads(metadata["attribute_names"]))
        image_size, crop_size = int(metadata["image_size"]), int(metadata["crop_size"])
    except (KeyError, ValueError, TypeError, InputError) as error:
        raise CheckpointError(f"{path}: StarGAN metadata is missing or malformed ({error})") from None
    if len(names) != config.c_dim:
        raise CheckpointError(f"{path}: {len(names)} attribute names for c_dim {config.c_dim}")
    try:
        generator.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the stored StarGAN config ({first_line})") from None
    info = StarGANInfo(attribute_names=names, image_size=image_size, crop_size=crop_size, path=path,
                       metadata=metadata, architecture=architecture,
                       exclusive=metadata.get("label_mode") == "exclusive")
    return generator.to(device).eval(), info
