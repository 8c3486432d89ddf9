"""Backend selection for the custom ops.

``LATENTEDIT_OPS`` (or the ``backend`` argument of each op) picks the implementation:

- ``native``: the pure-PyTorch reference path. Never builds anything.
- ``compiled``: the C++/OpenMP (CPU) or CUDA kernels, JIT-built on first use (see
  :mod:`latentedit.ops._build`). A build failure raises :class:`latentedit.errors.OpsBuildError`.
- ``auto`` (default): the compiled kernels where they are available *and* faster. The first call of
  an op on a device (per op, per device, per process) builds or loads the kernels and times both
  paths on a small representative input -- ``upfirdn2d`` on ``[2, 64, 32, 32]`` float32 with the
  StyleGAN2 4x4 blur filter, up=2, pad=(2, 1); ``fused_leaky_relu`` on ``[2, 128, 32, 32]`` with a
  bias -- best of 3 calls each after a warm-up. The faster one is used from then on. If the build
  fails, one warning names the cause and the native path is used for the rest of the process.

Inputs the kernels do not take always use the native path, whatever the setting: devices other than
CPU and CUDA; dtypes other than float32/float64 (CPU) or float16/bfloat16/float32/float64 (CUDA);
an upfirdn2d filter that requires grad (the kernels treat it as a constant); fused_leaky_relu with
``gain <= 0`` or ``negative_slope < 0`` (the backward reads the slope from the sign of the output).

Nothing is compiled at import time.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from types import ModuleType
from typing import Callable

import torch

from latentedit.errors import InputError, OpsBuildError
from latentedit.ops import _build

VALID = ("auto", "native", "compiled")
ENV_VAR = "LATENTEDIT_OPS"

_KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float16, torch.bfloat16, torch.float32, torch.float64),
}

_lock = threading.RLock()
# (op, device) -> True when auto uses the compiled kernel; filled on first use.
_auto_choice: dict[tuple[str, str], bool] = {}
# Extension kinds whose build failure auto has already warned about.
_warned: set[str] = set()


class OpsFallbackWarning(RuntimeWarning):
    """The compiled kernels could not be built; latentedit uses the native PyTorch ops instead."""


def requested(backend: str | None = None) -> str:
    """The backend asked for: ``backend`` if given, else ``$LATENTEDIT_OPS``, else 'auto' (lower-cased).

    Raises InputError for anything but 'auto', 'native' or 'compiled'.
    """
    choice = (backend or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if choice not in VALID:
        raise InputError(f"{ENV_VAR} (or backend=) must be one of {', '.join(VALID)}, got {choice!r}")
    return choice


def extension_for(device: torch.device) -> _build.ExtensionSpec | None:
    """The compiled extension that runs on ``device``, or None when there is none."""
    if device.type == "cpu":
        return _build.CPU_SPEC
    if device.type == "cuda":
        return _build.CUDA_SPEC
    return None


def kernel_supports(x: torch.Tensor) -> bool:
    """Whether the compiled kernels accept ``x``'s device type and dtype."""
    return x.dtype in _KERNEL_DTYPES.get(x.device.type, ())


def compiled_module(device: torch.device, backend: str | None = None) -> ModuleType | None:
    """The compiled extension for ``device`` (built on first use), or None under 'native', on devices
    without kernels, and under 'auto' when the build failed (one OpsFallbackWarning per extension).
    Under 'compiled' a build failure raises OpsBuildError (remembered: later calls raise it again
    without rebuilding)."""
    choice = requested(backend)
    spec = extension_for(device)
    if choice == "native" or spec is None:
        return None
    if choice == "compiled":
        return _build.load_extension(spec)
    try:
        return _build.load_extension(spec)
    except OpsBuildError as error:
        with _lock:
            if spec.kind not in _warned:
                _warned.add(spec.kind)
                warnings.warn(f"latentedit: using the native PyTorch ops instead of the compiled {spec.kind} "
                              f"kernels: {error}", OpsFallbackWarning, stacklevel=4)
        return None


def upfirdn2d_module(x: torch.Tensor, f: torch.Tensor, backend: str | None = None) -> ModuleType | None:
    """The compiled extension :func:`latentedit.ops.upfirdn2d` should call for these inputs, or None
    for the native path (see the module docstring for the rules)."""
    choice = requested(backend)
    if choice == "native" or not kernel_supports(x) or (f.requires_grad and torch.is_grad_enabled()):
        return None
    if choice == "auto" and not _auto_prefers_compiled("upfirdn2d", x.device):
        return None
    return compiled_module(x.device, choice)


def fused_leaky_relu_module(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float, gain: float,
                            backend: str | None = None) -> ModuleType | None:
    """The compiled extension :func:`latentedit.ops.fused_leaky_relu` should call for these inputs,
    or None for the native path (see the module docstring for the rules)."""
    choice = requested(backend)
    if choice == "native" or not kernel_supports(x) or not (gain > 0 and negative_slope >= 0):
        return None
    if bias is not None and (bias.device != x.device or bias.ndim != 1 or x.ndim < 2 or bias.shape[0] != x.shape[1]):
        return None  # the native path raises the appropriate error
    if choice == "auto" and not _auto_prefers_compiled("fused_leaky_relu", x.device):
        return None
    return compiled_module(x.device, choice)


def _device_key(device: torch.device) -> str:
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def _auto_prefers_compiled(op: str, device: torch.device) -> bool:
    """Auto's decision for ``op`` on ``device``: measured once per process (see the module docstring)."""
    key = (op, _device_key(device))
    choice = _auto_choice.get(key)
    if choice is not None:
        return choice
    with _lock:
        if key not in _auto_choice:
            module = compiled_module(device, "auto")
            if module is None:
                _auto_choice[key] = False
            else:
                native_ms, compiled_ms = benchmark(op, torch.device(key[1]), module)
                _auto_choice[key] = compiled_ms < native_ms
        return _auto_choice[key]


def representative_call(op: str, device: torch.device, module: ModuleType | None,
                        dtype: torch.dtype = torch.float32) -> Callable[[], torch.Tensor]:
    """A zero-argument function running ``op`` once on the representative input named in the module
    docstring (in ``dtype``), with the compiled ``module`` or, when ``module`` is None, the native path."""
    from latentedit.ops.fused_act import fused_leaky_relu_compiled, fused_leaky_relu_native
    from latentedit.ops.upfirdn2d import upfirdn2d_compiled, upfirdn2d_native

    generator = torch.Generator().manual_seed(0)
    if op == "upfirdn2d":
        x = torch.randn([2, 64, 32, 32], generator=generator).to(device=device, dtype=dtype)
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        f = (taps[:, None] * taps[None, :] / 16).to(device=device, dtype=dtype)
        if module is None:
            return lambda: upfirdn2d_native(x, f, up=2, pad=(2, 1))
        return lambda: upfirdn2d_compiled(x, f, up=2, pad=(2, 1), module=module)
    if op == "fused_leaky_relu":
        x = torch.randn([2, 128, 32, 32], generator=generator).to(device=device, dtype=dtype)
        bias = torch.randn([128], generator=generator).to(device=device, dtype=dtype)
        if module is None:
            return lambda: fused_leaky_relu_native(x, bias)
        return lambda: fused_leaky_relu_compiled(x, bias, module=module)
    raise ValueError(f"unknown op {op!r}")


def time_call(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int = 3) -> float:
    """Best of ``repeats`` wall-clock times of ``fn()`` in milliseconds, after one warm-up call;
    CUDA work is synchronised so that kernel time is included."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def benchmark(op: str, device: torch.device, module: ModuleType, repeats: int = 3) -> tuple[float, float]:
    """``(native_ms, compiled_ms)`` of ``op`` on its representative input on ``device``."""
    with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
        native_ms = time_call(representative_call(op, device, None), device, repeats)
        compiled_ms = time_call(representative_call(op, device, module), device, repeats)
    return native_ms, compiled_ms


def auto_choices() -> dict[tuple[str, str], bool]:
    """A copy of auto's decisions so far: ``{(op, device): uses_compiled}``."""
    with _lock:
        return dict(_auto_choice)


def reset() -> None:
    """Forget auto's decisions and warnings and the build memo (for tests and after changing
    ``$XDG_CACHE_HOME`` or the sources within one process)."""
    with _lock:
        _auto_choice.clear()
        _warned.clear()
    _build.forget()
