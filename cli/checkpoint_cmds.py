"""CLI: ``latentedit info`` and ``latentedit convert`` (checkpoint inspection and conversion)."""
from __future__ import annotations

import json
from pathlib import Path

import click
from latentedit.cli.options import out_option

from latentedit.checkpoints import convert_checkpoint, inspect_checkpoint
from latentedit.errors import InputError


def _format_report(report: dict) -> str:
    contents = ", ".join(report["contents"])
    channels = " ".join(f"{res}:{ch}" for res, ch in report["channels"].items())
    lines = [
        ("checkpoint", report["path"]),
        ("format", f"{report['source_format']} (loaded '{report['network']}'; file holds: {contents})"),
        ("sha256", report["sha256"]),
        ("architecture", report.get("architecture", "stylegan2")),
        ("size", f"{report['size']}x{report['size']}"),
        ("style_dim", f"{report['style_dim']} (z and w)" if report.get("z_dim", report["style_dim"]) ==
         report["style_dim"] else f"{report['style_dim']} (w; z has {report['z_dim']})"),
        ("n_mlp", str(report["n_mlp"])),
        ("num_ws", f"{report['num_ws']} (W+ rows)"),
        ("noise layers", str(report["num_noise_layers"])),
        ("channels", channels),
        ("conv_clamp", "none" if report["conv_clamp"] is None else f"{report['conv_clamp']:g}"),
        ("parameters", f"{report['num_parameters']:,}"),
        ("w_avg", report["w_avg_source"]),
    ]
    for layer in report.get("layers", []):  # StyleGAN3: one line per synthesis layer
        size_in, size_out = (layer["in_size"] or ["?"])[0], (layer["out_size"] or ["?"])[0]
        filters = "radial" if layer["radial"] else "separable" if layer["down_filter"] else "no filters"
        lines.append((f"layer {layer['name']}",
                      f"{size_in}->{size_out} px, {layer['in_channels']}->{layer['out_channels']} ch, "
                      f"{layer['kernel']}x{layer['kernel']}, up {layer['up']} down {layer['down']}, rate "
                      f"{layer['in_sampling_rate']:g}->{layer['out_sampling_rate']:g}, cutoff "
                      f"{layer['in_cutoff']:.4g}->{layer['out_cutoff']:.4g}, {filters}"
                      f"{', ToRGB' if layer['torgb'] else ''}{', critical' if layer['critically_sampled'] else ''}"))
    lines += [(key.replace("_", " "), value) for key, value in report["provenance"].items()]
    lines += [("note", note) for note in report["notes"]]
    width = max(len(key) for key, _ in lines)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in lines)


@click.command("info")
@click.argument("checkpoint")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def info_command(checkpoint: str, as_json: bool) -> None:
    """Describe CHECKPOINT (a file or a shipped model name): architecture, format, sha256, w_avg source.

    The checkpoint is fully read and validated, but nothing in it is executed.
    """
    report = inspect_checkpoint(checkpoint)
    click.echo(json.dumps(report, indent=2) if as_json else _format_report(report))


@click.command("convert")
@click.argument("source")
@out_option("output", aliases=("--output",), type=click.Path(dir_okay=False), default=None,
            help="Destination .safetensors file (written atomically). [default: <SOURCE stem>.safetensors in "
                 "the current folder]")
def convert_command(source: str, output: str | None) -> None:
    """Convert the generator of SOURCE (rosinality .pt, NVIDIA .pkl or .safetensors) to latentedit's native
    .safetensors format, keeping its w_avg (computed from 10,000 seeded samples when SOURCE stores none).

    \b
    latentedit convert stylegan2-ffhq.pt      (writes stylegan2-ffhq.safetensors here)
    latentedit convert network.pkl -o runs/ffhq.safetensors
    """
    if output is None:
        output = Path(source).stem + ".safetensors"
        if Path(output).resolve() == Path(source).resolve():
            raise InputError(f"the default output {output} is SOURCE itself; give another file with -o")
    info = convert_checkpoint(source, output)
    click.echo(f"wrote {info.path} ({info.config.size}x{info.config.size}, {info.num_parameters:,} parameters, "
               f"from {info.provenance.get('source_format')}; sha256 {info.sha256})")


COMMANDS = [info_command, convert_command]
