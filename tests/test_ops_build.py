"""The JIT build cache of latentedit.ops._build: location and key, a stale lock left by a killed
build, two processes building at once, and a remembered build failure.

These tests build a tiny pybind11 extension (seconds) through the same machinery as the real
kernels, each in its own temporary ``$XDG_CACHE_HOME``, mostly in subprocesses as real users would.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from latentedit.errors import OpsBuildError
from latentedit.ops import _build

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "c++")) is None,
                                reason="no C++ compiler (c++ or $CXX) on PATH")

TINY_SOURCE = textwrap.dedent("""\
    #include <pybind11/pybind11.h>
    // {token}
    int answer() {{ return 42; }}
    PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {{ m.def("answer", &answer); }}
""")

BUILD_SCRIPT = textwrap.dedent("""\
    import logging, sys
    from pathlib import Path
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from latentedit.ops import _build
    spec = _build.ExtensionSpec(kind="tiny", sources=("tiny.cpp",), source_dir=Path(sys.argv[1]))
    print("answer", _build.load_extension(spec).answer(), flush=True)
""")


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    """A tiny extension source dir and a fresh cache; returns (spec, environment for subprocesses)."""
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    (source_dir / "tiny.cpp").write_text(TINY_SOURCE.format(token=tmp_path.name))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _build.forget()
    yield _build.ExtensionSpec(kind="tiny", sources=("tiny.cpp",), source_dir=source_dir), dict(os.environ)
    _build.forget()


def start_build(spec, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, str(spec.source_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"build did not finish within {timeout} s (blocked by a lock?)\n{err[-2000:]}")
    assert process.returncode == 0, err[-3000:]
    return out, err


def test_cache_lives_under_xdg_cache_home_and_is_keyed_by_the_sources(tiny, tmp_path, monkeypatch):
    spec, _ = tiny
    directory = _build.build_dir(spec)
    assert directory.parent == tmp_path / "cache" / "latentedit"
    assert directory.name.startswith("ops-tiny-")
    assert _build.build_dir(spec) == directory  # stable
    (spec.source_dir / "tiny.cpp").write_text(TINY_SOURCE.format(token="changed"))
    _build.forget()
    assert _build.build_dir(spec) != directory  # another source, another build

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _build.cache_root() == tmp_path / "home" / ".cache" / "latentedit"


def test_toolchain_in_the_key_names_torch_python_and_the_compiler():
    info = _build.toolchain(_build.CPU_SPEC)
    assert {"torch", "torch_cuda", "python_abi", "cxx", "cflags"} <= set(info)
    assert "-fopenmp" in info["cflags"] and "-O3" in info["cflags"]


def test_a_stale_lock_from_a_killed_build_does_not_block(tiny):
    spec, env = tiny
    directory = _build.build_dir(spec)
    directory.mkdir(parents=True)
    # What a SIGKILLed builder leaves: torch's lock *file* (older torch waits while it exists),
    # a half-written object, and our flock file naming a process that no longer exists.
    (directory / "lock").write_text("")
    (directory / "tiny.o").write_bytes(b"\x7fELF truncated")
    (directory.parent / f"{directory.name}.lock").write_text("999999\n")
    out, _ = finish(start_build(spec, env))
    assert "answer 42" in out
    assert (directory / _build.COMPLETE_MARKER).is_file()
    assert not (directory / "tiny.o").read_bytes().endswith(b"truncated")  # rebuilt, not reused


def test_a_build_killed_midway_is_redone_by_the_next_process(tiny):
    spec, env = tiny
    directory = _build.build_dir(spec)
    victim = start_build(spec, env)
    deadline = time.monotonic() + 120
    while not (directory / "build.ninja").exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)  # the builder and its ninja/compiler children, mid-build
    victim.communicate()
    out, _ = finish(start_build(spec, env))
    assert "answer 42" in out


def test_two_processes_building_at_once_both_get_a_working_module(tiny):
    spec, env = tiny
    processes = [start_build(spec, env) for _ in range(2)]
    results = [finish(process) for process in processes]
    assert all("answer 42" in out for out, _ in results)
    # One built it; the other waited for the lock, then imported the finished build.
    assert sum("building tiny kernels" in err for _, err in results) == 1
    assert len(list(_build.build_dir(spec).glob("*.so"))) == 1


def test_a_complete_build_is_imported_without_taking_the_lock(tiny):
    fcntl = pytest.importorskip("fcntl")
    spec, _ = tiny
    assert _build.load_extension(spec).answer() == 42
    _build.forget()
    directory = _build.build_dir(spec)
    with open(directory.parent / f"{directory.name}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as if another builder held it for ever
        assert _build.load_extension(spec).answer() == 42

    # The same build, corrupted in a copy of the cache: a clear error, not a crash.
    corrupt_root = directory.parent.parent.parent / "corrupt-cache"
    shutil.copytree(directory.parent, corrupt_root / "latentedit")
    for library in (corrupt_root / "latentedit" / directory.name).glob("*.so"):
        library.write_bytes(b"not a shared object")
    os.environ["XDG_CACHE_HOME"] = str(corrupt_root)  # restored by the fixture's monkeypatch
    _build.forget()
    with pytest.raises(OpsBuildError, match="delete that directory"):
        _build.load_extension(spec)


def test_a_failed_build_raises_once_and_is_remembered(tiny, monkeypatch):
    spec, _ = tiny
    (spec.source_dir / "tiny.cpp").write_text("int main( { return 0; }\n")
    attempts = []
    real_build = _build._build
    monkeypatch.setattr(_build, "_build", lambda *args: attempts.append(1) or real_build(*args))
    with pytest.raises(OpsBuildError) as first:
        _build.load_extension(spec)
    with pytest.raises(OpsBuildError) as second:
        _build.load_extension(spec)
    assert second.value is first.value and len(attempts) == 1
    message = str(first.value)
    assert "could not build the tiny kernels" in message and "error" in message and "\n" not in message
    assert (_build.build_dir(spec) / _build.BUILD_LOG).is_file()
    assert not (_build.build_dir(spec) / _build.COMPLETE_MARKER).exists()


def test_a_missing_source_is_a_clear_error(tiny):
    spec, _ = tiny
    missing = _build.ExtensionSpec(kind="tiny", sources=("absent.cpp",), source_dir=spec.source_dir)
    with pytest.raises(OpsBuildError, match="cannot read kernel source"):
        _build.load_extension(missing)


def test_the_cuda_toolkit_is_found_behind_a_wrapper_script(tmp_path, monkeypatch):
    toolkit = tmp_path / "cuda-99.9"
    (toolkit / "bin").mkdir(parents=True)
    (toolkit / "include").mkdir()
    (toolkit / "bin" / "nvcc").write_text("#!/bin/sh\n")
    (toolkit / "include" / "cuda_runtime.h").write_text("")
    wrapper_dir = tmp_path / "wrappers" / "bin"
    wrapper_dir.mkdir(parents=True)
    wrapper = wrapper_dir / "nvcc"
    wrapper.write_text(f'#!/bin/sh\nexec {toolkit}/bin/nvcc "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", str(wrapper_dir))
    assert _build.find_cuda_home() == str(toolkit)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "nowhere"))  # unusable: skipped, not trusted
    assert _build.find_cuda_home() == str(toolkit)
