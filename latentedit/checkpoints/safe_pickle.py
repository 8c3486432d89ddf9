"""A pickle reader for NVIDIA stylegan2-ada snapshots that never runs code from the file (SPEC §1.1).

An NVIDIA ``.pkl`` holds ``torch_utils.persistence`` objects: a normal ``pickle.load`` would ``exec``
the ``module_src`` text embedded in the file. :class:`RestrictedUnpickler` instead resolves only the
globals in :data:`ALLOWED_GLOBALS`, each to a small local function that builds plain data, and refuses
every other global (``os.system``, ``builtins.eval``, ...) before anything is called:

- ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` -> :class:`PersistentObject` holding the
  class name and the pickled ``__dict__``; ``meta["module_src"]`` is never read.
- ``torch.storage._load_from_bytes(b)`` -> ``torch.load(BytesIO(b), weights_only=True)`` (torch's own
  restricted unpickler reads the nested legacy storage stream).
- ``torch._utils._rebuild_tensor_v2`` -> torch's tensor rebuild, after checking that it got a storage.
- ``torch._utils._rebuild_parameter`` -> the data tensor (no autograd state).
- ``numpy(._)core.multiarray.scalar`` -> a numpy scalar decoded from its bytes (object dtypes refused).
- ``numpy(._)core.multiarray._reconstruct`` with ``numpy.ndarray`` (a marker, :class:`NdarrayType`, that cannot
  be called) -> an empty :class:`GuardedArray` whose
  ``__setstate__`` accepts only plain numeric data from a byte string (StyleGAN3 stores sizes as int64 arrays).
- ``numpy.dtype``, ``collections.OrderedDict``, ``builtins.set``; ``dnnlib.util.EasyDict`` -> a dict.

Every failure (refused global, truncated stream, wrong argument types) is raised as a one-line
:class:`~latentedit.errors.CheckpointError` naming the file.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import re
from typing import Any, Callable

import numpy as np
import torch

from latentedit.errors import CheckpointError


@dataclasses.dataclass
class PersistentObject:
    """Stand-in for an NVIDIA ``persistent_class`` instance: its class name and pickled ``__dict__``."""

    class_name: str
    state: dict


class EasyDictStub(dict):
    """Replaces ``dnnlib.util.EasyDict``: a plain dict (instances accept a ``__dict__`` state, which is ignored)."""

    def __setstate__(self, state: Any) -> None:
        # EasyDict keeps its items in the dict itself; any attribute state carries nothing we use.
        pass


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    # Only class_name and state are read; module_src (the source text NVIDIA would exec) is ignored.
    if not isinstance(meta, dict) or not isinstance(meta.get("class_name"), str) or not isinstance(
            meta.get("state"), dict):
        raise pickle.UnpicklingError("malformed persistent object record (expected class_name and state)")
    return PersistentObject(class_name=meta["class_name"], state=meta["state"])


def _load_storage_from_bytes(data: Any):
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("storage record is not a byte string")
    storage = torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location="cpu")
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"storage record holds a {type(storage).__name__}, not a tensor storage")
    return storage


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *ignored: Any) -> torch.Tensor:
    # requires_grad, backward hooks and tensor metadata are dropped: weights need none of them, and hooks
    # are callables we do not want attached to anything.
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError("tensor record does not reference a storage")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, False, collections.OrderedDict())


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter record does not hold a tensor")
    return data


def _numpy_scalar(dtype: Any, data: Any = None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("numpy scalar record is not a plain numeric value")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


class GuardedArray(np.ndarray):
    """What ``numpy.ndarray`` resolves to: an ndarray whose pickled state must be plain numeric bytes.

    numpy pickles an array as ``_reconstruct(ndarray, (0,), b"b")`` followed by ``BUILD`` with the state
    ``(version, shape, dtype, is_fortran, raw bytes)``; object arrays (whose state is a list of objects)
    and anything that is not a byte string are refused. Use ``np.asarray(a)`` for a plain array.
    """

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("numpy array record has a malformed state")
        shape, dtype, raw = state[-4], state[-3], state[-1]
        if (not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(raw, (bytes, bytearray))
                or not isinstance(shape, tuple) or not all(isinstance(n, int) and 0 <= n for n in shape)
                or len(raw) != dtype.itemsize * int(np.prod(shape, dtype=np.int64))):
            raise pickle.UnpicklingError("numpy array record is not a plain numeric array")
        super().__setstate__(state)


class NdarrayType:
    """What the global ``numpy.ndarray`` resolves to: only a marker for ``_reconstruct``'s first argument.

    Calling it (``REDUCE``) is refused, so a file cannot allocate arrays of any shape it likes.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        raise pickle.UnpicklingError("numpy.ndarray may only be named as the type passed to _reconstruct")


def _numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> GuardedArray:
    if subtype is not NdarrayType or not isinstance(shape, tuple) or not isinstance(dtype_code, (bytes, str)):
        raise pickle.UnpicklingError("numpy array record does not reconstruct a plain ndarray")
    return GuardedArray((0,), dtype=np.uint8)


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str):
        raise pickle.UnpicklingError("numpy dtype record is not a type string")
    return np.dtype(spec, align=bool(align), copy=bool(copy))


#: ``(module, name)`` -> the local callable that replaces it. Anything else is refused.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): NdarrayType,
    ("numpy", "dtype"): _numpy_dtype,
    ("dnnlib.util", "EasyDict"): EasyDictStub,
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside :data:`ALLOWED_GLOBALS`."""

    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.qualified_name = f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only :data:`ALLOWED_GLOBALS`.

    Persistent ids and out-of-band buffers are not supported (the base class refuses them).
    """

    def find_class(self, module: str, name: str) -> Callable:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None


def load_restricted_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; return the top-level object.

    Raises :class:`CheckpointError` (one line, naming the file) for a refused global or any corrupt stream.
    """
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle).load()
    except RefusedGlobal as error:
        raise CheckpointError(f"{path}: refused to unpickle: the file references '{error.qualified_name}', which is "
                              f"not on the allow-list of safe globals (nothing was executed)") from None
    except EOFError:
        raise CheckpointError(f"{path}: the pickle ends early (file truncated or incomplete)") from None
    except Exception as error:  # untrusted input: any failure is a corrupt or unsupported file
        nested_refusal = re.search(r"GLOBAL ([\w.]+)", str(error))
        if nested_refusal:  # torch's weights-only reader refused a global inside a nested storage record
            raise CheckpointError(f"{path}: refused to unpickle: a storage record references "
                                  f"'{nested_refusal.group(1)}', which is not on the allow-list of safe globals (nothing was executed)") from None
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint pickle ({message})") from None
