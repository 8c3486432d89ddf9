"""Just-in-time build and cache of the compiled kernels in ``ops/csrc``.

:func:`load_extension` compiles an extension with ``torch.utils.cpp_extension.load`` (ninja) the first
time it is needed and imports the cached module afterwards. Nothing here runs at import time.

Cache layout: ``$XDG_CACHE_HOME/latentedit`` (default ``~/.cache/latentedit``) holds one directory per
build, ``ops-<kind>-<key>``, where ``key`` is a hash of the source files and the toolchain (torch
version and build, python ABI, C++ compiler, nvcc version and CUDA architectures for CUDA builds,
compiler flags). Changing any of them selects a new directory, so a cached module is never stale. A
build is complete when its directory holds ``complete.json``, written last; a complete build is
imported directly, without ninja or any lock.

Robustness: a build runs under an exclusive ``flock`` on ``ops-<kind>-<key>.lock`` beside the build
directory. The OS releases that lock when its holder dies, so a killed build never blocks later ones
(unlike the lock *file* that older ``torch.utils.cpp_extension`` versions wait on forever). Whoever
holds the lock and finds no ``complete.json`` wipes the directory (partial objects, a stale torch
``lock`` file) and builds from scratch. A second process that wants the same build waits for the lock,
then finds the build complete and imports it: concurrent builders never corrupt each other.

A failed build raises :class:`latentedit.errors.OpsBuildError` with a one-line summary and the path of
the full compiler log; the failure is remembered for the life of the process (see :func:`forget`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Iterator

from latentedit.errors import OpsBuildError

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent builders there are not protected.
    fcntl = None

CSRC_DIR = Path(__file__).resolve().parent / "csrc"
COMPLETE_MARKER = "complete.json"
BUILD_LOG = "build.log"
# How long a process waits for another process's build of the same extension before giving up.
LOCK_TIMEOUT_S = 3600.0

log = logging.getLogger("latentedit.ops")


@dataclasses.dataclass(frozen=True)
class ExtensionSpec:
    """What to compile: ``sources`` (compiled) and ``headers`` (hashed only), named relative to
    ``source_dir``; compiler flags; ``with_cuda`` for extensions with ``.cu`` files. ``kind`` names the
    build directory and module (``ops-<kind>-<key>``, ``latentedit_ops_<kind>_<key>``)."""

    kind: str
    sources: tuple[str, ...]
    headers: tuple[str, ...] = ()
    extra_cflags: tuple[str, ...] = ()
    extra_cuda_cflags: tuple[str, ...] = ()
    extra_ldflags: tuple[str, ...] = ()
    with_cuda: bool = False
    source_dir: Path = CSRC_DIR


CPU_SPEC = ExtensionSpec(
    kind="cpu",
    sources=("ops_cpu.cpp",),
    headers=("ops_common.h",),
    extra_cflags=("-O3", "-fopenmp"),
    extra_ldflags=("-fopenmp",),
)

CUDA_SPEC = ExtensionSpec(
    kind="cuda",
    sources=("ops_cuda.cpp", "ops_cuda_kernels.cu"),
    headers=("ops_common.h", "ops_cuda.h"),
    extra_cflags=("-O3",),
    extra_cuda_cflags=("-O3",),
    with_cuda=True,
)

_lock = threading.Lock()
_loaded: dict[str, ModuleType] = {}
_failed: dict[str, OpsBuildError] = {}
_key_lock = threading.Lock()
_keys: dict[ExtensionSpec, str] = {}


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/latentedit``, or ``~/.cache/latentedit`` when the variable is unset or empty."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "latentedit"


def _command_output(command: list[str]) -> str:
    """stdout (or stderr) of a short command, or a note saying why there is none."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return f"unavailable ({type(error).__name__})"
    return (result.stdout or result.stderr).strip() or f"unavailable (exit {result.returncode})"


def find_cuda_home() -> str | None:
    """The CUDA toolkit root that has both ``bin/nvcc`` and ``include/cuda_runtime.h``, or None.

    Tries ``$CUDA_HOME``, ``$CUDA_PATH``, the directory two levels above ``nvcc`` on ``PATH`` (with
    symlinks resolved) and ``/usr/local/cuda``. torch's own guess takes the directory above the first
    ``nvcc`` on ``PATH`` as is, which is wrong when that ``nvcc`` is a wrapper script.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
        # A wrapper script (`exec /opt/cuda-X/bin/nvcc "$@"`) names the real toolkit inside.
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if os.path.getsize(nvcc) < 4096:
                for match in re.findall(r"(/\S+)/bin/nvcc\b", Path(nvcc).read_text()):
                    candidates.append(match)
    candidates.append("/usr/local/cuda")
    for candidate in candidates:
        if candidate and (Path(candidate) / "bin" / "nvcc").exists() and \
                (Path(candidate) / "include" / "cuda_runtime.h").exists():
            return candidate
    return None


def cuda_arch_list() -> str | None:
    """``$TORCH_CUDA_ARCH_LIST`` if set, else the compute capabilities of the visible GPUs
    (e.g. ``"8.6;9.0"``), else None (nothing to compile for)."""
    configured = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if configured:
        return configured
    import torch

    if not torch.cuda.is_available():
        return None
    capabilities = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ";".join(f"{major}.{minor}" for major, minor in sorted(capabilities))


def toolchain(spec: ExtensionSpec) -> dict:
    """Everything besides the sources that changes the compiled binary (part of the cache key)."""
    import torch

    info = {
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", ""),
        "torch_cuda": torch.version.cuda,
        "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
        "python": sys.version.split()[0],
        "python_abi": sysconfig.get_config_var("EXT_SUFFIX") or sys.implementation.cache_tag,
        "platform": f"{sys.platform}-{platform.machine()}",
        "cxx": _command_output([os.environ.get("CXX", "c++"), "--version"]).splitlines()[0],
        "cflags": list(spec.extra_cflags),
        "cuda_cflags": list(spec.extra_cuda_cflags),
        "ldflags": list(spec.extra_ldflags),
    }
    if spec.with_cuda:
        cuda_home = find_cuda_home()
        info["cuda_home"] = cuda_home
        # The whole `nvcc --version` text: the release is on its last lines, not the first.
        info["nvcc"] = _command_output([os.path.join(cuda_home, "bin", "nvcc"), "--version"]) if cuda_home else None
        info["cuda_arch_list"] = cuda_arch_list()
    return info


def build_key(spec: ExtensionSpec) -> str:
    """16 hex digits of SHA-256 over the toolchain description and every source and header file.

    Computed once per spec and process (it runs the compilers to learn their versions)."""
    with _key_lock:
        if spec not in _keys:
            _keys[spec] = _compute_key(spec)
        return _keys[spec]


def _compute_key(spec: ExtensionSpec) -> str:
    digest = hashlib.sha256(json.dumps(toolchain(spec), sort_keys=True).encode())
    for name in spec.sources + spec.headers:
        digest.update(name.encode() + b"\0")
        try:
            digest.update((spec.source_dir / name).read_bytes())
        except OSError as error:
            raise OpsBuildError(f"cannot read kernel source {spec.source_dir / name}: {error.strerror}; "
                                f"reinstall latentedit or set LATENTEDIT_OPS=native") from error
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def build_dir(spec: ExtensionSpec) -> Path:
    """The cache directory of ``spec``'s build for the current sources and toolchain."""
    return cache_root() / f"ops-{spec.kind}-{build_key(spec)}"


@contextlib.contextmanager
def _exclusive_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing, never deleted: deleting a lock file
    that others may be waiting on would let two processes lock two different files)."""
    if fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = Path(path).read_text(errors="replace").strip() or "unknown"
                    raise OpsBuildError(f"timed out after {timeout_s:.0f} s waiting for another process "
                                        f"(pid {holder}) building into {path.parent}; "
                                        f"wait for it or set LATENTEDIT_OPS=native") from None
                time.sleep(0.2)
        # For the message above only: who holds the lock now.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _import_from(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot create an import spec for {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_complete(directory: Path) -> ModuleType | None:
    marker = directory / COMPLETE_MARKER
    if not marker.is_file():
        return None
    record = json.loads(marker.read_text())
    return _import_from(directory / record["library"], record["module"])


def _summarise_failure(text: str) -> str:
    """The most telling line of a build log, shortened to one line: the first compiler or linker
    diagnostic (``...: error: ...``), else a missing-tool line, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for pattern in (r"\berror\b:", r"undefined (reference|symbol)", r"cannot find|No such file|not found|required"):
        for line in lines:
            if re.search(pattern, line, re.IGNORECASE):
                return line[:300]
    return (lines[-1] if lines else "no output")[:300]


@contextlib.contextmanager
def _cuda_build_environment(spec: ExtensionSpec, arch_list: str | None) -> Iterator[None]:
    """Point torch's extension builder at the CUDA toolkit and architectures chosen here."""
    if not spec.with_cuda:
        yield
        return
    from torch.utils import cpp_extension

    cuda_home = find_cuda_home()
    if cuda_home is None:
        raise OpsBuildError("CUDA toolkit not found (no nvcc with cuda_runtime.h under $CUDA_HOME, beside nvcc on "
                            "PATH, or in /usr/local/cuda); install it, set CUDA_HOME, or set LATENTEDIT_OPS=native")
    if arch_list is None:
        raise OpsBuildError("no CUDA device is visible and TORCH_CUDA_ARCH_LIST is not set, so there is no GPU "
                            "architecture to compile for; set TORCH_CUDA_ARCH_LIST (e.g. 9.0)")
    saved_home, saved_arch = cpp_extension.CUDA_HOME, os.environ.get("TORCH_CUDA_ARCH_LIST")
    # cpp_extension reads its module-level CUDA_HOME (computed once at import) and the env variable.
    cpp_extension.CUDA_HOME = cuda_home
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
    try:
        yield
    finally:
        cpp_extension.CUDA_HOME = saved_home
        if saved_arch is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = saved_arch


def _import_cpp_extension():
    """``torch.utils.cpp_extension``, imported without its "No CUDA runtime is found" log line, which
    is noise on CPU-only machines (CUDA builds find the toolkit themselves, see find_cuda_home)."""
    class _DropCudaHomeNotice(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "No CUDA runtime is found" not in record.getMessage()

    logger = logging.getLogger("torch.utils.cpp_extension")
    notice_filter = _DropCudaHomeNotice()
    logger.addFilter(notice_filter)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.removeFilter(notice_filter)
    return cpp_extension


def _build(spec: ExtensionSpec, directory: Path, module_name: str, verbose: bool) -> ModuleType:
    """Compile into a freshly emptied ``directory``; the caller holds the build lock."""
    cpp_extension = _import_cpp_extension()
    arch_list = cuda_arch_list() if spec.with_cuda else None
    # Leftovers are from a killed or failed build (a complete one would have its marker): partial
    # objects and torch's own lock file must not be reused.
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.info("building %s kernels in %s (one-time, may take a minute)", spec.kind, directory)
    try:
        with _cuda_build_environment(spec, arch_list):
            module = cpp_extension.load(
                name=module_name,
                sources=[str(spec.source_dir / name) for name in spec.sources],
                extra_cflags=list(spec.extra_cflags),
                extra_cuda_cflags=list(spec.extra_cuda_cflags),
                extra_ldflags=list(spec.extra_ldflags),
                extra_include_paths=[str(spec.source_dir)],
                build_directory=str(directory),
                with_cuda=spec.with_cuda,
                verbose=verbose,
            )
    except OpsBuildError:
        raise
    except Exception as error:  # compiler errors arrive as RuntimeError, a missing ninja as RuntimeError too
        text = f"{type(error).__name__}: {error}"
        log_path = directory / BUILD_LOG
        with contextlib.suppress(OSError):
            log_path.write_text(text)
        raise OpsBuildError(f"could not build the {spec.kind} kernels: {_summarise_failure(text)} "
                            f"(full log: {log_path}); set LATENTEDIT_OPS=native to use the PyTorch path") from error
    library = Path(module.__file__).name
    record = {"module": module.__name__, "library": library, "seconds": round(time.monotonic() - started, 1),
              "toolchain": toolchain(spec)}
    from latentedit.io import write_json

    write_json(directory / COMPLETE_MARKER, record)
    return module


def load_extension(spec: ExtensionSpec = CPU_SPEC, verbose: bool = False) -> ModuleType:
    """Import ``spec``'s compiled module, building it first if the cache lacks it.

    Raises OpsBuildError (also on every later call in this process, without retrying) when the build
    or the import fails. Thread-safe; process-safe through the build lock described in the module doc.
    """
    with _lock:
        directory = build_dir(spec)
        memo_key = str(directory)
        if memo_key in _loaded:
            return _loaded[memo_key]
        if memo_key in _failed:
            raise _failed[memo_key]
        module_name = f"latentedit_ops_{spec.kind}_{directory.name.rsplit('-', 1)[-1]}"
        try:
            module = _load_or_build(spec, directory, module_name, verbose)
        except OpsBuildError as error:
            _failed[memo_key] = error
            raise
        _loaded[memo_key] = module
        return module


def _load_or_build(spec: ExtensionSpec, directory: Path, module_name: str, verbose: bool) -> ModuleType:
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        module = _load_complete(directory)
        if module is not None:
            return module
        with _exclusive_lock(directory.parent / f"{directory.name}.lock", LOCK_TIMEOUT_S):
            # Another process may have completed the build while this one waited for the lock.
            module = _load_complete(directory)
            if module is not None:
                return module
            return _build(spec, directory, module_name, verbose)
    except OpsBuildError:
        raise
    except (OSError, ImportError, ValueError, KeyError) as error:
        raise OpsBuildError(f"could not load the {spec.kind} kernels from {directory}: "
                            f"{type(error).__name__}: {error}; delete that directory to rebuild, "
                            f"or set LATENTEDIT_OPS=native") from error


def forget() -> None:
    """Drop this process's memory of loaded modules and failed builds (used by tests)."""
    with _lock, _key_lock:
        _loaded.clear()
        _failed.clear()
        _keys.clear()
