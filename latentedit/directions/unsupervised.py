"""Unsupervised directions: SeFa (closed form) and GANSpace (PCA of mapped w).

* SeFa: the top right-singular vectors of the stacked, row-normalised modulation weights of the chosen
  layers. The rows of a W+ latent feed the layers as documented in :mod:`latentedit.model.generator`
  (row 0: conv1; row 1: to_rgb1 and the first up-conv; row ``2j+1``: up-conv of block j; ``2j+2``:
  its conv; ``2j+3``: its ToRGB and the next block's up-conv). The chosen rows' styled convolutions
  contribute their ``conv.modulation.weight`` (``[in_ch, w_dim]``); ToRGB layers only with
  ``include_torgb`` (the official SeFa leaves them out). Each weight row is normalised to unit length.
  StyleGAN3 (:mod:`latentedit.model.sg3`): W+ row ``i + 1`` feeds synthesis layer ``i``, whose affine
  ``layers.{i}.affine.weight`` (``[in_ch, w_dim]``) is used; the last layer is the ToRGB. Row 0 feeds
  only the Fourier input's affine, which sets a rotation and translation rather than channel styles,
  so it never contributes (choosing only row 0 is an error, as for ToRGB-only rows).
  Singular vectors have no sign; each direction is flipped so that its largest-magnitude component is
  positive. Directions are unit vectors; with a subset of rows they are saved as W+ arrays that are
  zero outside the chosen rows, so applying the file touches only those rows.
* GANSpace: PCA of ``n`` mapped w (seeded); component ``k`` is saved multiplied by its standard
  deviation, so a strength counts standard deviations of w along it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from latentedit import io as lio
from latentedit.directions.apply import apply_direction, render_latents, sweep_grid, w_plus_from_seeds
from latentedit.directions.arrays import format_layers, parse_layers
from latentedit.directions.files import save_direction
from latentedit.errors import InputError
from latentedit.model.generator import Generator


def modulation_weights(generator: Generator, rows: Sequence[int], include_torgb: bool = False
                       ) -> list[tuple[str, int, torch.Tensor]]:
    """The modulation (affine) weights fed by the W+ ``rows``: ``(module name, row, weight [in_ch, w_dim])``.

    Styled convolutions always; ToRGB layers only with ``include_torgb``. Stored (unscaled) weights: the
    equalised-learning-rate scale is one number per layer, which the row normalisation of SeFa removes.
    """
    chosen = set(int(r) for r in rows)
    if getattr(generator, "architecture", None) == "stylegan3":
        return [(f"layers.{i}", i + 1, layer.affine.weight.detach().float().cpu())
                for i, layer in enumerate(generator.layers)
                if i + 1 in chosen and (include_torgb or not layer.is_torgb)]
    layers: list[tuple[str, int, torch.nn.Module, bool]] = [("conv1", 0, generator.conv1, False),
                                                            ("to_rgb1", 1, generator.to_rgb1, True)]
    for j, to_rgb in enumerate(generator.to_rgbs):
        layers += [(f"convs.{2 * j}", 2 * j + 1, generator.convs[2 * j], False),
                   (f"convs.{2 * j + 1}", 2 * j + 2, generator.convs[2 * j + 1], False),
                   (f"to_rgbs.{j}", 2 * j + 3, to_rgb, True)]
    return [(name, row, module.conv.modulation.weight.detach().float().cpu())
            for name, row, module, is_rgb in layers if row in chosen and (include_torgb or not is_rgb)]


def sefa_directions(generator: Generator, layers: Sequence[int] | None = None, k: int = 10,
                    include_torgb: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """SeFa: ``(directions [k, w_dim], singular values [k], layer names)``.

    ``A [sum in_ch, w_dim]`` stacks the modulation weights of the chosen W+ rows (:func:`modulation_weights`),
    each weight row scaled to unit length; the directions are the top-``k`` right-singular vectors of
    ``A`` (eigenvectors of ``A^T A``), unit length, each signed so that its largest-magnitude component is
    positive. ``k`` is capped at ``w_dim``.
    """
    rows = parse_layers(layers, generator.num_ws) if layers is not None else list(range(generator.num_ws))
    weights = modulation_weights(generator, rows, include_torgb)
    if not weights:
        if getattr(generator, "architecture", None) == "stylegan3":
            raise InputError(f"W+ rows {format_layers(rows)} feed no styled convolution (row 0 drives only the "
                             f"Fourier input's rotation and translation, row {generator.num_ws - 1} the ToRGB "
                             f"layer); choose other layers, or add --include-torgb for the ToRGB row")
        raise InputError(f"W+ rows {format_layers(rows)} feed no styled convolution (only ToRGB layers); add "
                         f"--include-torgb or choose other layers")
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be an integer >= 1, got {k!r}")
    stacked = torch.cat([w for _, _, w in weights]).double().numpy()
    stacked /= np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12)
    _, singular, right = np.linalg.svd(stacked, full_matrices=False)
    k = min(k, right.shape[0])
    directions = right[:k].copy()
    peaks = directions[np.arange(k), np.abs(directions).argmax(axis=1)]
    directions *= np.where(peaks < 0, -1.0, 1.0)[:, None]
    return directions.astype(np.float32), singular[:k].astype(np.float32), [name for name, _, _ in weights]


@torch.no_grad()
def ganspace_directions(generator: Generator, n: int = 10000, k: int = 10, seed: int = 0
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GANSpace: ``(components [k, w_dim] unit, standard deviations [k], explained variance ratios [k])`` of
    ``n`` mapped w (z from ``torch.Generator().manual_seed(seed)``), by SVD of the centred samples."""
    if not isinstance(n, int) or n < 2:
        raise InputError(f"GANSpace needs at least 2 samples, got {n!r}")
    device = next(generator.parameters()).device
    z = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    w = torch.cat([generator.mapping(z[i:i + 4096].to(device)).double().cpu() for i in range(0, n, 4096)]).numpy()
    w -= w.mean(0)
    _, singular, right = np.linalg.svd(w, full_matrices=False)
    variance = singular ** 2 / (n - 1)
    k = min(k, right.shape[0])
    components = right[:k].copy()
    peaks = components[np.arange(k), np.abs(components).argmax(axis=1)]
    components *= np.where(peaks < 0, -1.0, 1.0)[:, None]
    return components.astype(np.float32), np.sqrt(variance[:k]).astype(np.float32), \
        (variance[:k] / variance.sum()).astype(np.float32)


def _as_layer_direction(vector: np.ndarray, rows: Sequence[int], num_ws: int) -> np.ndarray:
    """W ``[D]`` when ``rows`` are all rows, else W+ ``[num_ws, D]`` that is zero outside ``rows``."""
    if len(rows) == num_ws:
        return vector.astype(np.float32)
    masked = np.zeros((num_ws, vector.shape[0]), np.float32)
    masked[list(rows)] = vector
    return masked


def write_direction_set(generator: Generator, vectors: Sequence[np.ndarray], out_dir: str | os.PathLike, *,
                        method: str, prefix: str, params: Mapping, checkpoint_info: Mapping | None = None,
                        grid_seeds: Sequence[int] = (0, 1, 2, 3), grid_strengths: Sequence[float] = (-3, 0, 3),
                        truncation: float = 1.0, per_direction: Sequence[Mapping] | None = None,
                        progress: bool = False) -> dict:
    """Write directions ``<prefix>_<kk>.npy`` (+ sidecars) into ``out_dir`` with a grid each and an overview.

    ``<prefix>_<kk>.png``: rows = ``grid_seeds``, columns = ``grid_strengths``; ``overview.png``: one row
    per direction (first seed); ``manifest.json`` lists everything. Returns the manifest.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    checkpoint_info = dict(checkpoint_info or {})
    base = w_plus_from_seeds(generator, grid_seeds, truncation)
    strengths = [float(s) for s in grid_strengths]
    overview = []
    entries = []
    for index, vector in enumerate(tqdm(vectors, desc=f"{method} grids", unit="direction", disable=not progress)):
        name = f"{prefix}_{index:02d}"
        extra_info = dict(per_direction[index]) if per_direction is not None else {}
        save_direction(out_dir / f"{name}.npy", vector, method=method, generator=generator,
                       generator_sha256=checkpoint_info.get("sha256"), params={**params, "index": index, **extra_info})
        edited = apply_direction(base, vector, strengths)
        images = render_latents(generator, edited.reshape(-1, generator.num_ws, generator.w_dim))
        lio.save_png(out_dir / f"{name}.png", sweep_grid(images, len(strengths)))
        overview.append(images[:len(strengths)])
        entries.append({"name": name, "file": f"{name}.npy", "grid": f"{name}.png", **extra_info})
    lio.save_png(out_dir / "overview.png", sweep_grid(torch.cat(overview), len(strengths)))
    manifest = {"command": f"direction {method}", "method": method, "params": dict(params),
                "checkpoint": checkpoint_info, "grid": {"seeds": list(grid_seeds), "strengths": strengths,
                                                        "truncation_psi": truncation,
                                                        "rows": "seeds", "columns": "strengths"},
                "directions": entries, "overview": "overview.png", "versions": lio.versions()}
    lio.write_json(out_dir / "manifest.json", manifest)
    return manifest


def sefa_to_folder(generator: Generator, out_dir: str | os.PathLike, *, layers: str | Sequence[int] | None = None,
                   k: int = 10, include_torgb: bool = False, checkpoint_info: Mapping | None = None,
                   grid_seeds: Sequence[int] = (0, 1, 2, 3), grid_strengths: Sequence[float] = (-3, 0, 3),
                   truncation: float = 1.0, progress: bool = False) -> dict:
    """What ``latentedit direction sefa`` runs: :func:`sefa_directions` written by :func:`write_direction_set`.

    With all rows chosen each file is W ``[w_dim]``; otherwise W+ ``[num_ws, w_dim]``, zero outside the rows.
    """
    rows = parse_layers(layers, generator.num_ws)
    directions, singular, names = sefa_directions(generator, rows, k, include_torgb)
    vectors = [_as_layer_direction(d, rows, generator.num_ws) for d in directions]
    return write_direction_set(
        generator, vectors, out_dir, method="sefa", prefix="sefa",
        params={"layers": format_layers(rows), "k": len(vectors), "include_torgb": include_torgb,
                "weights": names},
        checkpoint_info=checkpoint_info, grid_seeds=grid_seeds, grid_strengths=grid_strengths, truncation=truncation,
        per_direction=[{"singular_value": round(float(s), 6)} for s in singular], progress=progress)


def ganspace_to_folder(generator: Generator, out_dir: str | os.PathLike, *, layers: str | Sequence[int] | None = None,
                       k: int = 10, n: int = 10000, seed: int = 0, checkpoint_info: Mapping | None = None,
                       grid_seeds: Sequence[int] = (0, 1, 2, 3), grid_strengths: Sequence[float] = (-3, 0, 3),
                       truncation: float = 1.0, progress: bool = False) -> dict:
    """What ``latentedit direction ganspace`` runs: principal components, each scaled by its standard deviation
    (strength = standard deviations), restricted to ``layers`` like :func:`sefa_to_folder`."""
    rows = parse_layers(layers, generator.num_ws)
    components, stds, ratios = ganspace_directions(generator, n, k, seed)
    vectors = [_as_layer_direction(c * s, rows, generator.num_ws) for c, s in zip(components, stds)]
    return write_direction_set(
        generator, vectors, out_dir, method="ganspace", prefix="pc",
        params={"layers": format_layers(rows), "k": len(vectors), "n": n, "seed": seed,
                "scale": "component x its standard deviation: strength 1 = one standard deviation of w"},
        checkpoint_info=checkpoint_info, grid_seeds=grid_seeds, grid_strengths=grid_strengths, truncation=truncation,
        per_direction=[{"std": round(float(s), 6), "explained_variance_ratio": round(float(r), 6)}
                       for s, r in zip(stds, ratios)], progress=progress)
