"""Direction files and their provenance sidecars, and the SVM hyperplane a sidecar may carry.

Files (:func:`save_direction`): the array as ``NAME.npy`` (float32) and a JSON sidecar ``NAME.json``
with provenance: ``format``, ``generator_sha256`` (the checkpoint it was made with, or null),
``method``, ``params``, ``seeds``, ``shape``, ``space``, ``norm``, ``sources``, ``created`` (UTC, ISO
8601) and ``versions``. :func:`load_direction` reads both; :func:`direction_problems` checks a
direction against a generator: a shape that fits neither W nor W+ of the generator is an
:class:`~latentedit.errors.InputError`, a sidecar whose generator sha256 differs from the generator's is
a one-line warning (the direction may still be meaningful, e.g. for a fine-tuned copy).

An SVM direction's sidecar also records its hyperplane (:class:`Boundary`, read by :func:`boundary_of`).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from latentedit import io as lio
from latentedit.directions.arrays import as_direction_array, check_direction_shape
from latentedit.errors import InputError
from latentedit.model.generator import Generator

#: ``format`` value of a direction sidecar.
DIRECTION_FORMAT = "latentedit-direction"


DIRECTION_FORMAT_VERSION = 1


BOUNDARY_DEFINITION = "signed distance d(w) = normal . w + offset; positive where the attribute is present"


@dataclasses.dataclass(frozen=True)
class Boundary:
    """An attribute's SVM hyperplane in W: unit ``normal`` ``[w_dim]`` and ``offset``, so that the signed
    distance of ``w`` is ``normal · w + offset`` (positive on the attribute's side)."""

    normal: np.ndarray
    offset: float

    def distance(self, w_plus: torch.Tensor, rows: Sequence[int] | None = None) -> torch.Tensor:
        """Signed distance ``[N]`` of W+ latents ``[N, num_ws, w_dim]``: the mean over ``rows`` (None: all)."""
        normal = torch.as_tensor(self.normal, dtype=w_plus.dtype, device=w_plus.device)
        chosen = w_plus if rows is None else w_plus[:, list(rows)]
        return (chosen @ normal).mean(1) + self.offset


def boundary_of(direction: "Direction") -> Boundary:
    """The SVM boundary recorded in a direction's sidecar (``report.boundary``, written by ``direction svm``).

    InputError when there is none: only SVM directions have one, and only those made since it was recorded.
    """
    try:
        record = direction.meta["report"]["boundary"]
        normal = np.asarray(record["normal"], np.float64)
        offset = float(record["offset"])
    except (TypeError, KeyError, ValueError):
        raise InputError(f"direction {direction.path or direction.name} has no SVM boundary in its sidecar: target "
                         "distances need a direction made by `latentedit direction svm` (remake it with this "
                         "version if it predates them)") from None
    if normal.ndim != 1 or not np.isfinite(normal).all() or not np.isfinite(offset) or not np.any(normal):
        raise InputError(f"direction {direction.path or direction.name}: its sidecar's SVM boundary is malformed")
    return Boundary(normal=normal / np.linalg.norm(normal), offset=offset)


@dataclasses.dataclass
class Direction:
    """A loaded direction: ``vector`` (float32 W ``[w_dim]`` or W+ ``[num_ws, w_dim]``), ``meta`` (the sidecar,
    ``{}`` when there is none), ``path`` and ``sidecar_problem`` (why a sidecar beside it could not be used,
    or None)."""

    vector: np.ndarray
    meta: dict
    path: str | None = None
    sidecar_problem: str | None = None

    @property
    def space(self) -> str:
        return "w+" if self.vector.ndim == 2 else "w"

    @property
    def name(self) -> str:
        return Path(self.path).stem if self.path else "direction"


def sidecar_path(path: str | os.PathLike) -> Path:
    """The provenance sidecar of a direction file: ``NAME.npy`` -> ``NAME.json``."""
    path = Path(path)
    return path.with_suffix(".json") if path.suffix.lower() == ".npy" else path.with_name(path.name + ".json")


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def save_direction(path: str | os.PathLike, vector, *, method: str, params: Mapping | None = None,
                   seeds: Sequence[int] | None = None, generator_sha256: str | None = None,
                   generator: Generator | None = None, sources: Sequence[Mapping] | None = None,
                   extra: Mapping | None = None) -> dict:
    """Write ``vector`` to ``path`` (``.npy``, float32) and its sidecar ``NAME.json``, atomically; return the sidecar.

    ``generator_sha256``: sha256 of the checkpoint file the direction belongs to (None when unknown);
    ``generator``: recorded as ``{size, num_ws, w_dim}``; ``sources``: input files and what is known
    about them; ``extra``: further keys merged into the sidecar.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise InputError(f"direction files are .npy arrays; name the output {path.with_suffix('.npy')}")
    array = as_direction_array(vector)
    meta = {
        "format": DIRECTION_FORMAT,
        "format_version": DIRECTION_FORMAT_VERSION,
        "file": path.name,
        "method": method,
        "shape": list(array.shape),
        "space": "w+" if array.ndim == 2 else "w",
        "norm": round(float(np.linalg.norm(array.astype(np.float64))), 6),
        "generator_sha256": generator_sha256,
        "generator": ({"size": generator.size, "num_ws": generator.num_ws, "w_dim": generator.w_dim}
                      if generator is not None else None),
        "params": dict(params or {}),
        "seeds": None if seeds is None else [int(s) for s in seeds],
        "sources": [dict(s) for s in sources or []],
        "created": _utc_now(),
        "versions": lio.versions(),
    }
    meta.update(dict(extra or {}))
    lio.save_npy(path, array)
    lio.write_json(sidecar_path(path), meta)
    return meta


def load_direction(path: str | os.PathLike) -> Direction:
    """Read a direction ``.npy`` (never a pickle) and its sidecar when present.

    InputError for a missing or unreadable file or an array that is not W / W+ shaped. A sidecar that
    is not valid JSON is not an error: ``sidecar_problem`` says what is wrong and ``meta`` is ``{}``.
    """
    from latentedit.latents import read_npy_array

    path = Path(path)
    vector = as_direction_array(read_npy_array(path, "direction"), name=f"direction {path}")
    if not vector.any():
        raise InputError(f"direction {path} is all zeros: adding it changes nothing (was it saved from a failed run?)")
    meta, problem = {}, None
    side = sidecar_path(path)
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            meta, problem = {}, f"its sidecar {side} is unreadable ({error}); provenance unknown"
    return Direction(vector=vector, meta=meta, path=str(path), sidecar_problem=problem)


def recorded_generator_sha256(meta: Mapping) -> str | None:
    """The generator sha256 a direction sidecar or a latent's JSON record names: ``generator_sha256``, or
    ``checkpoint.sha256`` (what ``invert``, ``pulse`` and ``generate`` write); None when neither is there."""
    sha = meta.get("generator_sha256")
    if not sha and isinstance(meta.get("checkpoint"), Mapping):
        sha = meta["checkpoint"].get("sha256")
    return str(sha) if sha else None


def latent_record(path: str | os.PathLike) -> dict:
    """The JSON record beside a latent or direction ``NAME.npy`` (``NAME.json``), or ``{}``."""
    side = sidecar_path(path)
    try:
        data = json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def direction_problems(direction: Direction, num_ws: int, w_dim: int,
                       generator_sha256: str | None = None) -> list[str]:
    """Check ``direction`` against a generator: InputError when its shape fits neither W ``[w_dim]`` nor W+
    ``[num_ws, w_dim]``; otherwise the warnings worth one line each (a sidecar that names another
    generator, an unreadable sidecar)."""
    label = f"direction {direction.path}" if direction.path else "direction"
    check_direction_shape(direction.vector, num_ws, w_dim, name=label)
    problems = []
    if direction.sidecar_problem:
        problems.append(f"{label}: {direction.sidecar_problem}")
    recorded = recorded_generator_sha256(direction.meta)
    if recorded and generator_sha256 and recorded != generator_sha256:
        problems.append(f"{label} was made with generator {recorded[:12]}, not this one ({generator_sha256[:12]}); "
                        f"it may not mean the same edit here")
    return problems


def describe_direction(path: str | os.PathLike) -> dict:
    """Shape, norms (overall and per W+ row) and the sidecar of a direction file, as JSON-ready data."""
    direction = load_direction(path)
    vector = direction.vector.astype(np.float64)
    description = {"path": str(path), "shape": list(vector.shape), "space": direction.space,
                   "norm": float(np.linalg.norm(vector)),
                   "row_norms": ([round(float(x), 6) for x in np.linalg.norm(vector, axis=1)]
                                 if vector.ndim == 2 else None),
                   "sidecar": direction.meta or None, "sidecar_problem": direction.sidecar_problem}
    return description
