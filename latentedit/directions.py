"""Editing directions in W and W+ (SPEC §4.2, §5): how they are made, stored and applied.

A *direction* is a float32 array, either W ``[w_dim]`` or W+ ``[num_ws, w_dim]``. Applying it
(:func:`apply_direction`) adds ``strength * direction`` to the chosen W+ rows of a latent; a W direction
is broadcast over the rows (every chosen row gets the same vector). An SVM direction also carries its
hyperplane (:class:`Boundary`, in the sidecar), and :func:`apply_to_distance` moves each latent to a target
signed distance from it, InterFaceGAN's way of editing, so each latent gets its own strength.

Ways to make one:

* :func:`difference` / :func:`mean_of`: ``A - B`` of two latents, and the mean of several directions
  (a W operand is broadcast over the rows of a W+ operand).
* :func:`run_pulse_pairs` + :func:`pulse_pair_direction` (SPEC §4.2, the seed post's workflow): PULSE
  twice per seed with two references that differ only in what should change (e.g. the hair region
  blond vs black), starting from the same latent and noise (the same seed); the direction is the mean
  over seeds of ``w_plus(A) - w_plus(B)``, a W+ direction. One seed reproduces the seed post's single
  pair with its side effects; averaging over many cancels what the pairs do not share.
* :func:`sample_and_label` + :func:`interfacegan_direction` (InterFaceGAN): sample the generator
  (z from a seeded ``torch.Generator``, psi = 1, the stored ``const`` noise), label every image with the
  attribute classifier, fit a linear SVM on the raw w (:func:`fit_attribute_normal`); the unit normal
  of its hyperplane, pointing to the side where the attribute is present, is a W direction.
  Conditioning (:func:`condition_direction`) removes the components along the normals of any number
  of other attributes (orthogonal projection onto the complement of their span; an orthonormal basis
  of the span is built by Gram-Schmidt, i.e. a QR factorisation) and renormalises.
* :func:`sefa_directions` (SeFa, closed form): the top right-singular vectors of the stacked, row-
  normalised modulation weights of the chosen layers.
* :func:`ganspace_directions` (GANSpace): principal components of mapped w.

Files (:func:`save_direction`): the array as ``NAME.npy`` (float32) and a JSON sidecar ``NAME.json``
with provenance: ``format``, ``generator_sha256`` (the checkpoint it was made with, or null),
``method``, ``params``, ``seeds``, ``shape``, ``space``, ``norm``, ``sources``, ``created`` (UTC, ISO
8601) and ``versions``. :func:`load_direction` reads both; :func:`direction_problems` checks a
direction against a generator: a shape that fits neither W nor W+ of the generator is an
:class:`~latentedit.errors.InputError`, a sidecar whose generator sha256 differs from the generator's is
a one-line warning (the direction may still be meaningful, e.g. for a fine-tuned copy).

Decisions where the papers leave a choice:

* SVM: scikit-learn ``LinearSVC`` (squared hinge, L2 penalty, ``C = 1``) on the raw w, centred (which
  moves only the intercept) so that the solver converges quickly, with ``class_weight="balanced"``
  because many attributes are rare (InterFaceGAN balances by taking equally many extreme samples);
  labels are the classifier's probabilities thresholded at 0.5. A held-out 20 % of the samples gives
  the reported validation accuracy. Directions live in W only: generated samples have identical rows.
* SeFa: the rows of a W+ latent feed the layers as documented in :mod:`latentedit.model.generator`
  (row 0: conv1; row 1: to_rgb1 and the first up-conv; row ``2j+1``: up-conv of block j; ``2j+2``:
  its conv; ``2j+3``: its ToRGB and the next block's up-conv). The chosen rows' styled convolutions
  contribute their ``conv.modulation.weight`` (``[in_ch, w_dim]``); ToRGB layers only with
  ``include_torgb`` (the official SeFa leaves them out). Each weight row is normalised to unit length.
  Singular vectors have no sign; each direction is flipped so that its largest-magnitude component is
  positive. Directions are unit vectors; with a subset of rows they are saved as W+ arrays that are
  zero outside the chosen rows, so applying the file touches only those rows.
* GANSpace: PCA of ``n`` mapped w (seeded); component ``k`` is saved multiplied by its standard
  deviation, so a strength counts standard deviations of w along it.
"""
from __future__ import annotations

import dataclasses
import datetime
import io
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from latentedit import io as lio
from latentedit.errors import InputError
from latentedit.model.generator import Generator

#: ``format`` value of a direction sidecar.
DIRECTION_FORMAT = "latentedit-direction"
DIRECTION_FORMAT_VERSION = 1
#: Images rendered per forward pass when labelling samples or drawing grids.
DEFAULT_BATCH = 64
#: Format tag of a cache file of labelled samples (:func:`sample_and_label`).
SAMPLES_FORMAT = "latentedit-labelled-samples-v1"


# --------------------------------------------------------------------------------------------------
# Parsing user input


def parse_layers(text: str | Sequence[int] | None, num_ws: int) -> list[int]:
    """W+ row indices from ``"0-5"``, ``"0,2,4-7"``, ``"all"`` or None (all rows), sorted and unique.

    Ranges are inclusive. Every index must lie in ``[0, num_ws)``; anything else is an InputError that
    names the valid range.
    """
    if text is None:
        return list(range(num_ws))
    if not isinstance(text, str):
        rows = [int(i) for i in text]
    else:
        cleaned = text.strip().lower()
        if cleaned in ("all", "*", ""):
            return list(range(num_ws))
        rows = []
        for part in cleaned.split(","):
            match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if not match:
                raise InputError(f"bad layer list {text!r}: use W+ row numbers and ranges such as 0-5 or 0,2,4-7 "
                                 f"(rows 0..{num_ws - 1}), or 'all'")
            start = int(match.group(1))
            stop = int(match.group(2)) if match.group(2) is not None else start
            if stop < start:
                raise InputError(f"bad layer range {part.strip()!r}: the end is below the start")
            rows.extend(range(start, stop + 1))
    bad = [row for row in rows if not 0 <= row < num_ws]
    if bad:
        raise InputError(f"layer {bad[0]} does not exist: this generator's W+ has {num_ws} rows (0..{num_ws - 1})")
    if not rows:
        raise InputError("the layer list selects no W+ row")
    return sorted(set(rows))


def format_layers(rows: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (the inverse of :func:`parse_layers`)."""
    parts, rows = [], sorted(set(int(r) for r in rows))
    start = previous = None
    for row in rows + [None]:
        if start is not None and (row is None or row != previous + 1):
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = None
        if row is not None and start is None:
            start = row
        previous = row
    return ",".join(parts)


def parse_strengths(text: str | float | Sequence[float]) -> list[float]:
    """Strengths from ``"1"``, ``"-3:3:7"`` (``numpy.linspace(-3, 3, 7)``: start, stop, count) or ``"0,0.5,2"``.

    Values must be finite; a sweep's count is an integer from 1 to 1000. InputError otherwise.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        values = [float(text)]
    elif not isinstance(text, str):
        values = [float(v) for v in text]
    else:
        cleaned = text.strip()
        try:
            if ":" in cleaned:
                parts = cleaned.split(":")
                if len(parts) != 3:
                    raise ValueError
                start, stop, count_text = float(parts[0]), float(parts[1]), parts[2].strip()
                if not re.fullmatch(r"\d+", count_text):
                    raise ValueError
                count = int(count_text)
                if not 1 <= count <= 1000:
                    raise InputError(f"strength sweep {text!r}: the count must be between 1 and 1000")
                values = np.linspace(start, stop, count).tolist()
            else:
                values = [float(part) for part in cleaned.split(",") if part.strip()]
        except ValueError:
            raise InputError(f"bad strength {text!r}: use a number (1.5), a sweep START:STOP:COUNT (-3:3:7) or a "
                             f"list (0,1,2)") from None
    if not values:
        raise InputError(f"no strength in {text!r}")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"strengths must be finite numbers, got {text!r}")
    # linspace leaves values such as 1.0000000000000004; keep file names and tables clean.
    return [round(v, 10) + 0.0 for v in values]


def format_strength(strength: float) -> str:
    """The strength as it appears in file names and tables: ``1``, ``-1.5``, ``0.25`` (``%g``)."""
    return f"{float(strength):g}"


# --------------------------------------------------------------------------------------------------
# Arrays


def as_direction_array(array, name: str = "direction") -> np.ndarray:
    """A direction or latent as float32 ``[D]`` or ``[n, D]`` (a leading axis of length 1 is dropped).

    InputError for other ranks, empty arrays, non-numeric or non-finite values.
    """
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{name} must hold numbers, got dtype {array.dtype}")
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (1, 2) or array.size == 0:
        raise InputError(f"{name} has shape {list(array.shape)}: a direction is W [w_dim] or W+ [num_ws, w_dim] "
                         f"(one latent per file)")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return array


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


def check_direction_shape(direction: np.ndarray, num_ws: int, w_dim: int, name: str = "direction") -> None:
    """InputError unless ``direction`` is W ``[w_dim]`` or W+ ``[num_ws, w_dim]`` of this generator."""
    shape = tuple(direction.shape)
    if shape in ((w_dim,), (num_ws, w_dim)):
        return
    raise InputError(f"{name} has shape {list(shape)}, which does not fit this generator: it needs W [{w_dim}] or "
                     f"W+ [{num_ws}, {w_dim}] (was the direction made with another generator?)")


def apply_direction(w_plus: torch.Tensor, direction, strength: float | Sequence[float],
                    layers: Sequence[int] | None = None) -> torch.Tensor:
    """Add ``strength * direction`` to the chosen W+ rows.

    ``w_plus``: ``[N, num_ws, w_dim]``; ``direction``: W ``[w_dim]`` (every chosen row gets the same
    vector) or W+ ``[num_ws, w_dim]`` (row ``r`` gets row ``r``); ``layers``: row indices to edit (None:
    all). One strength gives ``[N, num_ws, w_dim]``; a sequence of ``S`` strengths gives
    ``[N, S, num_ws, w_dim]``. Rows outside ``layers`` are returned unchanged (bit for bit).
    """
    if w_plus.ndim != 3:
        raise InputError(f"latents must be W+ [N, num_ws, w_dim], got {list(w_plus.shape)}")
    num_ws, w_dim = w_plus.shape[1:]
    vector = torch.as_tensor(as_direction_array(direction)).to(device=w_plus.device, dtype=w_plus.dtype)
    check_direction_shape(vector, num_ws, w_dim)
    rows = parse_layers(layers, num_ws) if layers is not None else list(range(num_ws))
    single = isinstance(strength, (int, float)) and not isinstance(strength, bool)
    strengths = torch.as_tensor([float(strength)] if single else [float(s) for s in strength],
                                dtype=w_plus.dtype, device=w_plus.device)
    edited = _add_to_rows(w_plus, vector, strengths.expand(w_plus.shape[0], -1), rows)
    return edited[:, 0] if single else edited


def _add_to_rows(w_plus: torch.Tensor, vector: torch.Tensor, strengths: torch.Tensor, rows: Sequence[int]
                 ) -> torch.Tensor:
    """``w_plus [N, num_ws, w_dim] + strengths [N, S] * vector`` on ``rows`` -> ``[N, S, num_ws, w_dim]``; the
    other rows are copied bit for bit."""
    num_ws, w_dim = w_plus.shape[1:]
    mask = torch.zeros(num_ws, 1, dtype=torch.bool, device=w_plus.device)
    mask[list(rows)] = True
    step = vector.expand(num_ws, w_dim)
    edited = w_plus[:, None] + strengths[:, :, None, None] * step
    return torch.where(mask, edited, w_plus[:, None].expand_as(edited))


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


def apply_to_distance(w_plus: torch.Tensor, direction, boundary: Boundary, distance: float | Sequence[float],
                      layers: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """InterFaceGAN-style edit: move each latent along ``direction`` until its signed distance to ``boundary``
    (the mean over the edited rows) is ``distance``.

    Each latent ``i`` gets its own strength ``(distance - d_i) / (normal · v)``, where ``d_i`` is its distance
    before the edit and ``v`` the direction (a W+ direction: the mean of its edited rows), so a face far
    from the boundary moves further than one close to it. Shapes and row handling as in
    :func:`apply_direction`; returns the edited latents and the strengths ``[N]`` (or ``[N, S]`` for a
    sequence of ``S`` distances). InputError when the direction does not cross the boundary (``normal · v``
    close to 0).
    """
    if w_plus.ndim != 3:
        raise InputError(f"latents must be W+ [N, num_ws, w_dim], got {list(w_plus.shape)}")
    num_ws, w_dim = w_plus.shape[1:]
    vector = torch.as_tensor(as_direction_array(direction)).to(device=w_plus.device, dtype=w_plus.dtype)
    check_direction_shape(vector, num_ws, w_dim)
    if boundary.normal.shape != (w_dim,):
        raise InputError(f"the SVM boundary has {boundary.normal.shape[0]} dimensions, the generator's W {w_dim}")
    rows = parse_layers(layers, num_ws) if layers is not None else list(range(num_ws))
    normal = torch.as_tensor(boundary.normal, dtype=w_plus.dtype, device=w_plus.device)
    rate = float((vector.expand(num_ws, w_dim)[rows] @ normal).mean())
    if abs(rate) < 1e-6:
        raise InputError("the direction is (almost) parallel to the SVM boundary: moving along it does not change "
                         "the distance, so no strength reaches a target distance")
    before = boundary.distance(w_plus, rows)
    single = isinstance(distance, (int, float)) and not isinstance(distance, bool)
    targets = torch.as_tensor([float(distance)] if single else [float(d) for d in distance],
                              dtype=w_plus.dtype, device=w_plus.device)
    strengths = (targets[None, :] - before[:, None]) / rate
    edited = _add_to_rows(w_plus, vector, strengths, rows)
    return (edited[:, 0], strengths[:, 0]) if single else (edited, strengths)


# --------------------------------------------------------------------------------------------------
# Files and provenance


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
    path = Path(path)
    if not path.is_file():
        raise InputError(f"direction file {path} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"cannot read direction {path}: not a valid .npy array ({error})") from error
    vector = as_direction_array(array, name=f"direction {path}")
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


# --------------------------------------------------------------------------------------------------
# Rendering helpers


@torch.no_grad()
def render_latents(generator: Generator, w_plus: torch.Tensor, batch_size: int = DEFAULT_BATCH,
           noise: str | Sequence[torch.Tensor] = "const") -> torch.Tensor:
    """W+ ``[N, num_ws, w_dim]`` (or W ``[N, w_dim]``) -> images ``[N, 3, S, S]`` on the CPU, float, not clamped.

    ``noise``: a generator noise mode or a list of maps ``[1, 1, r, r]`` shared by every image.
    """
    device = next(generator.parameters()).device
    images = [generator.synthesis(w_plus[start:start + batch_size].to(device), noise).float().cpu()
              for start in range(0, w_plus.shape[0], batch_size)]
    if not images:
        return torch.zeros(0, 3, generator.size, generator.size)
    return torch.cat(images)


@torch.no_grad()
def w_plus_from_seeds(generator: Generator, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
    """Seeds -> z (``numpy.random.RandomState(seed)``, as ``latentedit generate``) -> W+ ``[N, num_ws, w_dim]``."""
    from latentedit.generate import w_from_seeds

    return w_from_seeds(generator, list(seeds), truncation)


def sweep_grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """Images ``[N, 3, S, S]`` in [-1, 1] tiled ``columns`` per row -> ``[H, W, 3]`` uint8."""
    return lio.make_grid(lio.to_uint8(images), columns=columns)


# --------------------------------------------------------------------------------------------------
# Directions from PULSE pairs (SPEC §4.2)


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

    from latentedit.pulse import PulseSettings, run_pulse
    from latentedit.pulse_fit import gaussian_fit

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
    from latentedit.pulse import PulseSettings, load_reference

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


# --------------------------------------------------------------------------------------------------
# InterFaceGAN


@dataclasses.dataclass
class LabelledSamples:
    """Generated samples and their labels: ``w [n, w_dim]`` float32 (psi 1), ``probs [n, A]`` float32 classifier
    probabilities in ``attribute_names`` order; ``seed`` of the z draws; ``from_cache``."""

    w: np.ndarray
    probs: np.ndarray
    attribute_names: tuple[str, ...]
    seed: int
    from_cache: bool = False

    def labels(self, attribute: str) -> np.ndarray:
        """0/1 labels ``[n]`` (probability >= 0.5) of ``attribute``."""
        return (self.probs[:, self.column(attribute)] >= 0.5).astype(np.int64)

    def column(self, attribute: str) -> int:
        if attribute not in self.attribute_names:
            raise InputError(f"unknown attribute {attribute!r}; the classifier knows {', '.join(self.attribute_names)}")
        return self.attribute_names.index(attribute)


def _read_samples_cache(path: Path, key: Mapping, w_dim: int) -> LabelledSamples | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_key = json.loads(str(data["key"]))
            if str(data["format"]) != SAMPLES_FORMAT or stored_key != json.loads(json.dumps(dict(key))):
                return None
            w, probs = data["w"].astype(np.float32), data["probs"].astype(np.float32)
            names = tuple(str(n) for n in data["attribute_names"])
            seed = int(data["seed"])
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if w.ndim != 2 or w.shape[1] != w_dim or probs.shape != (w.shape[0], len(names)):
        return None
    return LabelledSamples(w, probs, names, seed, from_cache=True)


@torch.no_grad()
def sample_and_label(generator: Generator, classifier, n: int, seed: int = 0, *, batch_size: int = DEFAULT_BATCH,
                     progress: bool = False, cache_path: str | os.PathLike | None = None,
                     cache_key: Mapping | None = None) -> LabelledSamples:
    """Draw ``n`` z ``[n, w_dim]`` from ``torch.Generator().manual_seed(seed)`` (one ``randn`` call), map them to
    w (psi 1), render with the stored noise and label the images with ``classifier``, ``batch_size`` at a
    time.

    ``cache_path`` (a ``.npz``): reused when it holds samples made under the same ``cache_key`` (a JSON-
    ready dict: generator and classifier identity, ``n``, ``seed``), otherwise (re)written.
    """
    from tqdm.auto import tqdm

    from latentedit.classifier import predict_attributes

    if not isinstance(n, int) or n < 2:
        raise InputError(f"the number of samples must be an integer >= 2, got {n!r}")
    key = dict(cache_key or {})
    key.update(n=int(n), seed=int(seed))
    if cache_path is not None and Path(cache_path).is_file():
        cached = _read_samples_cache(Path(cache_path), key, generator.w_dim)
        if cached is not None:
            return cached
    device = next(generator.parameters()).device
    z = torch.randn(n, generator.w_dim, generator=torch.Generator().manual_seed(int(seed)))
    ws, probs = [], []
    for start in tqdm(range(0, n, batch_size), desc="label samples", unit="batch", disable=not progress,
                      leave=False):
        w = generator.mapping(z[start:start + batch_size].to(device))
        images = generator.synthesis(w, "const")
        probs.append(predict_attributes(classifier, images, batch_size=batch_size).numpy())
        ws.append(w.float().cpu().numpy())
    samples = LabelledSamples(np.concatenate(ws).astype(np.float32), np.concatenate(probs).astype(np.float32),
                              tuple(classifier.attribute_names), int(seed))
    if cache_path is not None:
        buffer = io.BytesIO()
        np.savez(buffer, format=np.str_(SAMPLES_FORMAT), key=np.str_(json.dumps(key, sort_keys=True)),
                 w=samples.w, probs=samples.probs, attribute_names=np.asarray(samples.attribute_names),
                 seed=np.int64(seed))
        lio.write_bytes(cache_path, buffer.getvalue())
    return samples


def fit_attribute_normal(w: np.ndarray, labels: np.ndarray, *, C: float = 1.0, seed: int = 0,
                         validation_fraction: float = 0.2, name: str = "attribute") -> tuple[np.ndarray, dict]:
    """Fit a linear SVM separating ``labels`` (0/1 ``[n]``) in w ``[n, w_dim]``; return its unit normal ``[w_dim]``
    (float64, pointing towards label 1) and ``{train_accuracy, validation_accuracy, positives, negatives,
    boundary_offset}``: the SVM's signed distance of ``w`` to its plane is ``normal · w + boundary_offset``.

    scikit-learn ``LinearSVC(C, class_weight="balanced")`` on centred w; a random ``validation_fraction``
    (seeded) is held out for the reported accuracy (skipped when it would hold fewer than 10 samples).
    InputError when either class has fewer than 2 samples.
    """
    from sklearn.svm import LinearSVC

    w = np.asarray(w, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    positives = int(labels.sum())
    negatives = int(len(labels) - positives)
    if min(positives, negatives) < 2:
        raise InputError(f"{name}: only {positives} of {len(labels)} samples are labelled present and {negatives} "
                         f"absent; a linear SVM needs both classes (raise --n)")
    order = np.random.default_rng(seed).permutation(len(labels))
    held = int(round(validation_fraction * len(labels)))
    held = held if held >= 10 and len(labels) - held >= 4 else 0
    train, validation = order[held:], order[:held]
    if len(set(labels[train].tolist())) < 2:
        train, validation = order, order[:0]
    centre = w[train].mean(0)
    with warnings.catch_warnings():
        # A separable problem can stop at max_iter with a perfectly usable normal; say nothing then.
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        svm = LinearSVC(C=C, class_weight="balanced", max_iter=20000, random_state=seed)
        svm.fit(w[train] - centre, labels[train])
    normal = svm.coef_[0].astype(np.float64)
    norm = np.linalg.norm(normal)
    if not np.isfinite(norm) or norm == 0:
        raise InputError(f"{name}: the SVM found no separating direction (all weights zero)")
    # decision(w) = coef . (w - centre) + intercept; divided by |coef| it is the signed distance to the plane.
    offset = float(svm.intercept_[0]) / norm - float(normal @ centre) / norm
    info = {"positives": positives, "negatives": negatives, "train_samples": int(len(train)),
            "boundary_offset": offset,
            "train_accuracy": round(float(svm.score(w[train] - centre, labels[train])), 4),
            "validation_samples": int(len(validation)),
            "validation_accuracy": (round(float(svm.score(w[validation] - centre, labels[validation])), 4)
                                    if len(validation) else None)}
    return normal / norm, info


def condition_direction(primary: np.ndarray, conditions: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Remove from ``primary [D]`` its components along ``conditions`` (``[k, D]``, any k >= 0), then renormalise.

    The conditions need not be orthogonal or unit: an orthonormal basis of their span is built by
    Gram-Schmidt (QR) and the projection onto it is subtracted, so the result is orthogonal to every
    condition. Conditions that are (numerically) dependent add nothing. InputError when ``primary``
    lies (almost) inside their span. Returns float64 ``[D]`` of unit length.
    """
    primary = np.asarray(primary, np.float64)
    conditions = np.asarray(conditions, np.float64).reshape(-1, primary.shape[0])
    result = primary / np.linalg.norm(primary)
    if len(conditions):
        basis, triangle = np.linalg.qr(conditions.T)
        scale = np.abs(np.diag(triangle))
        basis = basis[:, scale > 1e-8 * max(1.0, float(scale.max(initial=0.0)))]
        result = result - basis @ (basis.T @ result)
    norm = np.linalg.norm(result)
    if norm < 1e-6:
        raise InputError("the direction lies inside the span of the conditioning directions: conditioning would "
                         "leave nothing of it")
    return result / norm


def interfacegan_direction(samples: LabelledSamples, attribute: str, conditions: Sequence[str] = (), *,
                           C: float = 1.0, seed: int = 0) -> tuple[np.ndarray, dict]:
    """InterFaceGAN: the unit SVM normal ``[w_dim]`` (float32) of ``attribute`` in W, optionally conditioned.

    ``conditions``: other attributes whose SVM normals (fitted on the same samples) are projected out
    (:func:`condition_direction`). Returns the direction and a report: the primary fit, each condition's
    fit, the cosine between the primary normal and each condition normal before conditioning, and the
    primary SVM's ``boundary`` (its unit normal and offset, for :func:`apply_to_distance`).
    """
    conditions = list(dict.fromkeys(conditions))
    if attribute in conditions:
        raise InputError(f"{attribute} cannot be conditioned on itself")
    normal, info = fit_attribute_normal(samples.w, samples.labels(attribute), C=C, seed=seed, name=attribute)
    report = {"attribute": attribute, "fit": info, "conditions": {},
              "boundary": {"normal": [round(float(x), 8) for x in normal], "offset": info["boundary_offset"],
                           "definition": BOUNDARY_DEFINITION}}
    condition_normals = []
    for other in conditions:
        other_normal, other_info = fit_attribute_normal(samples.w, samples.labels(other), C=C, seed=seed, name=other)
        condition_normals.append(other_normal)
        report["conditions"][other] = {"fit": other_info,
                                       "cosine_before": round(float(normal @ other_normal), 4)}
    direction = condition_direction(normal, condition_normals) if condition_normals else normal
    report["cosine_with_unconditioned"] = round(float(direction @ normal), 4)
    return direction.astype(np.float32), report


# --------------------------------------------------------------------------------------------------
# SeFa and GANSpace


def modulation_weights(generator: Generator, rows: Sequence[int], include_torgb: bool = False
                       ) -> list[tuple[str, int, torch.Tensor]]:
    """The modulation (affine) weights fed by the W+ ``rows``: ``(module name, row, weight [in_ch, w_dim])``.

    Styled convolutions always; ToRGB layers only with ``include_torgb``. Stored (unscaled) weights: the
    equalised-learning-rate scale is one number per layer, which the row normalisation of SeFa removes.
    """
    layers: list[tuple[str, int, torch.nn.Module, bool]] = [("conv1", 0, generator.conv1, False),
                                                            ("to_rgb1", 1, generator.to_rgb1, True)]
    for j, to_rgb in enumerate(generator.to_rgbs):
        layers += [(f"convs.{2 * j}", 2 * j + 1, generator.convs[2 * j], False),
                   (f"convs.{2 * j + 1}", 2 * j + 2, generator.convs[2 * j + 1], False),
                   (f"to_rgbs.{j}", 2 * j + 3, to_rgb, True)]
    chosen = set(int(r) for r in rows)
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
    z = torch.randn(n, generator.w_dim, generator=torch.Generator().manual_seed(seed))
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


# --------------------------------------------------------------------------------------------------
# apply-direction


def _read_noise_file(path: Path, generator: Generator) -> list[torch.Tensor] | None:
    """Noise maps ``noise_<i>`` (``[r, r]`` or ``[1, 1, r, r]``) saved by ``pulse`` / ``invert``, as ``[1, 1, r, r]``;
    None when the file does not fit the generator."""
    from latentedit.model.generator import noise_shape

    try:
        with np.load(path, allow_pickle=False) as data:
            maps = []
            for i in range(generator.num_layers):
                array = np.asarray(data[f"noise_{i}"], np.float32)
                if array.size != int(np.prod(noise_shape(i))):
                    return None
                maps.append(torch.from_numpy(array.reshape(noise_shape(i))))
            return maps
    except (OSError, ValueError, KeyError, EOFError):
        return None


def apply_to_folder(generator: Generator, direction_path: str | os.PathLike, latent_path: str | os.PathLike,
                    out_dir: str | os.PathLike, strengths: Sequence[float], *,
                    layers: str | Sequence[int] | None = None,
                    checkpoint_info: Mapping | None = None, invert_settings=None, to_distance: bool = False,
                    log: Callable[[str], None] | None = None, progress: bool = False) -> dict:
    """What ``latentedit apply-direction`` runs.

    ``to_distance``: ``strengths`` are target signed distances to the SVM boundary in the direction's
    sidecar (:func:`apply_to_distance`); files are then named ``<name>_d<distance>`` and the manifest
    records each latent's step.

    ``latent_path``: a ``.npy`` latent (W ``[w_dim]``, W+ ``[num_ws, w_dim]`` or a batch ``[N, ...]``), or an
    image, which is first inverted (:func:`latentedit.invert.invert`, ``invert_settings``; default
    settings otherwise) and saved as ``<stem>_inverted.npy`` / ``.png``. A noise file beside a single
    latent (``<stem>_noise.npz``, as ``pulse`` and ``invert --noise optimize`` write) is used for
    rendering; otherwise the generator's stored noise. Writes, for each latent ``<name>`` and strength
    ``s``, ``<name>_s<s>.npy`` (W+ ``[num_ws, w_dim]``) and ``.png``, then ``sweep.png`` (one row per
    latent, one column per strength) and ``manifest.json``. ``log`` receives one-line warnings;
    ``progress`` shows the inversion's progress bar. Returns the manifest.
    """
    from latentedit.images import IMAGE_SUFFIXES
    from latentedit.latents import as_w_or_w_plus, load_latent_file

    log = log or (lambda message: warnings.warn(message, stacklevel=2))
    out_dir = Path(out_dir)
    latent_path = Path(latent_path)
    checkpoint_info = dict(checkpoint_info or {})
    generator_sha = checkpoint_info.get("sha256")
    direction = load_direction(direction_path)
    for problem in direction_problems(direction, generator.num_ws, generator.w_dim, generator_sha):
        log(problem)
    boundary = boundary_of(direction) if to_distance else None
    strengths = [float(s) for s in strengths]
    names_for = [format_strength(s) for s in strengths]
    if len(set(names_for)) != len(names_for):
        raise InputError(f"strengths {names_for} repeat after rounding to 6 significant digits; give distinct values")
    rows = parse_layers(layers, generator.num_ws)

    source: dict = {"path": str(latent_path)}
    noise: str | list[torch.Tensor] = "const"
    stem = latent_path.stem
    if latent_path.suffix.lower() in IMAGE_SUFFIXES:
        latent, inverted_noise, source = _invert_image(generator, latent_path, out_dir, invert_settings, log,
                                                       progress)
        w_plus = generator.broadcast_w(torch.from_numpy(latent)[None]).contiguous()
        if inverted_noise is not None:
            noise = inverted_noise
    else:
        array = load_latent_file(latent_path)
        w_plus = generator.broadcast_w(as_w_or_w_plus(array, generator.num_ws, generator.w_dim,
                                                      name=f"latent {latent_path}")).contiguous()
        source.update(kind="latent", shape=list(array.shape), sha256=lio.sha256_file(latent_path))
        recorded = recorded_generator_sha256(latent_record(latent_path))
        if recorded and generator_sha and recorded != generator_sha:
            log(f"latent {latent_path} was made with generator {recorded[:12]}, not this one ({generator_sha[:12]})")
        noise_path = latent_path.with_name(f"{stem}_noise.npz")
        if w_plus.shape[0] == 1 and noise_path.is_file():
            maps = _read_noise_file(noise_path, generator)
            if maps is not None:
                noise = maps
                source["noise"] = str(noise_path)
            else:
                log(f"{noise_path} does not fit this generator; rendering with its stored noise instead")
    count = w_plus.shape[0]
    latent_names = [stem] if count == 1 else [f"{stem}_{i:04d}" for i in range(count)]
    steps = None
    if boundary is None:
        edited = apply_direction(w_plus, direction.vector, strengths, rows)
    else:
        edited, steps = apply_to_distance(w_plus, direction.vector, boundary, strengths, rows)
    prefix = "s" if boundary is None else "d"
    images = render_latents(generator, edited.reshape(-1, generator.num_ws, generator.w_dim), noise=noise)
    pixels = lio.to_uint8(images).reshape(count, len(strengths), *images.shape[2:], 3)
    files = []
    edited_np = edited.numpy().astype(np.float32)
    for i, latent_name in enumerate(latent_names):
        for j, label in enumerate(names_for):
            name = f"{latent_name}_{prefix}{label}"
            lio.save_npy(out_dir / f"{name}.npy", edited_np[i, j])
            lio.save_png(out_dir / f"{name}.png", pixels[i, j])
            files += [f"{name}.npy", f"{name}.png"]
    lio.save_png(out_dir / "sweep.png", lio.make_grid(pixels.reshape(-1, *pixels.shape[2:]), columns=len(strengths)))
    manifest = {
        "command": "apply-direction",
        "checkpoint": checkpoint_info,
        "direction": {"path": str(direction.path), "sha256": lio.sha256_file(direction.path),
                      "shape": list(direction.vector.shape), "space": direction.space,
                      "norm": round(float(np.linalg.norm(direction.vector)), 6),
                      "method": direction.meta.get("method"),
                      "generator_sha256": recorded_generator_sha256(direction.meta)},
        "source": source,
        "strengths": strengths,
        "mode": "strength" if boundary is None else "distance",
        **({} if steps is None else {"distance_before": [round(float(d), 6) for d in
                                                         boundary.distance(w_plus, rows)],
                                     "steps": [[round(float(x), 6) for x in row] for row in steps]}),
        "layers": format_layers(rows),
        "noise": "from " + source["noise"] if "noise" in source else "const (the generator's stored maps)",
        "names": latent_names,
        "definition": ("edited = latent + strength * direction on the chosen W+ rows (W directions broadcast)"
                       if boundary is None else
                       "edited = latent + step * direction on the chosen W+ rows, step = (distance - distance_before) "
                       "/ (normal . direction); distance = mean over the chosen rows of normal . w + offset"),
        "files": files + ["sweep.png", "manifest.json"],
        "sweep": {"file": "sweep.png", "rows": latent_names, "columns": strengths},
        "versions": lio.versions(),
    }
    lio.write_json(out_dir / "manifest.json", manifest)
    return manifest


def _invert_image(generator: Generator, path: Path, out_dir: Path, settings, log: Callable[[str], None],
                  progress: bool = False) -> tuple[np.ndarray, list[torch.Tensor] | None, dict]:
    """Invert one image for :func:`apply_to_folder`: ``(latent, noise maps or None, source record)``.

    Writes ``<stem>_inverted.npy`` (and ``<stem>_inverted_noise.npz`` when the noise was optimised) and
    ``<stem>_inverted.png``.
    """
    from latentedit.images import load_image_tensor
    from latentedit.invert import InversionSettings, invert, prepare_perceptual
    from latentedit.model.generator import noise_shape

    settings = (settings or InversionSettings()).validated()
    device = next(generator.parameters()).device
    target, info = load_image_tensor(path, generator.size)
    setup = prepare_perceptual(settings, generator.size, device)
    if setup.notice:
        log(setup.notice)
    result = invert(generator, target[None], settings, names=[path.stem], perceptual=setup.loss,
                    lpips_metric=setup.lpips_metric, progress=progress, description=f"invert {path.name}")[0]
    lio.save_npy(out_dir / f"{path.stem}_inverted.npy", result.latent)
    lio.save_png(out_dir / f"{path.stem}_inverted.png", lio.to_uint8(result.reconstruction)[0])
    source = {"kind": "image", "image": info, "inverted": f"{path.stem}_inverted.npy",
              "inversion": {"settings": settings.to_dict(), "perceptual": setup.kind, "notice": setup.notice,
                            "psnr_db": round(result.psnr_db, 4), "steps": result.steps}}
    noise = None
    if result.noise is not None:
        noise = [torch.from_numpy(m).reshape(noise_shape(i)) for i, m in enumerate(result.noise)]
        buffer = io.BytesIO()
        np.savez(buffer, **{f"noise_{i}": m for i, m in enumerate(result.noise)})
        lio.write_bytes(out_dir / f"{path.stem}_inverted_noise.npz", buffer.getvalue())
        source["noise"] = str(out_dir / f"{path.stem}_inverted_noise.npz")
    return result.latent, noise, source


# --------------------------------------------------------------------------------------------------
# diff / mean / info on files


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


def load_attribute_classifier(path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """The attribute classifier (``path`` or the shipped one) and ``{path, sha256}`` identifying its weights."""
    from latentedit.classifier import load_classifier, shipped_classifier_path

    classifier = load_classifier(path, device=device)
    resolved = Path(path) if path is not None else shipped_classifier_path()
    return classifier, {"path": str(resolved), "sha256": lio.sha256_file(resolved)}


def svm_to_file(generator: Generator, classifier, attribute: str, out_path: str | os.PathLike, *, n: int = 20000,
                seed: int = 0, conditions: Sequence[str] = (), C: float = 1.0, batch_size: int = DEFAULT_BATCH,
                samples_path: str | os.PathLike | None = None, checkpoint_info: Mapping | None = None,
                classifier_info: Mapping | None = None, progress: bool = True) -> dict:
    """What ``latentedit direction svm`` runs: label ``n`` samples (:func:`sample_and_label`, cached in
    ``samples_path`` when given), fit :func:`interfacegan_direction` and write the W direction ``[w_dim]``
    with its sidecar (the fit report under ``report``). Returns the sidecar."""
    checkpoint_info = dict(checkpoint_info or {})
    classifier_info = dict(classifier_info or {})
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".npy":
        raise InputError(f"direction files are .npy arrays; name the output {out_path.with_suffix('.npy')}")
    for name in [attribute, *conditions]:
        if name not in classifier.attribute_names:
            raise InputError(f"unknown attribute {name!r}; the classifier knows "
                             f"{', '.join(classifier.attribute_names)}")
    samples = sample_and_label(generator, classifier, n, seed, batch_size=batch_size, progress=progress,
                               cache_path=samples_path,
                               cache_key={"generator_sha256": checkpoint_info.get("sha256"),
                                          "classifier_sha256": classifier_info.get("sha256")})
    vector, report = interfacegan_direction(samples, attribute, conditions, C=C, seed=seed)
    report["samples"] = {"n": n, "seed": seed, "from_cache": samples.from_cache,
                         "cache": None if samples_path is None else str(samples_path),
                         "frequency": {name: round(float((samples.probs[:, i] >= 0.5).mean()), 4)
                                       for i, name in enumerate(samples.attribute_names)}}
    return save_direction(
        out_path, vector, method="interfacegan-svm", generator=generator,
        generator_sha256=checkpoint_info.get("sha256"), seeds=[seed],
        params={"attribute": attribute, "condition": list(conditions), "n": n, "seed": seed, "C": C,
                "truncation_psi": 1.0, "noise": "const", "space": "w", "classifier": classifier_info,
                "svm": "sklearn LinearSVC, class_weight=balanced, centred w, labels p >= 0.5"},
        extra={"report": report})
