"""Shared fixtures: the reference data folder and small random generators."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REFDATA = REPO_ROOT.parent / "shared" / "refdata"


@pytest.fixture(scope="session")
def refdata() -> Path:
    """``../shared/refdata`` beside the repository; tests that need it skip when it is absent."""
    if not (REFDATA / "ros64_small.pt").is_file():
        pytest.skip(f"reference data not found at {REFDATA} (it lives in ../shared/refdata beside the repo)")
    return REFDATA


@pytest.fixture()
def tiny_generator():
    """A random 32 px generator with odd channel counts (not a refdata shape)."""
    from helpers import make_generator

    return make_generator(7).requires_grad_(True)


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models on a shared 2-core machine: intra-op threads only add contention (and OpenMP spinning)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def private_caches(tmp_path, monkeypatch):
    """Nothing read from or written to the user's caches (PULSE fits, VGG weights: none, so no LPIPS), and
    the native ops path, so no test waits for a kernel build in a fresh cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LATENTEDIT_OPS", "native")
