"""Reading and writing the CelebA attribute list (``list_attr_celeba.txt``).

The layout matches the file that ships with CelebA::

    202599
    5_o_Clock_Shadow Arched_Eyebrows ... Young
    000001.jpg -1  1  1 -1 ...

line 1 is the number of images, line 2 the attribute names separated by spaces, then one line per image:
the file name followed by one value per attribute, each ``-1`` or `` 1`` (padded to two characters and
separated by one space, as in CelebA). Readers split on whitespace, so the padding is cosmetic. File names
are taken from the list, never guessed, so images may be ``.png`` (as toyfaces writes them).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from latentedit.errors import InputError
from latentedit.io import atomic_write

ATTR_FILE_NAME = "list_attr_celeba.txt"
IMAGE_DIR_NAME = "img_align_celeba"


def format_attr_list(names: Sequence[str], filenames: Sequence[str], values: np.ndarray) -> str:
    """The text of a CelebA attribute list.

    ``values`` is ``[N, A]`` with entries in {0, 1} or {-1, 1} (0 is written as -1); ``names`` has ``A``
    entries without whitespace; ``filenames`` has ``N`` entries without whitespace.
    """
    values = np.asarray(values)
    if values.ndim != 2 or values.shape != (len(filenames), len(names)):
        raise InputError(f"attribute values must be [N={len(filenames)}, A={len(names)}], got {list(values.shape)}")
    for label in list(names) + list(filenames):
        if not label or any(ch.isspace() for ch in label):
            raise InputError(f"attribute and file names must be non-empty without spaces, got {label!r}")
    if not np.isin(values, (-1, 0, 1)).all():
        raise InputError("attribute values must be 0/1 or -1/1")
    signed = np.where(values > 0, 1, -1)
    lines = [str(len(filenames)), " ".join(names)]
    for filename, row in zip(filenames, signed):
        lines.append(filename + " " + " ".join(f"{int(v):2d}" for v in row))
    return "\n".join(lines) + "\n"


def write_attr_list(path: str | os.PathLike, names: Sequence[str], filenames: Sequence[str],
                    values: np.ndarray) -> None:
    """Write :func:`format_attr_list` to ``path`` atomically."""
    text = format_attr_list(names, filenames, values)
    with atomic_write(path, "w") as handle:
        handle.write(text)


def read_attr_list(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """Parse a CelebA attribute list into ``(names [A], filenames [N], values int8 [N, A] in {-1, 1})``.

    Raises :class:`InputError` naming the line for a malformed file.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise InputError(f"cannot read CelebA attribute list {path}: {error.strerror}") from error
    if len(lines) < 2:
        raise InputError(f"{path}: a CelebA attribute list needs a count line and a names line")
    try:
        count = int(lines[0].split()[0])
    except (ValueError, IndexError) as error:
        raise InputError(f"{path}: line 1 must be the number of images, got {lines[0]!r}") from error
    names = lines[1].split()
    rows = [line.split() for line in lines[2:] if line.strip()]
    if len(rows) != count:
        raise InputError(f"{path}: line 1 says {count} images but {len(rows)} are listed")
    values = np.empty((count, len(names)), dtype=np.int8)
    filenames = []
    for row_index, row in enumerate(rows):
        if len(row) != len(names) + 1:
            raise InputError(f"{path}: line {row_index + 3} has {len(row) - 1} values, expected {len(names)}")
        filenames.append(row[0])
        try:
            parsed = [int(v) for v in row[1:]]
        except ValueError as error:
            raise InputError(f"{path}: line {row_index + 3} has a non-integer value") from error
        if any(v not in (-1, 1) for v in parsed):
            raise InputError(f"{path}: line {row_index + 3} has a value other than -1/1")
        values[row_index] = parsed
    return names, filenames, values
