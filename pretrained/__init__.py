"""Shipped generator weights, addressed by name (installed as ``latentedit.pretrained``).

:func:`resolve_checkpoint` turns what a user passes as ``--ckpt`` into a file: an existing path is used
as-is; a known name (:data:`SHIPPED_MODELS`) maps to its ``.safetensors`` file inside this package.
"""
from __future__ import annotations

import os
from pathlib import Path

from latentedit.errors import CheckpointError

#: The model commands use when no ``--ckpt`` is given.
DEFAULT_CHECKPOINT = "toyfaces64"

#: Shipped model name -> file name inside this package folder.
SHIPPED_MODELS = {
    "toyfaces64": "toyfaces64.safetensors",
    # Trained on a GPU for 17 minutes: closer to the data (FD-toy 210 against 319) but its W edits worse,
    # so it is an alternative, not the default (pretrained/toyfaces64_gpu.md).
    "toyfaces64_gpu": "toyfaces64_gpu.safetensors",
}

PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_path(name: str) -> Path:
    """Where the shipped model ``name`` is (or would be) installed; KeyError for an unknown name."""
    return PACKAGE_DIR / SHIPPED_MODELS[name]


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint file for ``name_or_path``.

    An existing path is returned as-is (a directory is an error). A name in :data:`SHIPPED_MODELS`
    maps to its file in the installed package; CheckpointError if that file is not installed. Anything
    else is a CheckpointError listing the known names.
    """
    path = Path(name_or_path)
    if path.exists():
        if path.is_dir():
            raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
        return path
    name = str(name_or_path)
    if name in SHIPPED_MODELS:
        location = shipped_path(name)
        if not location.is_file():
            raise CheckpointError(f"shipped model '{name}' is not installed (expected {location}); pass a checkpoint "
                                  f"file with --ckpt instead")
        return location
    known = ", ".join(sorted(SHIPPED_MODELS))
    raise CheckpointError(f"{name}: checkpoint file not found, and not a shipped model name (known: {known})")
