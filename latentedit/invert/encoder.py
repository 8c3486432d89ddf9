"""A feed-forward encoder from an image to W+: inversion in one forward pass (issue #23).

The encoder predicts, for an image ``[N, 3, S, S]`` in [-1, 1], the W+ latent ``[N, num_ws, w_dim]`` of the
generator it was trained for, as an offset from the generator's mean w (the pSp / e4e parametrisation):
``W+ = w_mean + w_std · offsets`` where ``offsets [N, num_ws, w_dim]`` is what the network outputs, ``w_mean
[w_dim]`` is the generator's mean w and ``w_std [w_dim]`` the per-dimension spread of mapped samples. Both are
buffers of the encoder, stored in its file, so the encoder needs nothing else to produce a latent. An untrained
encoder (its last layer starts at zero) answers the mean w for every image.

Architecture (:class:`LatentEncoder`, sized by :meth:`EncoderConfig.for_generator`): the image is resized to
``input_size = min(S, 256)`` (area filter), a 3×3 stem convolution gives ``base_channels`` maps, then residual
down-sampling blocks halve the side until 4×4 (channels double per block up to ``max_channels``); each block is
``conv3×3 stride 2 → LeakyReLU(0.2) → conv3×3 → LeakyReLU`` plus a ``avg-pool → 1×1 conv`` shortcut. The 4×4 maps
are flattened into a ``hidden``-wide vector (linear + LeakyReLU) and one linear layer gives every W+ row. At the
shipped 64 px toyfaces generator (num_ws 10, w_dim 256) with the defaults (32 / 128 / 256) it has about 2.1 M
parameters (8.3 MB in float32).

Training (:func:`train_encoder`, ``latentedit encoder train``) renders its data on the fly from the generator:
``z ~ N(0, I)`` → ``w = mapping(z)`` → truncation ``ψ ~ U(psi_min, psi_max)`` per sample → W+ (the w on every row;
with probability ``mix_prob`` rows from a crossover row on come from a second sample, and every row gets Gaussian
noise of ``row_noise · w_std``, so the encoder sees genuine W+ latents, not only W) → image ``G(W+)`` with the
generator's stored noise. The loss per sample:

``latent_weight · mean(((Ŵ − W) / w_std)²) + image_weight · mean((G(Ŵ) − x)²) + lpips_weight · LPIPS(G(Ŵ), x)
+ delta_reg · mean_rows(mean((offset_row − mean_row offset)²))``

(pixels in [-1, 1]; LPIPS-VGG only when the VGG16 weights are on this machine, never downloaded; the last term is
an e4e-style regulariser keeping the rows close to one w, which helps editability). Optional real images
(``real_dir``) add ``real_batch`` images per iteration with the image losses only (there is no true latent).

The run folder follows the other trainers (:mod:`latentedit.train.common`): ``checkpoint.pt`` (encoder, Adam, step,
wall time, every rank's RNG state, the options; atomic, every ``snapshot_every`` iterations, at the end and on
SIGTERM / SIGINT), ``encoder.safetensors`` beside it (what ``invert --method encoder --encoder RUN`` reads),
``metrics.jsonl``, ``samples/step*.png`` (held-out renders over their reconstructions). A run folder that holds
``checkpoint.pt`` resumes, reproducing the uninterrupted run (same RNG stream). Under ``torchrun`` each rank
renders ``batch / world_size`` samples and the gradients are averaged before each step.

File format (``encoder.safetensors``): the encoder's state dict (``w_mean`` and ``w_std`` included) and string
metadata ``format`` = ``latentedit-encoder``, ``format_version`` = ``1``, ``config`` (JSON of
:class:`EncoderConfig`), ``generator_sha256`` (sha256 of the generator checkpoint file it was trained for),
``image_size``, ``num_ws``, ``w_dim``, ``weights_dtype`` (``float32``, or ``float16`` for a file written by
``latentedit encoder export --half``; older files lack it and are float32) and ``training`` (JSON: step, options).
:func:`load_encoder` refuses a file made for another generator unless ``force``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from latentedit.errors import CheckpointError, InputError, LatentEditError
from latentedit.train import common

FORMAT_NAME = "latentedit-encoder"
FORMAT_VERSION = "1"

#: Shipped encoder name -> file name inside the ``latentedit.pretrained`` package folder.
SHIPPED_ENCODERS = {"toyfaces64_encoder": "toyfaces64_encoder.safetensors"}

#: The encoder ``invert --method encoder`` uses when no ``--encoder`` is given.
DEFAULT_ENCODER = "toyfaces64_encoder"

CHECKPOINT_NAME = "checkpoint.pt"
EXPORT_NAME = "encoder.safetensors"
METRICS_NAME = "metrics.jsonl"
CHECKPOINT_FORMAT = "latentedit-encoder-train"
CHECKPOINT_VERSION = 1

#: The encoder sees images at most this large (pSp and e4e encode 256 px crops).
MAX_INPUT_SIZE = 256

#: Mapped samples used to measure ``w_std`` when an encoder is built for a generator.
W_STD_SAMPLES = 4096

#: At most this many refinement passes (each costs a generator render; ReStyle converges in a handful).
MAX_REFINE_STEPS = 10

#: How training renders: the shared-weight modulation needs no per-sample weights; on the 2-core CPU at batch 16
#: of toyfaces64 a forward + backward to W+ took 0.34 s against 0.45 s (auto) and 0.74 s (grouped).
TRAINING_MODULATION = "scaled"


# --------------------------------------------------------------------------------------------------
# Architecture

@dataclasses.dataclass
class EncoderConfig:
    """The architecture: ``image_size`` (the generator's S), ``input_size`` (the side the network sees),
    ``num_ws`` / ``w_dim`` (the W+ shape it predicts), ``base_channels`` (stem width), ``max_channels``
    (channel cap of the down-sampling blocks), ``hidden`` (width of the vector before the W+ layer) and
    ``refine_steps`` (0: one forward pass; K > 0: a refiner network and K ReStyle-style correction passes, each
    seeing the image beside the generator's render of the current latent)."""

    image_size: int
    input_size: int
    num_ws: int
    w_dim: int
    base_channels: int = 32
    max_channels: int = 128
    hidden: int = 256
    refine_steps: int = 0

    @classmethod
    def for_generator(cls, generator, base_channels: int = 32, max_channels: int = 128,
                      hidden: int = 256, refine_steps: int = 0) -> "EncoderConfig":
        """The config of an encoder for ``generator`` (its size, num_ws and w_dim)."""
        return cls(image_size=int(generator.size), input_size=min(int(generator.size), MAX_INPUT_SIZE),
                   num_ws=int(generator.num_ws), w_dim=int(generator.w_dim), base_channels=int(base_channels),
                   max_channels=int(max_channels), hidden=int(hidden), refine_steps=int(refine_steps))

    def validate(self) -> None:
        side = self.input_size
        if side < 8 or side & (side - 1):
            raise InputError(f"the encoder input size must be a power of two >= 8, got {side}")
        for name in ("num_ws", "w_dim", "base_channels", "max_channels", "hidden"):
            if getattr(self, name) < 1:
                raise InputError(f"encoder {name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.refine_steps <= MAX_REFINE_STEPS:
            raise InputError(f"encoder refine-steps must be in [0, {MAX_REFINE_STEPS}], got {self.refine_steps}")

    def block_channels(self) -> list[int]:
        """Output channels of the stem and of each down-sampling block (input_size → 4)."""
        blocks = int(round(math.log2(self.input_size))) - 2
        return [min(self.base_channels * 2 ** k, self.max_channels) for k in range(blocks + 1)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EncoderConfig":
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: int(value) for key, value in data.items() if key in known})


class DownBlock(nn.Module):
    """``[N, C_in, H, W]`` → ``[N, C_out, H/2, W/2]``: two 3×3 convolutions (the first strided) with
    LeakyReLU(0.2), plus an average-pool and 1×1 convolution shortcut; the sum is scaled by 1/√2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.down_conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = F.leaky_relu(self.conv(F.leaky_relu(self.down_conv(x), 0.2)), 0.2)
        return (residual + self.shortcut(F.avg_pool2d(x, 2))) * (1 / math.sqrt(2))


class OffsetNet(nn.Module):
    """The convolutional trunk: ``[N, in_channels, input_size, input_size]`` → standardised offsets ``[N, num_ws,
    w_dim]`` (stem, down-sampling blocks to 4×4, a hidden vector, one linear layer for every W+ row). Its last
    layer starts at ``output_scale`` × its default initialisation and a zero bias."""

    def __init__(self, config: EncoderConfig, in_channels: int = 3, output_scale: float = 0.01):
        super().__init__()
        config.validate()
        self.config = config
        channels = config.block_channels()
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(DownBlock(c_in, c_out) for c_in, c_out in zip(channels[:-1], channels[1:]))
        self.to_hidden = nn.Linear(channels[-1] * 16, config.hidden)
        self.to_offsets = nn.Linear(config.hidden, config.num_ws * config.w_dim)
        with torch.no_grad():
            self.to_offsets.weight.mul_(output_scale)
            self.to_offsets.bias.zero_()

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_channels, input_size, input_size]`` → offsets ``[N, num_ws, w_dim]``."""
        x = F.leaky_relu(self.stem(x), 0.2)
        for block in self.blocks:
            x = block(x)
        hidden = F.leaky_relu(self.to_hidden(x.flatten(1)), 0.2)
        return self.to_offsets(hidden).view(-1, self.config.num_ws, self.config.w_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


class LatentEncoder(OffsetNet):
    """Image ``[N, 3, S, S]`` in [-1, 1] → W+ ``[N, num_ws, w_dim]`` (see the module docstring).

    Buffers ``w_mean [w_dim]`` and ``w_std [w_dim]`` turn the network's standardised offsets into W+. With
    ``config.refine_steps`` K > 0 it also holds ``refiner``, an :class:`OffsetNet` on 6 channels (the image and
    the generator's render of the current latent, ReStyle's input) that predicts a correction of the offsets;
    :meth:`invert` runs the first pass and then K corrections. The refiner's last layer starts at exactly zero,
    so an untrained refiner changes nothing.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__(config, in_channels=3, output_scale=0.01)  # an untrained encoder answers the mean w
        self.refiner = OffsetNet(config, in_channels=6, output_scale=0.0) if config.refine_steps > 0 else None
        self.register_buffer("w_mean", torch.zeros(config.w_dim))
        self.register_buffer("w_std", torch.ones(config.w_dim))

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    @property
    def w_dim(self) -> int:
        return self.config.w_dim

    @property
    def refine_steps(self) -> int:
        return self.config.refine_steps

    @torch.no_grad()
    def set_latent_statistics(self, w_mean: torch.Tensor, w_std: torch.Tensor) -> None:
        """Set ``w_mean [w_dim]`` and ``w_std [w_dim]`` (the latter floored at 1e-6)."""
        self.w_mean.copy_(w_mean.reshape(-1).to(self.w_mean))
        self.w_std.copy_(w_std.reshape(-1).to(self.w_std).clamp_min(1e-6))

    def network_input(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[N, 3, H, W]`` resized to ``[N, 3, input_size, input_size]`` (area filter down, bilinear up)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"the encoder takes images [N, 3, H, W], got {list(images.shape)}")
        side = self.config.input_size
        if images.shape[-1] != side or images.shape[-2] != side:
            mode = "area" if images.shape[-1] > side else "bilinear"
            images = F.interpolate(images, size=(side, side), mode=mode,
                                   **({} if mode == "area" else {"align_corners": False}))
        return images

    def offsets(self, images: torch.Tensor) -> torch.Tensor:
        """The first pass's standardised offsets from the mean w: images ``[N, 3, S', S']`` → ``[N, num_ws,
        w_dim]``."""
        return self.trunk(self.network_input(images))

    def correction(self, network_images: torch.Tensor, offsets: torch.Tensor, generator,
                   modulation: str | None = None) -> torch.Tensor:
        """One refinement pass: ``offsets [N, num_ws, w_dim]`` plus the refiner's correction, computed from
        ``network_images [N, 3, input_size, input_size]`` (:meth:`network_input`) beside the generator's render
        of ``offsets`` (rendered without gradient: each pass learns its own correction, as in ReStyle)."""
        if self.refiner is None:
            raise InputError("this encoder has no refiner (it was trained with refine-steps 0)")
        with torch.no_grad():
            options = {} if modulation is None else {"modulation": modulation}
            render = generator.synthesis(self.to_w_plus(offsets.detach()), **options).clamp(-1, 1)
            render = self.network_input(render.to(network_images.dtype))
        return offsets + self.refiner(torch.cat([network_images, render], dim=1))

    def invert(self, images: torch.Tensor, generator=None, steps: int | None = None) -> torch.Tensor:
        """Images ``[N, 3, S, S]`` in [-1, 1] → W+ ``[N, num_ws, w_dim]``: the first pass, then ``steps``
        (default ``refine_steps``) corrections, which need the ``generator`` the encoder was trained for."""
        steps = self.refine_steps if steps is None else int(steps)
        if steps > 0 and generator is None:
            raise InputError("this encoder refines its answer with the generator's renders; pass the generator")
        network_images = self.network_input(images)
        offsets = self.trunk(network_images)
        for _ in range(steps):
            offsets = self.correction(network_images, offsets, generator)
        return self.to_w_plus(offsets)

    def to_w_plus(self, offsets: torch.Tensor) -> torch.Tensor:
        """Standardised offsets ``[N, num_ws, w_dim]`` → W+ ``[N, num_ws, w_dim]``."""
        return self.w_mean + self.w_std * offsets

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The first pass only: images ``[N, 3, S, S]`` in [-1, 1] → W+ ``[N, num_ws, w_dim]`` (no refinement;
        :meth:`invert` and :func:`encode` run the whole encoder)."""
        return self.to_w_plus(self.offsets(images))


def build_encoder(generator, base_channels: int = 32, max_channels: int = 128, hidden: int = 256,
                  seed: int = 0, w_std_samples: int = W_STD_SAMPLES, refine_steps: int = 0) -> LatentEncoder:
    """A fresh encoder for ``generator``: weights initialised from ``seed``, ``w_mean`` = the generator's mean
    w, ``w_std`` = the per-dimension standard deviation of ``w_std_samples`` mapped N(0, 1) samples (seeded)."""
    config = EncoderConfig.for_generator(generator, base_channels, max_channels, hidden, refine_steps)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = LatentEncoder(config)
    device = generator.w_avg.device
    with torch.no_grad():
        z = torch.randn(w_std_samples, generator.z_dim, generator=torch.Generator().manual_seed(seed + 1))
        w = generator.mapping(z.to(device)).double()
        encoder.set_latent_statistics(generator.mean_w().detach().cpu(), w.std(dim=0).float().cpu())
    return encoder.to(device)


# --------------------------------------------------------------------------------------------------
# Files

class LoadedEncoder(NamedTuple):
    """``(encoder, info)``: an eval-mode :class:`LatentEncoder` and a JSON-ready dict about its file
    (``path``, ``sha256``, ``generator_sha256``, ``config``, ``training``, ``notes``)."""

    encoder: LatentEncoder
    info: dict


#: The buffers kept in float32 whatever the weights' storage (they set the scale of every W+ row).
_FLOAT32_BUFFERS = ("w_mean", "w_std")


def save_encoder(encoder: LatentEncoder, path: str | os.PathLike, generator_sha256: str,
                 training: Mapping[str, Any] | None = None, half: bool = False) -> Path:
    """Write ``encoder`` to ``path`` as safetensors (atomically) with the metadata of the module docstring.

    ``half`` stores the weights as float16 (half the file; ``w_mean`` / ``w_std`` stay float32) and records
    ``weights_dtype=float16``; :func:`load_encoder` casts them back to float32, so the loaded encoder is the
    rounded one. InputError if a weight does not fit float16."""
    from latentedit.io import safetensors_bytes, write_bytes

    config = encoder.config
    weights_dtype = torch.float16 if half else torch.float32
    tensors = {name: tensor.detach().to("cpu", torch.float32 if name in _FLOAT32_BUFFERS else weights_dtype)
               .contiguous().clone() for name, tensor in encoder.state_dict().items()}
    bad = [name for name, tensor in tensors.items() if not torch.isfinite(tensor).all()]
    if bad:
        raise InputError(f"encoder weight {bad[0]} is not finite{' in float16' if half else ''}; "
                         f"{'save it without --half' if half else 'the run diverged: retrain it'}")
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": json.dumps(config.to_dict()),
                "generator_sha256": str(generator_sha256), "image_size": str(config.image_size),
                "num_ws": str(config.num_ws), "w_dim": str(config.w_dim),
                "weights_dtype": str(weights_dtype).removeprefix("torch."),
                "training": json.dumps(dict(training or {}), sort_keys=True)}
    path = Path(path)
    write_bytes(path, safetensors_bytes(tensors, metadata))
    return path


def resolve_encoder(path_or_name: str | os.PathLike) -> Path:
    """The encoder file for ``path_or_name``: an existing file; a run folder (its ``encoder.safetensors``); or a
    shipped name (:data:`SHIPPED_ENCODERS`) in the ``latentedit.pretrained`` folder. CheckpointError otherwise."""
    from latentedit.pretrained import PACKAGE_DIR

    path = Path(path_or_name)
    if path.is_dir():
        candidate = path / EXPORT_NAME
        if not candidate.is_file():
            raise CheckpointError(f"{path} is a folder without {EXPORT_NAME}; pass an encoder file or a run folder "
                                  f"of 'latentedit encoder train'")
        return candidate
    if path.is_file():
        return path
    name = str(path_or_name)
    if name in SHIPPED_ENCODERS:
        location = PACKAGE_DIR / SHIPPED_ENCODERS[name]
        if not location.is_file():
            raise CheckpointError(f"the shipped encoder '{name}' is not installed; train one with 'latentedit encoder "
                                  f"train --ckpt CKPT -o RUN' and pass --encoder RUN (expected at {location})")
        return location
    raise CheckpointError(f"encoder {name} not found (not a file, a run folder or a shipped name: "
                          f"{', '.join(sorted(SHIPPED_ENCODERS))}); train one with 'latentedit encoder train'")


def load_encoder(path_or_name: str | os.PathLike = DEFAULT_ENCODER, *, generator_sha256: str | None = None,
                 generator_provenance: Mapping[str, str] | None = None, force: bool = False,
                 generator=None, device: str | torch.device = "cpu") -> LoadedEncoder:
    """Load an encoder file (see :func:`resolve_encoder`) onto ``device`` in eval mode.

    With ``generator_sha256`` (the sha256 of the generator checkpoint it will be used with) an encoder trained
    for another checkpoint is refused (CheckpointError) unless ``force``; a generator derived from the encoder's
    by ``invert --method pti`` (``generator_provenance['derived_from_sha256']``) is accepted. With ``generator``
    its num_ws and w_dim must match (always; ``force`` cannot make shapes fit). Notes go to ``info['notes']``.
    """
    import struct

    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    from latentedit.io import sha256_file

    path = resolve_encoder(path_or_name)
    try:
        data = path.read_bytes()
        tensors = load_safetensors(data)
        (length,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(data[8:8 + length]).get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError, struct.error, AttributeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read encoder {path}: not a safetensors file ({message}); train one with "
                              f"'latentedit encoder train'") from None
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a latentedit encoder (its metadata format is "
                              f"{metadata.get('format')!r}); pass a file written by 'latentedit encoder train'")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: encoder format version {metadata.get('format_version')!r} is not supported "
                              f"(this latentedit reads version {FORMAT_VERSION})")
    try:
        config = EncoderConfig.from_dict(json.loads(metadata["config"]))
        encoder = LatentEncoder(config)
        if any(tensor.dtype not in (torch.float32, torch.float16) for tensor in tensors.values()):
            raise ValueError("tensors must be float32 or float16")
        encoder.load_state_dict(tensors, strict=True)  # copies cast float16 weights to the float32 parameters
    except (KeyError, ValueError, TypeError, RuntimeError, InputError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: damaged encoder file ({first}); retrain or re-export it") from None
    trained_for = metadata.get("generator_sha256", "")
    notes = []
    if generator_sha256 is not None and trained_for != generator_sha256:
        derived = (generator_provenance or {}).get("derived_from_sha256")
        if derived is not None and derived == trained_for:
            notes.append(f"the generator was tuned from the one this encoder was trained for ({trained_for[:12]})")
        elif not force:
            raise CheckpointError(f"encoder {path} was trained for another generator (sha256 {trained_for[:12]}..., "
                                  f"this one is {generator_sha256[:12]}...); train one for it with 'latentedit "
                                  f"encoder train' or pass --force to use it anyway")
        else:
            notes.append(f"encoder trained for generator {trained_for[:12]}..., used with {generator_sha256[:12]}... "
                         f"(--force)")
    if generator is not None and (generator.num_ws, generator.w_dim) != (config.num_ws, config.w_dim):
        raise CheckpointError(f"encoder {path} predicts W+ [{config.num_ws}, {config.w_dim}] but the generator's is "
                              f"[{generator.num_ws}, {generator.w_dim}]; use an encoder trained for this generator")
    try:
        training = json.loads(metadata.get("training", "{}"))
    except ValueError:
        training = {}
    info = {"path": str(path), "sha256": sha256_file(path), "generator_sha256": trained_for,
            "config": config.to_dict(), "training": training, "notes": notes}
    return LoadedEncoder(encoder.to(device).eval().requires_grad_(False), info)


def _with_lineage(training: dict, depth: int = 0) -> dict:
    """``training`` plus ``init`` = ``{sha256, training}`` of the encoder its run started from
    (``--init-encoder``), followed while those files can still be found (at most 8 deep)."""
    source = (training.get("options") or {}).get("init_encoder")
    if not source or depth >= 8:
        return dict(training)
    try:
        parent = load_encoder(source)
    except (CheckpointError, InputError):
        return dict(training)
    return {**training, "init": {"sha256": parent.info["sha256"],
                                 "training": _with_lineage(parent.info["training"], depth + 1)}}


def default_export_name(source: str | os.PathLike, half: bool) -> str:
    """``NAME_float16.safetensors`` (``_float32`` without ``half``): NAME is the run folder's name, the file's
    stem or the shipped encoder's name."""
    path = Path(source)
    name = path.name if path.is_dir() else path.stem if path.suffix == ".safetensors" else path.name
    return f"{name}_{'float16' if half else 'float32'}.safetensors"


def export_encoder(source: str | os.PathLike, output: str | os.PathLike, half: bool = False,
                   probe_images: int = 8) -> dict:
    """Copy the encoder ``source`` (run folder, file or shipped name) to the file ``output`` with its metadata,
    its weights as float16 when ``half``. Returns ``{path, bytes, weights_dtype, max_abs_w_plus_change,
    probe_images}``: the change is the largest |ΔW+| of the first pass on ``probe_images`` fixed random images
    (what the rounding costs). The training metadata gains the lineage of ``--init-encoder`` starts
    (:func:`_with_lineage`), and its paths under the package's folder or the current folder become relative.
    Refuses an output that is a folder or has no parent folder before loading."""
    from safetensors import safe_open

    from latentedit.io import portable_paths

    output = Path(output)
    if output.is_dir():
        raise InputError(f"-o {output} is a folder; give the encoder file to write")
    if not output.parent.is_dir():
        raise InputError(f"the folder of -o {output} does not exist; create it first")
    loaded = load_encoder(source)
    with safe_open(str(loaded.info["path"]), framework="pt") as handle:
        metadata = handle.metadata() or {}
    training = _with_lineage(loaded.info["training"])
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):  # a shipped file names no machine's folders
        training = portable_paths(training, root)
    path = save_encoder(loaded.encoder, output, metadata.get("generator_sha256", ""), training, half=half)
    exported = load_encoder(path).encoder
    images = torch.rand(probe_images, 3, loaded.encoder.config.image_size, loaded.encoder.config.image_size,
                        generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        change = (exported(images) - loaded.encoder(images)).abs().max().item()
    return {"path": str(path), "bytes": path.stat().st_size, "weights_dtype": "float16" if half else "float32",
            "max_abs_w_plus_change": change, "probe_images": probe_images}


@torch.no_grad()
def encode(encoder: LatentEncoder, images: torch.Tensor, batch_size: int = 64, generator=None) -> torch.Tensor:
    """W+ ``[N, num_ws, w_dim]`` for images ``[N, 3, S, S]`` in [-1, 1], ``batch_size`` at a time; an encoder
    with refinement passes (``refine_steps`` > 0) needs the ``generator`` it was trained for."""
    device = encoder.w_mean.device
    parts = [encoder.invert(images[start:start + batch_size].to(device=device, dtype=torch.float32), generator)
             for start in range(0, images.shape[0], batch_size)]
    return torch.cat(parts) if parts else torch.empty(0, encoder.num_ws, encoder.w_dim, device=device)


# --------------------------------------------------------------------------------------------------
# Training data: the generator's own samples

def sample_w_plus(generator, count: int, psi_range: tuple[float, float], mix_prob: float, row_noise: float,
                  w_std: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
    """Training latents W+ ``[count, num_ws, w_dim]`` (see the module docstring), drawn from ``rng`` (default:
    the global torch RNG) on the CPU and moved to the generator's device."""
    device = generator.w_avg.device
    num_ws, w_dim = generator.num_ws, generator.w_dim

    def draw(*shape):
        return torch.randn(*shape, generator=rng)

    def uniform(*shape):
        return torch.rand(*shape, generator=rng)

    z = draw(2, count, generator.z_dim)
    psi = psi_range[0] + (psi_range[1] - psi_range[0]) * uniform(count, 1)
    mix = uniform(count) < mix_prob
    crossover = (uniform(count) * max(num_ws - 1, 1)).long() + 1
    noise = draw(count, num_ws, w_dim)
    with torch.no_grad():
        w_mean = generator.mean_w().detach()
        mapped = generator.mapping(z.reshape(2 * count, -1).to(device)).view(2, count, w_dim)
        mapped = w_mean + psi.to(device) * (mapped - w_mean)
        rows = torch.arange(num_ws)[None, :]
        second = (mix[:, None] & (rows >= crossover[:, None])).to(device)[..., None]
        w_plus = torch.where(second, mapped[1][:, None, :], mapped[0][:, None, :])
        if row_noise > 0:
            w_plus = w_plus + row_noise * w_std.to(device) * noise.to(device)
    return w_plus


@dataclasses.dataclass
class EncoderTrainConfig:
    """Options of ``latentedit encoder train`` (the shipped encoder's command, which adds real toyfaces renders
    and a larger image weight, is in ``pretrained/toyfaces64_encoder.md``).

    ``ckpt``: the generator; ``batch`` (global, split across ranks), ``iters``, ``lr`` (Adam, betas
    ``(beta1, 0.999)``, linear decay to 0 over the last ``decay_iters``; None = a quarter of the run);
    ``psi_min`` / ``psi_max``: the truncation range; ``mix_prob`` / ``row_noise``: W+ variety; loss weights
    ``latent_weight``, ``image_weight``, ``lpips_weight`` (used only when LPIPS is available: ``perceptual``
    ``auto`` / ``lpips`` / ``none``), ``delta_reg``; ``real_dir`` / ``real_batch``: real images (image losses
    only); architecture ``base_channels`` / ``max_channels`` / ``hidden`` / ``refine_steps`` (ReStyle-style
    correction passes, see :class:`LatentEncoder`); ``init_encoder``: start from this encoder (file, run folder
    or shipped name; its architecture is used), and when ``refine_steps`` > 0 keep its first pass frozen and
    train only the refiner; bookkeeping ``log_every``, ``sample_every``, ``snapshot_every``, ``seed``,
    ``device``."""

    ckpt: str = "toyfaces64"
    batch: int = 16
    iters: int = 4000
    lr: float = 1e-3
    beta1: float = 0.9
    decay_iters: int | None = None
    psi_min: float = 0.5
    psi_max: float = 1.0
    mix_prob: float = 0.5
    row_noise: float = 0.05
    latent_weight: float = 1.0
    image_weight: float = 1.0
    lpips_weight: float = 0.8
    delta_reg: float = 0.0
    perceptual: str = "auto"
    vgg_weights: str | None = None
    real_dir: str | None = None
    real_batch: int = 4
    base_channels: int = 32
    max_channels: int = 128
    hidden: int = 256
    refine_steps: int = 0
    init_encoder: str | None = None
    log_every: int = 20
    sample_every: int = 500
    snapshot_every: int = 250
    sample_count: int = 8
    seed: int = 0
    device: str = "auto"

    #: Options a resumed run cannot change (the architecture and what the data is).
    FROZEN_ON_RESUME = ("base_channels", "max_channels", "hidden", "refine_steps", "init_encoder", "batch", "seed")

    def validate(self, world_size: int = 1) -> None:
        for name in ("batch", "iters", "log_every", "sample_every", "snapshot_every", "base_channels",
                     "max_channels", "hidden", "real_batch", "sample_count"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.refine_steps <= MAX_REFINE_STEPS:
            raise InputError(f"--refine-steps must be in [0, {MAX_REFINE_STEPS}], got {self.refine_steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.beta1 < 1:
            raise InputError(f"--beta1 must be in [0, 1), got {self.beta1}")
        if self.decay_iters is not None and not 0 <= self.decay_iters <= self.iters:
            raise InputError(f"--decay-iters must be in [0, --iters={self.iters}], got {self.decay_iters}")
        if not 0 < self.psi_min <= self.psi_max:
            raise InputError(f"truncation range must satisfy 0 < --psi-min <= --psi-max, got {self.psi_min}, "
                             f"{self.psi_max}")
        if not 0 <= self.mix_prob <= 1:
            raise InputError(f"--mix-prob must be in [0, 1], got {self.mix_prob}")
        for name in ("row_noise", "latent_weight", "image_weight", "lpips_weight", "delta_reg"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise InputError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
        if self.latent_weight == 0 and self.image_weight == 0 and self.lpips_weight == 0:
            raise InputError("the loss is empty: give --latent-weight, --image-weight or --lpips-weight above 0")
        if self.perceptual not in ("auto", "lpips", "none"):
            raise InputError(f"--perceptual must be auto, lpips or none, got {self.perceptual!r}")
        if self.batch % world_size:
            raise InputError(f"--batch-size {self.batch} must be divisible by the number of processes ({world_size})")
        if self.real_dir is not None and self.real_batch % world_size:
            raise InputError(f"--real-batch-size {self.real_batch} must be divisible by the number of processes "
                             f"({world_size})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class EncoderTrainResult:
    """Outcome of :func:`train_encoder`: the run folder, the step reached, whether ``iters`` was reached, the
    signal that stopped it early (a checkpoint was written), images per second over the last logging window, the
    step it resumed from, and the last logged losses."""

    run_dir: Path
    step: int
    finished: bool
    stop_signal: int | None
    img_per_sec: float | None
    resumed_step: int | None
    last_metrics: dict

    @property
    def encoder_path(self) -> Path:
        return self.run_dir / EXPORT_NAME


def lr_factor(step: int, iters: int, decay_iters: int | None) -> float:
    """1 until the last ``decay_iters`` iterations (None: a quarter of ``iters``), then linear to 0."""
    decay = iters // 4 if decay_iters is None else decay_iters
    if decay <= 0:
        return 1.0
    return min(1.0, max(0.0, (iters - step) / decay))


def _load_real_images(folder: str, size: int) -> torch.Tensor:
    from latentedit.image_files import list_named_images, load_image_tensor

    found = list_named_images([folder])
    if not found:
        raise InputError(f"--real {folder}: no images found; give a folder of face images")
    images = []
    for path, _ in found:
        tensor, _ = load_image_tensor(path, size, warn=lambda message: None)
        images.append(tensor)
    return torch.stack(images)


def _copy_first_pass(source: LatentEncoder, target: LatentEncoder) -> None:
    """Copy ``source``'s weights and latent statistics into ``target`` (same architecture; ``target`` may add a
    refiner, which keeps its fresh weights; a refiner in ``source`` is copied too when ``target`` has one)."""
    state = target.state_dict()
    given = source.state_dict()
    extra = sorted(set(given) - set(state))
    if extra or any(given[name].shape != state[name].shape for name in given):
        raise InputError("--init-encoder has another architecture than this run (it has a refiner and "
                         "--refine-steps is 0, or other layer shapes); match its options or drop --init-encoder")
    state.update({name: tensor.to(state[name]) for name, tensor in given.items()})
    target.load_state_dict(state, strict=True)
    if target.refiner is not None and source.refiner is None:
        _refiner_from_first_pass(target)


@torch.no_grad()
def _refiner_from_first_pass(encoder: LatentEncoder) -> None:
    """Start a fresh refiner from the trained first pass: the same trunk, its stem applied to the image minus
    the render (image channels get the stem's weights, render channels their negation), so it begins with
    features of the residual; its output layer stays at zero, so it changes nothing until trained."""
    refiner = encoder.refiner
    for name, tensor in encoder.state_dict().items():
        if name.startswith(("refiner.", "to_offsets.", "w_mean", "w_std")):
            continue
        target = refiner.get_parameter(name)
        if name == "stem.weight":
            target.copy_(torch.cat([tensor, -tensor], dim=1))
        else:
            target.copy_(tensor)


def _offset_spread(offsets: torch.Tensor) -> torch.Tensor:
    """The e4e-style regulariser per sample ``[N]``: mean squared distance of each W+ row's offset
    ``[N, num_ws, w_dim]`` from the mean row."""
    return (offsets - offsets.mean(dim=1, keepdim=True)).square().mean(dim=(1, 2))


class _EncoderRun(common.RunClock):
    """State and loop of one encoder training run (one per process)."""

    def __init__(self, config: EncoderTrainConfig, run_dir: Path, context, generator, checkpoint_info: dict,
                 lpips_loss, checkpoint: dict | None, real_images: torch.Tensor | None, progress: bool,
                 session_iters: int | None, report: Callable[[str], None], init: LatentEncoder | None = None):
        self.common = common
        self.config = config
        self.run_dir = run_dir
        self.context = context
        self.device = context.device
        self.generator = generator
        self.checkpoint_info = checkpoint_info
        self.lpips_loss = lpips_loss
        self.real_images = real_images
        self.progress = progress
        self.session_iters = session_iters
        self.report = report
        self.per_rank_batch = config.batch // context.world_size
        self.per_rank_real = config.real_batch // context.world_size
        self.encoder = build_encoder(generator, config.base_channels, config.max_channels, config.hidden,
                                     seed=config.seed, refine_steps=config.refine_steps).train()
        if init is not None:
            _copy_first_pass(init, self.encoder)
        # Refining a given encoder trains the refiner alone: its input distribution (the first pass's renders)
        # then stays what the shipped first pass produces.
        self.frozen_first_pass = config.refine_steps > 0 and config.init_encoder is not None
        trainable = self.encoder.refiner.parameters() if self.frozen_first_pass else self.encoder.parameters()
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr, betas=(config.beta1, 0.999))
        self.start_clock()
        if checkpoint is not None:
            with common.fitting_checkpoint("this encoder"):
                self.encoder.load_state_dict(checkpoint["encoder"], strict=True)
                self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.resume_clock(checkpoint)
        restored = common.restore_rng_state(context, checkpoint.get("rng") if checkpoint else None,
                                            fallback_seed=config.seed + 7919 * (self.step + 1))
        if checkpoint is not None and not restored and context.is_main:
            warnings.warn("the checkpoint's RNG state does not fit this run (another process count or device); "
                          "continuing with a fresh seed")
        # The held-out samples of the grids: their own stream, so they never shift the training stream.
        sample_rng = torch.Generator().manual_seed(config.seed + 104729)
        self.fixed_w = sample_w_plus(generator, config.sample_count, (config.psi_min, config.psi_max), 0.0, 0.0,
                                     self.encoder.w_std, rng=sample_rng)
        with torch.no_grad():
            self.fixed_images = generator.synthesis(self.fixed_w).clamp(-1, 1)


    def training_record(self) -> dict:
        return {"step": self.step, "nimg": self.step * self.config.batch, "options": self.config.to_dict(),
                "generator": self.checkpoint_info.get("path"), "wall_s": round(self.wall_time(), 1)}

    def losses(self) -> dict[str, torch.Tensor]:
        """One iteration's loss terms (means over this rank's samples)."""
        config = self.config
        w_plus = sample_w_plus(self.generator, self.per_rank_batch, (config.psi_min, config.psi_max),
                               config.mix_prob, config.row_noise, self.encoder.w_std)
        with torch.no_grad():
            images = self.generator.synthesis(w_plus, modulation=TRAINING_MODULATION).clamp(-1, 1)
        real = None
        if self.real_images is not None:
            index = torch.randint(self.real_images.shape[0], (self.per_rank_real,))
            real = self.real_images[index].to(self.device)
        inputs = images if real is None else torch.cat([images, real])
        network_images = self.encoder.network_input(inputs)
        with torch.set_grad_enabled(not self.frozen_first_pass):
            offsets = self.encoder.trunk(network_images)
        passes = [] if self.frozen_first_pass else [offsets]
        for _ in range(config.refine_steps):
            # Each correction learns from the previous answer as given (ReStyle): no gradient across passes.
            offsets = self.encoder.correction(network_images, offsets.detach(), self.generator,
                                              modulation=TRAINING_MODULATION)
            passes.append(offsets)
        terms: dict[str, torch.Tensor] = {}
        for offsets in passes:  # every pass's answer is scored; the terms are means over the passes
            for name, value in self._pass_terms(offsets, inputs, w_plus).items():
                terms[name] = terms.get(name, 0.0) + value / len(passes)
        total = config.latent_weight * terms["latent"]
        if "image" in terms:
            total = total + config.image_weight * terms["image"]
        if "lpips" in terms:
            total = total + config.lpips_weight * terms["lpips"]
        if "delta" in terms:
            total = total + config.delta_reg * terms["delta"]
        terms["loss"] = total
        return terms

    def _pass_terms(self, offsets: torch.Tensor, inputs: torch.Tensor, w_plus: torch.Tensor) -> dict:
        """The loss terms of one pass's ``offsets [B, num_ws, w_dim]`` for ``inputs`` (generator samples of
        latents ``w_plus`` first, then real images)."""
        config = self.config
        predicted = self.encoder.to_w_plus(offsets)
        count = w_plus.shape[0]
        terms = {"latent": ((predicted[:count] - w_plus) / self.encoder.w_std).square().mean()}
        use_lpips = self.lpips_loss is not None and config.lpips_weight > 0
        if config.image_weight > 0 or use_lpips:
            rendered = self.generator.synthesis(predicted, modulation=TRAINING_MODULATION)
            terms["image"] = (rendered - inputs).square().mean()
            if use_lpips:
                terms["lpips"] = self.lpips_loss(rendered, self.lpips_loss.target_features(inputs)).mean()
        if config.delta_reg > 0:
            terms["delta"] = _offset_spread(offsets).mean()
        return terms

    def optimiser_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.context.distributed:
            grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
            flat = torch.cat([g.flatten() for g in grads])
            dist.all_reduce(flat)
            flat /= self.context.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
        self.optimizer.step()

    def export(self) -> None:
        save_encoder(self.encoder, self.run_dir / EXPORT_NAME, self.checkpoint_info["sha256"],
                     training=self.training_record())

    def snapshot(self, log, event: str = "snapshot") -> None:
        """checkpoint.pt and encoder.safetensors (rank 0); a collective over all ranks."""
        rng_state = self.common.capture_rng_state(self.context)
        if self.context.is_main:
            payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                       "encoder": self.encoder.state_dict(), "optimizer": self.optimizer.state_dict(),
                       "step": self.step, "nimg": self.step * self.config.batch, "wall_s": self.wall_time(),
                       "rng": rng_state, "args": self.config.to_dict(),
                       "generator_sha256": self.checkpoint_info["sha256"]}
            self.common.save_checkpoint(self.run_dir / CHECKPOINT_NAME, payload)
            self.export()
            log.write({"event": event, "step": self.step, "wall_s": round(self.wall_time(), 3),
                       "fingerprint": self.common.weights_fingerprint(self.encoder)})

    @torch.no_grad()
    def save_samples(self) -> None:
        from latentedit.invert.optimize import image_mse01, psnr_from_mse

        self.encoder.eval()
        try:
            reconstructions = self.generator.synthesis(self.encoder.invert(self.fixed_images, self.generator))
            reconstructions = reconstructions.clamp(-1, 1)
        finally:
            self.encoder.train()
        self.common.save_image_grid(torch.cat([self.fixed_images, reconstructions]).cpu(),
                                    self.run_dir / "samples" / f"step{self.step:07d}.png",
                                    columns=self.fixed_images.shape[0])
        return float(psnr_from_mse(image_mse01(reconstructions, self.fixed_images)).median())

    def run(self) -> EncoderTrainResult:
        from latentedit.progress import progress_bar

        config, common = self.config, self.common
        is_main = self.context.is_main
        log = common.MetricsLog(self.run_dir / METRICS_NAME, enabled=is_main)
        log.write({"event": "resume" if self.resumed_step is not None else "start", "step": self.step,
                   "world_size": self.context.world_size, "device": str(self.device),
                   "generator_sha256": self.checkpoint_info["sha256"],
                   "lpips": self.lpips_loss is not None, "options": config.to_dict()})
        target = config.iters if self.session_iters is None else min(config.iters, self.step + self.session_iters)
        bar = progress_bar(config.iters, "encoder", enabled=self.progress and is_main)
        bar.update(self.step)
        sums: dict[str, float] = {}
        counted = 0
        img_per_sec = None
        last: dict = {}
        tick_time, tick_step = time.perf_counter(), self.step
        stop_signal = None
        snapshot_step = None
        try:
            with common.StopRequest() as stop:
                while self.step < target:
                    if self.context.any(stop.requested):
                        stop_signal = stop.signal_number or 0
                        break
                    factor = lr_factor(self.step, config.iters, config.decay_iters)
                    for group in self.optimizer.param_groups:
                        group["lr"] = config.lr * factor
                    terms = self.losses()
                    loss_value = float(terms["loss"].detach())
                    if not self.context.any(not math.isfinite(loss_value)):
                        self.optimiser_step(terms["loss"])
                    else:
                        raise LatentEditError(f"encoder training diverged at step {self.step} (loss {loss_value}); "
                                              f"resume from {self.run_dir / CHECKPOINT_NAME} with a lower --lr "
                                              f"(now {config.lr:g})")
                    for name, value in terms.items():
                        sums[name] = sums.get(name, 0.0) + float(value.detach())
                    counted += 1
                    self.step += 1
                    bar.update(1)
                    done = self.step >= config.iters
                    maintenance = 0.0
                    if self.step % config.log_every == 0 or done or self.step >= target:
                        elapsed = time.perf_counter() - tick_time
                        img_per_sec = (self.step - tick_step) * config.batch / max(elapsed, 1e-9)
                        last = {name: round(total / counted, 6) for name, total in sums.items()}
                        record = {"step": self.step, **{f"loss_{k}" if k != "loss" else k: v for k, v in last.items()},
                                  "lr": config.lr * factor, "img_per_sec": round(img_per_sec, 2),
                                  "wall_s": round(self.wall_time(), 3)}
                        log.write(record, step=self.step)
                        bar.set_postfix(loss=f"{last['loss']:.4f}", img_s=f"{img_per_sec:.1f}", refresh=False)
                        sums, counted = {}, 0
                        tick_time, tick_step = time.perf_counter(), self.step
                    started = time.perf_counter()
                    if is_main and (self.step % config.sample_every == 0 or done):
                        psnr = self.save_samples()
                        log.write({"event": "samples", "step": self.step, "heldout_median_psnr_db": round(psnr, 3)})
                        last["heldout_median_psnr_db"] = round(psnr, 3)
                    if self.step % config.snapshot_every == 0 or done:
                        self.snapshot(log)
                        snapshot_step = self.step
                    maintenance += time.perf_counter() - started
                    tick_time += maintenance
                if stop_signal is not None or (self.step < config.iters and self.step >= target):
                    if snapshot_step == self.step:  # the checkpoint of this step is already written
                        log.write({"event": "stopped" if stop_signal is not None else "paused", "step": self.step,
                                   "wall_s": round(self.wall_time(), 3)})
                    else:
                        self.snapshot(log, event="stopped" if stop_signal is not None else "paused")
                elif is_main and self.step >= config.iters:
                    log.write({"event": "done", "step": self.step, "wall_s": round(self.wall_time(), 3)})
        finally:
            bar.close()
            log.close()
        return EncoderTrainResult(self.run_dir, self.step, self.step >= config.iters, stop_signal, img_per_sec,
                                  self.resumed_step, last)


def train_encoder(config: EncoderTrainConfig, run_dir: str | os.PathLike, *, resume_from=None,
                  explicit: frozenset[str] | set[str] = frozenset(), progress: bool = True,
                  session_iters: int | None = None, report: Callable[[str], None] | None = None,
                  loaded=None) -> EncoderTrainResult:
    """Train (or resume) an encoder for ``config.ckpt`` in ``run_dir``; what ``latentedit encoder train`` runs.

    Options, checkpoint, generator and real images are all checked, and the run folder proven writable, before
    anything is written. A run folder holding ``checkpoint.pt`` (or ``resume_from``) resumes: the saved options
    are used, overridden by the ``explicit`` ones (names of fields the user gave), except
    :attr:`EncoderTrainConfig.FROZEN_ON_RESUME` and the generator (its sha256 must match). ``loaded``: an
    already loaded ``(generator, info)`` instead of ``config.ckpt``.
    """
    from latentedit.baselines.translation_train import config_from_dict
    from latentedit.checkpoints import load_generator
    from latentedit.io import prepare_output_dir
    from latentedit.train import common

    report = report or (lambda message: None)
    run_dir = Path(run_dir)
    context = common.init_distributed(config.device)
    try:
        checkpoint_path = common.find_resume_checkpoint(run_dir, resume_from, CHECKPOINT_NAME, what="encoder training")
        checkpoint = None
        if checkpoint_path is not None:
            checkpoint = common.read_run_checkpoint(checkpoint_path, CHECKPOINT_FORMAT,
                                                    ("encoder", "optimizer", "step", "args", "generator_sha256"),
                                                    "encoder")
            saved = config_from_dict(EncoderTrainConfig, checkpoint["args"])
            for name in EncoderTrainConfig.FROZEN_ON_RESUME:
                if name in explicit and getattr(saved, name) != getattr(config, name):
                    raise InputError(f"{checkpoint_path} was trained with {name.replace('_', '-')}="
                                     f"{getattr(saved, name)}; drop that option or write to a new run folder")
            merged = saved.to_dict()
            for name in explicit:
                if name in merged and name not in EncoderTrainConfig.FROZEN_ON_RESUME:
                    merged[name] = getattr(config, name)
            config = EncoderTrainConfig(**merged)
        config.validate(context.world_size)
        common.configure_device(context)
        if session_iters is not None and session_iters < 1:
            raise InputError(f"--session-iters must be >= 1, got {session_iters}")
        generator, info = loaded if loaded is not None else load_generator(config.ckpt, device=context.device)
        generator = generator.to(context.device).eval().requires_grad_(False)
        checkpoint_info = info.to_dict() if hasattr(info, "to_dict") else dict(info)
        if checkpoint is not None and checkpoint["generator_sha256"] != checkpoint_info["sha256"]:
            raise InputError(f"{checkpoint_path} trains an encoder for another generator (sha256 "
                             f"{checkpoint['generator_sha256'][:12]}...); pass the same --ckpt or a new run folder")
        init = None  # before the perceptual notice: a wrong --init-encoder is the line that matters
        if config.init_encoder is not None and checkpoint is None:  # a checkpoint already holds every weight
            init = load_encoder(config.init_encoder, generator_sha256=checkpoint_info["sha256"],
                                generator=generator, device=context.device).encoder
            for name in ("base_channels", "max_channels", "hidden"):
                given = getattr(init.config, name)
                if name in explicit and getattr(config, name) != given:
                    raise InputError(f"--init-encoder {config.init_encoder} has {name.replace('_', '-')} {given}; "
                                     f"drop --{name.replace('_', '-')} (the architecture comes from it)")
                setattr(config, name, given)
        lpips_loss = None
        if config.perceptual != "none" and config.lpips_weight > 0:
            from latentedit.invert.perceptual import build_perceptual, choose_perceptual

            choice = choose_perceptual(config.perceptual, "lpips", config.vgg_weights)
            if choice.notice and context.is_main:
                report(choice.notice.replace("the loss is MSE only", "the image loss is MSE only (no LPIPS)"))
            if choice.kind is not None:
                lpips_loss = build_perceptual("lpips", choice.weights, image_size=generator.size,
                                              device=context.device)
        real_images = _load_real_images(config.real_dir, generator.size) if config.real_dir else None
        if context.is_main:
            prepare_output_dir(run_dir, "run folder")
            common.truncate_metrics(run_dir / METRICS_NAME, int(checkpoint["step"]) if checkpoint else -1)
        context.barrier()
        trainer = _EncoderRun(config, run_dir, context, generator, checkpoint_info, lpips_loss, checkpoint,
                              real_images, progress, session_iters, report, init=init)
        del checkpoint
        return trainer.run()
    finally:
        context.shutdown()
