"""Train pix2pix (Isola et al. 2017) as the reference implementation does (SPEC §7): paired translation.

``direction`` ``a2b`` translates the A image of each pair into its B image (``b2a`` the reverse); the generator
``g`` maps ``x`` (input) to ``y`` (target). One iteration, on pairs ``x, y [n, 3, S, S]`` cropped at one random
offset per pair and mirrored together (:mod:`~latentedit.baselines.translation_train`):

1. ``fake = g(x)``.
2. Discriminator step: ``L_D = d_loss_weight (GAN(d([x, pool(fake)]), fake) + GAN(d([x, y]), real))`` — the
   conditional PatchGAN scores the 6-channel concatenation of input and output; the fake pair is detached and
   passed through the image pool (size 0 by default, as the reference's pix2pix: the pair itself).
3. Generator step (``d`` frozen): ``L_G = GAN(d([x, fake]), real) + lambda_l1 |fake - y|``.

Reference defaults: U-Net generator as deep as the image (``unet``: unet_256 at 256 px) with batch norm and
dropout 0.5 in the inner levels, basic PatchGAN on 6 channels with batch norm, vanilla GAN (binary cross-entropy
with logits), ``lambda_l1`` 100, ``d_loss_weight`` 0.5, Adam 2e-4 (0.5, 0.999), batch 1, 286 -> 256 crops with
flips, constant learning rate then linear decay to 0 over the second half. Toyfaces pairs
(``toyfaces:Black_Hair:Blond_Hair``) give the true counterfactual as ``y``: the paired upper bound.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import torch

from latentedit.baselines import cyclegan
from latentedit.baselines import translation_train as base
from latentedit.baselines.two_domain_data import open_paired
from latentedit.errors import InputError
from latentedit.train.common import InfiniteShardSampler

CHECKPOINT_FORMAT = "latentedit.baselines.pix2pix"
FROZEN_ON_RESUME = ("data", "data_a", "data_b", "direction", "image_size", "load_size", "netG", "ngf", "netD",
                    "n_layers_d", "ndf", "norm", "dropout", "batch", "seed")


@dataclasses.dataclass
class Pix2PixTrainConfig:
    """Every option of a pix2pix run (module docstring for the algorithm and the reference defaults; ``iters``
    counts iterations). ``load_size`` None = 286/256 of ``image_size``; ``decay_iters`` None = ``iters // 2``."""

    data: str | None = None
    data_a: str | None = None
    data_b: str | None = None
    direction: str = "a2b"
    image_size: int = 256
    load_size: int | None = None
    flip: bool = True
    netG: str = "unet"
    ngf: int = 64
    netD: str = "basic"
    n_layers_d: int = 3
    ndf: int = 64
    norm: str = "batch"
    dropout: bool = True
    init_gain: float = 0.02
    gan_mode: str = "vanilla"
    lambda_l1: float = 100.0
    pool_size: int = 0
    d_loss_weight: float = 0.5
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch: int = 1
    iters: int = 200_000
    decay_iters: int | None = None
    amp: str = "none"
    log_every: int = 50
    sample_every: int = 1000
    snapshot_every: int = 1000
    sample_count: int = 4
    seed: int = 0
    workers: int = 0
    device: str = "auto"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Pix2PixTrainConfig":
        return base.config_from_dict(cls, data)

    def generator_config(self) -> cyclegan.GeneratorConfig:
        return cyclegan.generator_config(self.netG, self.image_size, ngf=self.ngf, norm=self.norm,
                                         dropout=self.dropout)

    def discriminator_config(self) -> cyclegan.DiscriminatorConfig:
        return cyclegan.DiscriminatorConfig(arch=self.netD, n_layers=self.n_layers_d, ndf=self.ndf, norm=self.norm,
                                            in_channels=6, image_size=self.image_size)

    def validate(self, world_size: int = 1) -> None:
        base.validate_common(self, world_size)
        if self.direction not in cyclegan.DIRECTIONS:
            raise InputError(f"--direction must be a2b or b2a, got {self.direction!r}")
        for name in ("lambda_l1", "d_loss_weight", "init_gain"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.pool_size < 0:
            raise InputError(f"--pool-size must be >= 0, got {self.pool_size}")
        if self.gan_mode not in cyclegan.GAN_MODES:
            raise InputError(f"--gan-mode must be one of {', '.join(cyclegan.GAN_MODES)}, got {self.gan_mode!r}")
        self.generator_config()
        self.discriminator_config().validate()


def resume_config(saved_args: Mapping[str, Any], requested: Pix2PixTrainConfig,
                  explicit: set[str] | frozenset[str] = frozenset()) -> Pix2PixTrainConfig:
    return base.resume_config(Pix2PixTrainConfig, FROZEN_ON_RESUME, saved_args, requested, explicit)


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    return base.read_training_checkpoint(path, CHECKPOINT_FORMAT, "pix2pix")


def find_resume_checkpoint(run_dir, resume=None):
    from latentedit.train import common

    return common.find_resume_checkpoint(run_dir, resume, base.CHECKPOINT_NAME, what="pix2pix training")


def open_data(config: Pix2PixTrainConfig):
    return open_paired(config.data, config.data_a, config.data_b,
                       base.resolved_load_size(config.image_size, config.load_size), config.sample_count)


class Pix2PixTrainer(base.TranslationTrainer):
    """The pix2pix iteration (module docstring) in the shared loop."""

    CHECKPOINT_FORMAT = CHECKPOINT_FORMAT
    WHAT = "pix2pix"
    STAT_NAMES = ("loss_g_gan", "loss_g_l1", "loss_g", "loss_d_real", "loss_d_fake", "loss_d")

    def build(self) -> None:
        config = self.config
        self.g_config = config.generator_config()
        self.d_config = config.discriminator_config()
        self.nets["g"] = cyclegan.init_weights(cyclegan.build_generator(self.g_config, init=False),
                                               config.init_gain).to(self.device)
        self.nets["d"] = cyclegan.init_weights(cyclegan.build_discriminator(self.d_config, init=False),
                                               config.init_gain).to(self.device)
        betas = (config.beta1, config.beta2)
        self.optim_params = {"g": [self.nets["g"]], "d": [self.nets["d"]]}
        self.optims = {name: torch.optim.Adam(modules[0].parameters(), config.lr, betas)
                       for name, modules in self.optim_params.items()}
        self.pool = cyclegan.ImagePool(config.pool_size)

    def _ordered(self, pair):
        a, b = pair
        return (a, b) if self.config.direction == "a2b" else (b, a)

    def dataset(self):
        train = self.data.train
        sampler = InfiniteShardSampler(len(train), self.per_rank_batch, self.context.rank, self.context.world_size,
                                       seed=self.config.seed, start_position=self.step * self.config.batch)
        return train, sampler

    def fixed_batch(self):
        source = self.data.test if self.data.test is not None and len(self.data.test) else self.data.train
        size, load = self.config.image_size, self.load_size
        offset = (load - size) // 2
        count = min(self.config.sample_count, len(source))
        pairs = [self._ordered(source[i]) for i in range(count)]
        crop = lambda t: t[:, :, offset:offset + size, offset:offset + size].to(self.device)  # noqa: E731
        return crop(torch.stack([x for x, _ in pairs])), crop(torch.stack([y for _, y in pairs]))

    def train_step(self, batch, stats) -> None:
        config, g, d = self.config, self.nets["g"], self.nets["d"]
        x, y = self._ordered(base.random_crop_flip(list(batch), config.image_size, config.flip))
        gan = lambda outputs, real: cyclegan.gan_loss(base.to_float(outputs), real, config.gan_mode)  # noqa: E731
        with self.autocast():
            fake = g(x)
        # Discriminator.
        self.set_requires_grad(("d",), True)
        pooled = self.pool.query(torch.cat([x, fake.detach().float()], 1))
        with self.autocast():
            loss_d_fake = gan(d(pooled), False)
            loss_d_real = gan(d(torch.cat([x, y], 1)), True)
        loss_d = config.d_loss_weight * (loss_d_fake + loss_d_real)
        self.optimiser_step("d", loss_d)
        # Generator.
        self.set_requires_grad(("d",), False)
        with self.autocast():
            loss_g_gan = gan(d(torch.cat([x, fake], 1)), True)
        loss_g_l1 = (fake.float() - y).abs().mean()
        loss_g = loss_g_gan + config.lambda_l1 * loss_g_l1
        self.optimiser_step("g", loss_g)
        self.set_requires_grad(("d",), True)
        with torch.no_grad():
            for name, value in (("loss_g_gan", loss_g_gan), ("loss_g_l1", loss_g_l1), ("loss_g", loss_g),
                                ("loss_d_real", loss_d_real), ("loss_d_fake", loss_d_fake), ("loss_d", loss_d)):
                stats[name] += value.detach().float()

    def sample_grid(self, fixed):
        """Rows: test pairs; columns: input, output, target. Batch norm uses per-image statistics, as at test time
        (:func:`latentedit.baselines.cyclegan.translate`)."""
        x, y = fixed
        fake = cyclegan.translate(self.nets["g"], x).to(x.device)
        return torch.stack([x, fake, y], 1).flatten(0, 1), 3

    def extra_state(self) -> dict:
        return {"pools": {"pairs": self.context.all_gather_tensor(self.pool.state())}}

    def load_extra_state(self, checkpoint: dict) -> None:
        stored = (checkpoint.get("pools") or {}).get("pairs")
        if stored is not None and len(stored) == self.context.world_size:
            self.pool.load_state(stored[self.context.rank], self.device)

    def export(self) -> None:
        config = self.config
        cyclegan.save_translator(
            self.run_dir / base.EXPORT_NAME, "pix2pix", {config.direction: self.nets["g"]}, self.g_config,
            self.data.domains, config.image_size,
            {"iterations": str(self.step), "images_seen": str(self.step * config.batch),
             "source": "latentedit pix2pix train", "data": str(config.data or f"{config.data_a}|{config.data_b}"),
             "discriminator": self.d_config.to_json(), "train_wall_s": f"{self.wall_time():.1f}"})


def train_pix2pix(config: Pix2PixTrainConfig, run_dir: str | os.PathLike, resume_from=None, progress: bool = True,
                  session_iters: int | None = None, report=None) -> base.TrainResult:
    """Train (or continue) pix2pix until ``config.iters`` iterations; see :func:`~latentedit.baselines.
    cyclegan_train.train_cyclegan` for the arguments and the run folder."""
    return base.run_training(Pix2PixTrainer, config, run_dir, open_data, FROZEN_ON_RESUME, resume_from=resume_from,
                             progress=progress, session_iters=session_iters, report=report)
