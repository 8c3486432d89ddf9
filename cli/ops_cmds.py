"""``latentedit ops ...``: inspect the custom ops (compiled kernels versus the native PyTorch path)."""
from __future__ import annotations

import json

import click


@click.group("ops")
def ops_group() -> None:
    """Custom ops: build, verify and time the compiled kernels."""


@ops_group.command("check")
@click.option("--device", default=None, help="Device to check, e.g. cpu or cuda:0 (default: cpu and the current GPU).")
@click.option("--dtype", type=click.Choice(["float32", "float64", "float16", "bfloat16"]), default="float32",
              show_default=True, help="Data type of the test tensors.")
@click.option("--repeats", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Timed calls per backend (the best one is reported).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead of a table.")
def check_command(device: str | None, dtype: str, repeats: int, as_json: bool) -> None:
    """Build the kernels that can be built here, compare them with the native path, and time them.

    Prints one row per op, device and backend: whether it built, the largest absolute difference
    from native (forward and gradient), milliseconds per call, speed relative to native, and (*)
    which one LATENTEDIT_OPS=auto uses: a fixed rule per op and device (not these timings, so that
    results do not change with machine load).
    """
    import torch
    from latentedit.ops import check_ops, format_table

    rows = check_ops(device=device, dtype=getattr(torch, dtype), repeats=repeats)
    click.echo(json.dumps(rows, indent=2) if as_json else format_table(rows))


COMMANDS = [ops_group]
