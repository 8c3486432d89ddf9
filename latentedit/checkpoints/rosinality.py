"""The rosinality state-dict layout: find the networks in a checkpoint and infer their architecture.

Every format is converted to this layout (it is the module tree of :class:`~latentedit.model.Generator`
and :class:`~latentedit.model.Discriminator`), so architecture inference and the strict load live here.
Architectures come from tensor shapes only (SPEC §1.1), never from file names, ``args`` or flags:

- generator: ``n_mlp`` = number of ``style.{i}.weight``; ``style_dim`` = ``style.1.weight.shape[0]``;
  ``size = 2 ** (number of to_rgbs.{j} + 2)``; ``channels[4] = input.input.shape[1]``,
  ``channels[8 * 2**j] = convs.{2j}.conv.weight.shape[1]``.
- discriminator: ``size = 2 ** (number of ResBlocks convs.{i>=1} + 2)``; ``channels[size] =
  convs.0.0.weight.shape[0]``, ``channels[size / 2**i] = convs.{i}.conv2.1.weight.shape[0]``.

The inferred module's full key/shape list is then compared with the file so that any other
architecture fails with a readable message before ``load_state_dict(strict=True)``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentedit.errors import CheckpointError
from latentedit.model import DiscriminatorConfig, GeneratorConfig, noise_shape

#: Seed of the torch CPU generator that fills noise buffers a checkpoint does not store.
NOISE_SEED = 0

#: Largest resolution accepted; a hostile file with many tiny layers must not make us allocate
#: gigantic noise buffers.
MAX_SIZE = 4096


@dataclasses.dataclass
class NetworkWeights:
    """One network's weights in the rosinality layout, with what the reader learned about them.

    ``state_dict``: name -> tensor (rosinality keys). ``source_format``: ``rosinality``,
    ``rosinality-train``, ``nvidia-pkl`` or ``safetensors``. ``network``: the entry the weights came from
    (``g_ema``, ``g``, ``d``, ``G_ema``, ``G``, ``D``, ``generator``, ``discriminator`` or ``state_dict``).
    ``contents``: the networks the file holds. ``w_avg [style_dim]``: the stored mean w, if any;
    ``w_avg_origin``: the name it was stored under (for the info); ``w_avg_history``: where its values
    came from originally (written to native files so conversions keep the provenance). ``config``: set
    when the file states the architecture (native files); otherwise it is inferred from shapes.
    ``conv_clamp``: NVIDIA activation clamp. ``stddev_group``: discriminator minibatch-stddev group.
    """

    state_dict: dict[str, torch.Tensor]
    source_format: str
    network: str
    contents: list[str]
    w_avg: torch.Tensor | None = None
    w_avg_origin: str | None = None
    w_avg_history: str | None = None
    config: Any = None
    conv_clamp: float | None = None
    stddev_group: int = 4
    notes: list[str] = dataclasses.field(default_factory=list)


def tensor_dict(obj: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    """``obj`` as a ``{str: Tensor}`` dict; CheckpointError if it is anything else."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: {what} is a {type(obj).__name__}, not a state dict of tensors")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: {what} holds entries that are not tensors (e.g. {bad[0]!r}); not a "
                              f"StyleGAN2 state dict")
    return dict(obj)


def _shape(sd: Mapping[str, torch.Tensor], key: str, rank: int, path: Path, what: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{path}: {what} lacks '{key}'; not a StyleGAN2 {what} in the rosinality layout")
    shape = tuple(sd[key].shape)
    if len(shape) != rank:
        raise CheckpointError(f"{path}: '{key}' has shape {list(shape)}, expected {rank} dimensions")
    return shape


def _count(sd: Mapping[str, Any], pattern: str, start: int) -> int:
    count = 0
    while pattern.format(start + count) in sd:
        count += 1
    return count


def _check_size(size: int, path: Path) -> None:
    if size > MAX_SIZE:
        raise CheckpointError(f"{path}: the layers describe a {size}x{size} network; sizes above {MAX_SIZE} are not "
                              f"supported")


def check_stated_config(stated, inferred, path: Path, fields: tuple[str, ...]) -> None:
    """CheckpointError unless the config a file states agrees with the one its tensor shapes imply."""
    differing = [f"{name} {getattr(stated, name)} vs {getattr(inferred, name)}" for name in fields
                 if getattr(stated, name) != getattr(inferred, name)]
    if differing:
        raise CheckpointError(f"{path}: the architecture in the metadata disagrees with the tensor shapes "
                              f"({'; '.join(differing)})")


def looks_like_generator(sd: Mapping[str, Any]) -> bool:
    """True when a mapping has the rosinality generator's first keys (``style.1.weight``, ``input.input``)."""
    return "style.1.weight" in sd and "input.input" in sd


def infer_generator_config(sd: Mapping[str, torch.Tensor], path: Path,
                           conv_clamp: float | None = None) -> GeneratorConfig:
    """Architecture of a rosinality-layout generator state dict, from tensor shapes only."""
    what = "generator"
    n_mlp = _count(sd, "style.{}.weight", 1)
    if n_mlp == 0:
        raise CheckpointError(f"{path}: the generator has no mapping layers ('style.1.weight'); not a StyleGAN2 "
                              f"generator")
    style_dim, style_in = _shape(sd, "style.1.weight", 2, path, what)
    if style_dim != style_in:
        raise CheckpointError(f"{path}: mapping layer 'style.1.weight' is {style_in}->{style_dim}; StyleGAN2 needs "
                              f"z and w of the same size")
    num_rgb = _count(sd, "to_rgbs.{}.conv.weight", 0)
    if num_rgb == 0:
        raise CheckpointError(f"{path}: the generator has no 'to_rgbs.0' layer; not a StyleGAN2 generator of size >= 8")
    size = 2 ** (num_rgb + 2)
    _check_size(size, path)
    channels = {4: _shape(sd, "input.input", 4, path, what)[1]}
    for j in range(num_rgb):
        channels[8 * 2 ** j] = _shape(sd, f"convs.{2 * j}.conv.weight", 5, path, what)[1]
    return GeneratorConfig(size=size, style_dim=style_dim, n_mlp=n_mlp, channels=channels, conv_clamp=conv_clamp)


def infer_discriminator_config(sd: Mapping[str, torch.Tensor], path: Path,
                               stddev_group: int = 4) -> DiscriminatorConfig:
    """Architecture of a rosinality-layout discriminator state dict, from tensor shapes only."""
    what = "discriminator"
    top_channels = _shape(sd, "convs.0.0.weight", 4, path, what)[0]
    num_blocks = _count(sd, "convs.{}.conv1.0.weight", 1)
    if num_blocks == 0:
        raise CheckpointError(f"{path}: the discriminator has no residual blocks ('convs.1.conv1.0.weight'); not a "
                              f"StyleGAN2 discriminator")
    size = 2 ** (num_blocks + 2)
    _check_size(size, path)
    channels = {size: top_channels}
    for i in range(1, num_blocks + 1):
        channels[size >> i] = _shape(sd, f"convs.{i}.conv2.1.weight", 4, path, what)[0]
    return DiscriminatorConfig(size=size, channels=channels, stddev_group=stddev_group)


def fill_missing_noise(sd: dict[str, torch.Tensor], num_layers: int) -> list[int]:
    """Add the ``noises.noise_{i}`` buffers ``sd`` lacks, drawn from N(0, 1) with a CPU generator seeded
    :data:`NOISE_SEED` (buffer i uses the i-th draw, so the result does not depend on which are missing).
    Returns the indices that were filled.
    """
    generator = torch.Generator().manual_seed(NOISE_SEED)
    filled = []
    for i in range(num_layers):
        draw = torch.randn(noise_shape(i), generator=generator)
        key = f"noises.noise_{i}"
        if key not in sd:
            sd[key] = draw
            filled.append(i)
    return filled


def noise_note(filled: list[int], num_layers: int) -> str:
    which = "no stored noise buffers" if len(filled) == num_layers else f"noise buffers {filled} not stored"
    return (f"{which}: const noise generated deterministically (torch.randn, CPU generator seeded {NOISE_SEED}); "
            f"images will not match the original training code's const noise")


def load_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    """Check ``sd`` against ``model``'s keys and shapes with a readable error, then load with strict=True."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [f"{k} {list(sd[k].shape)} (expected {list(expected[k].shape)})" for k in expected
                  if k in sd and sd[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if mismatched:
            problems.append(f"{len(mismatched)} with other shapes (e.g. {'; '.join(mismatched[:2])})")
        raise CheckpointError(f"{path}: the {what} tensors do not form the StyleGAN2 architecture inferred from "
                              f"their shapes: {', '.join(problems)}")
    model.load_state_dict(dict(sd), strict=True)


def dtype_note(sd: Mapping[str, torch.Tensor]) -> str | None:
    """A note when tensors are stored in a dtype other than float32 (they are loaded as float32)."""
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in sd.values() if t.dtype != torch.float32})
    if dtypes:
        return f"tensors stored as {', '.join(dtypes)} were converted to float32"
    return None


def _w_avg_vector(value: Any, path: Path, key: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim not in (1, 2) or (value.ndim == 2 and value.shape[0] != 1):
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise CheckpointError(f"{path}: '{key}' must be a [style_dim] tensor, got {shape}")
    return value.reshape(-1).float()


def generator_weights(obj: Any, path: Path) -> NetworkWeights:
    """Pick the generator of a rosinality checkpoint: ``g_ema`` if present, else ``g``, else a bare state dict.

    ``obj`` is a converted checkpoint ``{"g_ema", "latent_avg"[, "g", "d"]}``, a training checkpoint
    ``{"g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p"}`` or a generator state dict.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict; not a StyleGAN2 "
                              f"checkpoint")
    is_training = "args" in obj or "g_optim" in obj
    source_format = "rosinality-train" if is_training else "rosinality"
    contents = [k for k in ("g_ema", "g", "d") if k in obj]
    notes = []
    if "g_ema" in obj:
        network = "g_ema"
    elif "g" in obj:
        network = "g"
        notes.append("the file has no 'g_ema': loaded the non-EMA training generator 'g'")
    elif looks_like_generator(obj):
        return NetworkWeights(tensor_dict(obj, path, "the state dict"), "rosinality", "state_dict", ["state_dict"])
    else:
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        raise CheckpointError(f"{path}: no StyleGAN2 generator found (expected a 'g_ema' or 'g' entry or generator "
                              f"keys such as 'style.1.weight'; found {keys})")
    if is_training and network == "g_ema":
        notes.append("training checkpoint: loaded 'g_ema' (the file also holds "
                     f"{', '.join(repr(k) for k in obj if k != 'g_ema')})")
    weights = NetworkWeights(tensor_dict(obj[network], path, f"'{network}'"), source_format, network, contents,
                             notes=notes)
    if "latent_avg" in obj:
        weights.w_avg = _w_avg_vector(obj["latent_avg"], path, "latent_avg")
        weights.w_avg_origin = "'latent_avg'"
        weights.w_avg_history = f"'latent_avg' of a {source_format} checkpoint"
    return weights


def discriminator_weights(obj: Any, path: Path) -> NetworkWeights:
    """The ``d`` entry of a rosinality checkpoint (training checkpoints; some converted ones)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict")
    contents = [k for k in ("g_ema", "g", "d") if k in obj]
    if "d" not in obj:
        raise CheckpointError(f"{path}: no discriminator in this checkpoint (no 'd' entry; converted checkpoints "
                              f"usually hold only the generator)")
    source_format = "rosinality-train" if ("args" in obj or "d_optim" in obj) else "rosinality"
    return NetworkWeights(tensor_dict(obj["d"], path, "'d'"), source_format, "d", contents)
