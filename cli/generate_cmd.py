"""``latentedit generate``: images from seeds or saved latents."""
from __future__ import annotations

import click
from latentedit.cli.options import AliasOption, out_option, precision_option, progress_option

CKPT_HELP = ("Checkpoint: a shipped name (toyfaces64), a rosinality .pt, an NVIDIA stylegan2-ada or stylegan3 "
             ".pkl or a latentedit .safetensors file.")


def _parse_pair(ctx, param, value):
    if value is None:
        return None
    try:
        x, y = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected two numbers 'X,Y', got {value!r}") from None
    return x, y


@click.command("generate")
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--seeds", default=None, help="Seeds, e.g. 0-7,10 (z drawn as numpy RandomState(seed).randn). "
              "Default 0-7 when --latent is not given.")
@click.option("--latent", "latent_path", type=click.Path(dir_okay=False), default=None,
              help="A .npy latent: W [w_dim] / [N, w_dim] or W+ [num_ws, w_dim] / [N, num_ws, w_dim].")
@click.option("--truncation", "--psi", "truncation", cls=AliasOption, aliases=("-psi",), type=float, default=1.0,
              show_default=True, help="Truncation psi: w_avg + psi * (w - w_avg).")
@click.option("--truncation-cutoff", type=int, default=None, help="Truncate only W+ rows below this index.")
@click.option("--noise", "noise_mode", type=click.Choice(["const", "random", "zero"]), default="const",
              show_default=True, help="Noise inputs: stored buffers, fresh (seeded) N(0,1), or zero.")
@click.option("--translate", callback=_parse_pair, default=None, metavar="X,Y",
              help="StyleGAN3 only: translate the image (input-layer units, as NVIDIA's gen_images.py).")
@click.option("--rotate", type=float, default=None, metavar="DEG",
              help="StyleGAN3 only: rotate the image by DEG degrees (as NVIDIA's gen_images.py).")
@click.option("--grid/--no-grid", default=True, show_default=True, help="Also write grid.png.")
@click.option("--batch-size", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@precision_option("What the synthesis computes in (the mapping network and truncation stay float32).")
@out_option("out_dir", type=click.Path(file_okay=False), default="generated", show_default=True,
            help="Output folder.")
@progress_option("Show a progress bar (when there is more than one batch).")
def generate_command(ckpt, seeds, latent_path, truncation, truncation_cutoff, noise_mode, translate, rotate, grid,
                     batch_size, device, precision, out_dir, progress):
    """Generate images from seeds or a latent file.

    Writes <name>.png and <name>.npy (its W+ [num_ws, w_dim]) per image, w_plus.npy with all of them,
    grid.png and manifest.json (checkpoint sha256, seeds, psi, noise mode, versions).
    """
    from latentedit.checkpoints import load_generator
    from latentedit.device import resolve_device
    from latentedit.latents import parse_seeds
    from latentedit.model import generate_to_folder
    from latentedit.progress import resolve_progress

    seed_list = None
    if latent_path is None:
        seed_list = parse_seeds(seeds or "0-7")
    elif seeds is not None:
        raise click.UsageError("give --seeds or --latent, not both", ctx=click.get_current_context())
    generator, info = load_generator(ckpt, device=resolve_device(device))
    is_stylegan3 = getattr(generator, "architecture", None) == "stylegan3"
    transform = None
    if translate is not None or rotate is not None:
        if not is_stylegan3:
            raise click.UsageError("--translate and --rotate need a StyleGAN3 checkpoint (StyleGAN2 has no input "
                                   "transform)", ctx=click.get_current_context())
        from latentedit.model.sg3 import make_transform

        transform = {"translate": list(translate or (0.0, 0.0)), "rotate_deg": rotate or 0.0}
        generator.set_transform(make_transform(transform["translate"], transform["rotate_deg"]))
    if is_stylegan3 and noise_mode != "const":
        click.echo(f"note: StyleGAN3 has no noise inputs; --noise {noise_mode} is ignored", err=True)
    manifest = generate_to_folder(generator, out_dir, checkpoint_info=info.to_dict(), seeds=seed_list,
                                  latent_path=latent_path, truncation=truncation,
                                  truncation_cutoff=truncation_cutoff, noise_mode=noise_mode, grid=grid,
                                  batch_size=batch_size, progress=resolve_progress(progress),
                                  input_transform=transform, precision=precision)
    click.echo(f"wrote {len(manifest['names'])} image(s) of {generator.size}x{generator.size} to {out_dir} "
               f"({manifest['wall_time_s']:.1f} s)")


COMMANDS = [generate_command]
