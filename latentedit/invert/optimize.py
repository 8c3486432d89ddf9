"""GAN inversion: find the W+ (or W) latent whose image reproduces a photograph (SPEC §3).

Two presets:

``image2stylegan`` (Abdal, Qin, Wonka 2019; the default)
    W+ ``[num_ws, w_dim]`` initialised at the mean w, Adam (lr 0.01, betas (0.9, 0.999), eps 1e-8), no
    schedule, the generator's stored (``const``) noise kept fixed. Loss per image:
    ``mse_weight · mean((G(w) − I)²) + perceptual_weight · Σ_j mean((F_j(G(w)) − F_j(I))²)`` with VGG16
    relu1_1, relu1_2, relu3_2, relu4_2 (:class:`latentedit.invert.perceptual.VGGLayerDistance`); pixels in
    [-1, 1]. The paper runs 5000 steps; the default here is :data:`DEFAULT_STEPS` (see below).

``projector`` (the NVIDIA / rosinality projector schedule)
    lr 0.1 with a linear ramp-up over the first 5 % of the steps and a cosine ramp-down over the last
    25 %; Gaussian noise of std ``w_std · 0.05 · max(0, 1 − t/0.75)²`` added to the latent at every step
    (``w_std``: the root of the summed per-dimension variance of 10,000 mapped z, seeded); LPIPS-VGG
    distance; noise maps optimised with the regulariser
    ``Σ_maps Σ_levels (mean(n·roll(n, 1, W))² + mean(n·roll(n, 1, H))²)`` (2×2 average pooling per level
    down to 8×8) weighted 1e5, and renormalised to zero mean / unit variance after every step.

Decisions where the papers are silent, written down here:

- The perceptual networks see the images at ``min(generator size, 256)`` px (Image2StyleGAN resizes
  1024 px images to 256; upscaling a 64 px image to 256 px would only multiply the cost).
- Without local VGG16 weights (they cannot be downloaded here), ``--perceptual auto`` inverts with MSE
  only and says so once. The projector's default MSE weight is 0 with a perceptual loss (as in the
  reference projectors) and 1 without one.
- ``--noise optimize`` starts from the generator's stored noise maps (one copy per image), not from
  fresh random maps, so a run is deterministic and directly comparable with ``--noise fixed``. A
  generator without noise inputs (StyleGAN3) optimises the latent only, with a note.
- Batches: ``B`` images are optimised together; their per-image losses are summed, so every image gets
  exactly its own gradient (Adam is element-wise), and the latent noise of the projector comes from a
  per-image random stream seeded by ``(seed, image name)``. An image's result therefore does not depend
  on the batch it was in or on the rank that inverted it (up to float rounding of batched convolutions).
- ``target_psnr``: an image stops as soon as the PSNR of its current render reaches the target; the
  latent (and noise) that produced that render is kept, and the steps it took are recorded.
  Otherwise the result is the final iterate (without latent noise).
- Metrics: ``mse`` and ``psnr_db`` compare the clamped reconstruction with the target, both scaled to
  [0, 1] (``psnr = −10·log10(mse)``); ``lpips`` (LPIPS-VGG v0.1) only when the VGG16 weights are local.
  The loss curve holds every 10th step: ``{step, loss, mse, psnr_db}`` where ``loss`` is the objective.

Default steps: :data:`DEFAULT_STEPS` (1000, the reference projectors' value; the paper ran 5000). On the
2-core development CPU a step of a 64 px generator of the toyfaces64 size (~1.5 M parameters) takes about
30 ms at batch 1 (one thread, machine busy), so the default run of one image takes about 30 s.

Python API: :func:`invert` (tensors in, results out) and :func:`invert_files` (what ``latentedit invert``
runs: files in, files out, resumable, sharded over ``torchrun`` ranks).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io as _io
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from latentedit import io
from latentedit.errors import InputError, LatentEditError
from latentedit.model.generator import Generator
from latentedit.model.sampling import W_SPREAD_SAMPLES, w_spread
from latentedit.precision import PRECISIONS, compute, generator_precision
from latentedit.invert.perceptual import PerceptualDistance, build_perceptual, choose_perceptual

#: Optimisation steps when the user gives none (the reference projectors' value; the paper used 5000).
#: About 30 s per image for the 64 px default model on a 2-core CPU.
DEFAULT_STEPS = 1000

#: Presets: the paper's algorithm and the NVIDIA / rosinality projector schedule.
PRESETS = {
    "image2stylegan": {"lr": 0.01, "noise": "fixed", "perceptual": "vgg", "schedule": False,
                       "latent_noise": 0.0},
    "projector": {"lr": 0.1, "noise": "optimize", "perceptual": "lpips", "schedule": True, "latent_noise": 0.05},
}

SPACES = ("w+", "w")
NOISE_CHOICES = ("fixed", "optimize")

#: Number of mapped samples used to estimate the spread of w for the projector's latent noise.
W_STD_SAMPLES = W_SPREAD_SAMPLES

#: How the generator modulates during inversion. "scaled" runs each convolution with the shared weight,
#: so the backward pass needs no weight gradient; at batch 1 it is 1.3-1.5x faster on CPU than "grouped".
INVERSION_MODULATION = "scaled"

#: The loss curve records every this many steps.
CURVE_EVERY = 10

#: Defaults of the image2stylegan optimisation when it starts from the encoder's W+ (``encoder+optimize``, and a
#: PTI pivot found that way): it starts near the answer, so fewer steps, and a larger step size than the
#: paper's 0.01 (tuned for a start at the mean w) pays off. Measured on 4 held-out renders, 150 steps from a
#: partly trained encoder: lr 0.01 -> 25.2 dB, 0.03 -> 26.3, 0.05 -> 26.7, 0.1 -> 26.9, 0.2 -> 26.1.
WARM_START_STEPS = 200
WARM_START_LR = 0.1

#: Inversion methods (``latentedit invert --method``): the optimisation (default), the trained encoder's one
#: forward pass, the optimisation started from the encoder's W+, and pivotal tuning of the generator (PTI).
METHODS = ("optimize", "encoder", "encoder+optimize", "pti")

#: Pivots PTI can tune the generator around (``--pti-pivot``).
PTI_PIVOTS = ("optimize", "encoder", "encoder+optimize")

#: Fields of the settings that change a result; a finished image is only reused when they all match.
RESULT_FIELDS = ("preset", "space", "steps", "lr", "perceptual", "perceptual_weight", "mse_weight", "noise",
                 "noise_regularize", "seed", "target_psnr", "method", "encoder_sha256", "pti_steps", "pti_lr",
                 "pti_locality", "pti_pivot")

#: What a manifest written before a field existed means by its absence (manifests of older versions).
RESULT_FIELD_DEFAULTS = {"method": "optimize"}

#: ``--method encoder`` encodes at least this many images per forward pass (more with a larger ``--batch-size``).
ENCODER_BATCH = 64

#: Settings recorded only by the methods that use them.
ENCODER_FIELDS = ("encoder", "force")
PTI_FIELDS = ("pti_steps", "pti_lr", "pti_locality", "pti_pivot")


@dataclasses.dataclass
class InversionSettings:
    """Everything that defines an inversion. ``None`` means "the preset's default".

    ``preset``: ``image2stylegan`` or ``projector``; ``space``: ``w+`` (latent ``[num_ws, w_dim]``) or
    ``w`` (``[w_dim]``); ``steps``: Adam steps (default :data:`DEFAULT_STEPS`); ``lr``: base learning
    rate (0.01 / 0.1); ``perceptual``: ``auto``, ``vgg``, ``lpips`` or ``none`` (resolved by
    :func:`latentedit.invert.perceptual.choose_perceptual`; after :func:`invert` it is the kind used, or
    ``none``); ``mse_weight``: weight of the pixel MSE (1, or 0 for the projector with a perceptual
    loss); ``perceptual_weight``: weight of the perceptual distance; ``noise``: ``fixed`` (stored
    buffers) or ``optimize`` (fixed / optimize); ``noise_regularize``: weight of the noise regulariser;
    ``batch_size``: images optimised together; ``seed``: seeds every random draw (latent noise, w_std
    samples); ``target_psnr``: stop an image early at this PSNR (dB); ``save_video``: keep frames for a
    progress GIF (``video_frames`` of them); ``vgg_weights``: a local torchvision VGG16 file.

    ``method`` (:data:`METHODS`, used by :func:`invert_files`): ``optimize`` (the above), ``encoder`` (one
    forward pass of ``encoder``: a file, run folder or shipped name, default
    :data:`latentedit.invert.encoder.DEFAULT_ENCODER`), ``encoder+optimize`` (the optimisation started from
    the encoder's W+) or ``pti`` (a ``pti_pivot`` latent, then ``pti_steps`` Adam steps of lr ``pti_lr`` on
    the generator's synthesis weights with the locality regulariser weighted ``pti_locality``; see
    :mod:`latentedit.invert.pti`). ``force``: use an encoder trained for another generator.

    ``precision`` (:data:`latentedit.precision.PRECISIONS`): what the generator's forward passes of the
    optimisation compute in (``bf16``/``fp16`` autocast; latents, optimiser state and the loss stay float32;
    ``auto`` is resolved per device by :func:`latentedit.precision.resolve_precision`). The final render and
    its metrics are float32, so they describe the saved latent as every other command renders it. PTI's
    weight tuning always runs in float32.
    """

    preset: str = "image2stylegan"
    space: str = "w+"
    steps: int | None = None
    lr: float | None = None
    perceptual: str = "auto"
    mse_weight: float | None = None
    perceptual_weight: float = 1.0
    noise: str | None = None
    noise_regularize: float = 1e5
    batch_size: int = 1
    seed: int = 0
    target_psnr: float | None = None
    save_video: bool = False
    video_frames: int = 50
    vgg_weights: str | None = None
    method: str = "optimize"
    encoder: str | None = None
    force: bool = False
    pti_steps: int = 200
    pti_lr: float = 3e-4
    pti_locality: float = 0.1
    pti_pivot: str = "optimize"
    precision: str = "fp32"

    def uses_encoder(self) -> bool:
        """Whether the method (or PTI's pivot) runs the encoder."""
        return self.method in ("encoder", "encoder+optimize") or (self.method == "pti" and
                                                                   self.pti_pivot != "optimize")

    def validated(self) -> "InversionSettings":
        """A copy with the preset's defaults filled in (``mse_weight`` stays None until the perceptual
        kind is known); InputError for values that make no sense."""
        if self.preset not in PRESETS:
            raise InputError(f"unknown preset {self.preset!r}; use one of {', '.join(PRESETS)}")
        if self.space not in SPACES:
            raise InputError(f"latent space must be w+ or w, got {self.space!r}")
        preset = PRESETS[self.preset]
        default_steps, default_lr = DEFAULT_STEPS, preset["lr"]
        warm_start = self.method == "encoder+optimize" or (self.method == "pti" and
                                                           self.pti_pivot == "encoder+optimize")
        if warm_start and self.preset == "image2stylegan":
            default_steps, default_lr = WARM_START_STEPS, WARM_START_LR
        filled = dataclasses.replace(self, steps=default_steps if self.steps is None else int(self.steps),
                                     lr=default_lr if self.lr is None else float(self.lr),
                                     noise=preset["noise"] if self.noise is None else self.noise)
        if filled.steps < 1:
            raise InputError(f"steps must be at least 1, got {filled.steps}")
        if not (filled.lr > 0 and math.isfinite(filled.lr)):
            raise InputError(f"learning rate must be a positive number, got {filled.lr}")
        if filled.noise not in NOISE_CHOICES:
            raise InputError(f"noise must be fixed or optimize, got {filled.noise!r}")
        for name in ("mse_weight", "perceptual_weight", "noise_regularize"):
            value = getattr(filled, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise InputError(f"{name.replace('_', '-')} must be a finite number >= 0, got {value}")
        if filled.batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {filled.batch_size}")
        if filled.target_psnr is not None and not (filled.target_psnr > 0 and math.isfinite(filled.target_psnr)):
            raise InputError(f"target PSNR must be a positive number of dB, got {filled.target_psnr}")
        if filled.video_frames < 1:
            raise InputError(f"video frames must be at least 1, got {filled.video_frames}")
        if filled.method not in METHODS:
            raise InputError(f"unknown inversion method {filled.method!r}; use one of {', '.join(METHODS)}")
        if filled.pti_pivot not in PTI_PIVOTS:
            raise InputError(f"unknown PTI pivot {filled.pti_pivot!r}; use one of {', '.join(PTI_PIVOTS)}")
        if filled.pti_steps < 1:
            raise InputError(f"--pti-steps must be at least 1, got {filled.pti_steps}")
        if not (filled.pti_lr > 0 and math.isfinite(filled.pti_lr)):
            raise InputError(f"--pti-lr must be a positive number, got {filled.pti_lr}")
        if not (filled.pti_locality >= 0 and math.isfinite(filled.pti_locality)):
            raise InputError(f"--pti-locality must be a finite number >= 0, got {filled.pti_locality}")
        if filled.precision not in PRECISIONS:
            raise InputError(f"unknown precision {filled.precision!r}; use one of {', '.join(PRECISIONS)}")
        return filled

    def to_dict(self) -> dict:
        """The settings as a dict. For the default ``optimize`` method the method fields are left out, so
        the dict (and every cache key and record made from it) is what it was before the methods existed."""
        data = dataclasses.asdict(self)
        if self.precision == "fp32":  # likewise for the default precision
            data.pop("precision")
        if self.method == "optimize":
            for key in ("method",) + ENCODER_FIELDS + PTI_FIELDS:
                data.pop(key)
        return data


@dataclasses.dataclass
class ImageResult:
    """The inversion of one image.

    ``latent``: W+ ``[num_ws, w_dim]`` or W ``[w_dim]`` float32; ``noise``: the optimised noise maps
    (``[r, r]`` each, ``num_layers`` of them) or None for fixed noise; ``reconstruction``: ``[3, S, S]``
    float in [-1, 1] (clamped); ``mse`` / ``psnr_db`` / ``lpips`` (None when not measured): final metrics
    (see the module docstring); ``steps``: optimisation steps taken; ``reached_target``: whether
    ``target_psnr`` was reached (None when no target); ``loss_curve``: ``[{step, loss, mse, psnr_db}]``
    every :data:`CURVE_EVERY` steps plus the final state; ``frames``: ``[S, S, 3]`` uint8 renders for the
    progress video (empty unless asked for); ``wall_time_s``: seconds spent on the batch this image was
    in (``batch_size`` images); ``error``: None, or why this image has no usable result (the optimisation
    diverged: a loss, latent or render became NaN or infinite). A result with an ``error`` must not be
    saved; :func:`invert_files` reports it as failed and writes nothing for it. ``tuned_generator``: the
    generator PTI tuned for this image (written as ``<stem>_G.safetensors``), else None; ``extra``:
    method-specific manifest entries (e.g. ``pti``), else None.
    """

    name: str
    latent: np.ndarray
    noise: list[np.ndarray] | None
    reconstruction: torch.Tensor
    mse: float
    psnr_db: float
    lpips: float | None
    steps: int
    reached_target: bool | None
    loss_curve: list[dict]
    frames: list[np.ndarray]
    wall_time_s: float
    batch_size: int
    error: str | None = None
    tuned_generator: object | None = None
    extra: dict | None = None


# --------------------------------------------------------------------------------------------------
# Pieces of the objective

def psnr_from_mse(mse: torch.Tensor | float) -> torch.Tensor | float:
    """PSNR in dB for an MSE measured on [0, 1] pixels: ``−10·log10(mse)`` (capped at 100 dB for mse 0)."""
    if isinstance(mse, torch.Tensor):
        return -10 * torch.log10(mse.clamp_min(1e-10))
    return -10 * math.log10(max(mse, 1e-10))


def image_mse01(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image MSE ``[N]`` between clamped ``images`` and ``targets`` (both ``[N, 3, H, W]`` in [-1, 1]),
    measured on the [0, 1] scale."""
    return ((images.clamp(-1, 1) - targets) / 2).square().mean(dim=(1, 2, 3))


def noise_regularization(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """The projector's noise regulariser per image ``[N]`` for maps ``[N, 1, r, r]``.

    For each map and each pyramid level (2×2 average pooling until the side is at most 8):
    ``mean(n · roll(n, 1, W))² + mean(n · roll(n, 1, H))²`` (the means are per image).
    """
    total = 0
    for noise_map in maps:
        level = noise_map
        while True:
            total = total + (level * level.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (level * level.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if level.shape[-1] <= 8:
                break
            level = F.avg_pool2d(level, 2)
    return total


@torch.no_grad()
def normalize_noise_(maps: Sequence[torch.Tensor]) -> None:
    """Renormalise each image's noise map to zero mean and unit variance, in place."""
    for noise_map in maps:
        noise_map.sub_(noise_map.mean(dim=(1, 2, 3), keepdim=True))
        noise_map.mul_(noise_map.square().mean(dim=(1, 2, 3), keepdim=True).add(1e-12).rsqrt())


def projector_lr(base_lr: float, t: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The projector's learning rate at progress ``t ∈ [0, 1)``: cosine ramp-down over the last
    ``rampdown`` and linear ramp-up over the first ``rampup`` of the run."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / rampup)
    return base_lr * ramp


def image_seed(seed: int, name: str) -> int:
    """The seed of an image's own random stream: a stable hash of ``(seed, name)``."""
    digest = hashlib.sha256(f"{int(seed)}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


# --------------------------------------------------------------------------------------------------
# The optimisation

def _curve_entry(step: int, loss: float, mse: float) -> dict:
    return {"step": int(step), "loss": round(float(loss), 7), "mse": round(float(mse), 8),
            "psnr_db": round(float(psnr_from_mse(mse)), 4)}


def invert(generator: Generator, targets: torch.Tensor, settings: InversionSettings | None = None, *,
           names: Sequence[str] | None = None, perceptual: PerceptualDistance | None = None,
           lpips_metric: PerceptualDistance | None = None, progress: bool = False,
           description: str = "invert", init_latent: torch.Tensor | None = None) -> list[ImageResult]:
    """Invert a batch of images ``targets [B, 3, S, S]`` (RGB in [-1, 1], ``S = generator.size``).

    All ``B`` images are optimised together (``settings.batch_size`` is not used here; callers split).
    ``perceptual``: the distance to use (None: MSE only; ``settings.perceptual`` is only recorded);
    ``lpips_metric``: a distance whose final value is reported as ``lpips`` (None: not measured);
    ``names``: image names that seed the per-image random streams (default ``image0``, ...).
    ``init_latent``: where the optimisation starts, W+ ``[B, num_ws, w_dim]`` (or W ``[B, w_dim]`` for
    ``space='w'``; e.g. an encoder's prediction); None: the mean w (the paper's start). Returns one
    :class:`ImageResult` per image, in order. The generator's weights are not changed.
    """
    settings = (settings or InversionSettings()).validated()
    if targets.ndim != 4 or targets.shape[1] != 3 or tuple(targets.shape[2:]) != (generator.size, generator.size):
        raise InputError(f"targets must be [B, 3, {generator.size}, {generator.size}], got {list(targets.shape)}")
    batch = targets.shape[0]
    names = list(names) if names is not None else [f"image{i}" for i in range(batch)]
    if len(names) != batch:
        raise ValueError(f"got {len(names)} names for {batch} images")
    preset = PRESETS[settings.preset]
    mse_weight = settings.mse_weight
    if mse_weight is None:
        mse_weight = 0.0 if (settings.preset == "projector" and perceptual is not None) else 1.0
    if mse_weight == 0 and (perceptual is None or settings.perceptual_weight == 0):
        raise InputError("the loss is empty: give a perceptual loss or an MSE weight above 0")

    started = time.perf_counter()
    device = next(generator.parameters()).device
    precision = generator_precision(settings.precision, generator)
    targets = targets.to(device=device, dtype=torch.float32)
    requires_grad = [p.requires_grad for p in generator.parameters()]
    generator.requires_grad_(False)
    try:
        w_mean = generator.mean_w().detach().to(device)
        shape = (batch, generator.num_ws, generator.w_dim) if settings.space == "w+" else (batch, generator.w_dim)
        if init_latent is None:
            latent = w_mean.expand(shape).clone().requires_grad_(True)
        else:
            if tuple(init_latent.shape) != shape:
                raise InputError(f"the initial latent must be {list(shape)}, got {list(init_latent.shape)}")
            latent = init_latent.detach().to(device=device, dtype=torch.float32).clone().requires_grad_(True)
        stored_noise = [n.detach().to(device) for n in generator.noises.maps()]
        # A generator without noise inputs (StyleGAN3) has nothing to optimise there: --noise optimize then
        # optimises the latent only and the result has no noise maps (``noise`` None, no _noise.npz).
        optimise_noise = settings.noise == "optimize" and bool(stored_noise)
        if optimise_noise:
            noise_maps = [n.expand(batch, -1, -1, -1).clone().requires_grad_(True) for n in stored_noise]
        else:
            noise_maps = stored_noise
        optimizer = torch.optim.Adam([latent] + (noise_maps if optimise_noise else []), lr=settings.lr,
                                     betas=(0.9, 0.999), eps=1e-8)
        latent_noise_scale = preset["latent_noise"]
        spread = w_spread(generator, seed=settings.seed) if latent_noise_scale > 0 else 0.0
        streams = [torch.Generator().manual_seed(image_seed(settings.seed, name)) for name in names]
        target_features = perceptual.target_features(targets) if perceptual is not None else None

        active = torch.ones(batch, dtype=torch.bool)
        steps_used = [settings.steps] * batch
        kept_latent = [None] * batch
        kept_noise = [None] * batch
        curves: list[list[dict]] = [[] for _ in range(batch)]
        frames: list[list[np.ndarray]] = [[] for _ in range(batch)]
        last_frame_step = [-1] * batch
        failures: list[str | None] = [None] * batch
        frame_every = max(1, settings.steps // settings.video_frames)

        def objective(rendered_latent: torch.Tensor, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
            with compute(precision, device):
                images = generator.synthesis(rendered_latent, noise_maps, modulation=INVERSION_MODULATION)
            images = images.float()
            per_image = mse_weight * (images - targets).square().mean(dim=(1, 2, 3))
            if perceptual is not None and settings.perceptual_weight > 0:
                per_image = per_image + settings.perceptual_weight * perceptual(images, target_features)
            if optimise_noise and settings.noise_regularize > 0:
                per_image = per_image + settings.noise_regularize * noise_regularization(noise_maps)
            return images, per_image

        from tqdm import tqdm

        bar = tqdm(range(settings.steps), desc=description, unit="step", disable=not progress, leave=False,
                   file=sys.stderr, dynamic_ncols=True)
        for step in bar:
            t = step / settings.steps
            if preset["schedule"]:
                for group in optimizer.param_groups:
                    group["lr"] = projector_lr(settings.lr, t)
            rendered_latent = latent
            if latent_noise_scale > 0:
                strength = spread * latent_noise_scale * max(0.0, 1.0 - t / 0.75) ** 2
                if strength > 0:
                    draws = torch.stack([torch.randn(shape[1:], generator=stream) for stream in streams])
                    rendered_latent = latent + strength * draws.to(device)
            images, per_image = objective(rendered_latent, precision)
            with torch.no_grad():
                mse = image_mse01(images, targets).cpu()
                psnr = psnr_from_mse(mse)
            losses = per_image.detach().cpu()
            finite = torch.isfinite(losses) & torch.isfinite(mse)
            for i in range(batch):
                if not active[i]:
                    continue
                if not finite[i]:
                    # Diverged: this image stops here; its result is unusable and is reported as such.
                    active[i] = False
                    steps_used[i] = step
                    failures[i] = (f"the optimisation diverged at step {step} (loss {float(losses[i])}); "
                                   f"lower the learning rate (now {settings.lr:g})")
                    continue
                if step % CURVE_EVERY == 0:
                    curves[i].append(_curve_entry(step, losses[i], mse[i]))
                if settings.save_video and step % frame_every == 0:
                    frames[i].append(io.to_uint8(images[i].detach())[0])
                    last_frame_step[i] = step
                if settings.target_psnr is not None and psnr[i] >= settings.target_psnr:
                    active[i] = False
                    steps_used[i] = step
                    kept_latent[i] = rendered_latent[i].detach().clone()
                    kept_noise[i] = [n[i if n.shape[0] > 1 else 0].detach().clone() for n in noise_maps]
                    if step % CURVE_EVERY != 0:
                        curves[i].append(_curve_entry(step, losses[i], mse[i]))
            if progress:
                live = active if active.any() else torch.ones(batch, dtype=torch.bool)
                bar.set_postfix(loss=f"{losses[live].mean():.4f}", psnr=f"{psnr[live].mean():.2f}dB", refresh=False)
            if not active.any():
                break
            # Images that reached their target (or diverged) no longer contribute; their kept latent is what
            # counts. torch.where, not a product with the mask: NaN * 0 is NaN.
            loss = torch.where(active.to(device), per_image, torch.zeros_like(per_image)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if optimise_noise:
                normalize_noise_(noise_maps)
        bar.close()

        with torch.no_grad():
            final_latent = torch.stack([kept_latent[i] if kept_latent[i] is not None else latent[i].detach()
                                        for i in range(batch)])
            if optimise_noise:
                final_noise = [torch.stack([kept_noise[i][level] if kept_noise[i] is not None else n[i].detach()
                                            for i in range(batch)]) for level, n in enumerate(noise_maps)]
                noise_maps = final_noise
            images, per_image = objective(final_latent)
            reconstruction = images.clamp(-1, 1)
            mse = image_mse01(reconstruction, targets).cpu()
            losses = per_image.cpu()
            lpips_values = lpips_metric(reconstruction, lpips_metric.target_features(targets)).cpu() \
                if lpips_metric is not None else None
        wall = time.perf_counter() - started
    finally:
        for parameter, flag in zip(generator.parameters(), requires_grad):
            parameter.requires_grad_(flag)

    for i in range(batch):
        if failures[i] is not None:
            continue
        checks = [("latent", final_latent[i]), ("render", reconstruction[i]), ("loss", losses[i:i + 1]),
                  ("MSE", mse[i:i + 1])]
        if optimise_noise:
            checks += [("noise", n[i]) for n in noise_maps]
        bad = [what for what, values in checks if not bool(torch.isfinite(values).all())]
        if bad:
            failures[i] = (f"the optimisation diverged: the final {bad[0]} holds NaN or infinite values; lower the "
                           f"learning rate (now {settings.lr:g})")

    results = []
    for i in range(batch):
        curve = curves[i]
        if not curve or curve[-1]["step"] != steps_used[i]:
            curve.append(_curve_entry(steps_used[i], losses[i], mse[i]))
        pixels = io.to_uint8(reconstruction[i])[0]
        if settings.save_video and last_frame_step[i] != steps_used[i]:
            frames[i].append(pixels)
        results.append(ImageResult(
            name=names[i], latent=final_latent[i].cpu().numpy().astype(np.float32),
            noise=[n[i, 0].cpu().numpy().astype(np.float32) for n in noise_maps] if optimise_noise else None,
            reconstruction=reconstruction[i].cpu(), mse=float(mse[i]), psnr_db=float(psnr_from_mse(float(mse[i]))),
            lpips=None if lpips_values is None else float(lpips_values[i]), steps=steps_used[i],
            reached_target=None if settings.target_psnr is None else kept_latent[i] is not None,
            loss_curve=curve, frames=frames[i], wall_time_s=wall, batch_size=batch, error=failures[i]))
    return results


# --------------------------------------------------------------------------------------------------
# Files in, files out

@dataclasses.dataclass
class PerceptualSetup:
    """The loss and metric networks for a run: ``loss`` (None = MSE only), ``lpips_metric`` (None = not
    measured), ``kind`` (``vgg``, ``lpips`` or ``none``), ``source`` (where the VGG weights came from)
    and ``notice`` (one line for the user, or None)."""

    loss: PerceptualDistance | None
    lpips_metric: PerceptualDistance | None
    kind: str
    source: str | None
    notice: str | None


def prepare_perceptual(settings: InversionSettings, image_size: int,
                       device: str | torch.device = "cpu") -> PerceptualSetup:
    """Build the perceptual loss ``settings.perceptual`` asks for (``auto``: the preset's kind when local
    VGG16 weights exist, else none with a notice) and, whenever the weights exist, an LPIPS-VGG metric.
    Never downloads anything."""
    settings = settings.validated()
    choice = choose_perceptual(settings.perceptual, PRESETS[settings.preset]["perceptual"], settings.vgg_weights)
    loss = None
    if choice.kind is not None:
        loss = build_perceptual(choice.kind, choice.weights, image_size=image_size, device=device)
    metric = None
    if choice.weights is not None:
        metric = loss if choice.kind == "lpips" else build_perceptual("lpips", choice.weights, image_size=image_size,
                                                                      device=device)
    elif settings.perceptual == "none":  # the user opted out; still measure LPIPS when the weights are here
        from latentedit.invert.perceptual import find_vgg16_weights

        weights = find_vgg16_weights(settings.vgg_weights)
        if weights is not None:
            metric = build_perceptual("lpips", weights, image_size=image_size, device=device)
    return PerceptualSetup(loss, metric, choice.kind or "none", None if loss is None else loss.source, choice.notice)


def output_paths(out_dir: str | os.PathLike, name: str) -> dict[str, Path]:
    """The files written for image ``name``: ``latent`` (.npy), ``image`` (.png), ``compare``
    (_compare.png), ``noise`` (_noise.npz), ``video`` (_progress.gif), ``generator`` (_G.safetensors, the
    PTI-tuned generator) and ``manifest`` (.json, written last: its presence marks the image as done)."""
    out_dir = Path(out_dir)
    return {"latent": out_dir / f"{name}.npy", "image": out_dir / f"{name}.png",
            "compare": out_dir / f"{name}_compare.png", "noise": out_dir / f"{name}_noise.npz",
            "video": out_dir / f"{name}_progress.gif", "generator": out_dir / f"{name}_G.safetensors",
            "manifest": out_dir / f"{name}.json"}


def _save_noise(path: Path, maps: list[np.ndarray]) -> None:
    buffer = _io.BytesIO()
    np.savez(buffer, **{f"noise_{i}": m for i, m in enumerate(maps)})
    io.write_bytes(path, buffer.getvalue())


#: Frames of the progress GIF are at most this many pixels high (a 1024 px GIF of 50 frames is too big to view).
GIF_MAX_SIDE = 256


def _save_gif(path: Path, target_pixels: np.ndarray, frames: list[np.ndarray]) -> None:
    from PIL import Image

    def picture(frame: np.ndarray):
        image = Image.fromarray(io.make_grid(np.stack([target_pixels, frame]), columns=2))
        if image.height > GIF_MAX_SIDE:
            scale = GIF_MAX_SIDE / image.height
            image = image.resize((round(image.width * scale), GIF_MAX_SIDE), Image.Resampling.LANCZOS)
        return image

    pictures = [picture(frame) for frame in frames]
    buffer = _io.BytesIO()
    durations = [80] * (len(pictures) - 1) + [1500]  # linger on the final reconstruction
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    io.write_bytes(path, buffer.getvalue())


def write_result(out_dir: str | os.PathLike, result: ImageResult, target: torch.Tensor, *, input_info: dict,
                 checkpoint_info: dict, settings: dict, perceptual_source: str | None, rank: int = 0) -> dict:
    """Write every output of one image (atomically, manifest last) and return the manifest.

    InputError, with nothing written, for a result with an ``error`` or with non-finite values."""
    if result.error is not None:
        raise InputError(f"{result.name}: {result.error}; nothing was written for it")
    if not (np.isfinite(result.latent).all() and bool(torch.isfinite(result.reconstruction).all())
            and math.isfinite(result.mse)):
        raise InputError(f"{result.name}: the result holds NaN or infinite values; nothing was written for it")
    paths = output_paths(out_dir, result.name)
    io.save_npy(paths["latent"], result.latent)
    reconstruction = io.to_uint8(result.reconstruction)[0]
    target_pixels = io.to_uint8(target)[0]
    io.save_png(paths["image"], reconstruction)
    io.save_png(paths["compare"], io.make_grid(np.stack([target_pixels, reconstruction]), columns=2))
    files = [paths["latent"].name, paths["image"].name, paths["compare"].name]
    if result.noise is not None:
        _save_noise(paths["noise"], result.noise)
        files.append(paths["noise"].name)
    if result.frames:
        _save_gif(paths["video"], target_pixels, result.frames)
        files.append(paths["video"].name)
    if result.tuned_generator is not None:
        from latentedit.invert.pti import save_tuned_generator

        save_tuned_generator(result.tuned_generator, paths["generator"], checkpoint_info, result.extra or {})
        files.append(paths["generator"].name)
    manifest = {
        "command": "invert",
        "name": result.name,
        "input": input_info,
        "checkpoint": checkpoint_info,
        "settings": settings,
        "perceptual_weights": perceptual_source,
        "latent_space": settings["space"],
        "latent_shape": list(result.latent.shape),
        "metrics": {"mse": result.mse, "psnr_db": round(result.psnr_db, 4),
                    "lpips": None if result.lpips is None else round(result.lpips, 6)},
        "steps": result.steps,
        "reached_target_psnr": result.reached_target,
        "loss_curve": result.loss_curve,
        "wall_time_s": round(result.wall_time_s, 3),
        "batch_size": result.batch_size,
        "rank": rank,
        "files": files + [paths["manifest"].name],
        "versions": io.versions(),
    }
    if result.extra:
        manifest.update(result.extra)
    io.write_json(paths["manifest"], manifest)
    return manifest


def _finished(paths: dict[str, Path], checkpoint_sha256: str, settings: dict,
              latent_shape: tuple[int, ...]) -> tuple[dict | None, str | None]:
    """Whether an image was already inverted with the same checkpoint and settings: ``(manifest, None)``
    when its outputs can be reused, ``(None, None)`` when there is nothing to reuse, ``(None, reason)``
    when outputs exist but are unusable (they are redone; ``reason`` is one line for the user).

    Reused only when the ``.json`` manifest parses, the ``.npy`` latent parses without pickle, has
    ``latent_shape`` and is finite, and every file the manifest lists is there and not empty. Raises
    InputError when valid outputs came from another checkpoint or other settings.
    """
    import json

    if not paths["manifest"].is_file():
        return None, None  # never finished (the manifest is written last)
    try:
        manifest = json.loads(paths["manifest"].read_text())
        previous_sha = manifest["checkpoint"]["sha256"]
        previous = manifest["settings"]
        manifest["metrics"]["psnr_db"] + 0.0
        listed = [str(name) for name in manifest.get("files", [])]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, f"{paths['manifest'].name} is unreadable or incomplete ({type(error).__name__})"
    if previous_sha != checkpoint_sha256:
        raise InputError(f"{paths['manifest']} was made with another checkpoint; pass --overwrite or choose "
                         f"another output folder")
    def value(record: dict, key: str):
        return record.get(key, RESULT_FIELD_DEFAULTS.get(key))

    changed = [key for key in RESULT_FIELDS if value(previous, key) != value(settings, key)]
    if changed:
        raise InputError(f"{paths['manifest']} was made with other settings ({', '.join(changed)}); pass "
                         f"--overwrite or choose another output folder")
    latent_file = paths["latent"]
    if not latent_file.is_file():
        return None, f"{latent_file.name} is missing"
    try:
        latent = np.load(latent_file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None, f"{latent_file.name} is not a valid .npy array (truncated or corrupt)"
    if not isinstance(latent, np.ndarray) or tuple(latent.shape) != tuple(latent_shape):
        return None, (f"{latent_file.name} has shape {list(getattr(latent, 'shape', []))}, expected "
                      f"{list(latent_shape)}")
    if not np.issubdtype(latent.dtype, np.floating) or not np.isfinite(latent).all():
        return None, f"{latent_file.name} holds non-finite or non-float values"
    folder = paths["manifest"].parent
    for name in listed:
        if Path(name).name != name:
            return None, f"{paths['manifest'].name} lists an unexpected file {name!r}"
        file = folder / name
        if not file.is_file() or file.stat().st_size == 0:
            return None, f"{name} is missing or empty"
    return manifest, None


def _default_log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def invert_files(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                 settings: InversionSettings | None = None, *, ckpt: str | os.PathLike = "toyfaces64",
                 device: str = "auto", overwrite: bool = False, progress: bool = True,
                 log: Callable[[str], None] | None = None, perceptual: PerceptualSetup | None = None,
                 loaded: tuple | None = None) -> dict:
    """Invert image files and folders into ``out_dir``; what ``latentedit invert`` runs.

    ``inputs``: image files and folders (folders: their images at any depth, sorted, hidden files and
    the output folder skipped; a stem shared by images of different subfolders becomes
    ``<subfolder>_<stem>``, see :func:`latentedit.image_files.list_named_images`). Per image
    ``<stem>`` it writes ``<stem>.npy`` (W+ ``[num_ws, w_dim]`` or W ``[w_dim]`` float32, readable by
    ``generate --latent``), ``<stem>.png``, ``<stem>_compare.png`` (target | reconstruction),
    ``<stem>_noise.npz`` (``--noise optimize``), ``<stem>_progress.gif`` (``save_video``) and
    ``<stem>.json`` (written last). Images whose outputs exist with the same checkpoint and settings
    are skipped unless ``overwrite``, after checking them (the manifest parses, the latent is a finite
    array of the expected shape, the listed files exist); unusable outputs are redone with a one-line
    note. A bad image, or one whose optimisation diverges (NaN / infinite loss), is reported through
    ``log``, counted as failed, and nothing is written for it. The output folder is created and proven
    writable before anything is loaded, and temporaries of an interrupted run are removed. Under
    ``torchrun`` (``WORLD_SIZE`` > 1) image ``i`` (input order) is inverted by rank ``i % world_size``
    (gloo on CPU, nccl on CUDA) and rank 0 writes the summary. Also writes ``summary.json`` (counts,
    per-image status and metrics, median PSNR) and returns it (every rank gets the whole summary;
    ``rank`` says which process returned it). ``loaded``: an already loaded
    ``(generator, info)`` instead of ``ckpt``; ``perceptual``: a prepared :class:`PerceptualSetup`
    instead of the one ``settings`` asks for.
    """
    from latentedit.checkpoints import load_generator
    from latentedit.image_files import list_named_images, load_image_tensor
    from latentedit.photos.workflow import sibling_alignment_record
    from latentedit.train.common import configure_cpu_threads, init_distributed

    settings = (settings or InversionSettings()).validated()
    log = log or _default_log
    started = time.perf_counter()
    out_dir = Path(out_dir)
    found = list_named_images(list(inputs), exclude=[out_dir])
    paths = [path for path, _ in found]
    names = [name for _, name in found]
    seen: dict[str, Path] = {}
    for path, name in zip(paths, names):
        if name in seen:
            raise InputError(f"{seen[name]} and {path} would both write {name}.* in {out_dir}; rename one or invert "
                             f"them into different folders")
        seen[name] = path
        if path.parent.resolve() == out_dir.resolve():
            raise InputError(f"the output folder {out_dir} holds the input {path}; choose another output folder")
    # Before any work: the folder must be writable (else the error would come after the inversion).
    io.prepare_output_dir(out_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        # Rank 0 cleans up before the process group forms, so no other rank is writing yet.
        stale = io.remove_stale_temporaries(out_dir)
        if stale:
            log(f"removed {len(stale)} temporary file(s) left by an interrupted run in {out_dir}")

    context = init_distributed(device)
    try:
        if context.distributed:
            configure_cpu_threads(context)
        prefix = f"[rank {context.rank}] " if context.distributed else ""
        generator, info = loaded if loaded is not None else load_generator(ckpt, device=context.device)
        generator = generator.to(context.device)
        checkpoint_info = info.to_dict() if hasattr(info, "to_dict") else dict(info)
        # Manifests and the skip check record the precision that ran (auto -> fp32 / bf16 / fp16 here).
        settings = dataclasses.replace(settings, precision=generator_precision(settings.precision, generator))
        encoder = None
        if settings.uses_encoder():  # before any notice: a wrong encoder is the one line the user sees
            from latentedit.invert.encoder import DEFAULT_ENCODER, load_encoder

            encoder, encoder_info = load_encoder(settings.encoder or DEFAULT_ENCODER,
                                                 generator_sha256=checkpoint_info["sha256"],
                                                 generator_provenance=checkpoint_info.get("provenance"),
                                                 force=settings.force, generator=generator, device=context.device)
            for note in encoder_info["notes"]:
                if context.is_main:
                    log(f"note: {note}")
        if perceptual is None:
            perceptual = prepare_perceptual(settings, generator.size, context.device)
        if perceptual.notice and context.is_main:
            log(perceptual.notice)
        if settings.noise == "optimize" and generator.num_layers == 0 and context.is_main:
            log("note: this generator has no noise inputs (StyleGAN3); --noise optimize optimises the latent only "
                "and writes no _noise.npz")
        recorded = settings.to_dict()
        recorded.update(perceptual=perceptual.kind, vgg_weights=None if settings.vgg_weights is None
                        else str(settings.vgg_weights))
        recorded["method"] = settings.method
        for key in ENCODER_FIELDS + PTI_FIELDS:
            recorded.pop(key, None)
        if encoder is not None:
            recorded.update(encoder=encoder_info["path"], encoder_sha256=encoder_info["sha256"])
        if settings.method == "pti":
            recorded.update({key: getattr(settings, key) for key in PTI_FIELDS})
        if recorded["mse_weight"] is None:
            recorded["mse_weight"] = 0.0 if (settings.preset == "projector" and perceptual.loss is not None) else 1.0
        effective = dataclasses.replace(settings, mse_weight=recorded["mse_weight"])

        records = []
        pending = []
        latent_shape = ((generator.num_ws, generator.w_dim) if settings.space == "w+" else (generator.w_dim,))
        mine = [i for i in range(len(paths)) if i % context.world_size == context.rank]
        for index in mine:
            path, name = paths[index], names[index]
            record = {"index": index, "name": name, "input": str(path), "rank": context.rank}
            try:
                done, redo = (None, None) if overwrite else _finished(
                    output_paths(out_dir, name), checkpoint_info["sha256"], recorded, latent_shape)
                if redo is not None:
                    log(f"{prefix}{name}: previous outputs are not usable ({redo}); inverting it again")
                if done is not None:
                    record.update(status="skipped", psnr_db=done["metrics"]["psnr_db"],
                                  lpips=done["metrics"].get("lpips"), steps=done.get("steps"),
                                  wall_time_s=done.get("wall_time_s"))
                    log(f"{prefix}{name}: already inverted (PSNR {done['metrics']['psnr_db']:.2f} dB); skipped")
                else:
                    notes: list[str] = []
                    target, input_info = load_image_tensor(path, generator.size, warn=notes.append)
                    for note in notes:
                        log(f"{prefix}warning: {note}")
                    if input_info["has_alpha"]:
                        input_info["note"] = "alpha channel ignored: the RGB values are inverted as stored"
                    aligned_from = sibling_alignment_record(path)
                    if aligned_from is not None:
                        # An aligned crop: keep its photo and transform, so apply-direction can paste back.
                        input_info["alignment_record"] = aligned_from
                    pending.append((record, target, input_info))
                    continue
            except LatentEditError as error:
                record.update(status="failed", error=str(error))
                log(f"{prefix}error: {error}; skipped")
            records.append(record)

        total_mine = len(pending)
        # The encoder answers a batch in one forward pass: it takes at least ENCODER_BATCH images at a time.
        chunk_size = max(settings.batch_size, ENCODER_BATCH) if settings.method == "encoder" else settings.batch_size
        for start in range(0, total_mine, chunk_size):
            chunk = pending[start:start + chunk_size]
            batch_names = [record["name"] for record, _, _ in chunk]
            label = f"{prefix}[{start + len(chunk)}/{total_mine}] {', '.join(batch_names)}"
            targets = torch.stack([target for _, target, _ in chunk])
            description = label if len(label) < 60 else label[:57] + "..."
            if settings.method == "optimize":
                results = invert(generator, targets, effective, names=batch_names, perceptual=perceptual.loss,
                                 lpips_metric=perceptual.lpips_metric, progress=progress and context.is_main,
                                 description=description)
            else:
                from latentedit.invert.pti import invert_with_method

                results = invert_with_method(generator, targets, effective, names=batch_names, encoder=encoder,
                                             perceptual=perceptual, progress=progress and context.is_main,
                                             description=description)
            for (record, target, input_info), result in zip(chunk, results):
                if result.error is not None:
                    message = f"cannot invert {record['input']}: {result.error}; nothing was written for it"
                    record.update(status="failed", error=message, steps=result.steps)
                    log(f"{prefix}error: {message}; skipped")
                    records.append(record)
                    continue
                write_result(out_dir, result, target, input_info=input_info, checkpoint_info=checkpoint_info,
                             settings=recorded, perceptual_source=perceptual.source, rank=context.rank)
                record.update(status="inverted", psnr_db=round(result.psnr_db, 4), lpips=result.lpips,
                              steps=result.steps, wall_time_s=round(result.wall_time_s, 3))
                lpips_text = f", LPIPS {result.lpips:.4f}" if result.lpips is not None else ""
                how = f"after {result.steps} steps" if settings.method != "encoder" else "(encoder)"
                if settings.method == "pti":
                    how += f" + {settings.pti_steps} PTI steps"
                log(f"{prefix}{result.name}: PSNR {result.psnr_db:.2f} dB{lpips_text} {how} "
                    f"({result.wall_time_s:.1f} s) -> {output_paths(out_dir, result.name)['latent']}")
                records.append(record)

        if context.distributed:
            import torch.distributed as dist

            gathered: list = [None] * context.world_size
            dist.all_gather_object(gathered, records)
            records = [record for part in gathered for record in part]
        records.sort(key=lambda record: record["index"])
        psnrs = [r["psnr_db"] for r in records if r["status"] in ("inverted", "skipped")]
        counts = {status: sum(r["status"] == status for r in records) for status in ("inverted", "skipped", "failed")}
        counts["total"] = len(records)
        summary = {
            "command": "invert",
            "out_dir": str(out_dir),
            "checkpoint": checkpoint_info,
            "settings": recorded,
            "perceptual_weights": perceptual.source,
            "world_size": context.world_size,
            "rank": context.rank,
            "counts": counts,
            "median_psnr_db": float(np.median(psnrs)) if psnrs else None,
            "images": records,
            "wall_time_s": round(time.perf_counter() - started, 3),
            "versions": io.versions(),
        }
        if context.is_main:
            io.write_json(out_dir / "summary.json", summary)
        return summary
    finally:
        context.shutdown()
