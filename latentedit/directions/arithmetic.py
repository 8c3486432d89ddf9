"""Latent arithmetic: ``A - B`` of two latents and the mean of several directions, on arrays and on files.

A W operand is broadcast over the rows of a W+ operand. The file forms write a direction with its sidecar
and record the sources (paths, sha256 and the generator they were made with).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from latentedit import io as lio
from latentedit.directions.arrays import as_direction_array
from latentedit.directions.files import latent_record, recorded_generator_sha256, save_direction
from latentedit.errors import InputError


def _broadcast_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Bring a W ``[D]`` operand to the rows of a W+ ``[n, D]`` one; InputError when the shapes cannot meet."""
    if a.shape[-1] != b.shape[-1]:
        raise InputError(f"{names[0]} {list(a.shape)} and {names[1]} {list(b.shape)} have different w_dim "
                         f"({a.shape[-1]} vs {b.shape[-1]}): they come from different generators")
    if a.ndim == 2 and b.ndim == 2 and a.shape[0] != b.shape[0]:
        raise InputError(f"{names[0]} {list(a.shape)} and {names[1]} {list(b.shape)} have different numbers of "
                         f"W+ rows")
    if a.ndim == 2 and b.ndim == 1:
        b = np.broadcast_to(b, a.shape)
    elif a.ndim == 1 and b.ndim == 2:
        a = np.broadcast_to(a, b.shape)
    return a, b


def difference(a, b, names: tuple[str, str] = ("A", "B")) -> np.ndarray:
    """``a - b`` for W ``[D]`` / W+ ``[n, D]`` operands (W is broadcast over W+ rows); float32."""
    a = as_direction_array(a, names[0])
    b = as_direction_array(b, names[1])
    a, b = _broadcast_pair(a, b, names)
    return (a.astype(np.float64) - b.astype(np.float64)).astype(np.float32)


def mean_of(vectors: Sequence, names: Sequence[str] | None = None) -> np.ndarray:
    """The element-wise mean of directions (W operands broadcast over the rows of W+ ones); float32.

    The result is W+ ``[n, D]`` when any operand is W+, else W ``[D]``.
    """
    if not vectors:
        raise InputError("no direction to average")
    names = list(names) if names is not None else [f"direction {i}" for i in range(len(vectors))]
    arrays = [as_direction_array(v, n) for v, n in zip(vectors, names)]
    widest = max(range(len(arrays)), key=lambda i: arrays[i].ndim)
    total = np.zeros(arrays[widest].shape, np.float64)
    for array, name in zip(arrays, names):
        _, array = _broadcast_pair(arrays[widest], array, (names[widest], name))
        total += array
    return (total / len(arrays)).astype(np.float32)


def direction_magnitude(direction, rows: Sequence[int] | None = None) -> float:
    """How far a unit strength moves each edited row: ``|v|`` for W ``[D]``; for W+ ``[n, D]`` the root mean
    square of the row norms over ``rows`` (default: the rows that are not all zero)."""
    vector = as_direction_array(direction)
    if vector.ndim == 1:
        return float(np.linalg.norm(vector.astype(np.float64)))
    norms = np.linalg.norm(vector.astype(np.float64), axis=1)
    if rows is None:
        rows = [i for i, norm in enumerate(norms) if norm > 0] or list(range(len(norms)))
    return float(np.sqrt(np.mean(np.square(norms[list(rows)]))))


def _file_source(path: Path) -> tuple[np.ndarray, dict]:
    """A latent or direction file's array and what is known about it (path, sha256, shape, generator)."""
    from latentedit.latents import load_latent_file

    array = load_latent_file(path)
    record = latent_record(path)
    return array, {"path": str(path), "sha256": lio.sha256_file(path), "shape": list(array.shape),
                   "generator_sha256": recorded_generator_sha256(record), "method": record.get("method")}


def _common_generator(sources: Sequence[Mapping], log: Callable[[str], None]) -> str | None:
    shas = {s["generator_sha256"] for s in sources if s["generator_sha256"]}
    if len(shas) > 1:
        log(f"the inputs name {len(shas)} different generators ({', '.join(sorted(s[:12] for s in shas))}); the "
            f"result records none")
        return None
    return shas.pop() if shas else None


def difference_files(path_a: str | os.PathLike, path_b: str | os.PathLike, out_path: str | os.PathLike, *,
                     log: Callable[[str], None] | None = None) -> dict:
    """What ``latentedit direction diff`` runs: ``A - B`` (:func:`difference`) written with its sidecar.

    The sidecar names the inputs (path, sha256, shape) and the generator their JSON records name, when
    they agree. Returns the sidecar.
    """
    log = log or (lambda message: warnings.warn(message, stacklevel=2))
    a, info_a = _file_source(Path(path_a))
    b, info_b = _file_source(Path(path_b))
    vector = difference(a, b, names=(f"A ({path_a})", f"B ({path_b})"))
    return save_direction(out_path, vector, method="diff", generator_sha256=_common_generator([info_a, info_b], log),
                          params={"definition": "A - B"}, sources=[{"role": "A", **info_a}, {"role": "B", **info_b}])


def mean_files(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike, *,
               log: Callable[[str], None] | None = None) -> dict:
    """What ``latentedit direction mean`` runs: the mean of the files (:func:`mean_of`) with its sidecar."""
    log = log or (lambda message: warnings.warn(message, stacklevel=2))
    if not paths:
        raise InputError("give at least one direction to average")
    loaded = [_file_source(Path(p)) for p in paths]
    vector = mean_of([array for array, _ in loaded], names=[str(p) for p in paths])
    infos = [info for _, info in loaded]
    seeds = [s for p in paths for s in (latent_record(p).get("seeds") or [])] or None
    return save_direction(out_path, vector, method="mean", generator_sha256=_common_generator(infos, log),
                          params={"definition": "element-wise mean (W operands broadcast over W+ rows)",
                                  "count": len(paths)}, seeds=seeds, sources=infos)
