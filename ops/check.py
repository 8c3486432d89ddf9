"""Self-check of the custom ops: build what can be built, compare with the native path, time both.

:func:`check_ops` is what ``latentedit ops check`` prints. Errors are measured on a few fixed cases
per op (upfirdn2d: 2x upsampling pad (2, 1), blur pad (1, 1), 2x downsampling pad (1, 1) and an
odd case with a non-square filter, negative padding and up=3, down=2; fused_leaky_relu: alpha 0.2
and 0.3; filtered_lrelu: StyleGAN3-T's separable 2x up / 2x down with clamp, a radial 2-D down filter,
and ToRGB's bias-and-clamp only), forward values and the gradient w.r.t. ``x`` (and the bias), in the checked dtype.
Timings use the representative inputs of :func:`latentedit.ops.backend.representative_call`. They are
a benchmark: ``auto`` does not time anything, it follows the fixed rule
:data:`latentedit.ops.backend.AUTO_RULE`, which the ``auto`` column shows.
"""
from __future__ import annotations

import torch

from latentedit.errors import OpsBuildError
from latentedit.ops import _build, backend
from latentedit.ops.filtered_lrelu import filtered_lrelu_compiled, filtered_lrelu_native
from latentedit.ops.fused_act import fused_leaky_relu_compiled, fused_leaky_relu_native
from latentedit.ops.upfirdn2d import upfirdn2d_compiled, upfirdn2d_native

OPS = ("upfirdn2d", "fused_leaky_relu", "filtered_lrelu")

# (x shape, filter shape, up, down, pad)
_UPFIRDN_CASES = (
    ((2, 8, 16, 16), (4, 4), 2, 1, (2, 1)),
    ((2, 8, 17, 17), (4, 4), 1, 1, (1, 1)),
    ((2, 8, 16, 16), (4, 4), 1, 2, (1, 1)),
    ((3, 5, 13, 9), (3, 5), (3, 2), (2, 1), (-1, 2, 3, -2)),
)
# (x shape, alpha, gain, with bias)
_LRELU_CASES = (
    ((2, 16, 8, 8), 0.2, 2 ** 0.5, True),
    ((4, 32), 0.3, 1.7, True),
    ((2, 16, 8, 8), 0.2, 2 ** 0.5, False),
)

# (x shape, up filter shape or None, down filter shape or None, up, down, padding, gain, slope, clamp)
_FLRELU_CASES = (
    ((2, 8, 12, 12), (12,), (12,), 2, 2, (11, 10, 11, 10), 2 ** 0.5, 0.2, 256.0),
    ((1, 6, 11, 11), (12,), (9, 9), 2, 2, (8, 8, 8, 8), 2 ** 0.5, 0.2, 0.5),
    ((2, 3, 9, 9), None, None, 1, 1, 0, 1.0, 1.0, 0.3),
)


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def _upfirdn2d_errors(module, device: torch.device, dtype: torch.dtype) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(1)
    forward_error = grad_error = 0.0
    for shape, fshape, up, down, pad in _UPFIRDN_CASES:
        x = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
        f = torch.randn(fshape, generator=generator).to(device=device, dtype=dtype)
        results = []
        for run in (lambda t: upfirdn2d_native(t, f, up, down, pad),
                    lambda t: upfirdn2d_compiled(t, f, up, down, pad, module=module)):
            xg = x.clone().requires_grad_(True)
            y = run(xg)
            dy = torch.ones_like(y).cumsum(-1).sin()  # fixed, non-constant output gradient
            (grad,) = torch.autograd.grad(y, xg, dy)
            results.append((y.detach(), grad))
        forward_error = max(forward_error, _max_abs(results[0][0], results[1][0]))
        grad_error = max(grad_error, _max_abs(results[0][1], results[1][1]))
    return forward_error, grad_error


def _fused_leaky_relu_errors(module, device: torch.device, dtype: torch.dtype) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(2)
    forward_error = grad_error = 0.0
    for shape, alpha, gain, with_bias in _LRELU_CASES:
        x = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
        bias = torch.randn(shape[1], generator=generator).to(device=device, dtype=dtype) if with_bias else None
        results = []
        for run in (lambda t, b: fused_leaky_relu_native(t, b, alpha, gain),
                    lambda t, b: fused_leaky_relu_compiled(t, b, alpha, gain, module=module)):
            xg = x.clone().requires_grad_(True)
            inputs = [xg]
            bg = None
            if bias is not None:
                bg = bias.clone().requires_grad_(True)
                inputs.append(bg)
            y = run(xg, bg)
            grads = torch.autograd.grad(y, inputs, torch.ones_like(y).cumsum(-1).sin())
            results.append((y.detach(), grads))
        forward_error = max(forward_error, _max_abs(results[0][0], results[1][0]))
        for native_grad, compiled_grad in zip(results[0][1], results[1][1]):
            grad_error = max(grad_error, _max_abs(native_grad, compiled_grad))
    return forward_error, grad_error


def _filtered_lrelu_errors(module, device: torch.device, dtype: torch.dtype) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(3)
    forward_error = grad_error = 0.0
    for shape, fu_shape, fd_shape, up, down, padding, gain, slope, clamp in _FLRELU_CASES:
        x = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
        b = torch.randn(shape[1], generator=generator).to(device=device, dtype=dtype)
        # Positive filters of unit sum, like StyleGAN3's low-pass filters: outputs of the inputs' scale.
        fu, fd = (None if s is None else (lambda f: f / f.sum())(torch.rand(s, generator=generator) + 0.1)
                  .to(device=device, dtype=dtype) for s in (fu_shape, fd_shape))
        results = []
        for run in (filtered_lrelu_native,
                    lambda *args, **kw: filtered_lrelu_compiled(*args, **kw, module=module)):
            xg, bg = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
            y = run(xg, fu, fd, bg, up, down, padding, gain=gain, slope=slope, clamp=clamp)
            grads = torch.autograd.grad(y, [xg, bg], torch.ones_like(y).cumsum(-1).sin())
            results.append((y.detach(), grads))
        forward_error = max(forward_error, _max_abs(results[0][0], results[1][0]))
        for native_grad, compiled_grad in zip(results[0][1], results[1][1]):
            grad_error = max(grad_error, _max_abs(native_grad, compiled_grad))
    return forward_error, grad_error


_ERRORS = {"upfirdn2d": _upfirdn2d_errors, "fused_leaky_relu": _fused_leaky_relu_errors,
           "filtered_lrelu": _filtered_lrelu_errors}


def _default_devices() -> list[torch.device]:
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda", torch.cuda.current_device()))
    return devices


def check_ops(device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
              repeats: int = 10) -> list[dict]:
    """Build, verify and time each backend of each op on ``device`` (default: the CPU and, when one
    is visible, the current CUDA device).

    Returns one dict per (op, device, backend), native first::

        {"op": "upfirdn2d", "backend": "compiled", "device": "cpu", "built": True,
         "max_error_forward": 2.4e-07, "max_error_grad": 4.8e-07, "ms_per_call": 3.1,
         "speed_vs_native": 4.2, "auto_uses": True, "note": ""}

    ``built`` is False (errors and timings None, the reason in ``note``) when the kernels could not be
    built; ``speed_vs_native`` is native time / compiled time (> 1: faster); ``auto_uses`` says
    whether ``LATENTEDIT_OPS=auto`` uses this backend (its fixed rule,
    :data:`latentedit.ops.backend.AUTO_RULE`, with native where the kernels did not build; not the
    measured times). ``ms_per_call``
    is the best of ``repeats`` calls on the representative input in ``dtype``. When torch has CUDA but
    no GPU is visible, a ``compiled``/``cuda`` row per op says so. A build failure is reported, not
    raised; a device that does not exist raises InputError.
    """
    from latentedit.errors import InputError

    if device is None:
        devices = _default_devices()
    else:
        try:
            devices = [torch.device(device)]
            torch.empty(0, device=devices[0])
        except (RuntimeError, AssertionError) as error:
            raise InputError(f"device {device!r} is not usable here: {error}") from None
    rows = []
    for dev in devices:
        spec = backend.extension_for(dev)
        module, reason = None, ""
        if spec is None:
            reason = f"no compiled kernels for device type {dev.type!r}"
        elif not backend.kernel_supports(torch.empty(0, dtype=dtype, device=dev)):
            reason = f"the {dev.type} kernels do not take {dtype}"
        else:
            try:
                module = _build.load_extension(spec)
            except OpsBuildError as error:
                reason = str(error)
        for op in OPS:
            with torch.no_grad():
                native_ms = backend.time_call(backend.representative_call(op, dev, None, dtype), dev, repeats)
            native_row = {"op": op, "backend": "native", "device": str(dev), "built": True,
                          "max_error_forward": 0.0, "max_error_grad": 0.0, "ms_per_call": native_ms,
                          "speed_vs_native": 1.0, "auto_uses": True, "note": "reference"}
            row = {"op": op, "backend": "compiled", "device": str(dev), "built": module is not None,
                   "max_error_forward": None, "max_error_grad": None, "ms_per_call": None,
                   "speed_vs_native": None, "auto_uses": False, "note": reason}
            if module is not None:
                row["max_error_forward"], row["max_error_grad"] = _ERRORS[op](module, dev, dtype)
                with torch.no_grad():
                    compiled_ms = backend.time_call(backend.representative_call(op, dev, module, dtype), dev, repeats)
                row["ms_per_call"] = compiled_ms
                row["speed_vs_native"] = native_ms / compiled_ms if compiled_ms > 0 else float("inf")
                row["auto_uses"] = backend.auto_uses_compiled(op, dev.type)
                native_row["auto_uses"] = not row["auto_uses"]
            rows += [native_row, row]
    if device is None and torch.version.cuda is not None and not torch.cuda.is_available():
        for op in OPS:
            rows.append({"op": op, "backend": "compiled", "device": "cuda", "built": False,
                         "max_error_forward": None, "max_error_grad": None, "ms_per_call": None,
                         "speed_vs_native": None, "auto_uses": False,
                         "note": "no CUDA device visible (the CUDA kernels are built on first use on a GPU)"})
    return rows


def format_table(rows: list[dict]) -> str:
    """``rows`` of :func:`check_ops` as a fixed-width text table, one line per row, notes below."""
    header = ("op", "backend", "device", "built", "max err fwd", "max err grad", "ms/call", "vs native", "auto")
    lines = []
    notes = []
    for row in rows:
        def number(value, fmt):
            return "-" if value is None else format(value, fmt)

        lines.append((row["op"], row["backend"], row["device"], "yes" if row["built"] else "no",
                      number(row["max_error_forward"], ".1e"), number(row["max_error_grad"], ".1e"),
                      number(row["ms_per_call"], ".3f"),
                      "-" if row["speed_vs_native"] is None else f"{row['speed_vs_native']:.2f}x",
                      "*" if row["auto_uses"] else ""))
        if not row["built"] and row["note"] and row["note"] not in notes:
            notes.append(row["note"])
    widths = [max(len(str(item[i])) for item in [header] + lines) for i in range(len(header))]
    text = ["  ".join(str(item[i]).ljust(widths[i]) for i in range(len(header))).rstrip() for item in [header] + lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    text.extend(f"note: {note}" for note in notes)
    return "\n".join(text)
