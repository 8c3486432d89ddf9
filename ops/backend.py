"""Backend selection for the custom ops.

``LATENTEDIT_OPS`` (or the ``backend`` argument of each op) picks the implementation:

- ``native``: the pure-PyTorch reference path. Never builds anything.
- ``compiled``: the C++/OpenMP (CPU) or CUDA kernels, JIT-built on first use (see
  :mod:`latentedit.ops._build`). A build failure raises :class:`latentedit.errors.OpsBuildError`.
- ``auto`` (default): a fixed rule per op and device type, :data:`AUTO_RULE`; nothing is timed, so
  the same inputs take the same path in every process, whatever the machine's load (a run resumed
  under ``auto`` continues bit for bit like an uninterrupted one):

  ======================  ==========  ==========
  op                      cpu         cuda
  ======================  ==========  ==========
  ``upfirdn2d``           native      compiled
  ``fused_leaky_relu``    compiled    compiled
  ``filtered_lrelu``      compiled*   native
  ======================  ==========  ==========

  (* for separable or no filters; a full 2-D filter, StyleGAN3-R's radial ones, runs native.)

  Other device types always use native. Where the rule says compiled, the kernels are built (or
  loaded from the cache) on first use; if the build fails, one :class:`OpsFallbackWarning` names the
  cause and the native path is used for the rest of the process.

  The measurements behind the rule (``latentedit ops check``, float32, representative inputs of
  :func:`representative_call`): on a 2-core Intel Xeon VM (torch 2.14 CPU, three runs of
  ``latentedit ops check --device cpu --repeats 30``) the C++ ``upfirdn2d`` ran at 0.27-0.93x the native
  speed and the C++ ``fused_leaky_relu`` at 2.25-3.0x; the 16-core CPU of an H100 host gave 0.26x and
  2.78x. End to end, a 64 px G + D forward and backward (default training channels, batch 8, one
  thread, best of 5) took 0.92-0.96x the all-native time with this rule and 1.30x with both C++
  kernels. On an NVIDIA H100 the CUDA ``upfirdn2d`` was 6.3x native and ``fused_leaky_relu`` 1.02x,
  so CUDA uses both kernels. ``latentedit ops check`` still times both backends (a benchmark; it does
  not change the rule).

Inputs the kernels do not take always use the native path, whatever the setting: devices other than
CPU and CUDA; dtypes other than float32/float64 (CPU) or float16/bfloat16/float32/float64 (CUDA);
an upfirdn2d filter that requires grad (the kernels treat it as a constant); fused_leaky_relu with
``gain <= 0`` or ``negative_slope < 0`` (the backward reads the slope from the sign of the output).

:func:`describe` reports the requested setting and what the rule resolves to, for manifests, without
building anything. Nothing is compiled at import time.
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

OPS = ("upfirdn2d", "fused_leaky_relu", "filtered_lrelu")
DEVICE_TYPES = ("cpu", "cuda")

# filtered_lrelu (StyleGAN3): on CPU auto uses the C++ kernel for separable filters only -- it ran 1.4-3.3x
# native there, but 0.2-0.6x native with StyleGAN3-R's full 2-D (radial) filters, which PyTorch's depthwise
# convolution handles better (docs/ops.md). CUDA stays native under auto until the CUDA path has been compared
# and timed on a GPU (LATENTEDIT_OPS=compiled runs it).
AUTO_FILTERED_LRELU_CPU = True

#: ``auto``'s fixed rule: ``(op, device type) -> True`` when it uses the compiled kernels (see the
#: module docstring for the measurements). Pairs not listed use native.
AUTO_RULE: dict[tuple[str, str], bool] = {
    ("upfirdn2d", "cpu"): False,
    ("fused_leaky_relu", "cpu"): True,
    ("upfirdn2d", "cuda"): True,
    ("fused_leaky_relu", "cuda"): True,
    ("filtered_lrelu", "cpu"): AUTO_FILTERED_LRELU_CPU,
    ("filtered_lrelu", "cuda"): False,
}

_lock = threading.RLock()
# Extension kinds whose build failure auto has already warned about (auto uses native for them).
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


def filtered_lrelu_module(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None,
                          bias: torch.Tensor | None, backend: str | None = None) -> ModuleType | None:
    """The compiled extension :func:`latentedit.ops.filtered_lrelu` should call for these inputs, or None
    for the native path (see the module docstring for the rules; under 'auto' a full 2-D filter ``[Ky, Kx]``
    also means native)."""
    choice = requested(backend)
    if choice == "native" or not kernel_supports(x) or (bias is not None and bias.device != x.device):
        return None
    if choice == "auto":
        if not _auto_prefers_compiled("filtered_lrelu", x.device):
            return None
        if any(f is not None and f.ndim == 2 for f in (fu, fd)):
            return None
    return compiled_module(x.device, choice)


def auto_uses_compiled(op: str, device_type: str) -> bool:
    """Whether :data:`AUTO_RULE` sends ``op`` on ``device_type`` ('cpu', 'cuda', ...) to the compiled
    kernels (before any build failure is taken into account)."""
    return AUTO_RULE.get((op, device_type), False)


def _auto_prefers_compiled(op: str, device: torch.device) -> bool:
    return auto_uses_compiled(op, device.type)


def resolve(op: str, device_type: str, backend: str | None = None) -> str:
    """'native' or 'compiled': the backend ``op`` uses on ``device_type`` for inputs the kernels take,
    under ``backend`` (None: ``$LATENTEDIT_OPS``). Builds nothing: under 'auto' a compiled entry of the
    rule reads 'native' only once its build has failed in this process (the fallback); under
    'compiled' a failed build raises instead, so it stays 'compiled'. Device types without kernels
    are always 'native'."""
    choice = requested(backend)
    if choice == "native" or op not in OPS or device_type not in DEVICE_TYPES:
        return "native"
    if choice == "compiled":
        return "compiled"
    if not auto_uses_compiled(op, device_type):
        return "native"
    spec = extension_for(torch.device(device_type))
    with _lock:
        failed = spec is None or spec.kind in _warned
    return "native" if failed else "compiled"


def describe(backend: str | None = None) -> dict:
    """What the ops run on, for manifests: ``{"LATENTEDIT_OPS": requested, "upfirdn2d": {"cpu": ...,
    "cuda": ...}, "fused_leaky_relu": {...}}`` with each value from :func:`resolve` (nothing is built,
    no GPU is touched). An invalid setting is reported as given, with ``"error"`` instead of the ops."""
    try:
        choice = requested(backend)
    except InputError as error:
        return {"LATENTEDIT_OPS": backend or os.environ.get(ENV_VAR), "error": str(error)}
    report: dict = {"LATENTEDIT_OPS": choice}
    for op in OPS:
        report[op] = {device_type: resolve(op, device_type, choice) for device_type in DEVICE_TYPES}
    return report


def representative_call(op: str, device: torch.device, module: ModuleType | None,
                        dtype: torch.dtype = torch.float32) -> Callable[[], torch.Tensor]:
    """A zero-argument function running ``op`` once on its representative input (in ``dtype``), with the
    compiled ``module`` or, when ``module`` is None, the native path: ``upfirdn2d`` on ``[2, 64, 32, 32]``
    with the StyleGAN2 4x4 blur filter, up=2, pad=(2, 1); ``fused_leaky_relu`` on ``[2, 128, 32, 32]``
    with a bias; ``filtered_lrelu`` on ``[1, 256, 36, 36]`` (a StyleGAN3-T layer after its convolution)
    with 12-tap separable up and down filters, up=2, down=2, padding 11/10, bias and clamp 256."""
    from latentedit.ops.filtered_lrelu import filtered_lrelu_compiled, filtered_lrelu_native
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
    if op == "filtered_lrelu":
        x = torch.randn([1, 256, 36, 36], generator=generator).to(device=device, dtype=dtype)
        bias = torch.randn([256], generator=generator).to(device=device, dtype=dtype)
        taps = torch.kaiser_window(12, periodic=False, dtype=torch.float64)
        f = (taps / taps.sum()).to(device=device, dtype=dtype)
        args = (x, f, f, bias, 2, 2, (11, 10, 11, 10))
        if module is None:
            return lambda: filtered_lrelu_native(*args, clamp=256.0)
        return lambda: filtered_lrelu_compiled(*args, clamp=256.0, module=module)
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
    """``(native_ms, compiled_ms)`` of ``op`` on its representative input on ``device`` (a measurement
    only: ``auto`` does not time anything)."""
    with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
        native_ms = time_call(representative_call(op, device, None), device, repeats)
        compiled_ms = time_call(representative_call(op, device, module), device, repeats)
    return native_ms, compiled_ms


def reset() -> None:
    """Forget auto's build-failure warnings and the build memo (for tests and after changing
    ``$XDG_CACHE_HOME`` or the sources within one process)."""
    with _lock:
        _warned.clear()
    _build.forget()
