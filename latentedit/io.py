"""File output helpers: atomic writes, PNG conversion, sha256 and JSON manifests.

Every output of latentedit goes through :func:`atomic_write` so that a killed process never leaves a
half-written file under the final name: data is written to a temporary file in the same folder, flushed
to disk and renamed over the target (``os.replace`` is atomic on POSIX and Windows).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import platform
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from latentedit.errors import InputError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success rename it to ``path``, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def safetensors_bytes(tensors: dict, metadata: dict[str, str] | None = None) -> bytes:
    """``safetensors.torch.save(tensors, metadata)`` with a canonical header: the same inputs, the same bytes.

    safetensors keeps the header (tensor entries and the ``__metadata__`` strings) in a hash map whose order
    changes from call to call, so two saves of identical weights differ in bytes; here the header JSON is
    rewritten with sorted keys (space-padded to a multiple of 8 bytes, as the format wants). Tensor data
    offsets are unchanged, since they refer to the data section after the header.
    """
    import struct

    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + length:]


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as strict JSON (RFC 8259: no bare ``NaN`` / ``Infinity``), atomically.

    Rule for non-finite numbers: every NaN or infinite float anywhere in ``obj`` (Python floats, numpy
    scalars and arrays included) is written as ``null``, so a report that holds one failed measurement
    is still valid JSON that any parser reads; the key stays, with no value. See :func:`json_safe`.
    """
    data = json_safe(obj)
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=False, default=_json_default, allow_nan=False)
        handle.write("\n")


def json_safe(obj: Any) -> Any:
    """A copy of the JSON-like ``obj`` with numpy values turned into Python ones and every non-finite float
    (NaN, +inf, -inf) replaced by ``None`` (JSON ``null``), the rule of :func:`write_json`."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    return obj


#: The name of the probe file :func:`prepare_output_dir` creates and removes.
_PROBE_PREFIX = ".latentedit-write-test."

#: Temporary files of :func:`atomic_write`: ``.<name>.<random>.tmp`` (``tempfile.mkstemp``'s 8 random
#: characters), plus the probes of :func:`prepare_output_dir`.
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def prepare_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create the folder ``path`` (and its parents) and prove it writable by creating and removing a file
    in it, before any work starts; returns it as a :class:`Path`.

    InputError naming the path and the fix when it exists as a file, lies under a file, cannot be created
    (a read-only or virtual file system such as ``/proc``, no permission) or refuses a new file.
    """
    path = Path(path)
    fix = "choose a folder you can write to (-o)"
    if path.exists() and not path.is_dir():
        raise InputError(f"the {what} {path} exists and is not a folder; {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError) as error:
        raise InputError(f"cannot create the {what} {path}: part of the path is a file, not a folder; "
                         f"{fix}") from error
    except OSError as error:
        raise InputError(f"cannot create the {what} {path} ({error.strerror or error}); {fix}") from error
    try:
        fd, probe = tempfile.mkstemp(prefix=_PROBE_PREFIX, suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise InputError(f"the {what} {path} is not writable ({error.strerror or error}); {fix}") from error
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that an interrupted :func:`atomic_write` left in ``folder`` (not below it):
    ``.<name>.<8 random characters>.tmp``. Call it only when no other process writes into ``folder``.
    Returns the removed paths (sorted)."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        if _TEMPORARY.match(entry.name) and entry.is_file() and not entry.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def portable_paths(obj: Any, root: str | os.PathLike) -> Any:
    """A copy of the JSON-like ``obj`` whose strings name paths the way another machine can read them: a path
    under ``root`` becomes relative to it, a path under the home folder starts with ``~``. Benchmark results are
    committed, and absolute paths of one machine mean nothing on another."""
    root_text = str(Path(root).resolve()) + os.sep
    home_text = str(Path.home()) + os.sep
    if isinstance(obj, Path):
        obj = str(obj)
    if isinstance(obj, str):
        if obj.startswith(root_text):
            return obj[len(root_text):]
        if home_text != os.sep and obj.startswith(home_text):
            return "~" + os.sep + obj[len(home_text):]
        return obj
    if isinstance(obj, dict):
        return {key: portable_paths(value, root) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable_paths(value, root) for value in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array))
    write_bytes(path, buffer.getvalue())


def to_uint8(images) -> np.ndarray:
    """Generator output ``[N, 3, H, W]`` (nominally [-1, 1]) to ``[N, H, W, 3]`` uint8.

    Uses the reference conversion ``((x.clamp(-1, 1) + 1) * 127.5).round()``.
    """
    import torch

    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    images = images.detach().float().cpu()
    if images.ndim == 3:
        images = images[None]
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def save_png(path: str | os.PathLike, pixels: np.ndarray) -> None:
    """Write one ``[H, W, 3|4]`` or ``[H, W]`` uint8 array as PNG, atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    write_bytes(path, buffer.getvalue())


def make_grid(pixels: np.ndarray, columns: int | None = None, padding: int = 2, fill: int = 255) -> np.ndarray:
    """Tile ``[N, H, W, C]`` uint8 images into one ``[rows*(H+p)+p, cols*(W+p)+p, C]`` image."""
    count, height, width, channels = pixels.shape
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    grid = np.full((rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
                   fill, dtype=np.uint8)
    for index in range(count):
        row, col = divmod(index, columns)
        top = padding + row * (height + padding)
        left = padding + col * (width + padding)
        grid[top:top + height, left:left + width] = pixels[index]
    return grid


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict[str, Any]:
    """Versions worth citing next to a result, and ``"ops"``: the custom ops' backends (see
    :func:`ops_backends`)."""
    import torch

    from latentedit import __version__

    return {
        "latentedit": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ops": ops_backends(),
    }


def ops_backends() -> dict[str, Any]:
    """The requested ``LATENTEDIT_OPS`` and the backend each custom op resolves to per device type
    (:func:`latentedit.ops.backend.describe`), e.g. ``{"LATENTEDIT_OPS": "auto", "upfirdn2d": {"cpu":
    "native", "cuda": "compiled"}, ...}``. Imported lazily; builds nothing and touches no GPU."""
    from latentedit.ops.backend import describe

    return describe()
