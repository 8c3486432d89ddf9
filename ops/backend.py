"""Backend selection for the custom ops.

``LATENTEDIT_OPS`` (or the ``backend`` argument of each op):

- ``native``: the pure-PyTorch reference path (always available).
- ``compiled``: the C++ (CPU) or CUDA kernels, JIT-built on first use.
- ``auto`` (default): a compiled backend only where it is available and faster than native; otherwise native.

Nothing is compiled at import time. (Compiled backends are added in ops/_build.py; until then every
request resolves to the native path.)
"""
from __future__ import annotations

import os

VALID = ("auto", "native", "compiled")


def requested(backend: str | None = None) -> str:
    choice = (backend or os.environ.get("LATENTEDIT_OPS", "auto")).strip().lower()
    if choice not in VALID:
        raise ValueError(f"LATENTEDIT_OPS must be one of {', '.join(VALID)}, got {choice!r}")
    return choice


def upfirdn2d_impl(x, backend: str | None = None):
    """Return a compiled upfirdn2d callable for ``x``'s device, or None for the native path."""
    requested(backend)
    return None


def fused_leaky_relu_impl(x, backend: str | None = None):
    """Return a compiled fused_leaky_relu callable for ``x``'s device, or None for the native path."""
    requested(backend)
    return None
