"""Train CycleGAN (Zhu et al. 2017) as the reference implementation does (SPEC §7), with the seeds' variants.

Names: ``g_ab`` translates A -> B (the reference's G_A), ``g_ba`` B -> A (G_B); ``d_b`` judges domain B (the
reference's D_A, which scores G_A's outputs), ``d_a`` judges domain A. One iteration, on a batch ``a, b [n, 3, S,
S]`` (each randomly cropped from the load size and mirrored, see :mod:`~latentedit.baselines.translation_train`):

1. ``fake_b = g_ab(a)``, ``rec_a = g_ba(fake_b)``, ``fake_a = g_ba(b)``, ``rec_b = g_ab(fake_a)``.
2. Generator step (discriminators frozen): ``L_G = GAN(d_b(fake_b), real) + GAN(d_a(fake_a), real) + lambda_a |rec_a
   - a| + lambda_b |rec_b - b| + lambda_identity (lambda_b |g_ab(b) - b| + lambda_a |g_ba(a) - a|)`` (means of
   absolute errors; the identity terms are skipped when ``lambda_identity`` is 0). One Adam over both generators.
3. Discriminator step: ``L_D = d_loss_weight (GAN(d_b(b), real) + GAN(d_b(pool_b(fake_b)), fake)) + d_loss_weight
   (GAN(d_a(a), real) + GAN(d_a(pool_a(fake_a)), fake))``, the fakes detached and passed through the image pools
   (:class:`~latentedit.baselines.cyclegan.ImagePool`). One Adam over both discriminators.

``GAN`` is :func:`~latentedit.baselines.cyclegan.gan_loss`: ``lsgan`` (mean squared error to 1 / 0) or ``vanilla``
(binary cross-entropy with logits); for the multi-output discriminators the per-output losses are added.

Recipes (``recipe``; an explicitly given option always wins over its recipe):

- ``official`` (the reference defaults): ResNet-9 G, basic 70x70 PatchGAN, instance norm, no dropout, LSGAN,
  ``lambda_a = lambda_b = 10``, identity 0.5 (so ``5 |g_ab(b) - b|``), pool 50, Adam 2e-4 (0.5, 0.999), batch 1,
  constant learning rate then linear decay to 0 over the second half, ``d_loss_weight`` 0.5, 256 px from 286.
- ``tf-tutorial`` (seed 002, TensorFlow's CycleGAN tutorial): U-Net G as deep as the image allows (``unet``:
  unet_256 at 256 px) with instance norm and dropout in the inner levels, binary cross-entropy from logits
  (``vanilla``), no pool, no decay; lambda 10 and identity 0.5 lambda as above. The tutorial puts both cycle terms
  in each generator's loss and gives each network its own Adam: each generator's gradient is then exactly the one
  of the joint loss above (the other generator's adversarial and identity terms do not depend on it), so the
  joint form here is the same update.
- ``dog2cat`` (seed 003): the global + local discriminator (``global_local``) and cycle weight 1 (a tenth);
  everything else official. The seed later restored the cycle weight: ``--recipe dog2cat --lambda-a 10 --lambda-b
  10``.

Seed 003 at small sizes: a 70x70 PatchGAN sees all of a 64 px image, so a *local* discriminator at 64 px needs
``netD n_layers`` with ``n_layers_d 1`` (16 px patches, a quarter of the side, as 70 px is of 256 px).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import torch

from latentedit.baselines import cyclegan
from latentedit.baselines import translation_train as base
from latentedit.baselines.two_domain_data import ZippedDomains, ZippedSampler, open_unpaired
from latentedit.errors import InputError

CHECKPOINT_FORMAT = "latentedit.baselines.cyclegan"
RECIPES: dict[str, dict[str, Any]] = {
    "official": {},
    "tf-tutorial": {"netG": "unet", "norm": "instance", "dropout": True, "gan_mode": "vanilla", "pool_size": 0,
                    "decay_iters": 0},
    "dog2cat": {"netD": "global_local", "lambda_a": 1.0, "lambda_b": 1.0},
}
#: Options that define the networks, the data or the meaning of the counters; a resumed run keeps them.
FROZEN_ON_RESUME = ("data", "data_a", "data_b", "recipe", "image_size", "load_size", "netG", "ngf", "netD",
                    "n_layers_d", "ndf", "norm", "dropout", "batch", "seed")


@dataclasses.dataclass
class CycleGANTrainConfig:
    """Every option of a CycleGAN run (module docstring; defaults = the ``official`` recipe, except the run length
    ``iters``, counted in iterations: the reference's 200 epochs are ``200 * max(|A|, |B|) / batch``). ``data`` /
    ``data_a`` / ``data_b`` as :func:`~latentedit.baselines.two_domain_data.open_unpaired` takes them;
    ``load_size`` None = 286/256 of ``image_size``; ``decay_iters`` None = ``iters // 2``; ``amp`` ``none`` or
    ``bf16``; ``n_layers_d`` is the PatchGAN depth of ``netD`` ``n_layers``, ``global_local`` and ``multiscale``."""

    data: str | None = None
    data_a: str | None = None
    data_b: str | None = None
    recipe: str = "official"
    image_size: int = 256
    load_size: int | None = None
    flip: bool = True
    netG: str = "resnet_9blocks"
    ngf: int = 64
    netD: str = "basic"
    n_layers_d: int = 3
    ndf: int = 64
    norm: str = "instance"
    dropout: bool = False
    init_gain: float = 0.02
    gan_mode: str = "lsgan"
    lambda_a: float = 10.0
    lambda_b: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
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

    @classmethod
    def from_recipe(cls, recipe: str = "official", **options) -> "CycleGANTrainConfig":
        """The recipe's values over the defaults, then ``options`` (what the user gave) over both."""
        if recipe not in RECIPES:
            raise InputError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
        values = {**RECIPES[recipe], **options, "recipe": recipe}
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CycleGANTrainConfig":
        return base.config_from_dict(cls, data)

    def generator_config(self) -> cyclegan.GeneratorConfig:
        return cyclegan.generator_config(self.netG, self.image_size, ngf=self.ngf, norm=self.norm,
                                         dropout=self.dropout)

    def discriminator_config(self) -> cyclegan.DiscriminatorConfig:
        return cyclegan.DiscriminatorConfig(arch=self.netD, n_layers=self.n_layers_d, ndf=self.ndf, norm=self.norm,
                                            in_channels=3, image_size=self.image_size)

    def validate(self, world_size: int = 1) -> None:
        base.validate_common(self, world_size)
        for name in ("lambda_a", "lambda_b", "lambda_identity", "d_loss_weight", "init_gain"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.pool_size < 0:
            raise InputError(f"--pool-size must be >= 0, got {self.pool_size}")
        if self.gan_mode not in cyclegan.GAN_MODES:
            raise InputError(f"--gan-mode must be one of {', '.join(cyclegan.GAN_MODES)}, got {self.gan_mode!r}")
        if self.recipe not in RECIPES:
            raise InputError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        self.generator_config()
        self.discriminator_config().validate()


def resume_config(saved_args: Mapping[str, Any], requested: CycleGANTrainConfig,
                  explicit: set[str] | frozenset[str] = frozenset()) -> CycleGANTrainConfig:
    """See :func:`latentedit.baselines.translation_train.resume_config`."""
    return base.resume_config(CycleGANTrainConfig, FROZEN_ON_RESUME, saved_args, requested, explicit)


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    return base.read_training_checkpoint(path, CHECKPOINT_FORMAT, "CycleGAN")


def find_resume_checkpoint(run_dir, resume=None):
    from latentedit.train import common

    return common.find_resume_checkpoint(run_dir, resume, base.CHECKPOINT_NAME, what="CycleGAN training")


def open_data(config: CycleGANTrainConfig):
    return open_unpaired(config.data, config.data_a, config.data_b,
                         base.resolved_load_size(config.image_size, config.load_size), config.sample_count)


class CycleGANTrainer(base.TranslationTrainer):
    """The CycleGAN iteration (module docstring) in the shared loop."""

    CHECKPOINT_FORMAT = CHECKPOINT_FORMAT
    WHAT = "CycleGAN"
    STAT_NAMES = ("loss_g_ab", "loss_g_ba", "loss_cycle_a", "loss_cycle_b", "loss_idt_a", "loss_idt_b", "loss_g",
                  "loss_d_a", "loss_d_b", "loss_d", "d_b_real", "d_b_fake")

    def build(self) -> None:
        config = self.config
        self.g_config = config.generator_config()
        self.d_config = config.discriminator_config()
        for name in ("g_ab", "g_ba"):
            self.nets[name] = cyclegan.init_weights(cyclegan.build_generator(self.g_config, init=False),
                                                    config.init_gain).to(self.device)
        for name in ("d_a", "d_b"):
            self.nets[name] = cyclegan.init_weights(cyclegan.build_discriminator(self.d_config, init=False),
                                                    config.init_gain).to(self.device)
        betas = (config.beta1, config.beta2)
        self.optim_params = {"g": [self.nets["g_ab"], self.nets["g_ba"]], "d": [self.nets["d_a"], self.nets["d_b"]]}
        for name, modules in self.optim_params.items():
            params = [p for module in modules for p in module.parameters()]
            self.optims[name] = torch.optim.Adam(params, config.lr, betas)
        self.pools = {"a": cyclegan.ImagePool(config.pool_size), "b": cyclegan.ImagePool(config.pool_size)}

    def dataset(self):
        train_a, train_b = self.data.train
        sampler = ZippedSampler(len(train_a), len(train_b), self.per_rank_batch, self.context.rank,
                                self.context.world_size, self.config.seed, self.step * self.config.batch)
        return ZippedDomains(train_a, train_b), sampler

    def fixed_batch(self):
        source = self.data.test if self.data.test is not None else self.data.train
        size, load = self.config.image_size, self.load_size
        offset = (load - size) // 2
        fixed = []
        for domain in source:
            count = min(self.config.sample_count, len(domain))
            images = torch.stack([domain[i] for i in range(count)])
            fixed.append(images[:, :, offset:offset + size, offset:offset + size].to(self.device))
        return fixed

    def train_step(self, batch, stats) -> None:
        config, nets = self.config, self.nets
        size = config.image_size
        (real_a,) = base.random_crop_flip([batch[0]], size, config.flip)
        (real_b,) = base.random_crop_flip([batch[1]], size, config.flip)
        gan = lambda outputs, real: cyclegan.gan_loss(base.to_float(outputs), real, config.gan_mode)  # noqa: E731
        # Generators.
        self.set_requires_grad(("d_a", "d_b"), False)
        with self.autocast():
            fake_b = nets["g_ab"](real_a)
            rec_a = nets["g_ba"](fake_b)
            fake_a = nets["g_ba"](real_b)
            rec_b = nets["g_ab"](fake_a)
            adv_ab = gan(nets["d_b"](fake_b), True)
            adv_ba = gan(nets["d_a"](fake_a), True)
            idt_a = idt_b = torch.zeros((), device=self.device)
            if config.lambda_identity > 0:
                idt_a = (nets["g_ab"](real_b).float() - real_b).abs().mean()  # G_AB should leave a B image alone
                idt_b = (nets["g_ba"](real_a).float() - real_a).abs().mean()
        cycle_a = (rec_a.float() - real_a).abs().mean()
        cycle_b = (rec_b.float() - real_b).abs().mean()
        loss_g = (adv_ab + adv_ba + config.lambda_a * cycle_a + config.lambda_b * cycle_b
                  + config.lambda_identity * (config.lambda_b * idt_a + config.lambda_a * idt_b))
        self.optimiser_step("g", loss_g)
        # Discriminators.
        self.set_requires_grad(("d_a", "d_b"), True)
        pooled_b = self.pools["b"].query(fake_b.detach().float())
        pooled_a = self.pools["a"].query(fake_a.detach().float())
        with self.autocast():
            d_b_real, d_b_fake = base.to_float(nets["d_b"](real_b)), base.to_float(nets["d_b"](pooled_b))
            loss_d_b = config.d_loss_weight * (gan(d_b_real, True) + gan(d_b_fake, False))
            loss_d_a = config.d_loss_weight * (gan(nets["d_a"](real_a), True) + gan(nets["d_a"](pooled_a), False))
        loss_d = loss_d_a + loss_d_b
        self.optimiser_step("d", loss_d)
        with torch.no_grad():
            for name, value in (("loss_g_ab", adv_ab), ("loss_g_ba", adv_ba), ("loss_cycle_a", cycle_a),
                                ("loss_cycle_b", cycle_b), ("loss_idt_a", idt_a), ("loss_idt_b", idt_b),
                                ("loss_g", loss_g), ("loss_d_a", loss_d_a), ("loss_d_b", loss_d_b),
                                ("loss_d", loss_d), ("d_b_real", _mean(d_b_real)), ("d_b_fake", _mean(d_b_fake))):
                stats[name] += value.detach().float()

    def sample_grid(self, fixed):
        """Rows: each test A image, then each test B image; columns: input, translation, reconstruction."""
        real_a, real_b = fixed
        with self.autocast():
            fake_b = self.nets["g_ab"](real_a)
            rec_a = self.nets["g_ba"](fake_b)
            fake_a = self.nets["g_ba"](real_b)
            rec_b = self.nets["g_ab"](fake_a)
        rows = [torch.stack([real_a, fake_b.float(), rec_a.float()], 1), torch.stack([real_b, fake_a.float(),
                                                                                      rec_b.float()], 1)]
        return torch.cat(rows).flatten(0, 1), 3

    def extra_state(self) -> dict:
        return {"pools": {key: self.context.all_gather_tensor(pool.state()) for key, pool in self.pools.items()}}

    def load_extra_state(self, checkpoint: dict) -> None:
        pools = checkpoint.get("pools") or {}
        for key, pool in self.pools.items():
            stored = pools.get(key)
            if stored is not None and len(stored) == self.context.world_size:
                pool.load_state(stored[self.context.rank], self.device)

    def export(self) -> None:
        config = self.config
        cyclegan.save_translator(
            self.run_dir / base.EXPORT_NAME, "cyclegan", {"a2b": self.nets["g_ab"], "b2a": self.nets["g_ba"]},
            self.g_config, self.data.domains, config.image_size,
            {"iterations": str(self.step), "images_seen": str(self.step * config.batch),
             "source": "latentedit cyclegan train", "recipe": config.recipe, "data": str(config.data or
                                                                                           f"{config.data_a}|{config.data_b}"),
             "discriminator": self.d_config.to_json(), "train_wall_s": f"{self.wall_time():.1f}"})


def _mean(outputs) -> torch.Tensor:
    """Mean raw score of the (first) discriminator output, for the logs."""
    first = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    return first.detach().float().mean()


def train_cyclegan(config: CycleGANTrainConfig, run_dir: str | os.PathLike, resume_from=None, progress: bool = True,
                   session_iters: int | None = None, report=None) -> base.TrainResult:
    """Train (or continue) a CycleGAN until ``config.iters`` iterations; the run folder is described in
    :mod:`~latentedit.baselines.translation_train`. ``resume_from``: a checkpoint or run folder (None: the run
    folder's own checkpoint when present). ``session_iters`` pauses after that many iterations with a checkpoint.
    ``report(line)`` receives the data notes (skipped files, unequal domain sizes) on rank 0.
    Under ``torchrun`` this joins the process group. InputError / CheckpointError for bad options, data or files."""
    return base.run_training(CycleGANTrainer, config, run_dir, open_data, FROZEN_ON_RESUME, resume_from=resume_from,
                             progress=progress, session_iters=session_iters, report=report)
