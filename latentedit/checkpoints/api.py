"""Load, inspect and convert StyleGAN2 and StyleGAN3 checkpoints of every supported format (SPEC §1.1).

Formats (detected from the file's bytes, never its name): rosinality ``.pt`` (converted or training
checkpoints), NVIDIA stylegan2-ada and stylegan3 ``.pkl`` and latentedit's native ``.safetensors``. A
StyleGAN3 generator (detected from the pickled classes and state, or from the native metadata) loads as an
:class:`~latentedit.model.sg3.SG3Generator`, which has the StyleGAN2 generator's interface. Nothing in a
file is ever executed; every problem is a one-line :class:`~latentedit.errors.CheckpointError`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch

from latentedit.checkpoints import native, nvidia, nvidia_sg3, rosinality
from latentedit.checkpoints.reading import RawCheckpoint, read_checkpoint
from latentedit.checkpoints.rosinality import NetworkWeights
from latentedit.errors import CheckpointError, InputError
from latentedit.io import sha256_file
from latentedit.model import Discriminator, Generator, GeneratorConfig
from latentedit.model.sg3 import SG3Config, SG3Generator
from latentedit.pretrained import DEFAULT_CHECKPOINT, resolve_checkpoint

#: How :func:`load_generator` computes w_avg when a checkpoint stores none (``Generator.compute_w_avg``).
W_AVG_SAMPLES = 10000
W_AVG_SEED = 0


@dataclasses.dataclass
class CheckpointInfo:
    """What was loaded and from where.

    ``path``: the resolved file; ``sha256``: hex digest of its bytes; ``source_format``: ``rosinality``,
    ``rosinality-train``, ``nvidia-pkl`` or ``safetensors``; ``network``: the entry that was loaded
    (``g_ema``, ``g``, ``G_ema``, ``d``, ``D``, ``generator``, ...); ``contents``: the networks the file
    holds; ``config``: the architecture (GeneratorConfig or DiscriminatorConfig); ``num_parameters``:
    number of learnable scalars; ``w_avg_source``: where the generator's mean w came from (None for a
    discriminator); ``notes``: everything a user should know (filled noise, fp16, non-EMA weights...);
    ``provenance``: extra metadata of native files (e.g. the original format and sha256).
    """

    path: str
    sha256: str
    source_format: str
    network: str
    contents: list[str]
    config: Any
    num_parameters: int
    w_avg_source: str | None
    notes: list[str]
    provenance: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict; ``config`` becomes its ``to_dict()``."""
        data = dataclasses.asdict(self)
        data["config"] = self.config.to_dict()
        return data


class LoadedGenerator(NamedTuple):
    """``(generator, info)``: an eval-mode :class:`Generator` (or :class:`SG3Generator`) with ``w_avg`` set, and
    its :class:`CheckpointInfo`."""

    generator: Generator | SG3Generator
    info: CheckpointInfo


class LoadedDiscriminator(NamedTuple):
    """``(discriminator, info)``: an eval-mode :class:`Discriminator` and its :class:`CheckpointInfo`."""

    discriminator: Discriminator
    info: CheckpointInfo


def _generator_weights(raw: RawCheckpoint) -> NetworkWeights:
    if raw.container == "safetensors":
        return native.native_weights(raw.content, raw.metadata, raw.path, "generator")
    if raw.container == "pickle" and isinstance(raw.content, dict) and ("G_ema" in raw.content or "G" in raw.content):
        if nvidia_sg3.is_stylegan3(raw.content):
            return nvidia_sg3.generator_weights(raw.content, raw.path)
        return nvidia.generator_weights(raw.content, raw.path)
    return rosinality.generator_weights(raw.content, raw.path)


def _discriminator_weights(raw: RawCheckpoint) -> NetworkWeights:
    if raw.container == "safetensors":
        return native.native_weights(raw.content, raw.metadata, raw.path, "discriminator")
    if raw.container == "pickle" and isinstance(raw.content, dict) and "D" in raw.content:
        return nvidia.discriminator_weights(raw.content, raw.path)
    return rosinality.discriminator_weights(raw.content, raw.path)


def _build_generator(weights: NetworkWeights, path: Path) -> tuple[Generator | SG3Generator, list[str]]:
    """A Generator holding ``weights`` (strict load), plus notes about filled-in noise buffers and dtypes."""
    sd = dict(weights.state_dict)
    if isinstance(weights.config, SG3Config):  # the loaders read a StyleGAN3 architecture from state and shapes
        generator = SG3Generator(weights.config)
        rosinality.load_strict(generator, sd, path, "generator")
        return generator, [n for n in [rosinality.dtype_note(sd)] if n]
    config = rosinality.infer_generator_config(sd, path, conv_clamp=weights.conv_clamp)
    if weights.config is not None:  # native files state lr_mlp and blur taps too, which shapes cannot tell
        rosinality.check_stated_config(weights.config, config, path, ("size", "style_dim", "n_mlp", "channels"))
        config = weights.config
    notes = []
    filled = rosinality.fill_missing_noise(sd, config.num_layers)
    if filled:
        notes.append(rosinality.noise_note(filled, config.num_layers))
    dtype_note = rosinality.dtype_note(sd)
    if dtype_note:
        notes.append(dtype_note)
    generator = Generator(config)
    rosinality.load_strict(generator, sd, path, "generator")
    return generator, notes


def _info(path: Path, weights: NetworkWeights, config, module: torch.nn.Module, w_avg_source: str | None,
          notes: list[str], provenance: dict[str, str]) -> CheckpointInfo:
    return CheckpointInfo(path=str(path), sha256=sha256_file(path), source_format=weights.source_format,
                          network=weights.network, contents=list(weights.contents), config=config,
                          num_parameters=sum(p.numel() for p in module.parameters()), w_avg_source=w_avg_source,
                          notes=list(weights.notes) + notes, provenance=provenance)


def _load_generator(path_or_name: str | os.PathLike, device: str | torch.device, compute_w_avg: bool,
                    trainable: bool) -> tuple[Generator, CheckpointInfo, str | None]:
    """:func:`load_generator`, plus the w_avg provenance text that a native copy should record."""
    path = resolve_checkpoint(path_or_name)
    raw = read_checkpoint(path)
    weights = _generator_weights(raw)
    generator, notes = _build_generator(weights, path)
    generator = generator.to(device).eval().requires_grad_(trainable)
    w_avg_history = weights.w_avg_history
    if weights.w_avg is not None:
        if tuple(weights.w_avg.shape) != (generator.w_dim,):
            raise CheckpointError(f"{path}: stored {weights.w_avg_origin} has {weights.w_avg.numel()} values, but the "
                                  f"generator's w has {generator.w_dim}")
        generator.set_w_avg(weights.w_avg)
        w_avg_source = f"stored in checkpoint ({weights.w_avg_origin})"
    elif compute_w_avg:
        generator.set_w_avg(generator.compute_w_avg(num_samples=W_AVG_SAMPLES, seed=W_AVG_SEED))
        w_avg_history = f"computed: mean of mapping(z) over {W_AVG_SAMPLES} N(0, 1) samples, seed {W_AVG_SEED}"
        w_avg_source = f"{w_avg_history} (the checkpoint stores none)"
    else:
        w_avg_source = "not stored in checkpoint (not computed)"
    provenance = native.provenance(raw.metadata) if raw.container == "safetensors" else {}
    info = _info(path, weights, generator.config, generator, w_avg_source, notes, provenance)
    return generator, info, w_avg_history


def load_generator(path_or_name: str | os.PathLike = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu",
                   compute_w_avg: bool = True, trainable: bool = False) -> LoadedGenerator:
    """Load the generator of any supported checkpoint (a path or a shipped name such as ``toyfaces64``).

    Picks ``g_ema`` over ``g`` (rosinality) and ``G_ema`` over ``G`` (NVIDIA). The architecture is inferred
    from tensor shapes (native files: from their metadata) and loaded with ``strict=True``; stored noise
    buffers that are missing are generated deterministically (see ``info.notes``). ``w_avg`` is the stored
    ``latent_avg`` / ``mapping.w_avg`` / native ``w_avg``; when there is none and ``compute_w_avg`` is
    true it is the mean of ``mapping(z)`` over :data:`W_AVG_SAMPLES` N(0, 1) samples drawn with seed
    :data:`W_AVG_SEED` (``info.w_avg_source`` says which). The generator is in eval mode on ``device``;
    its parameters have ``requires_grad = trainable``.
    """
    generator, info, _ = _load_generator(path_or_name, device, compute_w_avg, trainable)
    return LoadedGenerator(generator, info)


def load_discriminator(path_or_name: str | os.PathLike, device: str | torch.device = "cpu",
                       trainable: bool = False) -> LoadedDiscriminator:
    """Load the discriminator of a rosinality training checkpoint (``d``), an NVIDIA pickle (``D``) or a
    native discriminator file; eval mode on ``device``, ``requires_grad = trainable``.

    Raises CheckpointError when the file holds no discriminator (e.g. converted rosinality weights).
    """
    path = resolve_checkpoint(path_or_name)
    raw = read_checkpoint(path)
    weights = _discriminator_weights(raw)
    sd = dict(weights.state_dict)
    config = rosinality.infer_discriminator_config(sd, path, stddev_group=weights.stddev_group)
    if weights.config is not None:
        rosinality.check_stated_config(weights.config, config, path, ("size", "channels"))
        config = weights.config
    discriminator = Discriminator(config)
    rosinality.load_strict(discriminator, sd, path, "discriminator")
    notes = [n for n in [rosinality.dtype_note(sd)] if n]
    discriminator = discriminator.to(device).eval().requires_grad_(trainable)
    provenance = native.provenance(raw.metadata) if raw.container == "safetensors" else {}
    return LoadedDiscriminator(discriminator, _info(path, weights, config, discriminator, None, notes, provenance))


def inspect_checkpoint(path_or_name: str | os.PathLike) -> dict:
    """Everything ``latentedit info`` reports about a checkpoint's generator, as a JSON-ready dict.

    Keys: ``path``, ``sha256``, ``source_format``, ``network``, ``contents``, ``config`` (GeneratorConfig
    dict), ``size``, ``style_dim``, ``n_mlp``, ``num_ws``, ``num_noise_layers``, ``channels``
    (``{"4": C, ...}``), ``conv_clamp``, ``num_parameters``, ``w_avg_source``, ``notes``, ``provenance``.
    Loads the weights on CPU (validating them) but does not compute a missing w_avg.
    """
    _, info = load_generator(path_or_name, device="cpu", compute_w_avg=False)
    report = info.to_dict()
    if isinstance(info.config, SG3Config):
        return _stylegan3_report(report, info.config)
    config: GeneratorConfig = info.config
    report.update(size=config.size, style_dim=config.style_dim, n_mlp=config.n_mlp, num_ws=config.num_ws,
                  num_noise_layers=config.num_layers, channels={str(k): v for k, v in config.channels.items()},
                  conv_clamp=config.conv_clamp)
    return report


def _stylegan3_report(report: dict, config: SG3Config) -> dict:
    """:func:`inspect_checkpoint`'s keys for a StyleGAN3 generator, plus ``architecture`` and ``layers``.

    ``channels`` maps ``input`` and each layer name to its output channel count; ``num_noise_layers`` is 0.
    """
    channels = {"input": config.input_channels}
    channels.update({layer.name or f"L{i}": layer.out_channels for i, layer in enumerate(config.layers)})
    report.update(architecture=config.kind, size=config.img_resolution, style_dim=config.w_dim, z_dim=config.z_dim,
                  n_mlp=config.mapping_layers, num_ws=config.num_ws, num_noise_layers=0, channels=channels,
                  conv_clamp=config.conv_clamp,
                  layers=[{"name": layer.name, "in_channels": layer.in_channels, "out_channels": layer.out_channels,
                           "kernel": layer.kernel_size, "in_size": layer.in_size, "out_size": layer.out_size,
                           "in_sampling_rate": layer.in_sampling_rate, "out_sampling_rate": layer.out_sampling_rate,
                           "in_cutoff": layer.in_cutoff, "out_cutoff": layer.out_cutoff, "up": layer.up,
                           "down": layer.down, "padding": layer.padding, "up_filter": layer.up_filter_shape,
                           "down_filter": layer.down_filter_shape, "radial": layer.radial, "torgb": layer.is_torgb,
                           "critically_sampled": layer.is_critically_sampled}
                          for layer in config.layers])
    return report


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike) -> CheckpointInfo:
    """Read the generator of ``source`` (any supported format) and write it to ``destination`` in the native
    safetensors format (atomically), recording the source format and sha256 in the metadata.

    ``destination`` must end in ``.safetensors`` (InputError otherwise). Returns the info of the written file.
    """
    destination = Path(destination)
    if destination.suffix != ".safetensors":
        raise InputError(f"{destination}: the output of convert must be a .safetensors file")
    generator, info, w_avg_history = _load_generator(source, "cpu", compute_w_avg=True, trainable=False)
    extra = {"source_format": info.source_format, "source_sha256": info.sha256, "source_network": info.network}
    if info.notes:
        extra["source_notes"] = "; ".join(info.notes)
    native.save_native(generator, destination, extra_metadata=extra, w_avg_source=w_avg_history)
    return load_generator(destination, device="cpu").info
