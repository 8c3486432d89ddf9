"""CLI: ``latentedit cyclegan train|transfer`` and ``latentedit pix2pix train|transfer`` (SPEC §7)."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource
from latentedit.cli.options import AliasOption, out_option, progress_option

from latentedit.baselines.cyclegan_train import RECIPES, CycleGANTrainConfig
from latentedit.baselines.pix2pix_train import Pix2PixTrainConfig
from latentedit.errors import InputError

DEFAULT_RUNS = {"cyclegan": "runs/cyclegan", "pix2pix": "runs/pix2pix"}
DEFAULT_TRANSLATED = "translated"
CKPT_HELP = {"cyclegan": "CycleGAN: a translator.safetensors written by 'cyclegan train', its run folder, or a "
                         "shipped name (cyclegan_black2blond64).",
             "pix2pix": "pix2pix: a translator.safetensors written by 'pix2pix train', its run folder, or a shipped "
                        "name (pix2pix_black2blond64)."}


def _train_options(kind: str, defaults):
    """The options both trainers share, with the defaults of their config class (the reference's)."""
    run = DEFAULT_RUNS[kind]
    decorators = [
        click.option("--data", default=None,
                     help="Training data: " + ("DIR with trainA/ trainB/ [testA/ testB/], or toyfaces:A:B[:COUNT] "
                                               "(e.g. toyfaces:Black_Hair:Blond_Hair). Optional when resuming."
                                               if kind == "cyclegan" else
                                               "DIR of aligned A|B images (DIR/train/ [DIR/test/] or DIR itself), or "
                                               "toyfaces:A:B[:COUNT] (a face with A and its counterfactual with B). "
                                               "Optional when resuming.")),
        click.option("--data-a", type=click.Path(), default=None, help="Folder of domain A images (with --data-b)."),
        click.option("--data-b", type=click.Path(), default=None,
                     help="Folder of domain B images (with --data-a)" + ("." if kind == "cyclegan" else
                                                                         ", matched to A by file name.")),
        out_option("output", aliases=("--output",), type=click.Path(file_okay=False), default=None,
                   help=f"Run folder; if it holds checkpoint.pt, training resumes. [default: --resume's folder, else "
                        f"{run}]"),
        click.option("--resume", type=click.Path(), default=None,
                     help="Continue from this run folder (or checkpoint file); -o defaults to it."),
        click.option("--image-size", type=int, default=defaults.image_size, show_default=True,
                     help="Training resolution (random crops of this size)."),
        click.option("--load-size", type=int, default=None,
                     help="Images are resized to this, then cropped to --image-size [default: 286/256 of it, the "
                          "reference's jitter; equal to --image-size for none]."),
        click.option("--flip/--no-flip", default=defaults.flip, show_default=True, help="Random horizontal flips."),
        click.option("--netG", "netG", default=defaults.netG, show_default=True,
                     help="Generator: resnet_9blocks, resnet_6blocks (resnet_<N>blocks), unet_256, unet_128 "
                          "(unet_<power of two>), or unet (as deep as --image-size)."),
        click.option("--ngf", type=int, default=defaults.ngf, show_default=True, help="Generator width."),
        click.option("--netD", "netD", type=click.Choice(["basic", "n_layers", "pixel", "global_local", "multiscale"]),
                     default=defaults.netD, show_default=True,
                     help="Discriminator: basic (70x70 PatchGAN), n_layers (PatchGAN of --n-layers-d), pixel (1x1), "
                          "global_local (PatchGAN + whole-image branch, seed 003), multiscale (pix2pixHD)."),
        click.option("--n-layers-d", type=int, default=defaults.n_layers_d, show_default=True,
                     help="PatchGAN depth for n_layers, global_local and multiscale (1: 16 px patches, 2: 34, 3: 70)."),
        click.option("--ndf", type=int, default=defaults.ndf, show_default=True, help="Discriminator width."),
        click.option("--norm", type=click.Choice(["instance", "batch", "none"]), default=defaults.norm,
                     show_default=True, help="Normalisation of both networks."),
        click.option("--dropout/--no-dropout", default=defaults.dropout, show_default=True,
                     help="Dropout 0.5 in the generator (ResNet blocks / inner U-Net levels)."),
        click.option("--init-gain", type=float, default=defaults.init_gain, show_default=True,
                     help="Standard deviation of the normal weight initialisation."),
        click.option("--gan-mode", type=click.Choice(["lsgan", "vanilla"]), default=defaults.gan_mode,
                     show_default=True, help="lsgan: MSE to 1/0; vanilla: binary cross-entropy with logits."),
        click.option("--pool-size", type=int, default=defaults.pool_size, show_default=True,
                     help="Image pool of generated images shown to the discriminator (0: none)."),
        click.option("--d-loss-weight", type=float, default=defaults.d_loss_weight, show_default=True,
                     help="Factor on the discriminator loss (the reference halves it)."),
        click.option("--lr", type=float, default=defaults.lr, show_default=True, help="Adam learning rate."),
        click.option("--beta1", type=float, default=defaults.beta1, show_default=True, help="Adam beta1."),
        click.option("--beta2", type=float, default=defaults.beta2, show_default=True, help="Adam beta2."),
        click.option("--batch-size", "batch", cls=AliasOption, aliases=("--batch",), type=int, default=defaults.batch,
                     show_default=True, help="Global batch (split across processes)."),
        click.option("--iters", type=int, default=defaults.iters, show_default=True,
                     help="Total iterations of the run (the reference's epochs times images / batch)."),
        click.option("--decay-iters", type=int, default=None,
                     help="Linear learning-rate decay to 0 over the last N iterations [default: half of --iters; 0: "
                          "none]."),
        click.option("--amp", type=click.Choice(["none", "bf16"]), default=defaults.amp, show_default=True,
                     help="bf16: bfloat16 autocast for the forward passes (faster on CPUs with bf16 units)."),
        click.option("--log-every", type=int, default=defaults.log_every, show_default=True,
                     help="Log mean losses every N iterations."),
        click.option("--sample-every", type=int, default=defaults.sample_every, show_default=True,
                     help="Write a sample grid every N iterations."),
        click.option("--snapshot-every", type=int, default=defaults.snapshot_every, show_default=True,
                     help="Write checkpoint.pt and translator.safetensors every N iterations."),
        click.option("--sample-count", type=int, default=defaults.sample_count, show_default=True,
                     help="Test images per domain in each sample grid."),
        click.option("--seed", type=int, default=defaults.seed, show_default=True,
                     help="Seed of the initial weights and the data order."),
        click.option("--workers", type=int, default=defaults.workers, show_default=True,
                     help="DataLoader worker processes per rank."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=defaults.device,
                     show_default=True, help="auto = CUDA when available."),
        click.option("--session-iters", type=int, default=None,
                     help="Stop after this many iterations of this session, with a checkpoint; rerun to continue."),
        progress_option(),
        click.pass_context,
    ]

    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _explicit(ctx: click.Context) -> set[str]:
    return {name for name in ctx.params if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}


def _run_training(kind: str, ctx: click.Context, module, config_class, make_config, output, resume, session_iters,
                  progress, values: dict) -> None:
    from latentedit.progress import resolve_progress

    output = Path(output if output is not None else resume if resume is not None else DEFAULT_RUNS[kind])
    fields = {field.name for field in dataclasses.fields(config_class)}
    explicit = _explicit(ctx) & fields
    given = {name: values[name] for name in explicit}
    checkpoint_path = module.find_resume_checkpoint(output, resume)
    if checkpoint_path is None:
        if values.get("data") is None and (values.get("data_a") is None or values.get("data_b") is None):
            raise InputError("--data (or --data-a with --data-b) is required for a new run")
        config = make_config(given)
    else:
        saved = module.read_training_checkpoint(checkpoint_path)["args"]
        requested = make_config({**{k: saved[k] for k in ("data", "data_a", "data_b") if k in saved}, **given})
        config = module.resume_config(saved, requested, explicit)
    train = module.train_cyclegan if kind == "cyclegan" else module.train_pix2pix
    result = train(config, output, resume_from=checkpoint_path, progress=resolve_progress(progress),
                   session_iters=session_iters, report=_note)
    rank_zero = os.environ.get("RANK", "0") == "0"
    if result.stop_signal is not None:
        if rank_zero:
            click.echo(f"stopped by signal {result.stop_signal} at iteration {result.step}; checkpoint saved to "
                       f"{result.checkpoint}; rerun the same command to resume", err=True)
        sys.exit(128 + result.stop_signal)
    if rank_zero:
        speed = f", {result.img_per_sec:.2f} img/s" if result.img_per_sec else ""
        state = "trained to" if result.finished else f"paused (of {config.iters}; rerun to continue) at"
        click.echo(f"{state} iteration {result.step}{speed}; translator: {result.translator_path}")


def _note(message: str) -> None:
    click.echo(f"note: {message}", err=True)


# --------------------------------------------------------------------------------------------------
# cyclegan

@click.group("cyclegan")
def cyclegan_group() -> None:
    """CycleGAN baseline (unpaired two-domain translation): train, translate images."""


@cyclegan_group.command("train")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default="official", show_default=True,
              help="official: the reference defaults; tf-tutorial: seed 002 (U-Net instance norm G, BCE, no pool, no "
                   "decay); dog2cat: seed 003 (global+local D, cycle weight 1). Options given explicitly win.")
@click.option("--lambda-a", type=float, default=CycleGANTrainConfig.lambda_a, show_default=True,
              help="Weight of the cycle loss A -> B -> A.")
@click.option("--lambda-b", type=float, default=CycleGANTrainConfig.lambda_b, show_default=True,
              help="Weight of the cycle loss B -> A -> B.")
@click.option("--lambda-identity", type=float, default=CycleGANTrainConfig.lambda_identity, show_default=True,
              help="Identity loss weight, as a fraction of the cycle weights (0.5: 5 x L1 at lambda 10; 0: off).")
@_train_options("cyclegan", CycleGANTrainConfig())
def cyclegan_train_command(ctx, output, resume, session_iters, progress, **values) -> None:
    """Train a CycleGAN (the reference recipe by default); writes RUN/checkpoint.pt, RUN/translator.safetensors,
    RUN/samples/ and RUN/metrics.jsonl.

    \b
    Examples:
      latentedit cyclegan train --data datasets/horse2zebra -o runs/h2z             (the paper's setting)
      latentedit cyclegan train --data toyfaces:Black_Hair:Blond_Hair --image-size 64 --load-size 64 \\
          --netG resnet_6blocks --ngf 32 --ndf 32 --iters 8000 -o runs/cyclegan64
      latentedit cyclegan train --recipe dog2cat --data-a dogs/ --data-b cats/ -o runs/dog2cat
      torchrun --nproc_per_node 2 -m latentedit cyclegan train --data DIR -o RUN --batch-size 2   (DDP)

    Interrupting (Ctrl-C, SIGTERM) writes a checkpoint first; rerunning the same command resumes.
    """
    from latentedit.baselines import cyclegan_train

    recipe = values.get("recipe", "official")
    _run_training("cyclegan", ctx, cyclegan_train, CycleGANTrainConfig,
                  lambda given: CycleGANTrainConfig.from_recipe(recipe, **{k: v for k, v in given.items()
                                                                           if k != "recipe"}),
                  output, resume, session_iters, progress, values)


def _transfer_options(kind: str):
    decorators = [
        click.argument("images", nargs=-1, required=True, type=click.Path()),
        click.option("--ckpt", default=f"{kind}_black2blond64", show_default=True, help=CKPT_HELP[kind]),
        click.option("--direction", type=click.Choice(["a2b", "b2a"]), default="a2b", show_default=True,
                     help="a2b: domain A images to B; b2a: the reverse" +
                          (" (a CycleGAN has both)." if kind == "cyclegan" else " (a pix2pix model has one).")),
        click.option("--norm-stats", type=click.Choice(["image", "running"]), default="image", show_default=True,
                     help="Batch norm: each image's own statistics (the reference's test script) or the running "
                          "averages (its --eval). Instance norm is unaffected."),
        out_option("output", type=click.Path(), default=DEFAULT_TRANSLATED, show_default=True,
                   help="A .png file (one image) or a folder (<stem>.png per image and transfer.json)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N]."),
    ]

    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _report_transfer(manifest: dict, output: str) -> None:
    from latentedit.baselines.stargan_transfer import OUTPUT_SUFFIXES

    for entry in manifest["images"]:
        click.echo(f"{entry['input']} -> {entry['output']}" + (f" (cycle: {entry['cycle']})" if "cycle" in entry else ""))
    where = output if Path(output).suffix.lower() in OUTPUT_SUFFIXES else f"{output} (with transfer.json)"
    click.echo(f"wrote {len(manifest['images'])} {manifest['from']} -> {manifest['to']} translation(s) to {where}")


@cyclegan_group.command("transfer")
@_transfer_options("cyclegan")
@click.option("--cycle", is_flag=True, help="Also write <stem>_cycle.png: the translation translated back.")
def cyclegan_transfer_command(images, ckpt, direction, norm_stats, output, device, cycle) -> None:
    """Translate images from one domain to the other with a CycleGAN.

    \b
    Example:
      latentedit cyclegan transfer face.png --ckpt runs/cyclegan64 --direction a2b -o blond.png
    """
    from latentedit.baselines.translator_transfer import transfer_files

    manifest = transfer_files("cyclegan", images, output, ckpt, direction=direction, device=device,
                              norm_stats=norm_stats, cycle=cycle)
    _report_transfer(manifest, output)


# --------------------------------------------------------------------------------------------------
# pix2pix

@click.group("pix2pix")
def pix2pix_group() -> None:
    """pix2pix baseline (paired translation): train on aligned pairs, translate images."""


@pix2pix_group.command("train")
@click.option("--direction", type=click.Choice(["a2b", "b2a"]), default=Pix2PixTrainConfig.direction,
              show_default=True, help="a2b: learn A -> B (the reference's AtoB); b2a: B -> A.")
@click.option("--lambda-l1", type=float, default=Pix2PixTrainConfig.lambda_l1, show_default=True,
              help="Weight of the L1 loss to the target.")
@_train_options("pix2pix", Pix2PixTrainConfig())
def pix2pix_train_command(ctx, output, resume, session_iters, progress, **values) -> None:
    """Train pix2pix (the reference recipe: U-Net G with batch norm and dropout, conditional PatchGAN, vanilla GAN +
    100 L1); writes RUN/checkpoint.pt, RUN/translator.safetensors, RUN/samples/ and RUN/metrics.jsonl.

    \b
    Examples:
      latentedit pix2pix train --data datasets/facades -o runs/facades      (aligned A|B images, the paper's setting)
      latentedit pix2pix train --data toyfaces:Black_Hair:Blond_Hair --image-size 64 --load-size 64 \\
          --ngf 32 --ndf 32 --iters 8000 -o runs/pix2pix64
      torchrun --nproc_per_node 2 -m latentedit pix2pix train --data DIR -o RUN --batch-size 2   (DDP)

    Interrupting (Ctrl-C, SIGTERM) writes a checkpoint first; rerunning the same command resumes.
    """
    from latentedit.baselines import pix2pix_train

    _run_training("pix2pix", ctx, pix2pix_train, Pix2PixTrainConfig, lambda given: Pix2PixTrainConfig(**given),
                  output, resume, session_iters, progress, values)


@pix2pix_group.command("transfer")
@_transfer_options("pix2pix")
def pix2pix_transfer_command(images, ckpt, direction, norm_stats, output, device) -> None:
    """Translate images with a pix2pix generator (its training direction, --direction must match it).

    \b
    Example:
      latentedit pix2pix transfer face.png --ckpt runs/pix2pix64 -o blond.png
    """
    from latentedit.baselines.translator_transfer import transfer_files

    manifest = transfer_files("pix2pix", images, output, ckpt, direction=direction, device=device,
                              norm_stats=norm_stats)
    _report_transfer(manifest, output)


COMMANDS = [cyclegan_group, pix2pix_group]
