"""Open a checkpoint file of any supported format without running code from it.

The format is decided by the file's first bytes, never by its name:

- ``PK\\x03\\x04`` (zip) or the legacy ``torch.save`` magic -> ``torch.load(weights_only=True)`` with
  ``argparse.Namespace`` as the only extra allowed global (rosinality training checkpoints store their
  ``args`` as a Namespace);
- any other pickle (``\\x80`` + protocol) -> :func:`~latentedit.checkpoints.safe_pickle.load_restricted_pickle`
  (NVIDIA stylegan2-ada snapshots);
- an 8-byte little-endian header length followed by ``{`` -> safetensors (latentedit's native format).

Every failure is a one-line :class:`~latentedit.errors.CheckpointError` that names the file.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import torch

from latentedit.checkpoints.safe_pickle import load_restricted_pickle
from latentedit.errors import CheckpointError

ZIP_MAGIC = b"PK\x03\x04"
# torch.save's legacy (pre-1.6) format starts by pickling this magic number with protocol 2.
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")

#: The only global that rosinality checkpoints need beyond torch's weights-only allow-list.
TORCH_EXTRA_SAFE_GLOBALS = (argparse.Namespace,)


@dataclasses.dataclass
class RawCheckpoint:
    """The decoded top-level content of a checkpoint file.

    ``container``: ``torch`` (``torch.save`` file), ``pickle`` (restricted plain pickle) or
    ``safetensors``. ``content``: the unpickled object, or for safetensors a ``{name: tensor}`` dict.
    ``metadata``: the safetensors string metadata (None for the other containers).
    """

    path: Path
    container: str
    content: Any
    metadata: dict | None = None


def sniff_container(path: Path) -> str:
    """``torch``, ``pickle`` or ``safetensors`` from the first bytes of ``path``; CheckpointError otherwise."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(ZIP_MAGIC) or head.startswith(LEGACY_TORCH_MAGIC):
        return "torch"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        header_length = int.from_bytes(head[:8], "little")
        if head[8:9] == b"{":
            if header_length > size - 8:
                raise CheckpointError(f"{path}: safetensors header claims {header_length} bytes but the file has "
                                      f"{size - 8} after it (file truncated)")
            return "safetensors"
    raise CheckpointError(f"{path}: not a recognised checkpoint (expected a rosinality .pt, an NVIDIA stylegan2-ada "
                          f".pkl or a latentedit .safetensors file)")


def _torch_error_message(error: Exception) -> str:
    """A one-line reason from a torch.load failure (torch's own messages span many lines)."""
    text = str(error)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return (f"refused to unpickle: the file references '{refused.group(1)}', which is not on the allow-list of "
                f"safe globals (nothing was executed)")
    if "failed finding central directory" in text or "failed reading zip archive" in text:
        return "not a valid torch zip archive (file truncated or corrupt)"
    unpickler_reason = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    if unpickler_reason:
        return f"unsupported content ({unpickler_reason.group(1).strip()})"
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"cannot read the torch checkpoint ({first_line})"


def load_torch_file(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU with :data:`TORCH_EXTRA_SAFE_GLOBALS` allowed."""
    try:
        with torch.serialization.safe_globals(list(TORCH_EXTRA_SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except EOFError:
        raise CheckpointError(f"{path}: the torch checkpoint ends early (file truncated)") from None
    except Exception as error:  # untrusted input: every failure is a bad file
        raise CheckpointError(f"{path}: {_torch_error_message(error)}") from None


def load_safetensors_file(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """All tensors (on CPU) and the string metadata of a safetensors file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata()
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # SafetensorError and friends: a corrupt file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line})") from None
    return tensors, metadata


def read_checkpoint(path: str | os.PathLike) -> RawCheckpoint:
    """Decode ``path`` (which must exist) into a :class:`RawCheckpoint` without executing anything from it."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")
    container = sniff_container(path)
    if container == "torch":
        return RawCheckpoint(path, container, load_torch_file(path))
    if container == "pickle":
        return RawCheckpoint(path, container, load_restricted_pickle(path))
    tensors, metadata = load_safetensors_file(path)
    return RawCheckpoint(path, container, tensors, metadata)

