"""CLI: ``latentedit stargan train|transfer|grid`` (the StarGAN baseline, SPEC §6)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource
from latentedit.cli.options import AliasOption, out_option, progress_option

from latentedit.errors import InputError

CKPT_HELP = ("StarGAN generator: a shipped name (stargan_toyfaces64), a generator.safetensors written by "
             "'stargan train', or its run folder.")
DEFAULT_RUN = "runs/stargan"
SOURCE_HELP = ("Source attributes NAME=0|1 (repeatable or comma-joined), for every image; attributes not given "
               "are predicted by the attribute classifier.")


@click.group("stargan")
def stargan_group() -> None:
    """StarGAN baseline: train on a CelebA-layout folder, translate attributes of images."""


@stargan_group.command("train")
@click.option("--data", type=click.Path(), default=None,
              help="CelebA-layout folder: img_align_celeba/ + list_attr_celeba.txt (real CelebA, or "
                   "'latentedit data toyfaces --format celeba'); or exclusive categories: a class-folder layout "
                   "DIR/<category>/*.jpg, or toyfaces-hair[:COUNT] (the four toyfaces hair colours, rendered on the "
                   "fly). Optional when resuming.")
@click.option("--attrs", default="Black_Hair,Blond_Hair,Brown_Hair,Male,Young", show_default=True,
              help="Comma-separated attribute names, in label order (category data: a subset of its categories; "
                   "the default means all of them).")
@click.option("--generator", "generator", type=click.Choice(["stargan", "faststyle"]), default="stargan",
              show_default=True, help="StarGAN's generator, or seed 004's FastStyleNet (Johnson et al.).")
@click.option("--discriminator", "discriminator", type=click.Choice(["stargan", "patch"]), default="stargan",
              show_default=True, help="StarGAN's discriminator, or a PatchGAN critic with a domain-classification head.")
@out_option("output", aliases=("--output",), type=click.Path(file_okay=False), default=None,
            help="Run folder. If it holds checkpoint.pt, training resumes from it. "
                 "[default: --resume's folder, else runs/stargan]")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue from this run folder (or checkpoint file); -o defaults to it.")
@click.option("--image-size", type=int, default=128, show_default=True, help="Training resolution (multiple of 4).")
@click.option("--crop-size", type=int, default=178, show_default=True,
              help="Centre crop before resizing (178 for CelebA; the image side for square toyfaces exports).")
@click.option("--g-conv-dim", type=int, default=None,
              help="Generator width of the first layer. [default: 64; 32 with --generator faststyle]")
@click.option("--d-conv-dim", type=int, default=64, show_default=True, help="Discriminator width of the first layer.")
@click.option("--g-repeat-num", type=int, default=None,
              help="Generator residual blocks. [default: 6; 5 with --generator faststyle]")
@click.option("--d-repeat-num", type=int, default=None,
              help="Discriminator strided convolutions (stargan: the image size must be a multiple of 2^N; patch: "
                   "the PatchGAN's n_layers). [default: 6; 3 with --discriminator patch]")
@click.option("--batch-size", "batch", cls=AliasOption, aliases=("--batch",), type=int, default=16, show_default=True,
              help="Global batch (split across processes).")
@click.option("--iters", type=int, default=200000, show_default=True,
              help="Total iterations (discriminator updates) of the run; a resumed run stops here too.")
@click.option("--decay-iters", type=int, default=None,
              help="Linear learning-rate decay to 0 over the last N iterations [default: half of --iters].")
@click.option("--g-lr", type=float, default=1e-4, show_default=True, help="Generator learning rate.")
@click.option("--d-lr", type=float, default=1e-4, show_default=True, help="Discriminator learning rate.")
@click.option("--beta1", type=float, default=0.5, show_default=True, help="Adam beta1.")
@click.option("--beta2", type=float, default=0.999, show_default=True, help="Adam beta2.")
@click.option("--n-critic", type=int, default=5, show_default=True, help="Discriminator updates per generator update.")
@click.option("--lambda-cls", type=float, default=1.0, show_default=True, help="Weight of the classification loss.")
@click.option("--lambda-rec", type=float, default=10.0, show_default=True, help="Weight of the reconstruction loss.")
@click.option("--lambda-gp", type=float, default=10.0, show_default=True, help="Weight of the gradient penalty.")
@click.option("--lambda-id", type=float, default=0.0, show_default=True,
              help="Weight of an identity loss |x - G(x, c_org)| (not in StarGAN; 0 = the official recipe). "
                   "Keeps skin and background colours when training is short.")
@click.option("--test-count", type=int, default=2000, show_default=True,
              help="Images held out as the test split (the first N after the official seed-1234 shuffle).")
@click.option("--flip/--no-flip", default=True, show_default=True, help="Random horizontal flips of training images.")
@click.option("--log-every", type=int, default=10, show_default=True, help="Log metrics every N iterations.")
@click.option("--sample-every", type=int, default=1000, show_default=True,
              help="Write a sample grid every N iterations.")
@click.option("--snapshot-every", type=int, default=1000, show_default=True,
              help="Write checkpoint.pt and generator.safetensors every N iterations.")
@click.option("--sample-count", type=int, default=8, show_default=True, help="Rows (test images) in each sample grid.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initial weights and data order.")
@click.option("--workers", type=int, default=1, show_default=True, help="DataLoader worker processes per rank.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto = CUDA when available.")
@click.option("--session-iters", type=int, default=None,
              help="Stop after this many iterations of this session, with a checkpoint; rerun to continue.")
@progress_option()
@click.pass_context
def train_command(ctx: click.Context, data, attrs, output, resume, session_iters, progress, **options) -> None:
    """Train StarGAN (WGAN-GP, official recipe); writes RUN/checkpoint.pt, RUN/generator.safetensors,
    RUN/samples/ and RUN/metrics.jsonl.

    \b
    Examples:
      latentedit data toyfaces -o data/toy64 --n 30000 --format celeba
      latentedit stargan train --data data/toy64 --image-size 64 --crop-size 64 --d-repeat-num 5      (run in runs/stargan)
      latentedit stargan train --data data/toy64 --image-size 64 --crop-size 64 --d-repeat-num 5 -o runs/stargan64
      latentedit stargan train --data data/toy64 --image-size 64 --crop-size 64 --d-repeat-num 5 --g-conv-dim 32 --d-conv-dim 32 --iters 8000 -o runs/stargan64_cpu
      latentedit stargan train --data /data/celeba -o runs/stargan_celeba      (the paper's setting)
      torchrun --nproc_per_node 2 -m latentedit stargan train --data DIR -o RUN   (DDP)
      latentedit stargan train --data food/ --generator faststyle --discriminator patch --image-size 256 --crop-size 256 --batch-size 32 -o runs/food   (seed 004)
      latentedit stargan train --data toyfaces-hair --generator faststyle --discriminator patch --image-size 64 --crop-size 64 -o runs/hair

    Interrupting (Ctrl-C, SIGTERM) writes a checkpoint first; rerunning the same command resumes.
    """
    from latentedit.baselines import stargan_train
    from latentedit.progress import resolve_progress

    output = Path(output if output is not None else resume if resume is not None else DEFAULT_RUN)
    attr_list = [name.strip() for name in attrs.split(",") if name.strip()]
    from latentedit.baselines import faststyle

    sizes = faststyle.default_sizes(options["generator"], options["discriminator"])
    for name, value in sizes.items():
        if options.get(name) is None:
            options[name] = value
    values = {**options, "attrs": attr_list}
    explicit = {name for name in ctx.params if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    checkpoint_path = stargan_train.find_resume_checkpoint(output, resume)
    if checkpoint_path is None:
        if data is None:
            raise InputError("--data is required for a new run")
        config = stargan_train.StarGANTrainConfig(data=str(data), **values)
    else:
        saved = stargan_train.read_training_checkpoint(checkpoint_path)
        requested = stargan_train.StarGANTrainConfig(data=str(data or saved["args"]["data"]), **values)
        config = stargan_train.resume_config(saved["args"], requested, explicit & (set(values) | {"data"}))
        del saved
    result = stargan_train.train_stargan(config, output, resume_from=checkpoint_path,
                                         progress=resolve_progress(progress), session_iters=session_iters)
    rank_zero = os.environ.get("RANK", "0") == "0"
    if result.stop_signal is not None:
        if rank_zero:
            click.echo(f"stopped by signal {result.stop_signal} at iteration {result.step}; checkpoint saved to "
                       f"{result.checkpoint}; rerun the same command to resume", err=True)
        sys.exit(128 + result.stop_signal)
    if rank_zero:
        speed = f", {result.img_per_sec:.1f} img/s" if result.img_per_sec else ""
        state = "trained to" if result.finished else f"paused (of {config.iters}; rerun to continue) at"
        click.echo(f"{state} iteration {result.step}{speed}; generator: {result.generator_path}")


@stargan_group.command("transfer")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--set", "changes", multiple=True,
              help="Target attribute NAME=0|1 (repeatable). Setting a hair colour clears the others; attributes "
                   "not set keep the source's values.")
@click.option("--to", "to", default=None, metavar="CATEGORY",
              help="Target category of a model trained on exclusive categories (for an attribute model: --set "
                   "CATEGORY=1).")
@click.option("--size", type=int, default=None,
              help="Translate at this size (a multiple of 4), e.g. 512 for a 256 px model. [default: the training "
                   "size]")
@click.option("--ckpt", default="stargan_toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--source-attrs", multiple=True, help=SOURCE_HELP)
@click.option("--classifier", type=click.Path(dir_okay=False), default=None,
              help="Attribute classifier for the source labels [default: the shipped one].")
@out_option("output", type=click.Path(), default="translated", show_default=True,
            help="A .png file (one image) or a folder (<stem>.png per image and transfer.json).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
def transfer_command(images, changes, to, size, ckpt, source_attrs, classifier, output, device) -> None:
    """Change attributes of face images with a StarGAN generator, or translate images to a category.

    \b
    Example:
      latentedit stargan transfer face.png --set Blond_Hair=1 --set Male=0 -o blond.png
      latentedit stargan transfer a.png b.png --set Blond_Hair=1      (writes translated/a.png, b.png, transfer.json)
      latentedit stargan transfer bowl.jpg --to ramen --size 512 --ckpt runs/food -o ramen.png   (categories)
    """
    from latentedit.baselines import OUTPUT_SUFFIXES, transfer_files

    if not changes and to is None:
        raise InputError("give --set NAME=0|1 (attributes) or --to CATEGORY (exclusive categories)")
    manifest = transfer_files(images, changes, output, ckpt=ckpt, source_attrs=source_attrs,
                              classifier_path=classifier, device=device, to=to, size=size)
    if "to" in manifest:
        for entry in manifest["images"]:
            click.echo(f"{entry['input']} -> {entry['output']}  [{entry['target']}, {manifest['size']} px]")
    for entry in (manifest["images"] if "to" not in manifest else []):
        source = " ".join(f"{k}={v}" for k, v in entry["source"].items())
        target = " ".join(f"{k}={v}" for k, v in entry["target"].items())
        click.echo(f"{entry['input']} -> {entry['output']}  [{source}] -> [{target}]")
    if Path(output).suffix.lower() in OUTPUT_SUFFIXES:
        click.echo(f"wrote {output}")
    else:
        click.echo(f"wrote {len(manifest['images'])} image(s) and transfer.json to {output}")


@stargan_group.command("grid")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--ckpt", default="stargan_toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--source-attrs", multiple=True, help=SOURCE_HELP)
@click.option("--classifier", type=click.Path(dir_okay=False), default=None,
              help="Attribute classifier for the source labels [default: the shipped one].")
@out_option("output", type=click.Path(dir_okay=False), default="grid.png", show_default=True, help="Output PNG.")
@click.option("--size", type=int, default=None,
              help="Translate at this size (a multiple of 4). [default: the training size]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
def grid_command(images, ckpt, source_attrs, classifier, output, size, device) -> None:
    """Every single-attribute translation of each image in one row: the input, then per attribute a hair
    colour set (others cleared) or any other attribute flipped; for a model on exclusive categories, the
    image translated to every category."""
    from latentedit.baselines import grid_files

    result = grid_files(images, output, ckpt=ckpt, source_attrs=source_attrs, classifier_path=classifier,
                        device=device, size=size)
    click.echo(f"wrote {result['output']}: columns {' | '.join(result['columns'])}")


COMMANDS = [stargan_group]
