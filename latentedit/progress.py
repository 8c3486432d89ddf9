"""When to draw progress bars: only on a terminal, unless the caller says otherwise.

A progress bar redrawn into a redirected stderr is hundreds of lines of noise in a log file, so the
CLI's ``--progress/--no-progress`` defaults to "auto" (``None``): a bar only when stderr is a TTY.
"""
from __future__ import annotations

import sys
from typing import TextIO


def stream_is_terminal(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default: the current ``sys.stderr``) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def resolve_progress(value: bool | None, stream: TextIO | None = None) -> bool:
    """``True``/``False`` as given; ``None`` (auto) means: only when ``stream`` (default stderr) is a TTY."""
    if value is None:
        return stream_is_terminal(stream)
    return bool(value)


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "it"):
    """A tqdm bar on stderr (a no-op one when ``enabled`` is False): ``update(n)``, ``close()``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)
