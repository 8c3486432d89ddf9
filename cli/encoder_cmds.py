"""CLI: ``latentedit encoder train`` (issue #23): an image → W+ encoder for a generator."""
from __future__ import annotations

import dataclasses
import os
import sys

import click
from click.core import ParameterSource
from latentedit.cli.generate_cmd import CKPT_HELP
from latentedit.cli.options import AliasOption, out_option, progress_option

from latentedit.invert.encoder import EncoderTrainConfig

DEFAULT_RUN = "runs/encoder"
_DEFAULTS = EncoderTrainConfig()
_FIELD_TYPES = {field.name: field.type for field in dataclasses.fields(EncoderTrainConfig)}


def _config_option(flag: str, help: str, **attrs):
    """``--flag`` for the EncoderTrainConfig field of the same name: its type and default (shown in --help)."""
    name = flag.lstrip("-").replace("-", "_")
    value_type = {"int": int, "float": float, "str": str}[_FIELD_TYPES[name]]
    return click.option(flag, type=value_type, default=getattr(_DEFAULTS, name), show_default=True, help=help,
                        **attrs)


@click.group("encoder")
def encoder_group() -> None:
    """An encoder from images to W+ (one forward pass), used by invert --method encoder|encoder+optimize|pti."""


@encoder_group.command("train")
@click.option("--ckpt", default=_DEFAULTS.ckpt, show_default=True, help=CKPT_HELP)
@out_option("output", type=click.Path(file_okay=False), default=None,
            help=f"Run folder; if it holds checkpoint.pt, training resumes. [default: --resume's folder, else "
                 f"{DEFAULT_RUN}]")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue from this run folder (or checkpoint file); -o defaults to it.")
@_config_option("--iters", "Total iterations of the run.")
@click.option("--batch-size", "batch", cls=AliasOption, aliases=("--batch",), type=int, default=_DEFAULTS.batch,
              show_default=True, help="Generator samples per iteration (global; split across processes).")
@_config_option("--lr", "Adam learning rate.")
@_config_option("--beta1", "Adam beta1 (beta2 0.999).")
@click.option("--decay-iters", type=int, default=None,
              help="Linear learning-rate decay to 0 over the last N iterations [default: a quarter of --iters].")
@_config_option("--psi-min", "Truncation psi of each sample is drawn uniformly from [--psi-min, --psi-max].")
@_config_option("--psi-max", "See --psi-min.")
@_config_option("--mix-prob", "Probability that a sample's W+ rows from a random crossover on come from a second w.")
@_config_option("--row-noise", "Gaussian noise on every W+ row, in units of the per-dimension std of w.")
@_config_option("--latent-weight", "Weight of the latent MSE on W+ (standardised by the std of w).")
@_config_option("--image-weight",
                "Weight of the pixel MSE between G(predicted W+) and the image (0: no render, faster).")
@_config_option("--lpips-weight", "Weight of LPIPS-VGG (only when the VGG16 weights are local).")
@_config_option("--delta-reg", "e4e-style regulariser: pulls every W+ row's offset toward the mean row (editability).")
@click.option("--perceptual", type=click.Choice(["auto", "lpips", "none"]), default=_DEFAULTS.perceptual,
              show_default=True, help="auto: LPIPS when the VGG16 weights are local, else the image loss is MSE only.")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), default=None,
              help="torchvision's vgg16-397923af.pth [default: looked up in $TORCH_HOME/hub/checkpoints].")
@click.option("--real", "real_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder of real images added to every iteration (image losses only).")
@click.option("--real-batch-size", "real_batch", type=int, default=_DEFAULTS.real_batch, show_default=True,
              help="Real images per iteration (with --real).")
@_config_option("--base-channels", "Width of the encoder's first convolution (doubles per block).")
@_config_option("--max-channels", "Channel cap of the encoder's blocks.")
@_config_option("--hidden", "Width of the vector the W+ rows are predicted from.")
@_config_option("--refine-steps", "ReStyle-style correction passes: a refiner sees the image beside the render of "
                                 "the current W+ and corrects it, N times (each pass costs a generator render).")
@click.option("--init-encoder", default=None,
              help="Start from this encoder (file, run folder or shipped name; its architecture is used). With "
                   "--refine-steps above 0 its first pass stays frozen and only the refiner is trained.")
@_config_option("--log-every", "Log mean losses every N iterations.")
@_config_option("--sample-every", "Write a held-out sample grid (and its median PSNR) every N iterations.")
@_config_option("--snapshot-every", "Write checkpoint.pt and encoder.safetensors every N iterations.")
@_config_option("--seed", "Seed of the initial weights and the sample stream.")
@click.option("--device", default=_DEFAULTS.device, show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--session-iters", type=int, default=None,
              help="Stop after this many iterations of this session, with a checkpoint; rerun to continue.")
@progress_option()
@click.pass_context
def encoder_train_command(ctx, output, resume, session_iters, progress, **values) -> None:
    """Train an encoder from images to W+ on the generator's own samples (z -> w, truncation varied -> W+ ->
    image, rendered on the fly); writes RUN/encoder.safetensors (for invert --encoder RUN), RUN/checkpoint.pt,
    RUN/metrics.jsonl and RUN/samples/.

    \b
    Examples:
      latentedit encoder train --ckpt toyfaces64 -o runs/encoder --iters 4000
      latentedit invert face.png --method encoder --encoder runs/encoder
      latentedit encoder train --init-encoder toyfaces64_encoder --refine-steps 1 -o runs/refiner
      torchrun --nproc_per_node 2 -m latentedit encoder train -o RUN --batch-size 16   (DDP)

    Interrupting (Ctrl-C, SIGTERM) writes a checkpoint first; rerunning the same command resumes.
    """
    from pathlib import Path

    from latentedit.invert.encoder import train_encoder
    from latentedit.progress import resolve_progress

    output = Path(output if output is not None else resume if resume is not None else DEFAULT_RUN)
    explicit = {name for name in values if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    config = EncoderTrainConfig(**values)
    result = train_encoder(config, output, resume_from=resume, explicit=explicit, progress=resolve_progress(progress),
                           session_iters=session_iters, report=lambda message: click.echo(message, err=True))
    rank_zero = os.environ.get("RANK", "0") == "0"
    if result.stop_signal is not None:
        if rank_zero:
            click.echo(f"stopped by signal {result.stop_signal} at iteration {result.step}; checkpoint saved in "
                       f"{output}; rerun the same command to resume", err=True)
        sys.exit(128 + result.stop_signal)
    if rank_zero:
        speed = f", {result.img_per_sec:.1f} img/s" if result.img_per_sec else ""
        psnr = result.last_metrics.get("heldout_median_psnr_db")
        psnr_text = f", held-out median PSNR {psnr:.2f} dB" if psnr is not None else ""
        state = "trained to" if result.finished else f"paused (of {config.iters}; rerun to continue) at"
        click.echo(f"{state} iteration {result.step}{speed}{psnr_text}; encoder: {result.encoder_path}")


@encoder_group.command("export")
@click.argument("source")
@out_option("output", type=click.Path(dir_okay=False), default=None,
            help="The encoder file to write. [default: NAME_float16.safetensors (NAME_float32 without --half) in "
                 "the current folder, NAME being the run folder's, file's or shipped encoder's name]")
@click.option("--half/--no-half", default=False, show_default=True,
              help="Store the weights as float16: half the file size; outputs change by rounding only.")
def encoder_export_command(source, output, half) -> None:
    """Write SOURCE (a run folder, an encoder file or a shipped name) as one encoder file, e.g. a float16 copy to
    ship.

    \b
    Example:
      latentedit encoder export runs/refiner --half -o toyfaces64_encoder.safetensors
    """
    from latentedit.invert.encoder import default_export_name, export_encoder

    result = export_encoder(source, output if output is not None else default_export_name(source, half), half=half)
    click.echo(f"wrote {result['path']} ({result['bytes'] / 1e6:.2f} MB, weights {result['weights_dtype']}; "
               f"largest W+ change from the source {result['max_abs_w_plus_change']:.2e} on "
               f"{result['probe_images']} probe images)")


COMMANDS = [encoder_group]
