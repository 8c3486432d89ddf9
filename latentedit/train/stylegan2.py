"""Train a StyleGAN2 generator (the rosinality-layout :class:`~latentedit.model.Generator`) from images.

The recipe (StyleGAN2, Karras et al. 2020, with the CPU-sized defaults of SPEC §9):

- Non-saturating logistic loss: D minimises ``softplus(D(fake)) + softplus(-D(real))``, G minimises
  ``softplus(-D(G(z)))``. One D step then one G step per iteration, both on ``batch`` images.
- Style mixing with probability ``mixing_prob``: two latents ``z1, z2`` are mapped, and W+ rows
  ``< crossover`` come from ``w1``, the rest from ``w2``, with ``crossover`` uniform in ``1..num_ws-1``
  (drawn once per batch). Noise inputs are fresh N(0, 1) every call.
- Lazy R1 on reals every ``r1_every`` (16) D steps: ``(r1_gamma / 2) * E ||dD(x)/dx||^2 * r1_every``.
- Optional path-length regularisation every ``pl_every`` (4) G steps when ``pl_weight > 0``:
  ``pl_weight * pl_every * E (|J_w^T y| - a)^2`` on a batch of ``batch // pl_batch_shrink`` with
  ``y ~ N(0, 1) / sqrt(H * W)`` and ``a`` the running mean (decay ``pl_decay``). Off by default: it
  needs a double backward through the generator and roughly doubles the G step's cost on a CPU.
- Adam, lr 0.0025, betas (0, 0.99), eps 1e-8. For a network with a lazy regulariser applied every
  ``k`` steps, lr and betas are corrected by ``c = k / (k + 1)``: ``lr * c``, ``betas ** c`` (D always,
  G only when path-length regularisation is on).
- EMA generator ``G_ema`` with a half-life of ``ema_kimg`` thousand images and NVIDIA's ramp-up
  (:func:`latentedit.train.common.ema_beta`): ``beta = 0.5 ** (batch / min(ema_kimg * 1000, nimg * ema_rampup))``.

Run directory (only rank 0 writes):

- ``checkpoint.pt``: G, D, G_ema, both optimisers, step, image count, wall time, every rank's RNG state,
  the network configs and the training options, all plain containers (loads with
  ``torch.load(weights_only=True)``). Written atomically every ``snapshot_kimg``, at the end, and when
  SIGTERM/SIGINT arrives (the step in progress finishes first). Also holds ``latent_avg`` (the EMA
  generator's mean w) so tools reading rosinality training checkpoints find the usual keys.
- ``g_ema.safetensors``: the EMA generator with its ``w_avg``, written with every checkpoint.
- ``metrics.jsonl``: one JSON object per line: ticks every ``log_kimg`` (losses, img/s, wall time),
  and events (``start``, ``resume``, ``snapshot``, ``eval``, ``stopped``, ``done``).
- ``samples/reals.png`` and ``samples/fakes_kimgNNNNNN.NNN.png`` every ``sample_kimg``: a fixed set of
  ``sample_count`` latents drawn from ``seed``, psi 1, the stored (``const``) noise, from G_ema.
- ``tensorboard/`` when ``torch.utils.tensorboard`` and the tensorboard package are installed.

Resuming: a run continues from ``RUN/checkpoint.pt`` when it exists (or from ``resume_from``). The
image stream, the RNG state of every rank and all counters are restored, so the run continues
where the checkpoint left it; metric lines logged after that checkpoint are dropped.

Multi-process: under ``torchrun`` each rank trains on ``batch / world_size`` images with DDP
(gloo on CPU, nccl on CUDA); gradients are averaged across ranks so every rank holds the same weights.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from latentedit.errors import InputError
from latentedit.model import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from latentedit.train import common

CHECKPOINT_FORMAT = "latentedit.train.stylegan2"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
EXPORT_NAME = "g_ema.safetensors"
METRICS_NAME = "metrics.jsonl"

# Options that define the networks or the meaning of the stored counters; a resumed run keeps them.
FROZEN_ON_RESUME = ("size", "channels", "style_dim", "n_mlp", "batch")

EvalHook = Callable[[Generator, float, Path], "Mapping[str, Any] | None"]


def default_channels(size: int) -> dict[int, int]:
    """SPEC §9 recipe: ``min(128, 2048 // res)`` channels, at least 16 -> {4: 128, 8: 128, 16: 128,
    32: 64, 64: 32, 128: 16, ...}. Wider low-resolution layers cost throughput without helping."""
    channels = {}
    res = 4
    while res <= size:
        channels[res] = max(16, min(128, 2048 // res))
        res *= 2
    return channels


def _data_label(config) -> str:
    """``toyfaces...`` for toyfaces data, else the data path's folder name (never an absolute path)."""
    data = str(getattr(config, "data", "") or "")
    return data if data.startswith("toyfaces") else Path(data).name


@dataclasses.dataclass
class StyleGAN2TrainConfig:
    """Every option of a StyleGAN2 training run (see the module docstring for the algorithm).

    ``data`` is a folder of images, a CelebA folder, or ``toyfaces[:SEED[:COUNT]]``; ``kimg`` is the
    total length of the run in thousands of real images shown to D (not the length of this session).
    Training goes in whole batches, so it ends at the first multiple of ``batch`` images at or above
    ``kimg * 1000`` (``kimg=0.01`` with ``batch=16`` trains 16 images).
    ``channels`` None means :func:`default_channels`. ``device`` is ``auto``/``cpu``/``cuda``.
    ``channels_last`` stores D's weights and the images in NHWC memory format. Off by default: with the
    compiled upfirdn2d kernels (which take NCHW) it measured ~20% slower on the 2-core CPU; worth
    trying on other hardware.
    """

    data: str
    size: int = 64
    data_format: str = "auto"
    channels: dict | None = None
    style_dim: int = 256
    n_mlp: int = 4
    batch: int = 16
    kimg: float = 200.0
    lr: float = 0.0025
    r1_gamma: float = 0.25
    r1_every: int = 16
    pl_weight: float = 0.0
    pl_every: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    mixing_prob: float = 0.9
    ema_kimg: float = 5.0
    ema_rampup: float | None = 0.05
    mirror: bool = False
    snapshot_kimg: float = 2.0
    sample_kimg: float = 2.0
    log_kimg: float = 0.5
    sample_count: int = 32
    seed: int = 0
    workers: int = 1
    device: str = "auto"
    channels_last: bool = False

    def __post_init__(self):
        if self.channels is not None:
            self.channels = {int(k): int(v) for k, v in self.channels.items()}

    def to_dict(self) -> dict:
        """Plain dict (string channel keys) safe for JSON and ``torch.load(weights_only=True)``."""
        data = dataclasses.asdict(self)
        if data["channels"] is not None:
            data["channels"] = {str(k): v for k, v in data["channels"].items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StyleGAN2TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def resolved_channels(self) -> dict[int, int]:
        """The channel dict for resolutions ``4..size`` (extra entries dropped)."""
        channels = self.channels if self.channels is not None else default_channels(self.size)
        return {res: channels[res] for res in sorted(channels) if res <= self.size}

    def validate(self, world_size: int = 1) -> None:
        """Raise :class:`InputError` for options that cannot train (a one-line reason each)."""
        if self.size < 8 or self.size & (self.size - 1):
            raise InputError(f"--size must be a power of two >= 8 (e.g. 32, 64, 128), got {self.size}")
        channels = self.channels if self.channels is not None else default_channels(self.size)
        resolutions = [2 ** i for i in range(2, int(math.log2(self.size)) + 1)]
        missing = [r for r in resolutions if r not in channels]
        if missing:
            raise InputError(f"--channels lacks resolution(s) {', '.join(map(str, missing))}; a {self.size} px "
                             f"model needs an entry for each of {', '.join(map(str, resolutions))}")
        positive = {"batch": self.batch, "style_dim": self.style_dim, "n_mlp": self.n_mlp,
                    "r1_every": self.r1_every, "pl_every": self.pl_every, "pl_batch_shrink": self.pl_batch_shrink,
                    "sample_count": self.sample_count}
        for name, value in positive.items():
            if value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        for name in ("kimg", "snapshot_kimg", "sample_kimg", "log_kimg", "lr"):
            if not getattr(self, name) > 0:
                raise InputError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("r1_gamma", "pl_weight", "ema_kimg"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.mixing_prob <= 1:
            raise InputError(f"--mixing-prob must be in [0, 1], got {self.mixing_prob}")
        if self.workers < 0:
            raise InputError(f"--workers must be >= 0, got {self.workers}")
        if self.batch % world_size:
            raise InputError(f"--batch {self.batch} must be divisible by the number of processes ({world_size})")
        per_rank = self.batch // world_size
        group = min(per_rank, 4)
        if per_rank % group:
            raise InputError(f"the per-process batch ({per_rank}) must be a multiple of 4 (or below 4) for the "
                             "discriminator's minibatch-stddev groups; change --batch")


def generator_config(config: StyleGAN2TrainConfig) -> GeneratorConfig:
    """The :class:`GeneratorConfig` a training config describes."""
    return GeneratorConfig(size=config.size, style_dim=config.style_dim, n_mlp=config.n_mlp,
                           channels=config.resolved_channels())


def discriminator_config(config: StyleGAN2TrainConfig) -> DiscriminatorConfig:
    """The :class:`DiscriminatorConfig` a training config describes (same channels as G)."""
    return DiscriminatorConfig(size=config.size, channels=config.resolved_channels())


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train_stylegan2`.

    ``finished`` is True when ``kimg`` was reached; ``stop_signal`` is the signal number that stopped
    the run early (a checkpoint was written), else None. ``img_per_sec`` is the throughput of the last
    tick (None if no tick completed). ``resumed_step`` is the step the run resumed from, or None.
    """

    run_dir: Path
    step: int
    nimg: int
    finished: bool
    stop_signal: int | None
    img_per_sec: float | None
    resumed_step: int | None

    @property
    def kimg(self) -> float:
        """Thousands of real images shown to D so far."""
        return self.nimg / 1000.0

    @property
    def checkpoint(self) -> Path:
        """``run_dir/checkpoint.pt``."""
        return self.run_dir / CHECKPOINT_NAME


# --------------------------------------------------------------------------------------------------
# Resume helpers

def find_resume_checkpoint(run_dir: str | os.PathLike, resume: str | os.PathLike | None = None) -> Path | None:
    """See :func:`latentedit.train.common.find_resume_checkpoint`."""
    return common.find_resume_checkpoint(run_dir, resume, CHECKPOINT_NAME, what="training")


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    """Load and check a checkpoint written by :func:`train_stylegan2` (``weights_only=True``)."""
    return common.read_run_checkpoint(path, CHECKPOINT_FORMAT, ("g", "d", "g_ema", "g_optim", "d_optim", "step", "nimg", "args"), "StyleGAN2")


def frozen_differences(saved: StyleGAN2TrainConfig, requested: StyleGAN2TrainConfig) -> list[str]:
    """Names of :data:`FROZEN_ON_RESUME` options on which two configs disagree (channels compared resolved)."""
    def value(config: StyleGAN2TrainConfig, name: str):
        return config.resolved_channels() if name == "channels" else getattr(config, name)

    return [name for name in FROZEN_ON_RESUME if value(saved, name) != value(requested, name)]


def resume_config(saved_args: Mapping[str, Any], requested: StyleGAN2TrainConfig,
                  explicit: set[str] | frozenset[str] = frozenset()) -> StyleGAN2TrainConfig:
    """The options of a resumed run: the saved ones, overridden by the ``explicit`` fields of
    ``requested`` (options the user typed). An explicit value for a field in
    :data:`FROZEN_ON_RESUME` that differs from the saved one raises :class:`InputError`."""
    saved = StyleGAN2TrainConfig.from_dict(saved_args)
    merged = dataclasses.asdict(saved)
    conflicts = [name for name in frozen_differences(saved, requested) if name in explicit]
    if conflicts:
        name = conflicts[0]
        old = saved.resolved_channels() if name == "channels" else getattr(saved, name)
        raise InputError(f"the run being resumed was trained with {name}={old}; drop that option or write to a "
                         "new run folder")
    for name in explicit:
        if name not in FROZEN_ON_RESUME:
            merged[name] = getattr(requested, name)
    return StyleGAN2TrainConfig(**merged)


# --------------------------------------------------------------------------------------------------
# Networks in training

class StyleMixingGenerator(nn.Module):
    """Wraps a :class:`Generator` so one ``forward`` covers mapping, style mixing and synthesis
    (DistributedDataParallel only synchronises what runs inside ``forward``).

    ``forward(z [N, D], z_mix [N, D] or None, crossover)`` -> ``(images [N, 3, S, S], w_plus [N, num_ws, D])``:
    W+ rows ``< crossover`` come from ``mapping(z)``, the others from ``mapping(z_mix)``; fresh noise.
    """

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, z_mix: torch.Tensor | None = None, crossover: int | None = None):
        generator = self.generator
        if z_mix is None:
            w_plus = generator.mapping(z)[:, None, :].expand(-1, generator.num_ws, -1)
        else:
            w_first, w_second = generator.mapping(torch.cat([z, z_mix])).chunk(2)
            rows = torch.arange(generator.num_ws, device=z.device)[None, :, None] < crossover
            w_plus = torch.where(rows, w_first[:, None, :], w_second[:, None, :])
        return generator.synthesis(w_plus, noise_mode="random"), w_plus


def _to_memory_format(module: nn.Module, channels_last: bool) -> nn.Module:
    """Store 4-D parameters channels-last (5-D modulated-conv weights stay as they are)."""
    if channels_last:
        for param in module.parameters():
            if param.ndim == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
    return module


def export_generator(generator: Generator, path: str | os.PathLike, extra_metadata: Mapping[str, Any]) -> None:
    """Write the EMA generator as a native ``.safetensors`` file (atomically) with its current ``w_avg``,
    readable by :func:`latentedit.checkpoints.load_generator` and every ``--ckpt`` option."""
    from latentedit.checkpoints import save_native

    save_native(generator, path, dict(extra_metadata),
                w_avg_source="mean of mapping(z) over 10000 N(0, 1) samples (seed 0) at export")


# --------------------------------------------------------------------------------------------------
# Training

def final_nimg(nimg: int, total_nimg: int, batch: int) -> int:
    """The image count a run at ``nimg`` ends at when it trains to ``total_nimg`` in steps of ``batch``
    images: ``nimg`` when already there, else the first ``nimg + k * batch >= total_nimg``."""
    if nimg >= total_nimg:
        return nimg
    return nimg + -(-(total_nimg - nimg) // batch) * batch


def _crossed(previous_nimg: int, nimg: int, interval: int) -> bool:
    """True when a multiple of ``interval`` images lies in ``(previous_nimg, nimg]`` (0 = never)."""
    return interval > 0 and nimg // interval > previous_nimg // interval


class _Trainer(common.RunClock):
    """State and steps of one training run; :func:`train_stylegan2` is the public entry point."""

    def __init__(self, config: StyleGAN2TrainConfig, run_dir: Path, context: common.DistributedContext,
                 checkpoint: dict | None, eval_hook: EvalHook | None, eval_every_kimg: float, progress: bool):
        self.config = config
        self.run_dir = run_dir
        self.context = context
        self.device = context.device
        self.eval_hook = eval_hook
        self.eval_every_kimg = eval_every_kimg
        self.progress = progress
        self.per_rank_batch = config.batch // context.world_size
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

        # Identical initial weights on every rank (DDP would broadcast them anyway).
        torch.manual_seed(config.seed)
        self.g_config = generator_config(config)
        self.d_config = discriminator_config(config)
        self.generator = Generator(self.g_config).to(self.device)
        self.discriminator = Discriminator(self.d_config).to(self.device)
        self.g_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        _to_memory_format(self.generator, config.channels_last)
        _to_memory_format(self.discriminator, config.channels_last)

        g_ratio = config.pl_every / (config.pl_every + 1) if config.pl_weight > 0 else 1.0
        d_ratio = config.r1_every / (config.r1_every + 1) if config.r1_gamma > 0 else 1.0
        self.g_optim = self._adam(self.generator, g_ratio)
        self.d_optim = self._adam(self.discriminator, d_ratio)
        self.g_ratio, self.d_ratio = g_ratio, d_ratio

        self.start_clock()
        self.nimg = 0
        self.pl_mean = torch.zeros((), device=self.device)
        self.data_skipped: str | None = None  # the data set's skip summary, logged with the start event
        if checkpoint is not None:
            self._load(checkpoint)
        if not common.restore_rng_state(context, checkpoint.get("rng") if checkpoint else None,
                                        fallback_seed=config.seed + 7919 * (self.step + 1)) and checkpoint:
            if context.is_main:
                warnings.warn("the checkpoint's RNG state does not fit this run (another process count or "
                              "device); continuing with a fresh seed")

        mixing = StyleMixingGenerator(self.generator)
        self.mixing_generator = mixing
        if context.distributed:
            from torch.nn.parallel import DistributedDataParallel

            options = {"device_ids": [self.device] if self.device.type == "cuda" else None}
            # Buffers (blur kernels, stored noise) never change, so there is nothing to sync per forward.
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
                options["forward_sync_buffers"] = False
            else:
                options["broadcast_buffers"] = False
            self.g_train = DistributedDataParallel(mixing, **options)
            self.d_train = DistributedDataParallel(self.discriminator, **options)
        else:
            self.g_train = mixing
            self.d_train = self.discriminator

        generator = torch.Generator().manual_seed(config.seed)
        self.sample_z = torch.randn(config.sample_count, config.style_dim, generator=generator)

    # ---------------------------------------------------------------------------------------------
    def _adam(self, module: nn.Module, ratio: float) -> torch.optim.Optimizer:
        lr, betas = self.config.lr * ratio, (0.0 ** ratio, 0.99 ** ratio)
        return torch.optim.Adam(module.parameters(), lr=lr, betas=betas, eps=1e-8)

    def _load(self, checkpoint: dict) -> None:
        with common.fitting_checkpoint():
            self.generator.load_state_dict(checkpoint["g"])
            self.discriminator.load_state_dict(checkpoint["d"])
            self.g_ema.load_state_dict(checkpoint["g_ema"])
            self.g_optim.load_state_dict(checkpoint["g_optim"])
            self.d_optim.load_state_dict(checkpoint["d_optim"])
        # Learning rates may have been changed on the command line; the optimiser state keeps moments only.
        for optim, ratio in ((self.g_optim, self.g_ratio), (self.d_optim, self.d_ratio)):
            for group in optim.param_groups:
                group["lr"] = self.config.lr * ratio
                group["betas"] = (0.0 ** ratio, 0.99 ** ratio)
        self.resume_clock(checkpoint)
        self.nimg = int(checkpoint["nimg"])
        self.pl_mean.fill_(float(checkpoint.get("pl_mean", 0.0)))

    def _random_latents(self, batch: int) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
        """``(z, z_mix, crossover)`` with style mixing applied with probability ``mixing_prob``."""
        z = torch.randn(batch, self.config.style_dim, device=self.device)
        num_ws = self.g_config.num_ws
        if self.config.mixing_prob > 0 and num_ws > 1 and torch.rand(()).item() < self.config.mixing_prob:
            crossover = int(torch.randint(1, num_ws, ()).item())
            return z, torch.randn(batch, self.config.style_dim, device=self.device), crossover
        return z, None, None

    def _format(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=self.memory_format)

    # ---------------------------------------------------------------------------------------------
    def discriminator_step(self, real: torch.Tensor, stats: dict[str, torch.Tensor]) -> None:
        """One D update on ``real [b, 3, S, S]`` and fresh fakes, plus the lazy R1 step when due."""
        config = self.config
        self.discriminator.requires_grad_(True)
        with torch.no_grad():
            z, z_mix, crossover = self._random_latents(self.per_rank_batch)
            fake, _ = self.mixing_generator(z, z_mix, crossover)
        fake_logits = self.d_train(self._format(fake))
        real_logits = self.d_train(real)
        loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        self.d_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optim.step()
        stats["loss_d"] += loss.detach()
        stats["score_real"] += real_logits.detach().mean()
        stats["score_fake"] += fake_logits.detach().mean()

        if config.r1_gamma > 0 and self.step % config.r1_every == 0:
            real = real.detach().requires_grad_(True)
            real_logits = self.d_train(real)
            (gradient,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            penalty = gradient.square().sum(dim=(1, 2, 3)).mean()
            # "+ 0 * logits" makes every D parameter part of the graph (the last bias has no effect on
            # the input gradient), so DDP's gradient all-reduce sees the same set on every rank.
            reg_loss = penalty * (config.r1_gamma / 2 * config.r1_every) + real_logits.sum() * 0
            self.d_optim.zero_grad(set_to_none=True)
            reg_loss.backward()
            self.d_optim.step()
            stats["r1_penalty"] += penalty.detach()
            stats["r1_count"] += 1

    def generator_step(self, stats: dict[str, torch.Tensor]) -> None:
        """One G update through the (frozen) discriminator, plus path-length regularisation when due."""
        config = self.config
        self.discriminator.requires_grad_(False)
        z, z_mix, crossover = self._random_latents(self.per_rank_batch)
        fake, _ = self.g_train(z, z_mix, crossover)
        # D is called directly, not through its DDP wrapper: it receives no gradients here.
        loss = F.softplus(-self.discriminator(self._format(fake))).mean()
        self.g_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.g_optim.step()
        stats["loss_g"] += loss.detach()

        if config.pl_weight > 0 and self.step % config.pl_every == 0:
            batch = max(1, self.per_rank_batch // config.pl_batch_shrink)
            z, z_mix, crossover = self._random_latents(batch)
            images, w_plus = self.g_train(z, z_mix, crossover)
            noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
            (gradient,) = torch.autograd.grad((images * noise).sum(), w_plus, create_graph=True)
            lengths = gradient.square().sum(dim=2).mean(dim=1).sqrt()
            with torch.no_grad():
                batch_mean = self.context.all_reduce_sum(lengths.mean().detach().clone()) / self.context.world_size
                self.pl_mean.lerp_(batch_mean, config.pl_decay)
            penalty = (lengths - self.pl_mean).square().mean()
            reg_loss = penalty * (config.pl_weight * config.pl_every) + images.sum() * 0
            self.g_optim.zero_grad(set_to_none=True)
            reg_loss.backward()
            self.g_optim.step()
            stats["pl_penalty"] += penalty.detach()
            stats["pl_count"] += 1
        self.discriminator.requires_grad_(True)

    # ---------------------------------------------------------------------------------------------
    def checkpoint_payload(self, rng_state: dict) -> dict:
        """Everything needed to resume, as plain containers (see the module docstring)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "g": self.generator.state_dict(),
            "d": self.discriminator.state_dict(),
            "g_ema": self.g_ema.state_dict(),
            "latent_avg": self.g_ema.w_avg.detach().cpu().clone(),
            "g_optim": self.g_optim.state_dict(),
            "d_optim": self.d_optim.state_dict(),
            "step": self.step,
            "nimg": self.nimg,
            "kimg": self.nimg / 1000.0,
            "wall_s": self.wall_time(),
            "pl_mean": float(self.pl_mean.item()),
            "rng": rng_state,
            "config": {"generator": self.g_config.to_dict(), "discriminator": self.d_config.to_dict()},
            "args": self.config.to_dict(),
        }


    def fingerprints(self) -> list[str]:
        """Each rank's sha256 of (G, D, G_ema) weights, in rank order (a collective)."""
        digest = common.weights_fingerprint(self.generator, self.discriminator, self.g_ema)
        as_tensor = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.uint8)
        return [bytes(t.tolist()).hex() for t in self.context.all_gather_tensor(as_tensor)]

    def snapshot(self, log: common.MetricsLog, event: str = "snapshot") -> None:
        """Write checkpoint.pt and g_ema.safetensors (rank 0); a collective over all ranks."""
        rng_state = common.capture_rng_state(self.context)
        fingerprints = self.fingerprints()
        if self.context.is_main:
            self.g_ema.set_w_avg(self.g_ema.compute_w_avg())
            common.save_checkpoint(self.run_dir / CHECKPOINT_NAME, self.checkpoint_payload(rng_state))
            export_generator(self.g_ema, self.run_dir / EXPORT_NAME,
                             {"kimg": f"{self.nimg / 1000:.3f}", "source": "latentedit train stylegan2",
                              # What the generator was trained on decides the face framing the photo commands use.
                              "data": _data_label(self.config)})
            if len(set(fingerprints)) > 1:
                warnings.warn(f"ranks hold different weights at step {self.step}: {fingerprints}")
            log.write({"event": event, "step": self.step, "kimg": self.nimg / 1000, "wall_s": self.wall_time(),
                       "fingerprints": fingerprints})

    @torch.no_grad()
    def save_samples(self) -> None:
        """Sample grid from G_ema: the fixed latents, psi 1, stored noise (rank 0 only)."""
        images = []
        for chunk in self.sample_z.split(max(1, self.config.batch)):
            images.append(self.g_ema(chunk.to(self.device), noise_mode="const").cpu())
        columns = int(math.ceil(math.sqrt(len(self.sample_z) * 2)))  # wider than tall for a landscape page
        common.save_image_grid(torch.cat(images), self.run_dir / "samples" / f"fakes_kimg{self.nimg / 1000:010.3f}.png",
                               columns=min(columns, len(self.sample_z)))

    # ---------------------------------------------------------------------------------------------
    def make_loader(self, dataset) -> torch.utils.data.DataLoader:
        """This rank's endless loader, positioned at image ``nimg`` of the global stream."""
        sampler = common.InfiniteShardSampler(len(dataset), self.per_rank_batch, self.context.rank,
                                              self.context.world_size, seed=self.config.seed,
                                              start_position=self.nimg)
        workers = self.config.workers
        # A private generator: creating the iterator would otherwise draw from the global RNG, and a
        # resumed run (which creates it at a different point of the stream) would diverge.
        loader_generator = torch.Generator().manual_seed(self.config.seed * 1009 + self.context.rank + self.step)
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.per_rank_batch, sampler=sampler, num_workers=workers, drop_last=True,
            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            worker_init_fn=common.ignore_stop_signals_in_worker if workers > 0 else None, generator=loader_generator)

    def next_real(self, batches, stop: common.StopRequest) -> torch.Tensor | None:
        """The next real batch ``[b, 3, S, S]`` on the device (mirrored at random when asked), or None when
        a stop request ended the data workers (:func:`common.next_unless_stopped`)."""
        batch = common.next_unless_stopped(batches, stop)
        if batch is None:
            return None
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        images = images.to(self.device, non_blocking=True)
        if self.config.mirror:
            flip = torch.rand(images.shape[0], 1, 1, 1, device=self.device) < 0.5
            images = torch.where(flip, images.flip(3), images)
        return self._format(images)

    def run(self, dataset) -> TrainResult:
        """Train until ``kimg`` or a stop signal; log, sample, snapshot and evaluate on schedule."""
        config, context = self.config, self.context
        self.started = time.perf_counter()
        total_nimg = int(round(config.kimg * 1000))
        global_batch = config.batch
        is_main = context.is_main
        log = common.MetricsLog(self.run_dir / METRICS_NAME, enabled=is_main,
                                tensorboard_dir=self.run_dir / "tensorboard")
        if is_main:
            log.write({"event": "resume" if self.resumed_step is not None else "start", "step": self.step,
                       "kimg": self.nimg / 1000, "world_size": context.world_size, "device": str(self.device),
                       "threads": torch.get_num_threads(),
                       "fingerprint": common.weights_fingerprint(self.generator, self.discriminator, self.g_ema),
                       "data_images": len(dataset), "data_skipped": self.data_skipped,
                       "args": config.to_dict()})
        intervals = {name: max(1, int(round(getattr(config, name) * 1000)))
                     for name in ("log_kimg", "sample_kimg", "snapshot_kimg")}
        eval_nimg = int(round(self.eval_every_kimg * 1000)) if self.eval_hook and self.eval_every_kimg > 0 else 0

        stat_names = ("loss_d", "loss_g", "score_real", "score_fake", "r1_penalty", "r1_count", "pl_penalty",
                      "pl_count", "steps")
        stats = {name: torch.zeros((), device=self.device) for name in stat_names}
        bar = None
        if is_main and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=round(final_nimg(self.nimg, total_nimg, global_batch) / 1000, 3),
                       initial=round(self.nimg / 1000, 3), unit="kimg",
                       dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0,
                       bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}{postfix}]")
        img_per_sec = None
        tick_start_time, tick_start_nimg, maintenance = time.perf_counter(), self.nimg, 0.0
        stop_signal = None
        loader = batches = None
        try:
            with common.StopRequest() as stop:
                save_reals = is_main and not (self.run_dir / "samples" / "reals.png").exists()
                if self.nimg < total_nimg:
                    loader = self.make_loader(dataset)
                    batches = iter(loader)
                    if is_main and self.resumed_step is None:
                        self.save_samples()
                while self.nimg < total_nimg:
                    if context.any(stop.requested):
                        stop_signal = stop.signal_number or int(signal.SIGTERM)  # another rank was signalled
                        break
                    real = self.next_real(batches, stop)
                    if real is None:
                        stop_signal = stop.signal_number
                        break
                    if save_reals:
                        common.save_image_grid(real[:config.sample_count].cpu(), self.run_dir / "samples" / "reals.png")
                        save_reals = False
                    self.discriminator_step(real, stats)
                    self.generator_step(stats)
                    previous = self.nimg
                    self.step += 1
                    self.nimg += global_batch
                    stats["steps"] += 1
                    beta = common.ema_beta(global_batch, config.ema_kimg, self.nimg, config.ema_rampup)
                    common.update_ema(self.g_ema, self.generator, beta)
                    if bar is not None:
                        bar.update(round(self.nimg / 1000 - bar.n, 6))
                    done = self.nimg >= total_nimg
                    crossed = functools.partial(_crossed, previous, self.nimg)
                    if crossed(intervals["log_kimg"]) or done:
                        if self.device.type == "cuda":
                            torch.cuda.synchronize(self.device)
                        elapsed = time.perf_counter() - tick_start_time - maintenance
                        img_per_sec = (self.nimg - tick_start_nimg) / max(elapsed, 1e-9)
                        record = self._tick_record(stats, img_per_sec, beta)
                        if bar is not None:
                            bar.set_postfix(d=f"{record['loss_d']:.3f}", g=f"{record['loss_g']:.3f}",
                                            img_s=f"{img_per_sec:.1f}", refresh=False)
                        log.write(record, step=self.nimg)
                        for name in stats:
                            stats[name].zero_()
                        tick_start_time, tick_start_nimg, maintenance = time.perf_counter(), self.nimg, 0.0
                    maintenance_start = time.perf_counter()
                    if is_main and (crossed(intervals["sample_kimg"]) or done):
                        self.save_samples()
                    if crossed(intervals["snapshot_kimg"]) or done:
                        self.snapshot(log)
                    if is_main and eval_nimg and (crossed(eval_nimg) or done):
                        results = self.eval_hook(self.g_ema, self.nimg / 1000, self.run_dir) or {}
                        log.write({"event": "eval", "step": self.step, "kimg": self.nimg / 1000, **dict(results)},
                                  step=self.nimg)
                    maintenance += time.perf_counter() - maintenance_start
                if stop_signal is not None:
                    self.snapshot(log, event="stopped")
                elif self.nimg >= total_nimg and is_main:
                    log.write({"event": "done", "step": self.step, "kimg": self.nimg / 1000,
                               "wall_s": self.wall_time()})
        finally:
            if bar is not None:
                bar.close()
            log.close()
            del batches, loader  # stops the worker processes
        return TrainResult(self.run_dir, self.step, self.nimg, self.nimg >= total_nimg, stop_signal, img_per_sec,
                           self.resumed_step)

    def _tick_record(self, stats: dict[str, torch.Tensor], img_per_sec: float, beta: float) -> dict:
        packed = torch.stack([stats[name] for name in stats])
        self.context.all_reduce_sum(packed)
        totals = dict(zip(stats, packed.tolist()))
        steps = max(totals["steps"], 1.0)
        record = {
            "step": self.step,
            "kimg": self.nimg / 1000,
            "wall_s": round(self.wall_time(), 3),
            "img_per_s": round(img_per_sec, 3),
            "loss_d": totals["loss_d"] / steps,
            "loss_g": totals["loss_g"] / steps,
            "score_real": totals["score_real"] / steps,
            "score_fake": totals["score_fake"] / steps,
            "ema_beta": beta,
        }
        if totals["r1_count"]:
            record["r1_penalty"] = totals["r1_penalty"] / totals["r1_count"]
        if totals["pl_count"]:
            record["pl_penalty"] = totals["pl_penalty"] / totals["pl_count"]
            record["pl_mean"] = float(self.pl_mean.item())
        for name in ("loss_d", "loss_g"):
            common.check_finite(name, record[name])
        return record


def train_stylegan2(config: StyleGAN2TrainConfig, run_dir: str | os.PathLike,
                    resume_from: str | os.PathLike | None = None, eval_hook: EvalHook | None = None,
                    eval_every_kimg: float = 0.0, progress: bool = True) -> TrainResult:
    """Train (or continue training) a StyleGAN2 generator until ``config.kimg`` thousand images.

    ``resume_from``: a checkpoint file or run folder to continue from; None continues from
    ``run_dir/checkpoint.pt`` when present, else starts fresh. Its stored options must agree with
    ``config`` on :data:`FROZEN_ON_RESUME` (use :func:`resume_config` to merge). ``eval_hook(g_ema,
    kimg, run_dir)`` runs on rank 0 every ``eval_every_kimg`` and at the end; the dict it returns is
    logged in metrics.jsonl. Under ``torchrun`` this joins the process group (and leaves it on return).

    Raises :class:`InputError` / :class:`CheckpointError` for bad options, data or checkpoints.
    """
    run_dir = Path(run_dir)
    context = common.init_distributed(config.device)
    try:
        config.validate(context.world_size)
        common.configure_device(context)
        checkpoint_path = find_resume_checkpoint(run_dir, resume_from)
        checkpoint = read_training_checkpoint(checkpoint_path) if checkpoint_path is not None else None
        if checkpoint is not None:
            changed = frozen_differences(StyleGAN2TrainConfig.from_dict(checkpoint["args"]), config)
            if changed:
                raise InputError(f"{checkpoint_path} was trained with different {', '.join(changed)}; resume with "
                                 "the same options or write to a new run folder")
        from latentedit.data.datasets import open_image_dataset

        dataset = open_image_dataset(config.data, config.size, config.data_format)
        skipped = dataset.skip_summary() if hasattr(dataset, "skip_summary") else None
        if context.is_main and skipped:
            print(f"latentedit: {skipped}; training on the other {len(dataset)}", file=sys.stderr, flush=True)
        if context.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if checkpoint is not None:
                common.truncate_metrics(run_dir / METRICS_NAME, int(checkpoint["step"]))
            elif (run_dir / METRICS_NAME).exists():
                common.truncate_metrics(run_dir / METRICS_NAME, -1)  # a fresh start: forget old lines
        context.barrier()
        trainer = _Trainer(config, run_dir, context, checkpoint, eval_hook, eval_every_kimg, progress)
        trainer.data_skipped = skipped
        del checkpoint
        with warnings.catch_warnings():
            # DDP notices that the double-backward gradient of D's [1, C] output weight has size-1-dim
            # strides unlike its bucket; it is copied correctly, only the message is noise.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            return trainer.run(dataset)
    finally:
        context.shutdown()
