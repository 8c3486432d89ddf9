"""Train StarGAN (Choi et al. 2018) on a CelebA-layout folder, as the official code does (SPEC §6).

One iteration (``step`` counts iterations, i.e. discriminator updates):

1. A real batch ``x [b, 3, S, S]`` with labels ``c_org [b, c]`` from the official training split
   (:mod:`latentedit.baselines.celeba_split`), each image flipped left-right with probability 0.5
   (``flip``). Target labels ``c_trg = c_org[randperm(b)]``: the batch's own labels, shuffled.
2. Discriminator (WGAN-GP): ``L_D = -mean D_src(x) + mean D_src(G(x, c_trg)) + lambda_cls * BCE(D_cls(x), c_org)
   + lambda_gp * mean((||grad_x_hat D_src(x_hat)||_2 - 1)^2)`` with ``x_hat = a x + (1 - a) G(x, c_trg)``,
   ``a ~ U(0, 1)`` per sample, the gradient norm over all pixels of a sample. BCE is
   binary cross-entropy with logits summed over the batch and the labels, divided by ``b`` (for exclusive
   categories: softmax cross-entropy, as the official code does for RaFD).
3. Every ``n_critic``-th iteration (iterations 5, 10, ... counting from 1), the generator:
   ``L_G = -mean D_src(G(x, c_trg)) + lambda_rec * mean |x - G(G(x, c_trg), c_org)| + lambda_cls *
   BCE(D_cls(G(x, c_trg)), c_trg) + lambda_id * mean |x - G(x, c_org)|``. The last term is not part of
   StarGAN (``lambda_id`` defaults to 0, the official recipe); it is CycleGAN's identity loss, offered
   because the cycle term alone lets a briefly trained generator recolour skin and background in any
   invertible way (:class:`StarGANTrainConfig`).
4. Adam (``g_lr``, ``d_lr`` 1e-4, betas (0.5, 0.999)). Both learning rates are multiplied by
   ``min(1, (iters - step) / decay_iters)`` (``decay_iters`` defaults to ``iters // 2``): constant for the
   first half, then linear to 0, as the paper intends (the official code's decay is effectively none).

Networks (``generator``, ``discriminator``): StarGAN's own (the defaults), or seed 004's FastStyleNet generator and
PatchGAN critic with a domain-classification head (:mod:`latentedit.baselines.faststyle`), in any combination;
the losses are the same for all. ``g_conv_dim`` / ``g_repeat_num`` size either generator; ``d_repeat_num`` is the
number of strided convolutions of either critic (``n_layers`` of the PatchGAN).

Data (``data``): a CelebA-layout folder (binary attributes ``attrs``, the official split), or exclusive
categories (:mod:`latentedit.data.categories`): a class-folder layout ``DIR/<category>/*.jpg`` or
``toyfaces-hair[:COUNT]``, with one-hot labels. For categories ``attrs`` lists the categories (label order); the
default attribute list, or an empty one, means every category of the data. Target labels are then the batch's
shuffled one-hot labels, and sample grids have one column per category.

Run directory (only rank 0 writes):

- ``checkpoint.pt``: G, D, both optimisers, step, wall time, every rank's RNG state, network configs and
  the training options (plain containers, ``torch.load(weights_only=True)``). Written atomically every
  ``snapshot_every`` iterations, at the end, and on SIGTERM/SIGINT (after the iteration in progress).
- ``generator.safetensors``: the generator with its config, attribute names and transform
  (:func:`latentedit.baselines.stargan.save_stargan_generator`), written with every checkpoint; what
  ``stargan transfer --ckpt`` reads.
- ``samples/step0000000.png`` ... every ``sample_every`` iterations and at the end: the official layout,
  one row per image of a fixed batch (the first ``sample_count`` test images, or training images when
  the test split is empty), columns = the input, then one translation per attribute
  (:func:`latentedit.baselines.stargan.single_attribute_targets`).
- ``metrics.jsonl``: every ``log_every`` iterations the mean losses (``d_loss_real``, ``d_loss_fake``,
  ``d_loss_cls``, ``d_loss_gp``, ``d_loss``, ``d_cls_acc``; ``g_loss_fake``, ``g_loss_rec``,
  ``g_loss_cls``, ``g_loss`` when a G step happened), learning rates and real images per second;
  events ``start``, ``resume``, ``snapshot`` (with each rank's weight fingerprint), ``stopped`` (a signal),
  ``paused`` (the end of a session, see :func:`train_stargan`), ``done``.
  ``tensorboard/`` too when TensorBoard is installed.

Resuming: ``RUN/checkpoint.pt`` is picked up automatically (or ``resume_from``); the data stream, every
rank's RNG state and all counters continue where the checkpoint left them, so a resumed run reproduces
an uninterrupted one; metric lines logged after the checkpoint are dropped.

Multi-process: under ``torchrun`` each rank trains on ``batch / world_size`` images with
DistributedDataParallel (gloo on CPU, nccl on CUDA); label shuffling happens within each rank's share.
The generator's running normalisation statistics (never used to normalise, see
:mod:`latentedit.baselines.stargan`) are copied from rank 0 at each snapshot.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F

from latentedit.baselines import faststyle, stargan
from latentedit.baselines.celeba_split import StarGANCelebA
from latentedit.errors import InputError
from latentedit.train import common

CHECKPOINT_FORMAT = "latentedit.baselines.stargan"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
EXPORT_NAME = "generator.safetensors"
METRICS_NAME = "metrics.jsonl"

#: Options that define the networks, the data split or the meaning of the counters; a resumed run keeps them.
FROZEN_ON_RESUME = ("attrs", "image_size", "crop_size", "g_conv_dim", "d_conv_dim", "g_repeat_num",
                    "d_repeat_num", "batch", "test_count", "generator", "discriminator")


@dataclasses.dataclass
class StarGANTrainConfig:
    """Every option of a StarGAN training run (module docstring for the algorithm; defaults are the
    official ones except ``snapshot_every``, which is 1000 rather than 10000 so CPU runs lose little
    when interrupted). ``iters`` is the total length of the run (not of this session);
    ``decay_iters`` None means ``iters // 2``; ``device`` is ``auto``/``cpu``/``cuda``.

    ``lambda_id`` > 0 adds an identity term ``lambda_id * mean |x - G(x, c_org)|`` to the generator loss
    (an extra generator pass per generator step). It is not in the StarGAN paper or code; CycleGAN uses
    it at half the cycle weight. Without it nothing asks ``G(x, c)`` to keep what ``c`` does not name,
    only that the cycle can undo it.
    """

    data: str
    attrs: list = dataclasses.field(default_factory=lambda: list(stargan.DEFAULT_ATTRIBUTES))
    image_size: int = 128
    crop_size: int = 178
    g_conv_dim: int = 64
    d_conv_dim: int = 64
    g_repeat_num: int = 6
    d_repeat_num: int = 6
    batch: int = 16
    iters: int = 200_000
    decay_iters: int | None = None
    g_lr: float = 1e-4
    d_lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 5
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_gp: float = 10.0
    lambda_id: float = 0.0
    test_count: int = 2000
    flip: bool = True
    log_every: int = 10
    sample_every: int = 1000
    snapshot_every: int = 1000
    sample_count: int = 8
    seed: int = 0
    workers: int = 1
    device: str = "auto"
    generator: str = "stargan"
    discriminator: str = "stargan"

    def __post_init__(self):
        self.attrs = list(self.attrs)

    def to_dict(self) -> dict:
        """Plain dict, safe for JSON and ``torch.load(weights_only=True)``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StarGANTrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) are ignored."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def resolved_decay_iters(self) -> int:
        return self.iters // 2 if self.decay_iters is None else self.decay_iters

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier of iteration ``step`` (0-based): ``min(1, (iters - step) / decay_iters)``,
        1 when ``decay_iters`` is 0."""
        decay = self.resolved_decay_iters
        if decay <= 0:
            return 1.0
        return min(1.0, max(0.0, (self.iters - step) / decay))

    def generator_config(self):
        """:class:`~latentedit.baselines.stargan.StarGANGeneratorConfig` or
        :class:`~latentedit.baselines.faststyle.FastStyleNetConfig`, by ``generator``."""
        return faststyle.generator_config(self.generator, len(self.attrs), self.g_conv_dim, self.g_repeat_num)

    def discriminator_config(self):
        """:class:`~latentedit.baselines.stargan.StarGANDiscriminatorConfig` or
        :class:`~latentedit.baselines.faststyle.PatchCriticConfig`, by ``discriminator``."""
        return faststyle.discriminator_config(self.discriminator, self.image_size, len(self.attrs), self.d_conv_dim,
                                              self.d_repeat_num)

    @property
    def categorical(self) -> bool:
        """Whether ``data`` holds exclusive categories (one-hot labels) rather than CelebA attributes."""
        from latentedit.data.categories import is_categorical

        return is_categorical(self.data)

    def validate(self, world_size: int = 1) -> None:
        """Raise :class:`InputError` for options that cannot train (a one-line reason each)."""
        positive = {"image_size": self.image_size, "crop_size": self.crop_size, "g_conv_dim": self.g_conv_dim,
                    "d_conv_dim": self.d_conv_dim, "d_repeat_num": self.d_repeat_num, "batch": self.batch,
                    "iters": self.iters, "n_critic": self.n_critic, "log_every": self.log_every,
                    "sample_every": self.sample_every, "snapshot_every": self.snapshot_every,
                    "sample_count": self.sample_count}
        for name, value in positive.items():
            if value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        for name in ("g_repeat_num", "test_count", "workers"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.decay_iters is not None and not 0 <= self.decay_iters <= self.iters:
            raise InputError(f"--decay-iters must be in [0, --iters={self.iters}], got {self.decay_iters}")
        for name in ("g_lr", "d_lr"):
            if not getattr(self, name) > 0:
                raise InputError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(f"--{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("lambda_cls", "lambda_rec", "lambda_gp", "lambda_id"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.image_size % 4:
            raise InputError(f"--image-size must be a multiple of 4 (the generator halves it twice), got "
                             f"{self.image_size}")
        if self.generator not in faststyle.GENERATORS:
            raise InputError(f"--generator must be one of {', '.join(faststyle.GENERATORS)}, got {self.generator!r}")
        if self.discriminator not in faststyle.DISCRIMINATORS:
            raise InputError(f"--discriminator must be one of {', '.join(faststyle.DISCRIMINATORS)}, got "
                             f"{self.discriminator!r}")
        if not self.attrs:
            raise InputError("choose at least one attribute with --attrs")
        self.discriminator_config().validate()
        if self.batch % world_size:
            raise InputError(f"--batch {self.batch} must be divisible by the number of processes ({world_size})")


@dataclasses.dataclass
class StarGANTrainResult:
    """Outcome of :func:`train_stargan`: ``finished`` when ``iters`` was reached; ``stop_signal`` the
    signal that stopped it early (a checkpoint was written) or None; ``img_per_sec`` real images per
    second over the last logging window (None before one completed); ``resumed_step`` or None."""

    run_dir: Path
    step: int
    finished: bool
    stop_signal: int | None
    img_per_sec: float | None
    resumed_step: int | None

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    @property
    def generator_path(self) -> Path:
        return self.run_dir / EXPORT_NAME


# --------------------------------------------------------------------------------------------------
# Resume helpers

def find_resume_checkpoint(run_dir: str | os.PathLike, resume: str | os.PathLike | None = None) -> Path | None:
    """See :func:`latentedit.train.common.find_resume_checkpoint`."""
    return common.find_resume_checkpoint(run_dir, resume, CHECKPOINT_NAME, what="StarGAN training")


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    """Load and check a checkpoint written by :func:`train_stargan` (``weights_only=True``)."""
    return common.read_run_checkpoint(path, CHECKPOINT_FORMAT, ("g", "d", "g_optim", "d_optim", "step", "args"), "StarGAN")


def frozen_differences(saved: StarGANTrainConfig, requested: StarGANTrainConfig) -> list[str]:
    """Names of :data:`FROZEN_ON_RESUME` options on which two configs disagree."""
    return [name for name in FROZEN_ON_RESUME if getattr(saved, name) != getattr(requested, name)]


def resume_config(saved_args: Mapping[str, Any], requested: StarGANTrainConfig,
                  explicit: set[str] | frozenset[str] = frozenset()) -> StarGANTrainConfig:
    """The options of a resumed run: the saved ones, overridden by the ``explicit`` fields of
    ``requested`` (what the user typed). An explicit value of a :data:`FROZEN_ON_RESUME` field that
    differs from the saved one raises :class:`InputError`."""
    saved = StarGANTrainConfig.from_dict(saved_args)
    conflicts = [name for name in frozen_differences(saved, requested) if name in explicit]
    if conflicts:
        name = conflicts[0]
        raise InputError(f"the run being resumed was trained with {name}={getattr(saved, name)}; drop that option "
                         "or write to a new run folder")
    merged = dataclasses.asdict(saved)
    for name in explicit:
        if name not in FROZEN_ON_RESUME and name in merged:
            merged[name] = getattr(requested, name)
    return StarGANTrainConfig(**merged)


def _bce_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, summed over batch and labels, divided by the batch size."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / logits.shape[0]


# --------------------------------------------------------------------------------------------------
# Training

class _Trainer(common.RunClock):
    """State and steps of one run; :func:`train_stargan` is the public entry point."""

    STAT_NAMES = ("d_loss_real", "d_loss_fake", "d_loss_cls", "d_loss_gp", "d_loss", "d_cls_acc", "d_steps",
                  "g_loss_fake", "g_loss_rec", "g_loss_cls", "g_loss_id", "g_loss", "g_steps")

    def __init__(self, config: StarGANTrainConfig, run_dir: Path, context: common.DistributedContext,
                 checkpoint: dict | None, progress: bool, session_iters: int | None = None):
        self.config = config
        self.session_iters = session_iters
        self.run_dir = run_dir
        self.context = context
        self.device = context.device
        self.progress = progress
        self.per_rank_batch = config.batch // context.world_size

        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.g_config, self.d_config = config.generator_config(), config.discriminator_config()
        self.exclusive = config.categorical
        self.generator = faststyle.build_generator(config.generator, self.g_config.c_dim, self.g_config.conv_dim,
                                                   self.g_config.repeat_num).to(self.device)
        self.discriminator = faststyle.build_discriminator(self.d_config).to(self.device)
        self.g_optim = torch.optim.Adam(self.generator.parameters(), config.g_lr, (config.beta1, config.beta2))
        self.d_optim = torch.optim.Adam(self.discriminator.parameters(), config.d_lr, (config.beta1, config.beta2))
        self.start_clock()
        if checkpoint is not None:
            self._load(checkpoint)
        restored = common.restore_rng_state(context, checkpoint.get("rng") if checkpoint else None,
                                            fallback_seed=config.seed + 7919 * (self.step + 1))
        if checkpoint is not None and not restored and context.is_main:
            warnings.warn("the checkpoint's RNG state does not fit this run (another process count or device); "
                          "continuing with a fresh seed")
        if context.distributed:
            import inspect

            from torch.nn.parallel import DistributedDataParallel

            # Running statistics never normalise anything; they are synchronised at snapshots instead
            # of before every forward.
            options = {"device_ids": [self.device] if self.device.type == "cuda" else None}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
                options["forward_sync_buffers"] = False
            else:
                options["broadcast_buffers"] = False
            self.g_train = DistributedDataParallel(self.generator, **options)
            self.d_train = DistributedDataParallel(self.discriminator, **options)
        else:
            self.g_train, self.d_train = self.generator, self.discriminator

    def _load(self, checkpoint: dict) -> None:
        with common.fitting_checkpoint():
            self.generator.load_state_dict(checkpoint["g"])
            self.discriminator.load_state_dict(checkpoint["d"])
            self.g_optim.load_state_dict(checkpoint["g_optim"])
            self.d_optim.load_state_dict(checkpoint["d_optim"])
        self.resume_clock(checkpoint)

    # ---------------------------------------------------------------------------------------------
    def set_learning_rates(self) -> float:
        """Apply the schedule for the current step; returns the multiplier."""
        factor = self.config.lr_factor(self.step)
        for optim, base in ((self.g_optim, self.config.g_lr), (self.d_optim, self.config.d_lr)):
            for group in optim.param_groups:
                group["lr"] = base * factor
                group["betas"] = (self.config.beta1, self.config.beta2)
        return factor

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """StarGAN's domain-classification loss: BCE summed over the attributes (CelebA), or, for exclusive
        categories, softmax cross-entropy against the one-hot label's category (the official code's RaFD mode)."""
        if self.exclusive:
            return F.cross_entropy(logits, labels.argmax(dim=1))
        return _bce_sum(logits, labels)

    def discriminator_step(self, real: torch.Tensor, label_org: torch.Tensor, label_trg: torch.Tensor,
                           stats: dict[str, torch.Tensor]) -> None:
        """One WGAN-GP critic update with the auxiliary classification loss (module docstring, step 2)."""
        config = self.config
        self.discriminator.requires_grad_(True)
        with torch.no_grad():
            fake = self.generator(real, label_trg)
        src_real, cls_real = self.d_train(real)
        src_fake, _ = self.d_train(fake)
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=self.device)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        src_mixed, _ = self.d_train(mixed)
        (gradient,) = torch.autograd.grad(src_mixed, mixed, grad_outputs=torch.ones_like(src_mixed),
                                          create_graph=True)
        penalty = (gradient.flatten(1).norm(2, dim=1) - 1).square().mean()
        loss_real, loss_fake = -src_real.mean(), src_fake.mean()
        loss_cls = self.classification_loss(cls_real, label_org)
        loss = loss_real + loss_fake + config.lambda_cls * loss_cls + config.lambda_gp * penalty
        self.d_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optim.step()
        with torch.no_grad():
            stats["d_loss_real"] += loss_real
            stats["d_loss_fake"] += loss_fake
            stats["d_loss_cls"] += loss_cls
            stats["d_loss_gp"] += penalty
            stats["d_loss"] += loss
            if self.exclusive:
                stats["d_cls_acc"] += (cls_real.argmax(dim=1) == label_org.argmax(dim=1)).float().mean()
            else:
                stats["d_cls_acc"] += ((cls_real > 0).float() == label_org).float().mean()
            stats["d_steps"] += 1

    def generator_step(self, real: torch.Tensor, label_org: torch.Tensor, label_trg: torch.Tensor,
                       stats: dict[str, torch.Tensor]) -> None:
        """One generator update: adversarial, reconstruction and classification terms (step 3)."""
        config = self.config
        self.discriminator.requires_grad_(False)
        fake = self.g_train(real, label_trg)
        # D is called directly, not through its DDP wrapper: it takes no gradient here.
        src_fake, cls_fake = self.discriminator(fake)
        reconstruction = self.g_train(fake, label_org)
        loss_fake = -src_fake.mean()
        loss_rec = (real - reconstruction).abs().mean()
        loss_cls = self.classification_loss(cls_fake, label_trg)
        loss = loss_fake + config.lambda_rec * loss_rec + config.lambda_cls * loss_cls
        if config.lambda_id > 0:
            loss_id = (real - self.g_train(real, label_org)).abs().mean()
            loss = loss + config.lambda_id * loss_id
        self.g_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.g_optim.step()
        self.discriminator.requires_grad_(True)
        with torch.no_grad():
            stats["g_loss_fake"] += loss_fake
            stats["g_loss_rec"] += loss_rec
            stats["g_loss_cls"] += loss_cls
            if config.lambda_id > 0:
                stats["g_loss_id"] += loss_id
            stats["g_loss"] += loss
            stats["g_steps"] += 1

    # ---------------------------------------------------------------------------------------------
    def checkpoint_payload(self, rng_state: dict) -> dict:
        """Everything needed to resume, as plain containers."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "g": self.generator.state_dict(),
            "d": self.discriminator.state_dict(),
            "g_optim": self.g_optim.state_dict(),
            "d_optim": self.d_optim.state_dict(),
            "step": self.step,
            "nimg": self.step * self.config.batch,
            "wall_s": self.wall_time(),
            "rng": rng_state,
            "config": {"generator": dataclasses.asdict(self.g_config),
                       "discriminator": dataclasses.asdict(self.d_config),
                       "architecture": {"generator": self.config.generator,
                                        "discriminator": self.config.discriminator},
                       "labels": "exclusive" if self.exclusive else "attributes"},
            "args": self.config.to_dict(),
        }

    def fingerprints(self) -> list[str]:
        """Each rank's sha256 of (G, D) weights and buffers, in rank order (a collective)."""
        digest = common.weights_fingerprint(self.generator, self.discriminator)
        as_tensor = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.uint8)
        return [bytes(t.tolist()).hex() for t in self.context.all_gather_tensor(as_tensor)]

    def snapshot(self, log: common.MetricsLog, event: str = "snapshot") -> None:
        """Write checkpoint.pt and generator.safetensors (rank 0); a collective over all ranks."""
        if self.context.distributed:
            for buffer in self.generator.buffers():
                dist.broadcast(buffer, src=0)
        rng_state = common.capture_rng_state(self.context)
        fingerprints = self.fingerprints()
        if self.context.is_main:
            common.save_checkpoint(self.run_dir / CHECKPOINT_NAME, self.checkpoint_payload(rng_state))
            self.export()
            if len(set(fingerprints)) > 1:
                warnings.warn(f"ranks hold different weights at step {self.step}: {fingerprints}")
            log.write({"event": event, "step": self.step, "wall_s": self.wall_time(), "fingerprints": fingerprints})

    def export(self) -> None:
        """Write the generator file with its config and provenance (rank 0)."""
        config = self.config
        stargan.save_stargan_generator(
            self.generator, self.run_dir / EXPORT_NAME, config.attrs, config.image_size, config.crop_size,
            {"iterations": str(self.step), "images_seen": str(self.step * config.batch),
             "source": "latentedit stargan train", "data": str(config.data),
             "train_wall_s": f"{self.wall_time():.1f}"}, exclusive=self.exclusive)

    @torch.no_grad()
    def save_samples(self, fixed: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Official-layout grid of the fixed batch: per row the input, then one column per attribute."""
        if fixed is None:
            return
        images, labels = fixed
        targets = (faststyle.category_targets(labels.shape[0], labels.shape[1]) if self.exclusive
                   else stargan.single_attribute_targets(labels, self.config.attrs))
        self.generator.eval()
        try:
            columns = [images] + [self.generator(images, target).cpu() for target in targets]
        finally:
            self.generator.train()
        grid = torch.stack(columns, dim=1).flatten(0, 1)  # row-major: image i's columns are adjacent
        common.save_image_grid(grid, self.run_dir / "samples" / f"step{self.step:07d}.png", columns=len(columns))

    def make_loader(self, dataset) -> torch.utils.data.DataLoader:
        """This rank's endless loader, positioned at the current step of the global stream."""
        sampler = common.InfiniteShardSampler(len(dataset), self.per_rank_batch, self.context.rank,
                                              self.context.world_size, seed=self.config.seed,
                                              start_position=self.step * self.config.batch)
        workers = self.config.workers
        # A private generator: creating the iterator would otherwise draw from the global RNG, and a
        # resumed run (which creates it at another point of the stream) would diverge.
        loader_generator = torch.Generator().manual_seed(self.config.seed * 1009 + self.context.rank + self.step)
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.per_rank_batch, sampler=sampler, num_workers=workers, drop_last=True,
            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            worker_init_fn=common.ignore_stop_signals_in_worker if workers > 0 else None, generator=loader_generator)

    def next_batch(self, batches, stop: common.StopRequest) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The next ``(images [b, 3, S, S], labels [b, c])`` on the device, randomly mirrored when asked, or
        None when a stop request ended the data workers (:func:`common.next_unless_stopped`)."""
        batch = common.next_unless_stopped(batches, stop)
        if batch is None:
            return None
        images, labels = batch
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.config.flip:
            flip = torch.rand(images.shape[0], 1, 1, 1, device=self.device) < 0.5
            images = torch.where(flip, images.flip(3), images)
        return images, labels

    def _tick_record(self, stats: dict[str, torch.Tensor], img_per_sec: float, lr_factor: float) -> dict:
        packed = self.context.all_reduce_sum(torch.stack([stats[name] for name in self.STAT_NAMES]))
        totals = dict(zip(self.STAT_NAMES, packed.tolist()))
        record = {"step": self.step, "nimg": self.step * self.config.batch, "wall_s": round(self.wall_time(), 3),
                  "img_per_s": round(img_per_sec, 3), "g_lr": self.config.g_lr * lr_factor,
                  "d_lr": self.config.d_lr * lr_factor}
        for prefix in ("d", "g"):
            count = totals[f"{prefix}_steps"]
            if count:
                for name in self.STAT_NAMES:
                    if name.startswith(prefix + "_") and name != f"{prefix}_steps":
                        record[name] = totals[name] / count
        if not self.config.lambda_id:
            record.pop("g_loss_id", None)  # the official recipe has no identity term: log nothing for it
        for name in ("d_loss", "g_loss"):
            if name in record:
                common.check_finite(name, record[name])
        return record

    def run(self, dataset, fixed: tuple[torch.Tensor, torch.Tensor] | None) -> StarGANTrainResult:
        """Train until ``iters`` or a stop signal; log, sample and snapshot on schedule."""
        config, context = self.config, self.context
        self.started = time.perf_counter()
        is_main = context.is_main
        log = common.MetricsLog(self.run_dir / METRICS_NAME, enabled=is_main,
                                tensorboard_dir=self.run_dir / "tensorboard")
        if is_main:
            log.write({"event": "resume" if self.resumed_step is not None else "start", "step": self.step,
                       "world_size": context.world_size, "device": str(self.device),
                       "threads": torch.get_num_threads(), "train_images": len(dataset),
                       "fingerprint": common.weights_fingerprint(self.generator, self.discriminator),
                       "args": config.to_dict()})
        stats = {name: torch.zeros((), device=self.device) for name in self.STAT_NAMES}
        bar = None
        if is_main and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=config.iters, initial=self.step, unit="it", dynamic_ncols=True,
                       mininterval=1.0 if sys.stderr.isatty() else 30.0)
        img_per_sec = None
        tick_time, tick_step, maintenance = time.perf_counter(), self.step, 0.0
        stop_signal = None
        paused = False
        session_end = config.iters if self.session_iters is None else min(config.iters, self.step + self.session_iters)
        loader = batches = None
        try:
            with common.StopRequest() as stop:
                if self.step < config.iters:
                    loader = self.make_loader(dataset)
                    batches = iter(loader)
                    if is_main and self.resumed_step is None:
                        self.save_samples(fixed)
                while self.step < config.iters:
                    if self.step >= session_end:
                        paused = True
                        break
                    if context.any(stop.requested):
                        stop_signal = stop.signal_number or int(signal.SIGTERM)  # another rank was signalled
                        break
                    batch = self.next_batch(batches, stop)
                    if batch is None:
                        stop_signal = stop.signal_number
                        break
                    real, label_org = batch
                    label_trg = label_org[torch.randperm(label_org.shape[0], device=self.device)]
                    lr_factor = self.set_learning_rates()
                    self.discriminator_step(real, label_org, label_trg, stats)
                    if (self.step + 1) % config.n_critic == 0:
                        self.generator_step(real, label_org, label_trg, stats)
                    self.step += 1
                    if bar is not None:
                        bar.update(1)
                    done = self.step >= config.iters
                    if self.step % config.log_every == 0 or done:
                        if self.device.type == "cuda":
                            torch.cuda.synchronize(self.device)
                        elapsed = time.perf_counter() - tick_time - maintenance
                        img_per_sec = (self.step - tick_step) * config.batch / max(elapsed, 1e-9)
                        record = self._tick_record(stats, img_per_sec, lr_factor)
                        if bar is not None and "d_loss" in record:
                            bar.set_postfix(d=f"{record['d_loss']:.3f}", g=f"{record.get('g_loss', float('nan')):.3f}",
                                            img_s=f"{img_per_sec:.1f}", refresh=False)
                        log.write(record, step=self.step)
                        for value in stats.values():
                            value.zero_()
                        tick_time, tick_step, maintenance = time.perf_counter(), self.step, 0.0
                    maintenance_start = time.perf_counter()
                    if is_main and (self.step % config.sample_every == 0 or done):
                        self.save_samples(fixed)
                    if self.step % config.snapshot_every == 0 or done:
                        self.snapshot(log)
                    maintenance += time.perf_counter() - maintenance_start
                if stop_signal is not None or paused:
                    self.snapshot(log, event="stopped" if stop_signal is not None else "paused")
                elif is_main and self.step >= config.iters:
                    log.write({"event": "done", "step": self.step, "wall_s": self.wall_time()})
        finally:
            if bar is not None:
                bar.close()
            log.close()
            del batches, loader  # stops the worker processes
        return StarGANTrainResult(self.run_dir, self.step, self.step >= config.iters, stop_signal, img_per_sec,
                                  self.resumed_step)


def open_dataset(config: StarGANTrainConfig, split: str):
    """The ``split`` of ``config.data``: :class:`StarGANCelebA` for a CelebA folder, else
    :func:`latentedit.data.categories.open_category_dataset` (exclusive categories)."""
    if config.categorical:
        from latentedit.data.categories import open_category_dataset

        return open_category_dataset(config.data, config.attrs, split, config.image_size, config.crop_size,
                                     config.test_count)
    return StarGANCelebA(config.data, config.attrs, split, config.image_size, config.crop_size, config.test_count)


def resolve_categories(config: StarGANTrainConfig) -> StarGANTrainConfig:
    """For category data, ``config`` with ``attrs`` = every category when it holds the default attribute list or
    nothing (module docstring); other configs unchanged."""
    if not config.categorical or (config.attrs and config.attrs != list(stargan.DEFAULT_ATTRIBUTES)):
        return config
    from latentedit.data.categories import categories_of

    return dataclasses.replace(config, attrs=list(categories_of(config.data)))


def fixed_sample_batch(config: StarGANTrainConfig, train_set,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed batch of the sample grids: the first ``sample_count`` test images (training images when
    the test split is empty), unflipped, as ``(images [n, 3, S, S], labels [n, c])`` on ``device``."""
    source = train_set
    if config.test_count > 0:
        source = open_dataset(config, "test")
    count = min(config.sample_count, len(source))
    items = [source[i] for i in range(count)]
    return (torch.stack([image for image, _ in items]).to(device),
            torch.stack([label for _, label in items]).to(device))


def train_stargan(config: StarGANTrainConfig, run_dir: str | os.PathLike,
                  resume_from: str | os.PathLike | None = None, progress: bool = True,
                  session_iters: int | None = None) -> StarGANTrainResult:
    """Train (or continue training) StarGAN until ``config.iters`` iterations.

    ``resume_from``: a checkpoint file or run folder to continue from; None continues from
    ``run_dir/checkpoint.pt`` when present, else starts fresh. Its stored options must agree with
    ``config`` on :data:`FROZEN_ON_RESUME` (:func:`resume_config` merges options). ``session_iters``
    ends this call after that many iterations with a checkpoint (a ``paused`` event; the result is not
    ``finished``), so a long run can be trained in sessions that rerun the same command. Under ``torchrun``
    this joins the process group (and leaves it on return).

    Raises :class:`InputError` / :class:`CheckpointError` for bad options, data or checkpoints.
    """
    run_dir = Path(run_dir)
    context = common.init_distributed(config.device)
    try:
        config = resolve_categories(config)
        config.validate(context.world_size)
        common.configure_device(context)
        checkpoint_path = find_resume_checkpoint(run_dir, resume_from)
        checkpoint = read_training_checkpoint(checkpoint_path) if checkpoint_path is not None else None
        if checkpoint is not None:
            changed = frozen_differences(StarGANTrainConfig.from_dict(checkpoint["args"]), config)
            if changed:
                raise InputError(f"{checkpoint_path} was trained with different {', '.join(changed)}; resume with "
                                 "the same options or write to a new run folder")
        dataset = open_dataset(config, "train")
        if len(dataset) < config.batch // context.world_size:
            raise InputError(f"the training split holds {len(dataset)} images, fewer than one batch per process "
                             f"({config.batch // context.world_size}); add images or lower --batch")
        fixed = fixed_sample_batch(config, dataset, context.device) if context.is_main else None
        if context.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if checkpoint is not None:
                common.truncate_metrics(run_dir / METRICS_NAME, int(checkpoint["step"]))
            elif (run_dir / METRICS_NAME).exists():
                common.truncate_metrics(run_dir / METRICS_NAME, -1)  # a fresh start: forget old lines
        context.barrier()
        if session_iters is not None and session_iters < 1:
            raise InputError(f"--session-iters must be >= 1, got {session_iters}")
        trainer = _Trainer(config, run_dir, context, checkpoint, progress, session_iters)
        del checkpoint
        return trainer.run(dataset, fixed)
    finally:
        context.shutdown()
