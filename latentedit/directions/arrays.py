"""Direction arrays and the user-facing values that go with them: W+ row sets and strengths.

A *direction* is a float32 array, either W ``[w_dim]`` or W+ ``[num_ws, w_dim]``. This module turns user
input (``"0-5"``, ``"-1:2:4"``) into row lists and strengths and checks an array's shape against a generator.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
import torch

from latentedit.errors import InputError

#: Images rendered per forward pass when labelling samples or drawing grids.
DEFAULT_BATCH = 64


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
                parts = cleaned.split(",")
                if len(parts) > 1 and not all(part.strip() for part in parts):
                    raise InputError(f"bad strength list {text!r}: an empty entry between commas (write 0,1,2)")
                values = [float(part) for part in parts if part.strip()]
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


def check_direction_shape(direction: np.ndarray, num_ws: int, w_dim: int, name: str = "direction") -> None:
    """InputError unless ``direction`` is W ``[w_dim]`` or W+ ``[num_ws, w_dim]`` of this generator."""
    shape = tuple(direction.shape)
    if shape in ((w_dim,), (num_ws, w_dim)):
        return
    raise InputError(f"{name} has shape {list(shape)}, which does not fit this generator: it needs W [{w_dim}] or "
                     f"W+ [{num_ws}, {w_dim}] (was the direction made with another generator?)")
