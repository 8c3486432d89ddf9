"""``latentedit serve``: the web demo (Gradio), from the ``demo`` extra."""
from __future__ import annotations

import click
from latentedit.cli.generate_cmd import CKPT_HELP


@click.command("serve")
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--stargan-ckpt", default="stargan_toyfaces64", show_default=True,
              help="StarGAN generator for the Translate tab (as `stargan transfer --ckpt`).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 exposes the page to the network.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="Port.")
@click.option("--runs", type=click.Path(file_okay=False), default=None,
              help="Folder of training runs for the Training tab; the page reads nothing outside it.")
@click.option("--max-upload-mb", type=click.FloatRange(0.01, 1024), default=10.0, show_default=True,
              help="Largest upload accepted.")
@click.option("--steps", "default_steps", type=click.IntRange(1, 100_000), default=300, show_default=True,
              help="Inversion steps the page starts with (latentedit invert's default is 1000).")
@click.option("--pulse-fit-samples", type=click.IntRange(100, 10_000_000), default=None,
              help="z samples of PULSE's Gaussian fit (as `pulse --fit-samples`) [default: PULSE's, 1000000, "
                   "computed once and cached].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
def serve_command(ckpt, stargan_ckpt, host, port, runs, max_upload_mb, default_steps, pulse_fit_samples,
                  device) -> None:
    """Serve the web demo: Edit (invert, sliders, downloads), Translate (StarGAN), PULSE, Training.

    Needs the demo extra (pip install -e '.[demo]'). Listens on 127.0.0.1 unless --host says otherwise and
    never makes a public share link. The files the page offers for download are the ones the matching
    commands write (invert, apply-direction, stargan transfer, pulse), with the same names and manifests.

    \b
    latentedit serve                              (http://127.0.0.1:7860/)
    latentedit serve --runs runs/ --port 8000     (the Training tab watches runs/*/metrics.jsonl)
    """
    from latentedit.serve import ServeConfig, require_gradio, serve

    require_gradio()
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach this address can use the page", err=True)
    serve(ServeConfig(ckpt=ckpt, stargan_ckpt=stargan_ckpt, runs=runs, host=host, port=port,
                      max_upload_mb=max_upload_mb, device=device, default_steps=default_steps,
                      pulse_fit_samples=pulse_fit_samples), log=click.echo)


COMMANDS = [serve_command]
