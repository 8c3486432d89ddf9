"""Reduced-precision compute for synthesis, inversion and PULSE: ``--precision fp32|bf16|fp16|auto``.

``fp32`` (the default) computes everything in float32, exactly as latentedit always has. ``bf16`` and
``fp16`` run the generator's forward pass under :func:`torch.autocast` on the generator's device (CPU or
CUDA): convolutions and matrix products in the reduced type, the activations between them kept in it (the
layers cast what they add, so nothing promotes back to float32), the RGB skip path and everything after the
generator in float32. Latents, noise maps, optimiser state and losses stay float32 -- the optimiser steps a
float32 master copy -- so only the rendered image carries rounding, about 1e-2 of the [-1, 1] range for
bf16 (``benchmarks/generator.py`` reports the measured max difference).

``auto`` picks, per device (:func:`resolve_precision`):

- CUDA: ``fp16`` for checkpoints that clamp activations (``conv_clamp``, which NVIDIA's configs set where they
  run layers in float16), else ``bf16`` where the GPU has it, else ``fp32``;
- CPU: ``bf16`` where the processor multiplies bf16 natively (AVX-512 BF16 or AMX, as oneDNN reports), else
  ``fp32`` -- emulated bf16 is slower than float32;
- anything else: ``fp32``.

Rendering with reduced precision changes output bytes; the same command with the same precision on the same
machine still gives the same bytes.
"""
from __future__ import annotations

import contextlib

import torch

from latentedit.errors import InputError

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (oneDNN's check: AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(choice: str | None, device: torch.device | str = "cpu", *,
                      conv_clamp: float | None = None) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``choice`` (one of :data:`PRECISIONS`; None = fp32) on ``device``.

    ``conv_clamp``: the generator's activation clamp (see the module docstring for ``auto``). InputError for
    an unknown choice.
    """
    choice = (choice or "fp32").lower()
    if choice not in PRECISIONS:
        raise InputError(f"unknown precision {choice!r}; use one of {', '.join(PRECISIONS)}")
    if choice != "auto":
        return choice
    device = torch.device(device)
    if device.type == "cuda":
        if conv_clamp is not None:
            return "fp16"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def compute(precision: str, device: torch.device | str):
    """Context manager that runs what it wraps in ``precision`` (a resolved one: fp32, bf16, fp16).

    fp32 is a no-op context, so float32 results are bit-identical with and without it.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in DTYPES:
        raise InputError(f"unresolved precision {precision!r}; resolve it with resolve_precision first")
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--precision {precision} needs a CPU or CUDA device, not {device.type}; use fp32")
    return torch.autocast(device.type, dtype=DTYPES[precision])


def generator_precision(choice: str | None, generator) -> str:
    """:func:`resolve_precision` for ``generator`` (its device and ``conv_clamp``).

    InputError for reduced precision on a StyleGAN3 generator: its filtered leaky ReLU has not been measured in
    bf16/fp16, so latentedit does not offer it there yet.
    """
    device = next(generator.parameters()).device
    precision = resolve_precision(choice, device, conv_clamp=getattr(generator.config, "conv_clamp", None))
    if precision != "fp32" and getattr(generator, "architecture", None) == "stylegan3":
        if (choice or "").lower() == "auto":
            return "fp32"
        raise InputError(f"--precision {precision} is not available for StyleGAN3 generators yet; use fp32")
    return precision
