"""Reading training run folders for the dashboard, without ever leaving the configured root.

A run folder is what ``latentedit train stylegan2`` and ``latentedit stargan train`` write: ``metrics.jsonl``
(one JSON object per line: ticks with losses and ``img_per_s``, and events such as ``start`` or ``snapshot``)
and ``samples/*.png`` (StyleGAN2: ``reals.png`` and ``fakes_kimgNNNNNN.NNN.png``; StarGAN:
``stepNNNNNNN.png``). The trainer may be appending while the page reads, so a half-written last line is
skipped, not an error.

The browser only ever sends a run *name*, which :class:`RunFolders` resolves under its root: absolute
paths, ``..``, and symbolic links that lead outside the root are refused.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentedit.errors import InputError

METRICS_NAME = "metrics.jsonl"
SAMPLES_DIR = "samples"
#: Only the last lines of a long metrics file are read (a long run logs tens of thousands of ticks).
MAX_METRIC_LINES = 20_000
#: Run folders are looked for this many levels below the root.
SEARCH_DEPTH = 3
#: Keys of tick records that are not curves.
_NOT_CURVES = {"step", "kimg", "nimg", "wall_s", "img_per_s", "ema_beta", "g_lr", "d_lr", "event", "r1_count",
               "pl_count"}


class RunFolders:
    """The run folders under ``root`` (``latentedit serve --runs DIR``); names are paths relative to it."""

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = Path(root).resolve() if root is not None else None

    def list_runs(self) -> list[str]:
        """Names (relative POSIX paths, ``"."`` for the root itself) of folders holding ``metrics.jsonl``."""
        if self.root is None or not self.root.is_dir():
            return []
        names = []
        for current, folders, files in os.walk(self.root):
            here = Path(current)
            depth = len(here.relative_to(self.root).parts)
            folders[:] = sorted(f for f in folders if not f.startswith(".") and f != SAMPLES_DIR)
            if depth >= SEARCH_DEPTH:
                folders[:] = []
            if METRICS_NAME in files and self._inside(here / METRICS_NAME):
                names.append(here.relative_to(self.root).as_posix())
        return sorted(names)

    def _inside(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.root)
        except (ValueError, OSError):
            return False
        return True

    def resolve(self, name: str) -> Path:
        """The folder of run ``name``; InputError for anything that is not a run folder inside the root."""
        if self.root is None:
            raise InputError("no run folder is configured: start the server with --runs DIR")
        if not isinstance(name, str) or not name.strip():
            raise InputError("choose a run")
        text = name.strip().replace("\\", "/")
        parts = [part for part in text.split("/") if part not in ("", ".")]
        if text.startswith("/") or any(part == ".." for part in parts) or (parts and ":" in parts[0]):
            raise InputError(f"run {name!r} is not a folder under the configured run folder")
        path = self.root.joinpath(*parts)
        if not self._inside(path):
            raise InputError(f"run {name!r} leads outside the configured run folder")
        if not (path / METRICS_NAME).is_file():
            raise InputError(f"run {name!r} has no {METRICS_NAME} (yet)")
        return path.resolve()


def read_metrics(path: str | os.PathLike, max_lines: int = MAX_METRIC_LINES) -> list[dict]:
    """The JSON objects of a metrics file (its last ``max_lines`` lines); lines that do not parse are skipped."""
    path = Path(path)
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        chunk = min(size, max_lines * 512)
        handle.seek(size - chunk)
        data = handle.read()
    lines = data.split(b"\n")
    if chunk < size:
        lines = lines[1:]  # the first line was cut by the seek
    lines = [line for line in lines if line.strip()]
    records = []
    for line in lines[-max_lines:]:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # empty, or being written
        if isinstance(record, dict):
            records.append(record)
    return records


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class RunSummary:
    """What the dashboard shows of a run."""

    kind: str
    ticks: int
    step: int | None
    kimg: float | None
    img_per_s: float | None
    wall_s: float | None
    last_event: str | None
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    sample: Path | None = None

    def status_line(self) -> str:
        parts = [self.kind]
        if self.step is not None:
            parts.append(f"step {self.step}")
        if self.kimg is not None:
            parts.append(f"{self.kimg:.3f} kimg")
        if self.img_per_s is not None:
            parts.append(f"{self.img_per_s:.1f} img/s")
        if self.wall_s is not None:
            parts.append(f"{self.wall_s:.0f} s")
        parts.append(f"{self.ticks} logged tick(s)")
        if self.last_event:
            parts.append(f"last event: {self.last_event}")
        return ", ".join(parts)


def latest_sample(run_dir: str | os.PathLike) -> Path | None:
    """The newest sample grid of a run (by name, which sorts by kimg or step), not ``reals.png``."""
    folder = Path(run_dir) / SAMPLES_DIR
    if not folder.is_dir():
        return None
    grids = sorted(p for p in folder.glob("*.png") if p.is_file() and p.name != "reals.png"
                   and not p.name.startswith("."))
    return grids[-1] if grids else None


def summarize(records: list[dict], run_dir: str | os.PathLike | None = None) -> RunSummary:
    """Curves (every numeric loss-like key of the tick records, against step), the latest counters, the sample."""
    ticks = [r for r in records if "event" not in r]
    events = [r["event"] for r in records if isinstance(r.get("event"), str)]
    kind = "StyleGAN2" if any("loss_d" in r for r in ticks) else "StarGAN" if any("d_loss" in r for r in ticks) \
        else "run"
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for index, record in enumerate(ticks):
        x = _number(record.get("step"))
        x = float(index) if x is None else x
        for key, value in record.items():
            y = _number(value)
            if key in _NOT_CURVES or y is None:
                continue
            xs, ys = curves.setdefault(key, ([], []))
            xs.append(x)
            ys.append(y)
    last = ticks[-1] if ticks else {}
    step = _number(last.get("step"))
    kimg = _number(last.get("kimg"))
    if kimg is None and _number(last.get("nimg")) is not None:
        kimg = _number(last.get("nimg")) / 1000.0
    return RunSummary(kind=kind, ticks=len(ticks), step=None if step is None else int(step), kimg=kimg,
                      img_per_s=_number(last.get("img_per_s")), wall_s=_number(last.get("wall_s")),
                      last_event=events[-1] if events else None, curves=curves,
                      sample=latest_sample(run_dir) if run_dir is not None else None)


def plot_curves(summary: RunSummary, width: int = 720, height: int = 360) -> np.ndarray:
    """The loss curves as an ``[H, W, 3]`` uint8 picture (matplotlib, no window)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    axes = figure.subplots()
    losses = {k: v for k, v in summary.curves.items() if "loss" in k} or summary.curves
    for name, (xs, ys) in sorted(losses.items()):
        axes.plot(xs, ys, label=name, linewidth=1.2)
    axes.set_xlabel("step")
    axes.set_title(f"{summary.kind}: losses" if losses else f"{summary.kind}: nothing logged yet")
    if losses:
        axes.legend(fontsize=7, ncol=2)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
