"""Directions from PULSE pairs (SPEC §4.2, the seed post's workflow).

PULSE runs twice per seed with two references that differ only in what should change (e.g. the hair region
blond vs black), starting from the same latent and noise (the same seed); the direction is the mean over
seeds of ``w_plus(A) - w_plus(B)``, a W+ direction. One seed reproduces the seed post's single pair with its
side effects; averaging over many cancels what the pairs do not share.
"""
from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from latentedit import io as lio
from latentedit.directions.files import save_direction
from latentedit.errors import InputError
from latentedit.model.generator import Generator


@dataclasses.dataclass
class PulsePairs:
    """Paired PULSE results. ``seeds [S]``; ``w_a``, ``w_b``: W+ ``[S, num_ws, w_dim]``; ``images_a``,
    ``images_b``: ``[S, 3, size, size]`` in [-1, 1]; ``success_a``, ``success_b``, ``l2_a``, ``l2_b``: per seed."""

    seeds: list[int]
    w_a: torch.Tensor
    w_b: torch.Tensor
    images_a: torch.Tensor
    images_b: torch.Tensor
    success_a: list[bool]
    success_b: list[bool]
    l2_a: list[float]
    l2_b: list[float]


def run_pulse_pairs(generator: Generator, reference_a: torch.Tensor, reference_b: torch.Tensor,
                    seeds: Sequence[int], settings=None, *, batch_size: int = 8, fit=None,
                    progress: bool = False) -> PulsePairs:
    """PULSE with ``reference_a`` and with ``reference_b`` (each ``[3 or 4, h, w]`` in [0, 1]) for every seed.

    Seeds are taken ``batch_size`` at a time; each chunk runs once with copies of ``reference_a`` and
    once with copies of ``reference_b``, with the same seeds in the same order, so the two runs of a
    seed start from the same latent and noise and see batches of the same composition (identical
    references therefore give identical results). ``settings``: :class:`latentedit.pulse.PulseSettings`.
    """
    from tqdm.auto import tqdm

    from latentedit.pulse.fit import gaussian_fit
    from latentedit.pulse.search import PulseSettings, run_pulse

    settings = settings or PulseSettings()
    settings.validate(generator)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise InputError("no seeds given for the PULSE pairs")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    if fit is None:
        fit = gaussian_fit(generator, settings.fit_samples, progress=progress)
    results_a, results_b = [], []
    chunks = [seeds[i:i + batch_size] for i in range(0, len(seeds), batch_size)]
    for chunk in tqdm(chunks, desc="PULSE pairs", unit="batch", disable=not progress or len(chunks) < 2):
        for reference, results in ((reference_a, results_a), (reference_b, results_b)):
            batch = reference[None].expand(len(chunk), -1, -1, -1)
            results.extend(run_pulse(generator, batch, chunk, settings, fit=fit, progress=progress))
    failed = [(seed, r.error) for seed, r in zip(list(seeds) * 2, results_a + results_b) if r.error is not None]
    if failed:
        # A diverged search has no usable latent: a mean over it would be NaN.
        raise InputError(f"PULSE failed for seed {failed[0][0]} ({failed[0][1]}); {len(failed)} search(es) in all. "
                         f"Lower --lr or drop those seeds")
    return PulsePairs(
        seeds=seeds,
        w_a=torch.stack([r.w_plus for r in results_a]), w_b=torch.stack([r.w_plus for r in results_b]),
        images_a=torch.stack([r.image for r in results_a]), images_b=torch.stack([r.image for r in results_b]),
        success_a=[r.success for r in results_a], success_b=[r.success for r in results_b],
        l2_a=[r.l2 for r in results_a], l2_b=[r.l2 for r in results_b])


def pulse_pair_direction(pairs: PulsePairs, only_successful: bool = False) -> tuple[np.ndarray, list[int]]:
    """The mean over seeds of ``w_a - w_b`` (W+ ``[num_ws, w_dim]``, float32) and the seeds it used.

    ``only_successful``: use only seeds where both runs reached eps (InputError when none did).
    """
    keep = [i for i in range(len(pairs.seeds))
            if not only_successful or (pairs.success_a[i] and pairs.success_b[i])]
    if not keep:
        raise InputError(f"no seed reached eps in both PULSE runs (of {len(pairs.seeds)}); drop --only-successful, "
                         f"raise --steps or --eps, or try other seeds")
    diffs = (pairs.w_a[keep].double() - pairs.w_b[keep].double()).mean(0)
    return diffs.float().numpy(), [pairs.seeds[i] for i in keep]


def pairs_grid(pairs: PulsePairs, per_row: int = 16) -> np.ndarray:
    """Picture of the pairs: strips of up to ``per_row`` seeds, the A results above the B results."""
    pixels_a, pixels_b = lio.to_uint8(pairs.images_a), lio.to_uint8(pairs.images_b)
    per_row = max(1, min(per_row, len(pairs.seeds)))
    blank = np.full_like(pixels_a[:1], 255)
    tiles = []
    for start in range(0, len(pairs.seeds), per_row):
        for pixels in (pixels_a, pixels_b):
            row = list(pixels[start:start + per_row])
            tiles.extend(row + [blank[0]] * (per_row - len(row)))
    return lio.make_grid(np.stack(tiles), columns=per_row)


def direction_from_pulse(generator: Generator, reference_a: str | os.PathLike, reference_b: str | os.PathLike,
                         seeds: Sequence[int], out_path: str | os.PathLike, settings=None, *,
                         checkpoint_info: Mapping | None = None, batch_size: int = 8, only_successful: bool = False,
                         fit=None, progress: bool = True) -> dict:
    """What ``latentedit direction from-pulse`` runs: paired PULSE runs -> direction file, pairs, grid.

    Writes ``out_path`` (W+ ``[num_ws, w_dim]``: mean of ``A - B``), its sidecar, ``<stem>_pairs.png``
    (A results above B results, per seed) and ``<stem>_pairs.npz`` (``seeds``, ``w_a``, ``w_b``
    ``[S, num_ws, w_dim]``, ``success_a``, ``success_b``, ``l2_a``, ``l2_b``). Returns the sidecar, with
    ``pairs`` (per-seed success and L2) added.
    """
    from latentedit.pulse.search import PulseSettings, load_reference

    settings = settings or PulseSettings()
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".npy":
        raise InputError(f"direction files are .npy arrays; name the output {out_path.with_suffix('.npy')}")
    tensor_a, info_a = load_reference(reference_a, generator.size)
    tensor_b, info_b = load_reference(reference_b, generator.size)
    if tensor_a.shape != tensor_b.shape:
        raise InputError(f"references {reference_a} ({info_a['size']} px) and {reference_b} ({info_b['size']} px) "
                         f"differ in size; paired references must show the same pixels")
    pairs = run_pulse_pairs(generator, tensor_a, tensor_b, seeds, settings, batch_size=batch_size, fit=fit,
                            progress=progress)
    vector, used = pulse_pair_direction(pairs, only_successful)
    stem = out_path.with_suffix("")
    lio.save_png(f"{stem}_pairs.png", pairs_grid(pairs))
    buffer_path = Path(f"{stem}_pairs.npz")
    buffer = io.BytesIO()
    np.savez(buffer, seeds=np.asarray(pairs.seeds, np.int64), w_a=pairs.w_a.numpy().astype(np.float32),
             w_b=pairs.w_b.numpy().astype(np.float32), success_a=np.asarray(pairs.success_a),
             success_b=np.asarray(pairs.success_b), l2_a=np.asarray(pairs.l2_a), l2_b=np.asarray(pairs.l2_b))
    lio.write_bytes(buffer_path, buffer.getvalue())
    checkpoint_info = dict(checkpoint_info or {})
    per_seed = [{"seed": s, "success_a": a, "success_b": b, "l2_a": la, "l2_b": lb, "used": s in used}
                for s, a, b, la, lb in zip(pairs.seeds, pairs.success_a, pairs.success_b, pairs.l2_a, pairs.l2_b)]
    meta = save_direction(
        out_path, vector, method="pulse-pairs", seeds=used, generator=generator,
        generator_sha256=checkpoint_info.get("sha256"),
        params={"pulse": settings.to_dict(), "batch_size": batch_size, "only_successful": only_successful,
                "requested_seeds": pairs.seeds,
                "both_reached_eps": sum(a and b for a, b in zip(pairs.success_a, pairs.success_b))},
        sources=[{"role": "A", **info_a}, {"role": "B", **info_b}],
        extra={"definition": "mean over seeds of w_plus(PULSE(A, seed)) - w_plus(PULSE(B, seed))",
               "outputs": {"pairs_grid": f"{stem.name}_pairs.png", "pairs": f"{stem.name}_pairs.npz"},
               "pairs": per_seed})
    return meta
