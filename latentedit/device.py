"""Device selection: never hard-code 'cuda'."""
from __future__ import annotations

import torch

from latentedit.errors import InputError


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cpu``/``cuda``/``cuda:N`` as given (checked)."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but no CUDA GPU is available; use --device cpu")
    return device


# glibc options (mallopt): M_TRIM_THRESHOLD and M_MMAP_MAX.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_allocator_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Keep freed tensor memory in the process instead of returning it to the kernel (glibc only).

    glibc serves every allocation above 32 MiB with a fresh ``mmap`` and unmaps it on free, so each step of
    a 1024 px inversion faults in all of its activation memory again. On the 2-core CPU machines that was
    almost half of the step (config-f, forward + backward to W+ at batch 1: 5.97 s with glibc's defaults,
    3.17 s with this, same outputs; ``benchmarks/generator.py --allocators tuned system``, docs/precision.md).
    With ``M_MMAP_MAX=0`` and a high trim threshold the heap keeps its peak and reuses it; the process's
    resident memory then stays at its peak until it exits, which is what a long command wants. The CLI calls
    this at start-up; the library never does by itself. ``LATENTEDIT_MALLOC=system`` turns it off. Returns
    whether it was applied (False off glibc or when turned off); calling it again does nothing.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    import ctypes
    import ctypes.util
    import os
    import platform

    _allocator_tuned = False
    if os.environ.get("LATENTEDIT_MALLOC", "").strip().lower() == "system" or platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    _allocator_tuned = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))
    return _allocator_tuned
