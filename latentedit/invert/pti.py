"""The inversion methods besides plain optimisation, and pivotal tuning (PTI; Roich et al. 2021) (issue #23).

:func:`invert_with_method` runs ``latentedit invert --method encoder|encoder+optimize|pti`` on one batch and
returns :class:`~latentedit.invert.optimize.ImageResult` objects like :func:`~latentedit.invert.optimize.invert`,
so :func:`~latentedit.invert.optimize.invert_files` writes every method's outputs the same way:

``encoder``
    One batched forward pass of the trained encoder (:mod:`latentedit.invert.encoder`); ``steps`` is 0. With
    ``--space w`` the latent is the mean of the encoder's W+ rows.
``encoder+optimize``
    The optimisation of :func:`~latentedit.invert.optimize.invert`, started from the encoder's latent instead of
    the mean w. The manifest's ``encoder_init`` holds the PSNR of that starting point.
``pti``
    A pivot latent (``pti_pivot``: ``optimize``, ``encoder`` or ``encoder+optimize``), then :func:`tune_generator`
    fine-tunes a copy of the generator's synthesis weights on the one image for ``pti_steps`` Adam steps (lr
    ``pti_lr``, betas (0.9, 0.999)), with the mapping network frozen. Loss per step:
    ``mean((G_t(p) − x)²) + LPIPS(G_t(p), x) + pti_locality · [mean((G_t(w_r) − G(w_r))²) + LPIPS(G_t(w_r), G(w_r))]``
    (LPIPS only when its VGG16 weights are local). ``w_r = p + α·(mapping(z) − p)``, ``α ~ U(0,``
    :data:`LOCALITY_RADIUS` ``)``, one fresh ``z`` per step from the image's own seeded stream: latents between the
    pivot and random faces, where the tuned generator ``G_t`` must still render what the original ``G`` renders,
    so edits that move away from the pivot keep behaving (PTI's locality regulariser; PTI draws its points at a
    fixed distance, here a fraction of the way to a random w, which needs no scale of W). The tuned generator is
    written as ``<stem>_G.safetensors``, a native checkpoint that every ``--ckpt`` reads, with
    ``derived_from_sha256`` (the base checkpoint) and the tuning settings in its metadata (``latentedit info``
    shows them). With ``--noise optimize`` the pivot's optimised noise maps become its stored noise, so
    ``generate --latent <stem>.npy --ckpt <stem>_G.safetensors`` renders ``<stem>.png``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from latentedit import io
from latentedit.errors import InputError
from latentedit.invert.optimize import (CURVE_EVERY, ImageResult, InversionSettings, PerceptualSetup, image_mse01,
                                        image_seed, invert, psnr_from_mse)

#: Locality samples lie this fraction of the way (at most) from the pivot to a random mapped w.
LOCALITY_RADIUS = 0.5


@dataclasses.dataclass
class TuningResult:
    """What :func:`tune_generator` returns: ``generator`` (the tuned copy, eval mode, frozen; None on failure),
    ``reconstruction [3, S, S]`` (its render of the pivot, clamped), ``pivot_psnr_db`` / ``psnr_db`` (before and
    after), ``loss_curve`` (``{step, loss, mse, psnr_db, locality}`` every :data:`CURVE_EVERY` steps and the
    last), ``wall_time_s`` and ``error`` (None, or why the tuning failed)."""

    generator: torch.nn.Module | None
    reconstruction: torch.Tensor | None
    pivot_psnr_db: float
    psnr_db: float
    loss_curve: list[dict]
    wall_time_s: float
    error: str | None = None


def tune_generator(generator, target: torch.Tensor, pivot: torch.Tensor, *, steps: int = 200, lr: float = 3e-4,
                   locality_weight: float = 0.1, lpips=None, seed: int = 0, name: str = "image",
                   noise_maps: Sequence[np.ndarray] | None = None, progress: bool = False,
                   description: str = "pti") -> TuningResult:
    """Pivotal tuning of a copy of ``generator`` on one image (see the module docstring).

    ``target [3, S, S]`` in [-1, 1]; ``pivot`` W+ ``[num_ws, w_dim]`` or W ``[w_dim]``; ``lpips``: a
    :class:`~latentedit.invert.perceptual.PerceptualDistance` (None: L2 only); ``noise_maps``: ``[r, r]`` arrays
    that replace the copy's stored noise (an optimised pivot's). The random draws come from a stream seeded by
    ``(seed, name)``. ``generator`` itself is not changed.
    """
    started = time.perf_counter()
    device = next(generator.parameters()).device
    tuned = copy.deepcopy(generator).eval().requires_grad_(False)
    if noise_maps is not None:
        with torch.no_grad():
            for buffer, values in zip(tuned.noises.maps(), noise_maps):
                buffer.copy_(torch.as_tensor(values).to(buffer).view_as(buffer))
    trainable = [p for n, p in tuned.named_parameters() if not n.startswith("style.")]
    for parameter in trainable:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(trainable, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    target = target.to(device=device, dtype=torch.float32)[None]
    pivot_plus = generator.broadcast_w(pivot.to(device=device, dtype=torch.float32)[None]).detach()
    target_features = lpips.target_features(target) if lpips is not None else None
    stream = torch.Generator().manual_seed(image_seed(seed, f"pti/{name}"))
    with torch.no_grad():
        pivot_image = tuned.synthesis(pivot_plus).clamp(-1, 1)
        pivot_psnr = float(psnr_from_mse(float(image_mse01(pivot_image, target)[0])))
    curve: list[dict] = []

    def record(step: int, loss: float, mse: float, locality: float) -> dict:
        return {"step": step, "loss": round(loss, 7), "mse": round(mse, 8),
                "psnr_db": round(float(psnr_from_mse(mse)), 4), "locality": round(locality, 7)}

    from tqdm import tqdm

    bar = tqdm(range(steps), desc=description, unit="step", disable=not progress, leave=False, file=sys.stderr,
               dynamic_ncols=True)
    error = None
    for step in bar:
        image = tuned.synthesis(pivot_plus)
        loss = (image - target).square().mean()
        if lpips is not None:
            loss = loss + lpips(image, target_features).mean()
        locality = torch.zeros((), device=device)
        if locality_weight > 0:
            z = torch.randn(1, generator.z_dim, generator=stream)
            alpha = LOCALITY_RADIUS * float(torch.rand((), generator=stream))
            with torch.no_grad():
                random_w = generator.mapping(z.to(device))
                nearby = pivot_plus + alpha * (random_w[:, None, :] - pivot_plus)
                original = generator.synthesis(nearby)
            moved = tuned.synthesis(nearby)
            locality = (moved - original).square().mean()
            if lpips is not None:
                locality = locality + lpips(moved, lpips.target_features(original)).mean()
            loss = loss + locality_weight * locality
        loss_value = float(loss.detach())
        with torch.no_grad():
            mse = float(image_mse01(image.detach(), target)[0])
        if not (math.isfinite(loss_value) and math.isfinite(mse)):
            error = f"pivotal tuning diverged at step {step} (loss {loss_value}); lower --pti-lr (now {lr:g})"
            break
        if step % CURVE_EVERY == 0:
            curve.append(record(step, loss_value, mse, float(locality.detach())))
        if progress:
            bar.set_postfix(loss=f"{loss_value:.4f}", psnr=f"{psnr_from_mse(mse):.2f}dB", refresh=False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    bar.close()
    tuned.requires_grad_(False)
    if error is not None:
        return TuningResult(None, None, pivot_psnr, float("nan"), curve, time.perf_counter() - started, error)
    with torch.no_grad():
        reconstruction = tuned.synthesis(pivot_plus).clamp(-1, 1)
        mse = float(image_mse01(reconstruction, target)[0])
    bad = [p for p in tuned.parameters() if not bool(torch.isfinite(p).all())]
    if bad or not math.isfinite(mse):
        return TuningResult(None, None, pivot_psnr, float("nan"), curve, time.perf_counter() - started,
                            f"pivotal tuning diverged: the tuned weights hold NaN or infinite values; lower --pti-lr "
                            f"(now {lr:g})")
    curve.append({"step": steps, "mse": round(mse, 8), "psnr_db": round(float(psnr_from_mse(mse)), 4)})
    return TuningResult(tuned, reconstruction[0].cpu(), pivot_psnr, float(psnr_from_mse(mse)), curve,
                        time.perf_counter() - started)


def save_tuned_generator(generator, path: str | os.PathLike, checkpoint_info: dict, extra: dict) -> Path:
    """Write a PTI-tuned generator as a native checkpoint, recording its base: ``derived_from_sha256``,
    ``derived_from`` (the base's path), ``derived_by`` and ``pti`` (the tuning settings and PSNRs, JSON)."""
    from latentedit.checkpoints import save_native

    pti = {key: value for key, value in (extra.get("pti") or {}).items() if key != "loss_curve"}
    metadata = {"derived_from_sha256": checkpoint_info["sha256"], "derived_from": str(checkpoint_info["path"]),
                "derived_by": "latentedit invert --method pti", "pti": json.dumps(io.json_safe(pti), sort_keys=True)}
    base_w_avg = checkpoint_info.get("w_avg_source") or "the base checkpoint's"
    return save_native(generator, path, extra_metadata=metadata,
                       w_avg_source=f"copied from the base checkpoint ({base_w_avg})")


def _encoder_latents(encoder, generator, targets: torch.Tensor, space: str) -> torch.Tensor:
    from latentedit.invert.encoder import encode

    w_plus = encode(encoder, targets, generator=generator)
    return w_plus if space == "w+" else w_plus.mean(dim=1)


@torch.no_grad()
def _encoder_results(generator, targets: torch.Tensor, latents: torch.Tensor, names: Sequence[str],
                     lpips_metric, wall: float) -> list[ImageResult]:
    device = next(generator.parameters()).device
    targets = targets.to(device=device, dtype=torch.float32)
    reconstruction = generator.synthesis(latents.to(device)).clamp(-1, 1)
    mse = image_mse01(reconstruction, targets).cpu()
    lpips_values = lpips_metric(reconstruction, lpips_metric.target_features(targets)).cpu() \
        if lpips_metric is not None else None
    results = []
    for i, name in enumerate(names):
        latent = latents[i].cpu().numpy().astype(np.float32)
        error = None
        if not (np.isfinite(latent).all() and bool(torch.isfinite(reconstruction[i]).all())):
            error = "the encoder's latent or its render holds NaN or infinite values (a damaged encoder?)"
        results.append(ImageResult(
            name=name, latent=latent, noise=None, reconstruction=reconstruction[i].cpu(), mse=float(mse[i]),
            psnr_db=float(psnr_from_mse(float(mse[i]))),
            lpips=None if lpips_values is None else float(lpips_values[i]), steps=0, reached_target=None,
            loss_curve=[{"step": 0, "mse": round(float(mse[i]), 8),
                         "psnr_db": round(float(psnr_from_mse(float(mse[i]))), 4)}],
            frames=[], wall_time_s=wall, batch_size=len(names), error=error))
    return results


def invert_with_method(generator, targets: torch.Tensor, settings: InversionSettings, *, names: Sequence[str],
                       encoder=None, perceptual: PerceptualSetup | None = None, progress: bool = False,
                       description: str = "invert", method: str | None = None) -> list[ImageResult]:
    """Invert ``targets [B, 3, S, S]`` with ``method`` (default ``settings.method``; see the module docstring).

    ``encoder``: a :class:`~latentedit.invert.encoder.LatentEncoder` (required by the encoder methods and by
    PTI's encoder pivots); ``perceptual``: the run's loss and LPIPS metric (None: MSE only, no LPIPS).
    """
    method = method or settings.method
    loss = perceptual.loss if perceptual is not None else None
    lpips_metric = perceptual.lpips_metric if perceptual is not None else None
    needs_encoder = method in ("encoder", "encoder+optimize")
    if needs_encoder and encoder is None:
        raise InputError(f"--method {method} needs an encoder (--encoder)")
    if method == "optimize":
        return invert(generator, targets, settings, names=names, perceptual=loss, lpips_metric=lpips_metric,
                      progress=progress, description=description)
    if method == "encoder":
        started = time.perf_counter()
        latents = _encoder_latents(encoder, generator, targets, settings.space)
        return _encoder_results(generator, targets, latents, names, lpips_metric, time.perf_counter() - started)
    if method == "encoder+optimize":
        started = time.perf_counter()
        latents = _encoder_latents(encoder, generator, targets, settings.space)
        encoder_wall = time.perf_counter() - started
        starts = _encoder_results(generator, targets, latents, names, None, encoder_wall)
        results = invert(generator, targets, settings, names=names, perceptual=loss, lpips_metric=lpips_metric,
                         progress=progress, description=description, init_latent=latents)
        for start, result in zip(starts, results):
            result.wall_time_s += encoder_wall
            result.extra = {"encoder_init": {"psnr_db": round(start.psnr_db, 4), "wall_time_s": round(encoder_wall, 4)}}
        return results
    if method != "pti":
        raise InputError(f"unknown inversion method {method!r}")
    pivots = invert_with_method(generator, targets, settings, names=names, encoder=encoder, perceptual=perceptual,
                                progress=progress, description=description, method=settings.pti_pivot)
    results = []
    for index, pivot in enumerate(pivots):
        if pivot.error is not None:
            results.append(pivot)
            continue
        tuning = tune_generator(generator, targets[index], torch.from_numpy(pivot.latent), steps=settings.pti_steps,
                                lr=settings.pti_lr, locality_weight=settings.pti_locality, lpips=lpips_metric,
                                seed=settings.seed, name=pivot.name, noise_maps=pivot.noise, progress=progress,
                                description=f"{description} pti")
        pti_record = {"pivot": settings.pti_pivot, "pivot_psnr_db": round(pivot.psnr_db, 4),
                      "pivot_steps": pivot.steps, "steps": settings.pti_steps, "lr": settings.pti_lr,
                      "locality_weight": settings.pti_locality, "locality_radius": LOCALITY_RADIUS,
                      "lpips": lpips_metric is not None, "psnr_db": round(tuning.psnr_db, 4),
                      "wall_time_s": round(tuning.wall_time_s, 3), "loss_curve": tuning.loss_curve}
        extra = dict(pivot.extra or {})
        extra["pti"] = pti_record
        if tuning.error is not None:
            results.append(dataclasses.replace(pivot, error=tuning.error, extra=extra))
            continue
        with torch.no_grad():
            device = next(generator.parameters()).device
            target = targets[index:index + 1].to(device=device, dtype=torch.float32)
            reconstruction = tuning.reconstruction[None].to(device)
            mse = float(image_mse01(reconstruction, target)[0])
            lpips_value = None
            if lpips_metric is not None:
                lpips_value = float(lpips_metric(reconstruction, lpips_metric.target_features(target))[0])
        results.append(dataclasses.replace(
            pivot, reconstruction=tuning.reconstruction, mse=mse, psnr_db=tuning.psnr_db, lpips=lpips_value,
            wall_time_s=pivot.wall_time_s + tuning.wall_time_s, tuned_generator=tuning.generator, extra=extra))
    return results
