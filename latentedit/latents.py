"""Reading, validating and seeding latents.

Conventions: z and W are ``[N, w_dim]``; W+ is ``[N, num_ws, w_dim]``. A single latent on disk may be
``[w_dim]`` (one W) or ``[num_ws, w_dim]`` (one W+, what ``invert`` and ``pulse`` write).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from latentedit.errors import InputError

MAX_SEEDS = 100_000


def parse_seeds(text: str) -> list[int]:
    """``"0-7,10,12-13"`` -> ``[0, 1, ..., 7, 10, 12, 13]`` (ranges inclusive)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise InputError(f"bad seed list {text!r}: use numbers and ranges such as 0-7,10")
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if stop < start:
            raise InputError(f"bad seed range {part!r}: the end is below the start")
        if stop >= 2 ** 32:
            raise InputError(f"seed {stop} is too large (seeds are 32-bit)")
        seeds.extend(range(start, stop + 1))
        if len(seeds) > MAX_SEEDS:
            raise InputError(f"too many seeds (> {MAX_SEEDS}) in {text!r}")
    if not seeds:
        raise InputError(f"no seeds in {text!r}")
    return seeds


def z_from_seeds(seeds: list[int], z_dim: int) -> torch.Tensor:
    """One z per seed, ``[N, z_dim]``: ``numpy.random.RandomState(seed).randn(z_dim)``.

    The same convention as NVIDIA's generate.py, so a seed names the same z there and here.
    """
    return torch.from_numpy(np.stack([np.random.RandomState(seed).randn(z_dim) for seed in seeds])).float()


def read_npy_array(path: str | os.PathLike, what: str = "latent") -> np.ndarray:
    """Read one ``.npy`` array file, never unpickling anything; InputError for anything else.

    Shared by latents and direction files. numpy's own messages are not passed on: for an object array
    they suggest loading the file with ``allow_pickle``, which would run code from the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file {path} does not exist")
    invalid = (f"cannot read {what} {path}: not a valid .npy array file (pickled object arrays are never "
               f"loaded); save a numeric array with numpy.save")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as error:
        raise InputError(f"cannot read {what} {path} ({error.strerror or error})") from None
    if magic != b"\x93NUMPY":
        if magic[:2] == b"PK":
            raise InputError(f"{what} {path} is an .npz archive; give a single-array .npy file")
        raise InputError(invalid)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise InputError(f"cannot read {what} {path}: it holds an object array, and pickled object arrays "
                             f"are never loaded (they could run code); save a numeric array with "
                             f"numpy.save") from None
        raise InputError(invalid) from None
    except (OSError, EOFError):
        raise InputError(invalid.replace("not a valid .npy array file", "not a valid .npy array file or "
                                         "truncated")) from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{what} {path} must be a numeric .npy array, got dtype {getattr(array, 'dtype', '?')}")
    return array


def load_latent_file(path: str | os.PathLike) -> np.ndarray:
    """Load a ``.npy`` latent (never a pickle); float32, finite."""
    array = read_npy_array(path, "latent").astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError(f"latent {path} contains NaN or infinite values")
    return array


def as_w_or_w_plus(array: np.ndarray | torch.Tensor, num_ws: int, w_dim: int, name: str = "latent") -> torch.Tensor:
    """Interpret an array as a batch of W ``[N, w_dim]`` or W+ ``[N, num_ws, w_dim]``.

    Accepted: ``[w_dim]`` -> ``[1, w_dim]``; ``[num_ws, w_dim]`` -> one W+ ``[1, num_ws, w_dim]``;
    ``[N, w_dim]``; ``[N, num_ws, w_dim]``. Anything else is an InputError naming both shapes.
    """
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32))
    shape = tuple(tensor.shape)
    if shape == (w_dim,):
        return tensor[None]
    if shape == (num_ws, w_dim):
        return tensor[None]
    if tensor.ndim == 2 and shape[1] == w_dim:
        return tensor
    if tensor.ndim == 3 and shape[1:] == (num_ws, w_dim):
        return tensor
    raise InputError(f"{name} has shape {list(shape)}, which does not fit this generator: expected W [{w_dim}] "
                     f"or [N, {w_dim}], or W+ [{num_ws}, {w_dim}] or [N, {num_ws}, {w_dim}]")
