"""``latentedit pulse``: PULSE search for faces whose downscale matches RGB or RGBA references (SPEC §4)."""
from __future__ import annotations

import click
from latentedit.cli.options import out_option, precision_option, progress_option

from latentedit.progress import resolve_progress

CKPT_HELP = ("Checkpoint: a shipped name (toyfaces64), a rosinality .pt, an NVIDIA stylegan2-ada .pkl or a "
             "latentedit .safetensors file.")


@click.command("pulse")
@click.option("--ref", "refs", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Reference image (repeatable). Square, of side G.size / 2^k (16 for the 64 px default). "
                   "With alpha, only opaque pixels are matched.")
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@out_option("out_dir", type=click.Path(file_okay=False), default="pulse", show_default=True,
            help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Start of duplicate k is seed+k, for every reference (same seed => same start and result).")
@click.option("--duplicates", type=click.IntRange(1, 10000), default=1, show_default=True,
              help="Results per reference, each from its own seed.")
@click.option("--steps", type=click.IntRange(1, 100000), default=100, show_default=True)
@click.option("--lr", type=float, default=0.4, show_default=True, help="Peak learning rate.")
@click.option("--lr-schedule", type=click.Choice(["linear1cycledrop", "linear1cycle", "fixed"]),
              default="linear1cycledrop", show_default=True)
@click.option("--loss", default="100*L2+0.05*GEOCROSS", show_default=True,
              help="Terms WEIGHT*NAME joined by '+'; names L2, L1, GEOCROSS.")
@click.option("--eps", type=float, default=2e-3, show_default=True,
              help="Success threshold on the L2 (mean squared error over visible pixels, images in [0,1]).")
@click.option("--noise-type", type=click.Choice(["trainable", "fixed", "zero"]), default="trainable",
              show_default=True)
@click.option("--num-trainable-noise-layers", type=int, default=5, show_default=True,
              help="With --noise-type trainable: noise inputs 0..N-1 are optimised, the rest fixed.")
@click.option("--bad-noise-layers", default="last", show_default=True,
              help="Noise inputs forced to zero: 'last', 'none', or indices such as 7,8.")
@click.option("--tile-latent", is_flag=True, help="Search one vector shared by all W+ rows (GEOCROSS is then 0).")
@click.option("--opt", "optimizer", type=click.Choice(["adam", "sgd", "sgdm", "adamax"]), default="adam",
              show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Results optimised together: faster per result, but a result then also depends on what shares "
                   "its batch (float rounding grows during the search); 1 keeps every result reproducible alone.")
@click.option("--stop-at-eps", is_flag=True, help="Stop a batch once every result in it has reached eps.")
@click.option("--save-intermediate", is_flag=True, help="Also write every step's images to intermediate/<name>/.")
@click.option("--strict", is_flag=True, help="Exit with code 3 when any result misses eps (outputs are still written).")
@click.option("--fit-samples", type=click.IntRange(2, 100_000_000), default=1_000_000, show_default=True,
              help="z samples of the Gaussian fit of the mapping network (cached per generator).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@precision_option("What the search's generator passes compute in.")
@progress_option("Show progress bars.")
def pulse_command(refs, ckpt, out_dir, seed, duplicates, steps, lr, lr_schedule, loss, eps, noise_type,
                  num_trainable_noise_layers, bad_noise_layers, tile_latent, optimizer, batch_size, stop_at_eps,
                  save_intermediate, strict, fit_samples, device, precision, progress):
    """Find faces whose downscale matches each reference (PULSE).

    Writes per result <name>.png, <name>_lr.png (its downscale), <name>.npy (the W+ [num_ws, w_dim] fed
    to the generator), <name>_noise.npz and <name>.json. A result that misses eps is still written, with
    how far it missed; the exit code is 0 unless --strict.
    """
    from latentedit.checkpoints import load_generator
    from latentedit.device import resolve_device
    from latentedit.pulse import EpsNotReached, PulseSettings, pulse_to_folder

    generator, info = load_generator(ckpt, device=resolve_device(device))
    settings = PulseSettings(steps=steps, lr=lr, lr_schedule=lr_schedule, loss=loss, eps=eps, noise_type=noise_type,
                             num_trainable_noise_layers=num_trainable_noise_layers,
                             bad_noise_layers=bad_noise_layers, tile_latent=tile_latent, optimizer=optimizer,
                             stop_at_eps=stop_at_eps, fit_samples=fit_samples, precision=precision)
    records = pulse_to_folder(generator, list(refs), out_dir, settings, seed=seed, duplicates=duplicates,
                              batch_size=batch_size, checkpoint_info=info.to_dict(),
                              save_intermediate=save_intermediate, progress=resolve_progress(progress),
                              report=click.echo)
    failed = [r["name"] for r in records if not r["success"]]
    click.echo(f"{len(records) - len(failed)} of {len(records)} result(s) reached eps {eps:g}; wrote {out_dir}")
    if failed and strict:
        raise EpsNotReached(f"{len(failed)} result(s) did not reach eps {eps:g} (--strict): {', '.join(failed)}")


COMMANDS = [pulse_command]
