"""CLI: ``latentedit train <network>``.

``train_group`` is a click group; other trainers add themselves with ``train_group.add_command(cmd)``
(or ``@train_group.command()``) in their own module before the CLI is built.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource
from latentedit.cli.options import AliasOption, out_option, progress_option

from latentedit.errors import InputError

# CLI option name -> StyleGAN2TrainConfig field, for options whose names differ.
_FIELD_OF_OPTION = {"r1": "r1_gamma"}
DEFAULT_RUN = "runs/stylegan2"


@click.group("train")
def train_group() -> None:
    """Train networks."""


@train_group.command("stylegan2")
@click.option("--data", "data", type=str, default=None,
              help="Image folder, CelebA folder (img_align_celeba/ + list_attr_celeba.txt) or toyfaces[:SEED[:COUNT]]. "
                   "Optional when resuming.")
@click.option("--data-format", type=click.Choice(["auto", "folder", "celeba", "toyfaces"]), default="auto",
              show_default=True, help="How to read --data; auto detects it.")
@out_option("output", aliases=("--output",), type=click.Path(file_okay=False), default=None,
            help="Run folder. If it holds checkpoint.pt, training resumes from it. "
                 "[default: --resume's folder, else runs/stylegan2]")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue from this run folder (or checkpoint file); -o defaults to it.")
@click.option("--size", type=int, default=64, show_default=True, help="Image size (a power of two >= 8).")
@click.option("--kimg", type=float, default=200.0, show_default=True,
              help="Total length of the run in thousands of real images (a resumed run stops here too).")
@click.option("--batch-size", "batch", cls=AliasOption, aliases=("--batch",), type=int, default=16, show_default=True,
              help="Global batch (split across processes).")
@click.option("--channels", type=str, default=None,
              help="Channels per resolution, e.g. 4:128,8:128,16:128,32:64,64:32 (default: that rule, "
                   "min(128, 2048/res), at least 16).")
@click.option("--style-dim", type=int, default=256, show_default=True, help="Width of z and w.")
@click.option("--n-mlp", type=int, default=4, show_default=True, help="Mapping-network layers.")
@click.option("--lr", type=float, default=0.0025, show_default=True, help="Adam learning rate (G and D).")
@click.option("--r1", type=float, default=0.25, show_default=True, help="R1 regularisation weight gamma.")
@click.option("--r1-every", type=int, default=16, show_default=True, help="Lazy R1: every N discriminator steps.")
@click.option("--pl-weight", type=float, default=0.0, show_default=True,
              help="Path-length regularisation weight (0 = off; it is slow on a CPU).")
@click.option("--mixing-prob", type=float, default=0.9, show_default=True, help="Style-mixing probability.")
@click.option("--ema-kimg", type=float, default=5.0, show_default=True,
              help="Half-life of the EMA generator in thousands of images.")
@click.option("--ema-rampup", type=float, default=0.05, show_default=True,
              help="EMA ramp-up: the half-life is at most this fraction of the images seen so far.")
@click.option("--mirror/--no-mirror", default=False, show_default=True, help="Random horizontal flips of reals.")
@click.option("--snapshot-kimg", type=float, default=2.0, show_default=True,
              help="Write checkpoint.pt and g_ema.safetensors every N kimg.")
@click.option("--sample-kimg", type=float, default=2.0, show_default=True, help="Write a sample grid every N kimg.")
@click.option("--log-kimg", type=float, default=0.5, show_default=True, help="Log metrics every N kimg.")
@click.option("--sample-count", type=int, default=32, show_default=True, help="Images in each sample grid.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initial weights, data order and samples.")
@click.option("--workers", type=int, default=1, show_default=True, help="DataLoader worker processes per rank.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto = CUDA when available.")
@click.option("--channels-last/--no-channels-last", default=False, show_default=True,
              help="NHWC memory format for D and images (slower here with the compiled ops; try it elsewhere).")
@progress_option()
@click.option("--attribute-eval-kimg", type=click.FloatRange(0, None), default=0.0, show_default=True,
              help="Every N kimg, log the attribute classifier's frequencies of Black/Blond/Brown/Gray hair, "
                   "Eyeglasses, Smiling and Male on 512 samples (toyfaces data; 0 = off).")
@click.pass_context
def train_stylegan2_cmd(ctx: click.Context, data, data_format, output, resume, size, kimg, batch, channels,
                        style_dim, n_mlp, lr, r1, r1_every, pl_weight, mixing_prob, ema_kimg, ema_rampup, mirror,
                        snapshot_kimg, sample_kimg, log_kimg, sample_count, seed, workers, device, channels_last,
                        progress, attribute_eval_kimg) -> None:
    """Train a StyleGAN2 generator; writes RUN/checkpoint.pt, RUN/g_ema.safetensors, samples and metrics.

    \b
    Examples:
      latentedit train stylegan2 --data toyfaces:0:50000      (run in runs/stylegan2)
      latentedit train stylegan2 --data toyfaces:0:50000 -o runs/toy64
      latentedit train stylegan2 --data /data/celeba --size 64 --kimg 300 -o runs/celeba64
      torchrun --nproc_per_node 2 -m latentedit train stylegan2 --data DIR -o RUN   (DDP)

    Interrupting (Ctrl-C, SIGTERM) writes a checkpoint first; rerunning the same command resumes.
    """
    from latentedit.progress import resolve_progress
    from latentedit.train import stylegan2
    from latentedit.train import parse_channels

    output = Path(output if output is not None else resume if resume is not None else DEFAULT_RUN)
    values = {"data": data, "data_format": data_format, "size": size, "kimg": kimg, "batch": batch,
              "channels": parse_channels(channels) if channels is not None else None, "style_dim": style_dim,
              "n_mlp": n_mlp, "lr": lr, "r1_gamma": r1, "r1_every": r1_every, "pl_weight": pl_weight,
              "mixing_prob": mixing_prob, "ema_kimg": ema_kimg, "ema_rampup": ema_rampup, "mirror": mirror,
              "snapshot_kimg": snapshot_kimg, "sample_kimg": sample_kimg, "log_kimg": log_kimg,
              "sample_count": sample_count, "seed": seed, "workers": workers, "device": device,
              "channels_last": channels_last}
    explicit = {_FIELD_OF_OPTION.get(name, name) for name in ctx.params
                if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}

    checkpoint_path = stylegan2.find_resume_checkpoint(output, resume)
    if checkpoint_path is None:
        if data is None:
            raise InputError("--data is required for a new run")
        config = stylegan2.StyleGAN2TrainConfig(**values)
    else:
        saved = stylegan2.read_training_checkpoint(checkpoint_path)
        config = stylegan2.resume_config(saved["args"], stylegan2.StyleGAN2TrainConfig(
            **{**values, "data": data or saved["args"]["data"]}), explicit & set(values))
        del saved

    eval_hook = None
    if attribute_eval_kimg > 0:
        from latentedit.evaluate import attribute_frequency_hook

        eval_hook = attribute_frequency_hook()
    result = stylegan2.train_stylegan2(config, output, resume_from=checkpoint_path, progress=resolve_progress(progress),
                                       eval_hook=eval_hook, eval_every_kimg=attribute_eval_kimg)
    rank_zero = _is_rank_zero()
    if result.stop_signal is not None:
        if rank_zero:
            click.echo(f"stopped by signal {result.stop_signal} at {result.kimg:.3f} kimg (step {result.step}); "
                       f"checkpoint saved to {result.checkpoint}; rerun the same command to resume", err=True)
        sys.exit(128 + result.stop_signal)
    if rank_zero:
        speed = f", {result.img_per_sec:.1f} img/s" if result.img_per_sec else ""
        click.echo(f"trained to {result.kimg:.3f} kimg (step {result.step}{speed}); "
                   f"EMA generator: {output / stylegan2.EXPORT_NAME}")


@train_group.command("landmarks")
@out_option("output", type=click.Path(dir_okay=False), default="toyfaces_landmarks.safetensors", show_default=True,
            help="Detector file to write (safetensors).")
@click.option("--scenes", type=click.IntRange(1), default=6000, show_default=True,
              help="Training scenes (toyfaces seed 0, 256 px canvases), rendered once into memory.")
@click.option("--negatives", type=click.IntRange(0), default=1000, show_default=True,
              help="Face-free backgrounds for the face score.")
@click.option("--coarse-steps", type=click.IntRange(1), default=3000, show_default=True, help="Coarse-net steps.")
@click.option("--refine-steps", type=click.IntRange(1), default=5000, show_default=True, help="Refine-net steps.")
@click.option("--batch-size", "batch", cls=AliasOption, aliases=("--batch",), type=click.IntRange(1), default=64,
              show_default=True, help="Images per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True,
              help="Adam learning rate (cosine decay to 0).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Random seed.")
@click.option("--eval", "eval_count", type=click.IntRange(0), default=200, show_default=True,
              help="Held-out scenes (seed 1) to measure the landmark error on afterwards (0 = skip).")
@progress_option()
def train_landmarks_cmd(output, scenes, negatives, coarse_steps, refine_steps, batch, lr, seed, eval_count,
                        progress) -> None:
    """Train the toyfaces landmark detector (coarse + refine CNNs) on toyfaces scenes.

    \b
    latentedit train landmarks -o pretrained/toyfaces_landmarks.safetensors
    """
    from latentedit import io as lio
    from latentedit.photos.landmarks import load_detector
    from latentedit.progress import resolve_progress
    from latentedit.train.landmarks import LandmarkTrainConfig, landmark_errors, train_landmark_detector

    output = Path(output)
    lio.prepare_output_dir(output.parent if str(output.parent) else ".")
    config = LandmarkTrainConfig(scenes=scenes, negatives=negatives, coarse_steps=coarse_steps,
                                 refine_steps=refine_steps, batch_size=batch, lr=lr, seed=seed)
    progress = resolve_progress(progress)
    summary = train_landmark_detector(output, config, progress=progress, log=lambda m: click.echo(m, err=True))
    click.echo(f"trained in {summary['train_seconds']:.0f} s (+{summary['render_seconds']:.0f} s rendering): "
               f"{output}")
    if eval_count:
        errors = landmark_errors(load_detector(output), count=eval_count, progress=progress)
        click.echo(f"held-out landmark error / IOD over {eval_count} scenes: median {errors['median']:.2%}, "
                   f"95th percentile {errors['p95']:.2%}")


def _is_rank_zero() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


COMMANDS = [train_group]
