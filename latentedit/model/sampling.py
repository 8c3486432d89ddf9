"""Generate images from seeds or saved latents, with PNGs, latents and a JSON manifest.

Python API: :func:`synthesize` (tensors in, tensors out) and :func:`generate_to_folder` (what
``latentedit generate`` runs).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from latentedit import io
from latentedit.errors import InputError
from latentedit.latents import as_w_or_w_plus, load_latent_file, z_from_seeds
from latentedit.model.generator import NOISE_MODES, Generator


#: Mapped samples behind :func:`w_spread` (seeded, so the spread is the same number every time).
W_SPREAD_SAMPLES = 10000


@torch.no_grad()
def w_spread(generator: Generator, num_samples: int = W_SPREAD_SAMPLES, seed: int = 0, chunk: int = 4096) -> float:
    """The W spread: ``sqrt(Σ_i ‖w_i − mean(w)‖² / n)`` over ``n`` mapped seeded N(0, 1) samples.

    A property of the generator's W distribution, used as the projector's latent-noise scale
    (:mod:`latentedit.invert.optimize`) and as the unit of edit strengths (:mod:`latentedit.directions.apply`).
    """
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    samples = []
    for start in range(0, num_samples, chunk):
        z = torch.randn(min(chunk, num_samples - start), generator.z_dim, generator=rng)
        samples.append(generator.mapping(z.to(device)).double().cpu())
    w = torch.cat(samples)
    return float((w - w.mean(0)).square().sum().div(num_samples).sqrt())


@torch.no_grad()
def synthesize(generator: Generator, w: torch.Tensor, noise_mode: str = "const", batch_size: int = 8,
               noise_seed: int = 0, precision: str = "fp32") -> torch.Tensor:
    """Render W ``[N, w_dim]`` or W+ ``[N, num_ws, w_dim]`` to images ``[N, 3, size, size]`` (float32, on CPU).

    ``noise_mode='random'`` draws noise from a generator seeded with ``noise_seed`` so runs repeat.
    ``precision``: a resolved :mod:`latentedit.precision` choice (fp32, bf16 or fp16) for the synthesis.
    """
    from latentedit.precision import compute

    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(noise_seed)
    images = []
    for start in range(0, w.shape[0], batch_size):
        chunk = w[start:start + batch_size].to(device)
        if noise_mode == "random":
            noise = generator.make_noise("random", chunk.shape[0], device, generator=rng)
        else:
            noise = noise_mode
        with compute(precision, device):
            images.append(generator.synthesis(chunk, noise).float().cpu())
    return torch.cat(images)


@torch.no_grad()
def w_from_seeds(generator: Generator, seeds: Sequence[int], truncation: float = 1.0,
                 truncation_cutoff: int | None = None) -> torch.Tensor:
    """Seeds -> z (NVIDIA convention) -> W+ ``[N, num_ws, w_dim]`` after truncation."""
    device = next(generator.parameters()).device
    z = z_from_seeds(list(seeds), generator.z_dim).to(device)
    w = generator.truncate(generator.mapping(z), truncation, truncation_cutoff)
    return generator.broadcast_w(w).cpu()


def generate_to_folder(generator: Generator, out_dir: str | os.PathLike, *, checkpoint_info: dict,
                       seeds: Sequence[int] | None = None, latent_path: str | os.PathLike | None = None,
                       truncation: float = 1.0, truncation_cutoff: int | None = None, noise_mode: str = "const",
                       grid: bool = True, individual: bool = True, batch_size: int = 8,
                       progress: bool = True, input_transform: dict | None = None, precision: str = "fp32") -> dict:
    """Write one PNG and one W+ ``.npy`` per image, a grid PNG, and ``manifest.json`` into ``out_dir``.

    Exactly one of ``seeds`` and ``latent_path`` is given. Returns the manifest (also written). The folder
    is created and proven writable first; non-finite latents or images are an InputError, nothing written.
    ``input_transform`` (StyleGAN3: the ``translate`` / ``rotate_deg`` already set on the generator) is
    recorded in the manifest when given. ``precision`` (:data:`latentedit.precision.PRECISIONS`) is what the
    synthesis computes in; the manifest records it when it is not fp32.
    """
    from latentedit.precision import generator_precision

    precision = generator_precision(precision, generator)
    if (seeds is None) == (latent_path is None):
        raise InputError("give either seeds or a latent file, not both (and not neither)")
    if noise_mode not in NOISE_MODES:
        raise InputError(f"noise mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
    if not (0.0 <= truncation <= 2.0):
        raise InputError(f"truncation psi {truncation} is outside [0, 2]")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if seeds is not None:
        w_plus = w_from_seeds(generator, seeds, truncation, truncation_cutoff)
        names = [f"seed{seed:04d}" for seed in seeds]
        source = {"seeds": list(seeds)}
    else:
        latent = as_w_or_w_plus(load_latent_file(latent_path), generator.num_ws, generator.w_dim,
                                name=f"latent {latent_path}")
        w_plus = generator.truncate(generator.broadcast_w(latent), truncation, truncation_cutoff)
        stem = Path(latent_path).stem
        names = [stem] if w_plus.shape[0] == 1 else [f"{stem}_{i:04d}" for i in range(w_plus.shape[0])]
        source = {"latent": str(latent_path), "latent_sha256": io.sha256_file(latent_path)}
    # Before rendering: an unwritable folder fails now, not after the work (and not before the inputs are checked).
    io.prepare_output_dir(out_dir)

    images = []
    from tqdm import tqdm

    for start in tqdm(range(0, w_plus.shape[0], batch_size), desc="generate", unit="batch",
                      disable=not progress or w_plus.shape[0] <= batch_size):
        images.append(synthesize(generator, w_plus[start:start + batch_size], noise_mode, batch_size,
                                 noise_seed=start, precision=precision))
    rendered = torch.cat(images)
    if not (torch.isfinite(rendered).all() and torch.isfinite(w_plus).all()):
        raise InputError("the generator produced NaN or infinite values (a broken checkpoint, or extreme "
                         "truncation); nothing was written")
    pixels = io.to_uint8(rendered)

    files = []
    if individual:
        for name, image, latent in zip(names, pixels, w_plus.numpy()):
            io.save_png(out_dir / f"{name}.png", image)
            io.save_npy(out_dir / f"{name}.npy", latent.astype(np.float32))
            files += [f"{name}.png", f"{name}.npy"]
    io.save_npy(out_dir / "w_plus.npy", w_plus.numpy().astype(np.float32))
    files.append("w_plus.npy")
    if grid:
        io.save_png(out_dir / "grid.png", io.make_grid(pixels))
        files.append("grid.png")
    manifest = {
        "command": "generate",
        "checkpoint": checkpoint_info,
        **source,
        "names": names,
        "truncation_psi": truncation,
        "truncation_cutoff": truncation_cutoff,
        "noise_mode": noise_mode,
        **({"input_transform": input_transform} if input_transform is not None else {}),
        **({"precision": precision} if precision != "fp32" else {}),
        "w_plus_shape": list(w_plus.shape),
        "image_size": generator.size,
        "files": files,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "versions": io.versions(),
    }
    io.write_json(out_dir / "manifest.json", manifest)
    return manifest
