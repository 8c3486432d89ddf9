"""PULSE (Menon et al. 2020): find a face whose downscale matches a low-resolution reference (SPEC §4, §4.1).

The search runs over ``num_ws`` vectors per image, each kept on the sphere of radius sqrt(w_dim)
(:class:`SphericalOptimizer`), mapped to W+ through the Gaussian fit of the mapping network
(:mod:`latentedit.pulse.fit`). The loss is a weighted sum of terms from a loss string
(:func:`parse_loss`): the distance between the PULSE bicubic downscale of the generated image
(:func:`pulse_downsample`) and the reference, clamped below at ``eps``, plus GEOCROSS (:func:`geocross`),
which keeps the W+ rows close to one another.

References are ``[B, 3 or 4, h, w]`` in [0, 1]. With a fourth (alpha) channel only the opaque pixels
count: per image ``sum(a * (D(gen) - rgb)^2) / (3 * sum(a))`` (SPEC §4.1), which is plain L2 when
``a == 1``. ``h`` must be ``G.size / 2**k``.

What latentedit does differently from the official code (its known defects, SPEC §4):

* the saved result of each image is its best iterate, not the last one: the iterate with the lowest total
  loss among those with ``L2 <= eps`` if any reached eps, else the lowest total loss of all. (The loss
  clamps L2 at eps, so it cannot tell iterates within eps apart by their L2; preferring them keeps the
  saved result consistent with success.)
* success is decided per image, so a batch of several images works: an image succeeds iff its L2
  reached eps at some step (the official criterion, min L2 <= eps), which is then the saved iterate's;
* a run that misses ``eps`` still returns (and the CLI writes) its best result, with the gap to ``eps``;
* nothing is tied to CUDA; RGBA references work.

Decisions where the SPEC is silent (all deliberate):

* Each search vector is drawn from N(0, I) and then scaled to norm exactly sqrt(w_dim) (the paper's
  sphere); the official code keeps the norm of its N(0, I) draw, which differs by about 1/sqrt(2 w_dim).
* Each image draws its starting point from its own seed (:func:`initial_state`): ``num_ws`` N(0, I)
  rows, then one N(0, 1) map per noise input, always all of them, so the start does not depend on the
  noise options, the batch composition or the device. Two references run with the same seed start
  from the same point (the paired runs of SPEC §4.2). The same seeds and settings in the same batch
  give identical results on the same machine. A batch computes each image's forward pass with slightly
  different float rounding than a batch of one, and the search amplifies such differences, so an image
  run in a different batch ends at a different (equally valid) result.
* ``L1`` is ``10 * mean|D(gen) - ref|`` (alpha-weighted like L2 for RGBA references).
* The loss is evaluated ``steps`` times (steps 0 .. steps-1) and the optimiser steps in between; the
  update after the last evaluation is skipped because it would never be looked at.
* ``stop_at_eps`` stops a batch as soon as every image in it has reached ``L2 <= eps`` once.
* ``first_eps_step`` records the first step at which the L2 reached ``eps``; a later iterate within eps
  with a lower total loss is what is saved.
* A reference at the generator's own size (factor 1) is still filtered by the 4-tap kernel, as the
  downsampler's definition implies (a slight blur and a half-pixel shift).

Python API: :func:`run_pulse` (tensors in, :class:`PulseResult` list out; what a direction workflow
calls with two references and one seed), :func:`pulse_to_folder` (what ``latentedit pulse`` runs),
:func:`load_reference`, :func:`initial_state`, and the building blocks :func:`pulse_downsample`,
:func:`geocross`, :func:`visible_l2`, :func:`parse_loss`, :func:`lr_factor`, :class:`SphericalOptimizer`.

The saved ``<name>.npy`` is the W+ fed to the synthesis network together with the noise maps of
``<name>_noise.npz``; rendered with other noise (e.g. the checkpoint's stored maps) it gives the same
face up to the fine detail that noise controls.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from latentedit import io as lio
from latentedit.errors import InputError, LatentEditError
from latentedit.model.generator import Generator, noise_shape
from latentedit.pulse.fit import DEFAULT_FIT_SAMPLES, GaussianFit, gaussian_fit
from latentedit.precision import compute, generator_precision

DEFAULT_LOSS = "100*L2+0.05*GEOCROSS"
IMAGE_TERMS = ("L2", "L1")
LOSS_TERMS = IMAGE_TERMS + ("GEOCROSS",)
LR_SCHEDULES = ("linear1cycledrop", "linear1cycle", "fixed")
OPTIMIZERS = ("adam", "sgd", "sgdm", "adamax")
NOISE_TYPES = ("trainable", "fixed", "zero")
#: The smallest reference side accepted: the downsampler's reflect padding needs ``1.5 * factor < G.size``.
MIN_REFERENCE_SIZE = 2
#: Added inside every norm (GEOCROSS, sphere projection), as in the original.
NORM_EPS = 1e-9


class EpsNotReached(LatentEditError):
    """Some results did not reach ``eps`` and strict mode was asked for (exit code 3). Outputs are written."""

    exit_code = 3


# --------------------------------------------------------------------------------------------------
# Loss string, schedules, optimisers


def parse_loss(text: str) -> tuple[tuple[str, float], ...]:
    """``"100*L2+0.05*GEOCROSS"`` -> ``(("L2", 100.0), ("GEOCROSS", 0.05))``.

    Grammar: terms separated by ``+``; each term is ``WEIGHT*NAME`` with a finite non-negative decimal
    weight and NAME one of :data:`LOSS_TERMS` (case-insensitive); spaces are ignored. Each name at most
    once, and at least one image term (L2 or L1) with a positive weight, since without one the result is
    not tied to the reference. Anything else is an :class:`InputError` quoting the offending part.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"empty loss string; use terms like {DEFAULT_LOSS!r}")
    terms: list[tuple[str, float]] = []
    # A '+' right after an exponent marker belongs to the number (1e+2*L2).
    for part in re.split(r"(?<![0-9.][eE])\+", text):
        match = re.fullmatch(r"\s*([^*\s]+)\s*\*\s*([A-Za-z0-9_]+)\s*", part)
        if not match:
            raise InputError(f"malformed loss term {part.strip()!r} in {text!r}: each term must be WEIGHT*NAME, "
                             f"e.g. {DEFAULT_LOSS!r}")
        weight_text, name = match.group(1), match.group(2).upper()
        try:
            weight = float(weight_text)
        except ValueError:
            raise InputError(f"loss weight {weight_text!r} in {text!r} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise InputError(f"loss weight {weight_text!r} in {text!r} must be a finite number >= 0")
        if name not in LOSS_TERMS:
            raise InputError(f"unknown loss term {match.group(2)!r} in {text!r}; known: {', '.join(LOSS_TERMS)}")
        if any(name == existing for existing, _ in terms):
            raise InputError(f"loss term {name} appears twice in {text!r}")
        terms.append((name, weight))
    if not any(name in IMAGE_TERMS and weight > 0 for name, weight in terms):
        raise InputError(f"loss {text!r} has no image term (L2 or L1) with a positive weight, so nothing ties the "
                         f"result to the reference")
    return tuple(terms)


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based) of ``steps``.

    ``linear1cycledrop``: for ``x < 0.9 steps``, ``(9 (1 - |x / (0.9 steps) - 1/2| 2) + 1) / 10`` (0.1 -> 1 ->
    0.1), then linear from 0.1 down towards 0.001 at ``x = steps``. ``linear1cycle``: the same triangle over
    all steps, ``(9 (1 - |x / steps - 1/2| 2) + 1) / 10``. ``fixed``: 1.
    """
    x = float(step)
    if schedule == "fixed":
        return 1.0
    if schedule == "linear1cycle":
        return (9.0 * (1.0 - abs(x / steps - 0.5) * 2.0) + 1.0) / 10.0
    if schedule == "linear1cycledrop":
        cycle = 0.9 * steps
        if x < cycle:
            return (9.0 * (1.0 - abs(x / cycle - 0.5) * 2.0) + 1.0) / 10.0
        return 0.1 + (x - cycle) / (0.1 * steps) * (1.0 / 1000.0 - 0.1)
    raise InputError(f"unknown learning-rate schedule {schedule!r}; use one of {', '.join(LR_SCHEDULES)}")


def make_optimizer(name: str, params: Sequence[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """``adam``, ``sgd``, ``sgdm`` (SGD with momentum 0.9) or ``adamax``, with PyTorch's other defaults."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adamax":
        return torch.optim.Adamax(params, lr=lr)
    raise InputError(f"unknown optimiser {name!r}; use one of {', '.join(OPTIMIZERS)}")


def _sphere_norm(tensor: torch.Tensor) -> torch.Tensor:
    """Norm over every dim from 2 on, keepdim: one value per vector of ``[B, n, D]`` / per map of ``[B, 1, r, r]``."""
    return (tensor.square().sum(dim=tuple(range(2, tensor.ndim)), keepdim=True) + NORM_EPS).sqrt()


class SphericalOptimizer:
    """Wraps an optimiser so that every parameter stays on its sphere.

    Each parameter is ``[B, n, ...]``; its "vectors" are the slices over dims 2 and up (one latent row
    ``[D]``, or one noise map ``[r, r]``). Their norms are recorded once, at construction; after every
    :meth:`step` each vector is rescaled back to its recorded norm.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]):
        self.optimizer = optimizer
        self.params = list(params)
        with torch.no_grad():
            self.radii = [_sphere_norm(p) for p in self.params]

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def step(self) -> None:
        self.optimizer.step()
        for param, radius in zip(self.params, self.radii):
            param.mul_(radius / _sphere_norm(param))


# --------------------------------------------------------------------------------------------------
# Downsampler and loss terms


def keys_cubic(x: float, a: float = -0.5) -> float:
    """Keys' cubic convolution kernel at ``x`` (``a = -0.5``, the bicubic of most image libraries)."""
    x = abs(x)
    if x <= 1.0:
        return (a + 2.0) * x ** 3 - (a + 3.0) * x ** 2 + 1.0
    if x < 2.0:
        return a * x ** 3 - 5.0 * a * x ** 2 + 8.0 * a * x - 4.0 * a
    return 0.0


def pulse_kernel(factor: int) -> torch.Tensor:
    """The PULSE downsampling filter ``[4 * factor]`` (float64, sums to 1).

    Tap ``i`` is ``keys_cubic((i - floor(4 factor / 2) + 0.5) / factor)``, then all taps are normalised.
    """
    taps = 4 * factor
    values = [keys_cubic((i - taps // 2 + 0.5) / factor) for i in range(taps)]
    kernel = torch.tensor(values, dtype=torch.float64)
    return kernel / kernel.sum()


def _check_factor(factor: int) -> int:
    if not isinstance(factor, (int, np.integer)) or factor < 1 or factor & (factor - 1):
        raise ValueError(f"downsampling factor must be a power of two >= 1, got {factor!r}")
    return int(factor)


def pulse_downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """PULSE bicubic downscale ``[N, C, H, W]`` -> ``[N, C, H / factor, W / factor]``.

    Separable: vertical pass, then horizontal, each a strided (``factor``) correlation with
    :func:`pulse_kernel` after reflect padding by ``3 * factor`` samples (``//2`` before, the rest after).
    ``H`` and ``W`` must be multiples of ``factor`` and larger than the padding on each side.
    """
    factor = _check_factor(factor)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got {list(images.shape)}")
    channels = images.shape[1]
    kernel = pulse_kernel(factor).to(device=images.device, dtype=images.dtype)
    taps = kernel.numel()
    pad = taps - factor
    before, after = pad // 2, pad - pad // 2
    vertical = kernel.view(1, 1, taps, 1).expand(channels, 1, taps, 1)
    horizontal = kernel.view(1, 1, 1, taps).expand(channels, 1, 1, taps)
    x = F.pad(images, (0, 0, before, after), mode="reflect")
    x = F.conv2d(x, vertical, stride=(factor, 1), groups=channels)
    x = F.pad(x, (before, after, 0, 0), mode="reflect")
    return F.conv2d(x, horizontal, stride=(1, factor), groups=channels)


def geocross(w_plus: torch.Tensor) -> torch.Tensor:
    """GEOCROSS per image ``[B]`` of W+ ``[B, n, D]``.

    For every ordered pair of rows ``(x, y)``, diagonal included: ``theta = 2 atan2(|x - y|, |x + y|)``
    with ``1e-9`` added under each square root; the value is ``mean(theta^2 * D) / 8`` over the ``n * n``
    pairs. It is 0 for a single row (a tiled latent).
    """
    if w_plus.ndim != 3:
        raise ValueError(f"W+ must be [B, n, D], got {list(w_plus.shape)}")
    if w_plus.shape[1] == 1:
        return w_plus.new_zeros(w_plus.shape[0])
    rows = w_plus[:, :, None, :]
    cols = w_plus[:, None, :, :]
    apart = ((rows - cols).square().sum(-1) + NORM_EPS).sqrt()
    together = ((rows + cols).square().sum(-1) + NORM_EPS).sqrt()
    theta = 2.0 * torch.atan2(apart, together)
    return (theta.square() * w_plus.shape[2]).mean(dim=(1, 2)) / 8.0


def _visible_mean(values: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``sum(a * values) / (3 sum(a))`` per image, ``values [B, 3, h, w]``, ``reference [B, 4, h, w]``."""
    alpha = reference[:, 3:4]
    return (values * alpha).sum(dim=(1, 2, 3)) / (values.shape[1] * alpha.sum(dim=(1, 2, 3)))


def visible_l2(lowres: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Alpha-weighted mean squared error per image ``[B]`` (SPEC §4.1): ``sum(a (lowres - rgb)^2) / (3 sum(a))``.

    ``lowres [B, 3, h, w]`` and ``reference [B, 4, h, w]`` (RGB then alpha), both in [0, 1]. Equals the
    plain per-image mean over C, H, W when alpha is 1 everywhere. Not clamped.
    """
    return _visible_mean((lowres - reference[:, :3]).square(), reference)


def visible_l1(lowres: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The ``L1`` term per image ``[B]``: ``10 * sum(a |lowres - rgb|) / (3 sum(a))``. Not clamped."""
    return 10.0 * _visible_mean((lowres - reference[:, :3]).abs(), reference)


# --------------------------------------------------------------------------------------------------
# References


def valid_reference_sizes(generator_size: int) -> list[int]:
    """Reference sides PULSE accepts for a generator of side ``generator_size``: ``generator_size / 2**k``, >= 2."""
    sizes = []
    size = int(generator_size)
    while size >= MIN_REFERENCE_SIZE:
        sizes.append(size)
        size //= 2
    return sizes


def check_reference_size(height: int, width: int, generator_size: int, name: str = "reference") -> int:
    """The downsampling factor ``generator_size / side``; InputError for a non-square or invalid size."""
    valid = valid_reference_sizes(generator_size)
    listing = ", ".join(str(s) for s in valid)
    if height != width:
        raise InputError(f"{name} is {width}x{height}; PULSE needs a square reference, of side {listing} for this "
                         f"{generator_size} px generator (side = {generator_size} / 2^k)")
    if height < MIN_REFERENCE_SIZE:
        raise InputError(f"{name} is {width}x{height}, too small: PULSE's downsampler needs a reference of at least "
                         f"{MIN_REFERENCE_SIZE}x{MIN_REFERENCE_SIZE} (its filter, {4 * generator_size // max(height, 1)} "
                         f"taps at factor {generator_size // max(height, 1)}, is wider than the {generator_size} px "
                         f"image); valid sizes: {listing}. Resize the reference to one of them")
    if height > generator_size:
        raise InputError(f"{name} is {width}x{height}, larger than the {generator_size} px generator's images, so "
                         f"it cannot be their downscale; valid sizes: {listing}. Resize the reference to one of them")
    if height not in valid:
        raise InputError(f"{name} is {width}x{height}, which does not divide the {generator_size} px generator by a "
                         f"power of two; valid sizes: {listing}. Resize the reference to one of them")
    return generator_size // height


def load_reference(path: str | os.PathLike, generator_size: int) -> tuple[torch.Tensor, dict]:
    """Read a reference image as ``[4, h, w]`` float32 in [0, 1] (RGB, then alpha; 1 where the file has none).

    The image is used at its own size, which must be ``generator_size / 2**k``: nothing is cropped or
    resized, because the result is only meaningful against the pixels the user gave. A fully transparent
    image is an error. Returns the tensor and a JSON-ready description.
    """
    from latentedit.image_files import open_image, to_rgba_array

    image = open_image(path)
    width, height = image.size
    check_reference_size(height, width, generator_size, name=f"reference {path}")
    mode = image.mode
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info)
    rgba = torch.from_numpy(np.ascontiguousarray(to_rgba_array(image).transpose(2, 0, 1))).float()
    visible = float(rgba[3].mean())
    if visible <= 0.0:
        raise InputError(f"reference {path} is fully transparent: there is nothing to match. Make the pixels to "
                         f"constrain opaque")
    info = {"path": str(path), "size": height, "mode": mode, "has_alpha": bool(has_alpha),
            "visible_fraction": visible}
    return rgba, info


def _as_reference_batch(references: torch.Tensor, generator_size: int) -> torch.Tensor:
    """Validate ``[B, 3 or 4, h, w]`` in [0, 1] and return ``[B, 4, h, w]`` float32 (alpha 1 added for RGB)."""
    if not isinstance(references, torch.Tensor) or references.ndim != 4 or references.shape[1] not in (3, 4):
        shape = list(references.shape) if isinstance(references, torch.Tensor) else type(references).__name__
        raise InputError(f"references must be a tensor [B, 3 or 4, h, w] in [0, 1], got {shape}")
    if references.shape[0] < 1:
        raise InputError("references hold no image")
    check_reference_size(references.shape[2], references.shape[3], generator_size)
    references = references.detach().float()
    if not torch.isfinite(references).all():
        raise InputError("references contain NaN or infinite values")
    if references.min() < 0 or references.max() > 1:
        raise InputError(f"references must lie in [0, 1], got values in [{float(references.min()):.3g}, "
                         f"{float(references.max()):.3g}]")
    if references.shape[1] == 3:
        references = torch.cat([references, torch.ones_like(references[:, :1])], dim=1)
    empty = (references[:, 3].sum(dim=(1, 2)) <= 0).nonzero().flatten().tolist()
    if empty:
        raise InputError(f"reference(s) {empty} are fully transparent (alpha 0 everywhere): nothing to match")
    return references


# --------------------------------------------------------------------------------------------------
# Settings, starting point


def parse_noise_layers(text: str | None, num_layers: int) -> tuple[int, ...]:
    """``"last"`` (default), ``"none"``, or indices separated by commas or dots (``"7,8"``, ``"7.8"``;
    negative counts from the end) -> sorted layer indices in ``[0, num_layers)``."""
    if text is None or str(text).strip().lower() == "last":
        return (num_layers - 1,)
    text = str(text).strip().lower()
    if text in ("none", ""):
        return ()
    layers = set()
    for part in re.split(r"[,.]", text):
        part = part.strip()
        if not re.fullmatch(r"-?\d+", part):
            raise InputError(f"bad noise layer list {text!r}: use 'last', 'none' or indices such as 7,8")
        index = int(part)
        if not -num_layers <= index < num_layers:
            raise InputError(f"noise layer {index} does not exist: this generator has {num_layers} noise inputs "
                             f"(0..{num_layers - 1})")
        layers.add(index % num_layers)
    return tuple(sorted(layers))


def _check_noise_layer_syntax(value) -> None:
    """InputError unless ``value`` (a ``bad_noise_layers`` option: None, text or indices) is well formed; the
    indices are not range-checked (for generators without noise inputs, where no index exists)."""
    if value is None:
        return
    if not isinstance(value, str):
        try:
            for index in value:
                int(index)
        except (TypeError, ValueError):
            raise InputError(f"bad noise layer list {value!r}: use 'last', 'none' or indices such as 7,8") from None
        return
    text = value.strip().lower()
    if text in ("last", "none", ""):
        return
    for part in re.split(r"[,.]", text):
        if not re.fullmatch(r"-?\d+", part.strip()):
            raise InputError(f"bad noise layer list {text!r}: use 'last', 'none' or indices such as 7,8")


#: What ``pulse`` says once for a generator without noise inputs (StyleGAN3).
NO_NOISE_NOTE = ("note: this generator has no noise inputs (StyleGAN3): PULSE searches the W+ latent only, and "
                 "--noise-type, --num-trainable-noise-layers and --bad-noise-layers have no effect")


def noise_note(generator: Generator) -> str | None:
    """:data:`NO_NOISE_NOTE` for a generator without noise inputs, else None."""
    return NO_NOISE_NOTE if generator.num_layers == 0 else None


@dataclasses.dataclass
class PulseSettings:
    """Every PULSE option; the defaults are the official ones (SPEC §4).

    ``bad_noise_layers``: noise inputs forced to zero, as indices, or None for the official default
    (the last one). ``fit_samples``: z samples of the Gaussian fit (1e6 in the original). For a generator
    without noise inputs (StyleGAN3, ``num_layers`` 0) the three noise options select nothing: they are
    only checked for form, the search runs over the W+ rows alone, and ``<name>_noise.npz`` holds no maps.
    ``precision`` (:data:`latentedit.precision.PRECISIONS`): what the generator's passes compute in (the latent,
    noise, optimiser and losses stay float32; the saved images are the search's own renders).
    """

    steps: int = 100
    lr: float = 0.4
    lr_schedule: str = "linear1cycledrop"
    loss: str = DEFAULT_LOSS
    eps: float = 2e-3
    noise_type: str = "trainable"
    num_trainable_noise_layers: int = 5
    bad_noise_layers: Sequence[int] | None = None
    tile_latent: bool = False
    optimizer: str = "adam"
    stop_at_eps: bool = False
    fit_samples: int = DEFAULT_FIT_SAMPLES
    precision: str = "fp32"

    def loss_terms(self) -> tuple[tuple[str, float], ...]:
        """The parsed loss string (see :func:`parse_loss`)."""
        return parse_loss(self.loss)

    def validate(self, generator: Generator) -> None:
        """Raise InputError naming the first option that is out of range for ``generator``."""
        if not isinstance(self.steps, int) or self.steps < 1:
            raise InputError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"learning rate must be > 0, got {self.lr!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"unknown learning-rate schedule {self.lr_schedule!r}; use one of "
                             f"{', '.join(LR_SCHEDULES)}")
        self.loss_terms()
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise InputError(f"eps must be > 0, got {self.eps!r}")
        if self.noise_type not in NOISE_TYPES:
            raise InputError(f"unknown noise type {self.noise_type!r}; use one of {', '.join(NOISE_TYPES)}")
        if generator.num_layers == 0:
            # No noise inputs (StyleGAN3): the noise options select nothing; only their form is checked.
            if not self.num_trainable_noise_layers >= 0:
                raise InputError(f"num_trainable_noise_layers must be >= 0, got {self.num_trainable_noise_layers}")
        elif not 0 <= self.num_trainable_noise_layers <= generator.num_layers:
            raise InputError(f"num_trainable_noise_layers must be in [0, {generator.num_layers}] for this generator, "
                             f"got {self.num_trainable_noise_layers}")
        self.bad_layers(generator.num_layers)
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimiser {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if not isinstance(self.fit_samples, int) or self.fit_samples < 2:
            raise InputError(f"the Gaussian fit needs at least 2 samples, got {self.fit_samples!r}")
        generator_precision(self.precision, generator)

    def bad_layers(self, num_layers: int) -> tuple[int, ...]:
        """Resolved ``bad_noise_layers``: sorted indices in ``[0, num_layers)``; always ``()`` for a generator
        without noise inputs (``num_layers`` 0), once the option is well formed."""
        if num_layers == 0:
            _check_noise_layer_syntax(self.bad_noise_layers)
            return ()
        if self.bad_noise_layers is None:
            return (num_layers - 1,)
        if isinstance(self.bad_noise_layers, str):
            return parse_noise_layers(self.bad_noise_layers, num_layers)
        return parse_noise_layers(",".join(str(int(i)) for i in self.bad_noise_layers) or "none", num_layers)

    def noise_kinds(self, num_layers: int) -> list[str]:
        """Per noise input: ``zero``, ``fixed`` (random, frozen) or ``trainable`` (random, optimised).

        ``zero`` type: all zero. ``fixed``: all fixed except the bad layers (zero). ``trainable``: bad layers
        zero, then layers below ``num_trainable_noise_layers`` trainable, the rest fixed.
        """
        bad = set(self.bad_layers(num_layers))
        kinds = []
        for index in range(num_layers):
            if self.noise_type == "zero" or index in bad:
                kinds.append("zero")
            elif self.noise_type == "trainable" and index < self.num_trainable_noise_layers:
                kinds.append("trainable")
            else:
                kinds.append("fixed")
        return kinds

    def to_dict(self) -> dict:
        """JSON-ready copy of the options as given."""
        data = dataclasses.asdict(self)
        if data["precision"] == "fp32":  # the default is left out, so earlier runs' records still match
            data.pop("precision")
        if data["bad_noise_layers"] is not None and not isinstance(data["bad_noise_layers"], str):
            data["bad_noise_layers"] = [int(i) for i in data["bad_noise_layers"]]
        return data


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2 ** 32:
        raise InputError(f"seeds must be integers in [0, 2^32), got {seed!r}")
    return int(seed)


def initial_state(generator: Generator, seeds: Sequence[int], tile_latent: bool = False
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The starting point of each image, on the CPU: ``(latent, noise)``.

    For each seed, a ``torch.Generator`` seeded with it draws ``num_ws`` rows ``[num_ws, w_dim]`` from
    N(0, I), then one map ``[r, r]`` per noise input ``i`` (``r`` from :func:`noise_shape`). Rows are scaled
    to norm sqrt(w_dim). ``latent`` is ``[B, num_ws, w_dim]``, or ``[B, 1, w_dim]`` (row 0) when
    ``tile_latent``; ``noise[i]`` is ``[B, 1, r, r]``. Same seed, same start, whatever else is in the batch.
    """
    latents, maps = [], [[] for _ in range(generator.num_layers)]
    for seed in seeds:
        rng = torch.Generator().manual_seed(_check_seed(seed))
        rows = torch.randn(generator.num_ws, generator.w_dim, generator=rng, dtype=torch.float64)
        rows = rows / rows.norm(dim=1, keepdim=True) * math.sqrt(generator.w_dim)
        latents.append(rows[:1] if tile_latent else rows)
        for index in range(generator.num_layers):
            maps[index].append(torch.randn(noise_shape(index)[1:], generator=rng))
    return torch.stack(latents).float(), [torch.stack(layer) for layer in maps]


# --------------------------------------------------------------------------------------------------
# The search


@dataclasses.dataclass
class PulseStep:
    """What a ``step_callback`` of :func:`run_pulse` sees after evaluating step ``step`` (all detached).

    ``latent [B, n, w_dim]`` (on the sphere), ``w_plus [B, num_ws, w_dim]``, ``noise`` (per noise input
    ``[B, 1, r, r]``, or None where it is zero), ``image [B, 3, S, S]`` in [-1, 1], ``lowres [B, 3, h, w]``
    in [0, 1], ``l2 [B]`` (visible-pixel L2), ``total [B]`` (the loss of each image), ``lr`` (the learning
    rate of the update that follows).
    """

    step: int
    lr: float
    latent: torch.Tensor
    w_plus: torch.Tensor
    noise: list[torch.Tensor | None]
    image: torch.Tensor
    lowres: torch.Tensor
    l2: torch.Tensor
    total: torch.Tensor


@dataclasses.dataclass
class PulseResult:
    """The best iterate of one image: lowest total loss among the iterates with ``L2 <= eps``, or among
    all iterates when none reached eps.

    ``w_plus [num_ws, w_dim]``: the W+ latent fed to the synthesis network; ``latent [n, w_dim]``: the
    search vectors on the sphere (``n`` = 1 when tiled); ``noise``: one ``[1, 1, r, r]`` map per noise input
    (zeros where the noise was zero); ``image [3, S, S]`` in [-1, 1]; ``lowres [3, h, w]`` in [0, 1].
    ``losses``: unclamped, unweighted value of every loss term (and ``L2`` always); ``total_loss``: the
    weighted, clamped sum that was minimised; ``l2``: the visible-pixel L2; ``success``: ``l2 <= eps``
    (equivalently, some step reached eps);
    ``best_step``: the step of this iterate; ``first_eps_step``: first step with ``L2 <= eps`` (None if
    never); ``min_l2``: lowest L2 of any step; ``steps_run``: steps evaluated; ``l2_history`` and
    ``loss_history``: per step. ``wall_time_s``: the batch's time (fit excluded) divided by its size;
    ``ms_per_step``: milliseconds per step of the whole batch. ``error``: None, or why the image has no
    usable result: its search diverged (a loss, latent or image became NaN or infinite at some step; the
    image then stops and even an earlier finite iterate is not trusted). Never save such a result.
    """

    seed: int
    w_plus: torch.Tensor
    latent: torch.Tensor
    noise: list[torch.Tensor]
    image: torch.Tensor
    lowres: torch.Tensor
    losses: dict[str, float]
    total_loss: float
    l2: float
    eps: float
    success: bool
    best_step: int
    first_eps_step: int | None
    min_l2: float
    steps_run: int
    l2_history: list[float]
    loss_history: list[float]
    wall_time_s: float
    ms_per_step: float
    batch_size: int
    error: str | None = None

    def eps_report(self, name: str = "result") -> str:
        """One line saying whether eps was reached, and by how much it was missed otherwise."""
        if self.error is not None:
            return f"{name}: FAILED: {self.error}"
        if self.success:
            return (f"{name}: L2 {self.l2:.3g} <= eps {self.eps:.3g} (first reached at step {self.first_eps_step}, "
                    f"saved step {self.best_step})")
        return (f"{name}: eps NOT reached: best L2 {self.l2:.3g} is {self.l2 - self.eps:.3g} above eps {self.eps:.3g} "
                f"({self.l2 / self.eps:.2f}x); the best iterate (step {self.best_step}) was saved anyway")


@contextlib.contextmanager
def _frozen(generator: Generator):
    """Generator parameters without gradients (only the latent and noise are optimised), eval mode; restored after."""
    flags = [p.requires_grad for p in generator.parameters()]
    was_training = generator.training
    generator.requires_grad_(False).eval()
    try:
        yield
    finally:
        for parameter, flag in zip(generator.parameters(), flags):
            parameter.requires_grad_(flag)
        generator.train(was_training)


def _seed_list(seeds, batch: int) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return [_check_seed(seeds)] * batch
    seeds = [_check_seed(s) for s in seeds]
    if len(seeds) != batch:
        raise InputError(f"got {len(seeds)} seeds for {batch} references; give one seed per reference (or one int)")
    return seeds


class _BestIterates:
    """Keeps, per image, the best iterate so far and the per-step histories (see :class:`PulseResult`).

    An iterate within eps beats any iterate outside it; between two on the same side, the lower total
    loss wins. Ties keep the earlier iterate.
    """

    def __init__(self, batch: int, eps: float, device: torch.device):
        self.eps = eps
        self.total = torch.full((batch,), math.inf, device=device)
        self.reached = torch.zeros(batch, dtype=torch.bool, device=device)
        self.tensors: dict[str, torch.Tensor] = {}
        self.noise: list[torch.Tensor | None] = []
        self.step = [0] * batch
        self.first_eps: list[int | None] = [None] * batch
        self.l2_history: list[list[float]] = [[] for _ in range(batch)]
        self.loss_history: list[list[float]] = [[] for _ in range(batch)]
        #: Per image: None, or ``(step, loss)`` of the first step whose loss, latent or image was not finite.
        self.diverged: list[tuple[int, float] | None] = [None] * batch

    @torch.no_grad()
    def update(self, step: int, raw: dict[str, torch.Tensor], total: torch.Tensor, tensors: dict[str, torch.Tensor],
               noise: Sequence[torch.Tensor | None]) -> None:
        """Record step ``step``: per-image loss terms ``raw`` (``[B]`` each), ``total [B]``, the batch tensors
        to keep (``[B, ...]``) and the noise maps."""
        l2, total = raw["L2"].detach(), total.detach()
        finite = torch.isfinite(total) & torch.isfinite(l2)
        for key in ("w_plus", "image"):
            if key in tensors:
                finite &= torch.isfinite(tensors[key].detach()).flatten(1).all(dim=1)
        for i, ok in enumerate(finite.tolist()):
            if not ok and self.diverged[i] is None:
                self.diverged[i] = (step, float(total[i]))
        reached = (l2 <= self.eps) & finite
        improved = ((reached & ~self.reached) | ((reached == self.reached) & (total < self.total))) & finite
        current = {**tensors, **{f"loss:{name}": value for name, value in raw.items()}}
        if not self.tensors:  # the first step is kept whatever it is (even NaN), so a result always exists
            improved = torch.ones_like(improved)
            self.tensors = {key: value.detach().clone() for key, value in current.items()}
            self.noise = [None if n is None else n.detach().clone() for n in noise]
        else:
            for key, value in current.items():
                self.tensors[key][improved] = value.detach()[improved]
            for kept, maps in zip(self.noise, noise):
                if kept is not None:
                    kept[improved] = maps.detach()[improved]
        self.total = torch.where(improved, total, self.total)
        self.reached |= reached
        for i, (flag, value, loss_value) in enumerate(zip(improved.tolist(), l2.tolist(), total.tolist())):
            if flag:
                self.step[i] = step
            self.l2_history[i].append(value)
            self.loss_history[i].append(loss_value)
            if self.first_eps[i] is None and value <= self.eps:
                self.first_eps[i] = step

    def result(self, i: int, seed: int, steps_run: int, elapsed: float) -> "PulseResult":
        """The :class:`PulseResult` of image ``i`` (tensors moved to the CPU)."""
        losses = {key.split(":", 1)[1]: float(value[i]) for key, value in self.tensors.items()
                  if key.startswith("loss:")}
        batch = len(self.step)
        return PulseResult(
            seed=seed, w_plus=self.tensors["w_plus"][i].cpu(), latent=self.tensors["latent"][i].cpu(),
            noise=[torch.zeros(noise_shape(index)) if maps is None else maps[i:i + 1].cpu()
                   for index, maps in enumerate(self.noise)],
            image=self.tensors["image"][i].cpu(), lowres=self.tensors["lowres"][i].cpu(), losses=losses,
            total_loss=float(self.total[i]), l2=losses["L2"], eps=self.eps, success=bool(self.reached[i]),
            best_step=self.step[i], first_eps_step=self.first_eps[i], min_l2=min(self.l2_history[i]),
            steps_run=steps_run, l2_history=self.l2_history[i], loss_history=self.loss_history[i],
            wall_time_s=elapsed / batch, ms_per_step=1000.0 * elapsed / steps_run, batch_size=batch)


def run_pulse(generator: Generator, references: torch.Tensor, seeds: int | Sequence[int],
              settings: PulseSettings | None = None, *, fit: GaussianFit | None = None, progress: bool = False,
              step_callback: Callable[[PulseStep], None] | None = None) -> list[PulseResult]:
    """Run PULSE on a batch of references; one :class:`PulseResult` per reference, in order.

    ``references [B, 3 or 4, h, w]`` in [0, 1] (alpha: 4th channel), ``h = G.size / 2**k``. ``seeds``: one per
    reference, or one int for all of them (every image then starts from the same point, which is what
    paired runs for direction vectors want). ``fit`` defaults to :func:`~latentedit.pulse.fit.gaussian_fit`
    with ``settings.fit_samples`` (cached on disk). Runs on the generator's device; the generator is left
    as it was. InputError for bad references or settings.
    """
    from tqdm.auto import tqdm

    settings = settings or PulseSettings()
    settings.validate(generator)
    terms = settings.loss_terms()
    references = _as_reference_batch(references, generator.size)
    batch = references.shape[0]
    seed_list = _seed_list(seeds, batch)
    factor = generator.size // references.shape[-1]
    if fit is None:
        fit = gaussian_fit(generator, settings.fit_samples, progress=progress)
    if tuple(fit.mean.shape) != (generator.w_dim,):
        raise InputError(f"the Gaussian fit has {fit.mean.numel()} dimensions but the generator's w has "
                         f"{generator.w_dim}")
    device = next(generator.parameters()).device
    precision = generator_precision(settings.precision, generator)
    started = time.perf_counter()

    latent_start, noise_start = initial_state(generator, seed_list, settings.tile_latent)
    latent = latent_start.to(device).requires_grad_(True)
    noise: list[torch.Tensor | None] = []
    optimised = [latent]
    for index, kind in enumerate(settings.noise_kinds(generator.num_layers)):
        if kind == "zero":
            noise.append(None)
        elif kind == "fixed":
            noise.append(noise_start[index].to(device))
        else:
            noise.append(noise_start[index].to(device).requires_grad_(True))
            optimised.append(noise[-1])
    optimizer = SphericalOptimizer(make_optimizer(settings.optimizer, optimised, settings.lr), optimised)
    references = references.to(device)
    fit_mean, fit_std = fit.mean.to(device), fit.std.to(device)

    tracker = _BestIterates(batch, settings.eps, device)
    steps_run = 0
    bar = tqdm(range(settings.steps), desc=f"PULSE x{batch}", unit="step", disable=not progress, leave=False)
    with _frozen(generator):
        for step in bar:
            lr = settings.lr * lr_factor(settings.lr_schedule, step, settings.steps)
            optimizer.set_lr(lr)
            rows = latent.expand(-1, generator.num_ws, -1) if settings.tile_latent else latent
            w_plus = F.leaky_relu(rows * fit_std + fit_mean, negative_slope=0.2)
            with compute(precision, device):
                image = generator.synthesis(w_plus, noise).float()
            lowres = pulse_downsample((image + 1.0) / 2.0, factor)
            raw = {"L2": visible_l2(lowres, references)}
            for name, _ in terms:
                if name == "L1":
                    raw["L1"] = visible_l1(lowres, references)
                elif name == "GEOCROSS":
                    raw["GEOCROSS"] = (w_plus.new_zeros(batch) if settings.tile_latent else geocross(w_plus))
            total = sum(weight * (raw[name].clamp(min=settings.eps) if name in IMAGE_TERMS else raw[name])
                        for name, weight in terms)
            steps_run = step + 1
            tracker.update(step, raw, total, {"w_plus": w_plus, "latent": latent, "image": image, "lowres": lowres},
                           noise)
            if progress:
                bar.set_postfix(at_eps=f"{sum(s is not None for s in tracker.first_eps)}/{batch}",
                                worst_l2=f"{max(min(h) for h in tracker.l2_history):.2e}", refresh=False)
            if step_callback is not None:
                step_callback(PulseStep(step=step, lr=lr, latent=latent.detach(), w_plus=w_plus.detach(),
                                        noise=[None if n is None else n.detach() for n in noise],
                                        image=image.detach(), lowres=lowres.detach(), l2=raw["L2"].detach(),
                                        total=total.detach()))
            if all(d is not None for d in tracker.diverged):
                break  # every image diverged: nothing more to find
            if settings.stop_at_eps and all(s is not None or d is not None
                                            for s, d in zip(tracker.first_eps, tracker.diverged)):
                break
            if step == settings.steps - 1:
                break
            optimizer.zero_grad()
            total.sum().backward()
            optimizer.step()
    bar.close()
    elapsed = time.perf_counter() - started
    results = [tracker.result(i, seed_list[i], steps_run, elapsed) for i in range(batch)]
    for result, diverged in zip(results, tracker.diverged):
        if diverged is not None:
            result.error = (f"the search diverged at step {diverged[0]} (loss {diverged[1]}): a loss, latent or "
                            f"image became NaN or infinite; lower the learning rate (now {settings.lr:g})")
            result.success = False
    return results


# --------------------------------------------------------------------------------------------------
# Files


def _weighted_losses(result: PulseResult, terms: Sequence[tuple[str, float]]) -> dict[str, float]:
    return {name: weight * (max(result.losses[name], result.eps) if name in IMAGE_TERMS else result.losses[name])
            for name, weight in terms}


def save_result(result: PulseResult, out_dir: str | os.PathLike, name: str, record: dict) -> dict:
    """Write one result's files into ``out_dir`` and return its JSON record (also written as ``<name>.json``).

    Files: ``<name>.png`` (the image), ``<name>_lr.png`` (its PULSE downscale), ``<name>.npy`` (W+
    ``[num_ws, w_dim]`` float32), ``<name>_noise.npz`` (``noise_<i>``: ``[1, 1, r, r]`` float32 per noise
    input) and ``<name>.json``: ``record`` (what the caller knows: reference, settings, checkpoint) plus
    the losses, success, steps and timing.
    """
    out_dir = Path(out_dir)
    if result.error is not None:
        raise InputError(f"{name}: {result.error}; nothing was written for it")
    lio.save_png(out_dir / f"{name}.png", lio.to_uint8(result.image)[0])
    lio.save_png(out_dir / f"{name}_lr.png", lio.to_uint8(result.lowres * 2.0 - 1.0)[0])
    lio.save_npy(out_dir / f"{name}.npy", result.w_plus.numpy().astype(np.float32))
    buffer = io.BytesIO()
    np.savez(buffer, **{f"noise_{i}": maps.numpy().astype(np.float32) for i, maps in enumerate(result.noise)})
    lio.write_bytes(out_dir / f"{name}_noise.npz", buffer.getvalue())
    terms = parse_loss(record.get("settings", {}).get("loss", DEFAULT_LOSS))
    data = dict(record)
    data.update({
        "name": name, "seed": result.seed,
        "losses": result.losses, "weighted_losses": _weighted_losses(result, terms), "total_loss": result.total_loss,
        "l2": result.l2, "l2_note": "mean squared error over the visible (alpha-weighted) pixels, images in [0, 1]",
        "eps": result.eps, "success": result.success, "eps_gap": result.l2 - result.eps,
        "best_step": result.best_step, "first_eps_step": result.first_eps_step, "min_l2": result.min_l2,
        "steps_run": result.steps_run, "wall_time_s": result.wall_time_s, "ms_per_step": result.ms_per_step,
        "batch_size": result.batch_size,
        "outputs": {"image": f"{name}.png", "lowres": f"{name}_lr.png", "w_plus": f"{name}.npy",
                    "noise": f"{name}_noise.npz", "record": f"{name}.json"},
        "history": {"l2": result.l2_history, "total_loss": result.loss_history},
        "versions": lio.versions(),
    })
    lio.write_json(out_dir / f"{name}.json", data)
    return data


def result_names(reference_paths: Sequence[str | os.PathLike], duplicates: int) -> list[list[str]]:
    """Output names ``[reference][duplicate]``: the file stem (less a trailing ``.rgba`` or ``.rgb``, so
    ``blond_hair.rgba.png`` gives ``blond_hair``), plus ``_<k>`` when ``duplicates > 1``.

    InputError when two references share a name (their outputs would overwrite each other).
    """
    stems = [re.sub(r"\.(rgba|rgb)$", "", Path(p).stem, flags=re.IGNORECASE) or Path(p).stem
             for p in reference_paths]
    seen: dict[str, str] = {}
    for stem, path in zip(stems, reference_paths):
        if stem in seen:
            raise InputError(f"references {seen[stem]} and {path} would both write outputs named {stem!r}; "
                             f"rename one of them")
        seen[stem] = str(path)
    return [[stem] if duplicates == 1 else [f"{stem}_{k}" for k in range(duplicates)] for stem in stems]


def pulse_to_folder(generator: Generator, reference_paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                    settings: PulseSettings | None = None, *, seed: int = 0, duplicates: int = 1, batch_size: int = 1,
                    checkpoint_info: dict | None = None, save_intermediate: bool = False,
                    progress: bool = True, fit: GaussianFit | None = None,
                    report: Callable[[str], None] | None = None,
                    log: Callable[[str], None] | None = None) -> list[dict]:
    """What ``latentedit pulse`` runs: every reference x ``duplicates`` results, written into ``out_dir``.

    Duplicate ``k`` of every reference starts from seed ``seed + k``, so references run with the same
    ``seed`` are paired (same start; SPEC §4.2). All references are read and checked before anything
    runs. Results are optimised ``batch_size`` at a time in the order reference-major (all duplicates of
    the first reference, then the second...; references of equal size share batches). With
    ``batch_size = 1`` every result is reproducible on its own; with ``batch_size == duplicates`` each
    reference's duplicates fill one batch, so paired references see identical batch compositions.
    ``save_intermediate`` writes ``intermediate/<name>/<step>.png`` and ``<step>_lr.png`` per step.
    ``report`` receives one line per result (:meth:`PulseResult.eps_report`). Returns the JSON records.

    The output folder is created and proven writable before any reference is read, and temporaries of an
    interrupted run are removed from it. A result whose search diverges (NaN / infinite values) is not
    written: its line goes to ``log`` (default: stderr) and its record has ``status: "failed"``, ``error``
    and ``success: false``; when every result fails, InputError.
    """
    from tqdm.auto import tqdm

    settings = settings or PulseSettings()
    settings.validate(generator)
    if not isinstance(duplicates, int) or duplicates < 1:
        raise InputError(f"duplicates must be an integer >= 1, got {duplicates!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be an integer >= 1, got {batch_size!r}")
    _check_seed(seed)
    _check_seed(seed + duplicates - 1)
    if not reference_paths:
        raise InputError("no reference image given; pass --ref REF.png")
    out_dir = lio.prepare_output_dir(out_dir)
    lio.remove_stale_temporaries(out_dir)
    if log is None:
        def log(message: str) -> None:
            tqdm.write(message, file=sys.stderr)
    names = result_names(reference_paths, duplicates)
    loaded = [load_reference(path, generator.size) for path in reference_paths]
    note = noise_note(generator)
    if note is not None:
        log(note)
    if fit is None:
        fit = gaussian_fit(generator, settings.fit_samples, progress=progress)
    device = next(generator.parameters()).device
    common = {"settings": settings.to_dict(),
              "resolved": {"loss_terms": [[n, w] for n, w in settings.loss_terms()],
                           "bad_noise_layers": list(settings.bad_layers(generator.num_layers)),
                           "noise_kinds": settings.noise_kinds(generator.num_layers)},
              "checkpoint": checkpoint_info or {}, "gaussian_fit": fit.to_dict(), "device": str(device),
              "generator": {"size": generator.size, "num_ws": generator.num_ws, "w_dim": generator.w_dim,
                            "num_layers": generator.num_layers}}
    precision = generator_precision(settings.precision, generator)
    if precision != "fp32":  # absent means float32, as in every manifest written before --precision
        common["resolved"]["precision"] = precision
    if note is not None:
        common["resolved"]["noise_note"] = "the generator has no noise inputs; the noise options had no effect"

    jobs = [(r, k) for r in range(len(reference_paths)) for k in range(duplicates)]
    by_size: dict[int, list[tuple[int, int]]] = {}
    for job in jobs:
        by_size.setdefault(loaded[job[0]][1]["size"], []).append(job)
    batches = [group[i:i + batch_size] for group in by_size.values() for i in range(0, len(group), batch_size)]
    records: dict[tuple[int, int], dict] = {}
    for chunk in tqdm(batches, desc="PULSE batches", unit="batch", disable=not progress or len(batches) < 2):
        refs = torch.stack([loaded[r][0] for r, _ in chunk])
        chunk_names = [names[r][k] for r, k in chunk]
        callback = None
        if save_intermediate:
            def callback(state: PulseStep, chunk_names=chunk_names) -> None:
                for i, name in enumerate(chunk_names):
                    folder = out_dir / "intermediate" / name
                    lio.save_png(folder / f"{state.step:04d}.png", lio.to_uint8(state.image[i])[0])
                    lio.save_png(folder / f"{state.step:04d}_lr.png", lio.to_uint8(state.lowres[i] * 2.0 - 1.0)[0])
        results = run_pulse(generator, refs, [seed + k for _, k in chunk], settings, fit=fit, progress=progress,
                            step_callback=callback)
        for (r, k), name, result in zip(chunk, chunk_names, results):
            record = dict(common)
            reference = loaded[r][1]
            record.update({"reference": reference, "duplicate": k, "factor": generator.size // reference["size"]})
            if result.error is not None:
                message = f"PULSE of {reference['path']} (seed {result.seed}) failed: {result.error}; nothing was " \
                          f"written for {name}"
                record.update({"name": name, "seed": result.seed, "status": "failed", "error": message,
                               "success": False})
                records[(r, k)] = record
                log(f"error: {message}")
                continue
            records[(r, k)] = save_result(result, out_dir, name, record)
            if report is not None:
                report(result.eps_report(name))
    ordered = [records[job] for job in jobs]
    failed = [record for record in ordered if record.get("status") == "failed"]
    if failed and len(failed) == len(ordered):
        raise InputError(f"all {len(ordered)} PULSE result(s) failed; nothing was written (see the errors above)")
    return ordered
