"""The README walkthrough, end to end with few steps: PULSE pair -> direction -> invert a held-out render ->
apply -> grid (``direction from-pulse``, ``invert``, ``apply-direction``), on a tiny random generator."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from latentedit.checkpoints import save_native
from latentedit.data import toyfaces
from latentedit.io import sha256_file
from latentedit.model import Generator, GeneratorConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(autouse=True)
def environment(tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LATENTEDIT_OPS", "native")
    yield
    torch.set_num_threads(threads)


def run(*args):
    from latentedit.cli.main import cli

    result = CliRunner().invoke(cli, list(map(str, args)))
    assert result.exit_code == 0, f"latentedit {' '.join(map(str, args))}\n{result.output}"
    return result


def test_pulse_pair_direction_applied_to_an_inverted_heldout_render(tmp_path):
    torch.manual_seed(11)
    generator = Generator(GeneratorConfig(size=32, style_dim=24, n_mlp=2, channels={4: 20, 8: 18, 16: 12, 32: 10}))
    generator.set_w_avg(generator.compute_w_avg(num_samples=256))
    ckpt = save_native(generator.eval(), tmp_path / "tiny.safetensors")
    index = next(i for i in range(100)
                 if toyfaces.sample_params(toyfaces.HELDOUT_SEED, i).attributes["Black_Hair"] == 1)

    # 0. a held-out face with black hair (the README uses 64 px for the default model)
    run("data", "toyfaces", "--seed", toyfaces.HELDOUT_SEED, "--index", index, "--size", 32,
        "-o", tmp_path / "face.png")
    # 1. PULSE pairs -> direction
    run("direction", "from-pulse", "--ckpt", ckpt, "--ref-a", EXAMPLES / "blond_hair.rgba.png",
        "--ref-b", EXAMPLES / "black_hair.rgba.png", "--seeds", "0-1", "--steps", 3, "--fit-samples", 2000,
        "--no-progress", "-o", tmp_path / "blond.npy")
    # 2. invert the held-out render
    run("invert", tmp_path / "face.png", "--ckpt", ckpt, "--steps", 3, "--no-progress", "-o", tmp_path / "inv")
    # 3. apply with a strength sweep
    applied = run("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "blond.npy",
                  "--latent", tmp_path / "inv" / "face.npy", "--strength=-1:2:4", "--strength-unit", "raw",
                  "-o", tmp_path / "edit")
    assert "warning" not in applied.output  # same generator, same sha256: no provenance warning

    direction = np.load(tmp_path / "blond.npy")
    pairs = np.load(tmp_path / "blond_pairs.npz")
    assert direction.shape == (generator.num_ws, 24) and list(pairs["seeds"]) == [0, 1]
    np.testing.assert_allclose(direction, (pairs["w_a"] - pairs["w_b"]).mean(0), atol=1e-6)
    sidecar = json.loads((tmp_path / "blond.json").read_text())
    assert sidecar["method"] == "pulse-pairs" and sidecar["seeds"] == [0, 1]
    assert sidecar["generator_sha256"] == sha256_file(ckpt)
    assert Image.open(tmp_path / "blond_pairs.png").size == (2 * 34 + 2, 2 * 34 + 2)

    inverted = np.load(tmp_path / "inv" / "face.npy")
    for strength, label in [(-1.0, "-1"), (0.0, "0"), (1.0, "1"), (2.0, "2")]:
        np.testing.assert_allclose(np.load(tmp_path / "edit" / f"face_s{label}.npy"), inverted + strength * direction,
                                   atol=1e-5)
        assert Image.open(tmp_path / "edit" / f"face_s{label}.png").size == (32, 32)
    assert Image.open(tmp_path / "edit" / "sweep.png").size == (4 * 34 + 2, 34 + 2)
    manifest = json.loads((tmp_path / "edit" / "manifest.json").read_text())
    assert manifest["direction"]["method"] == "pulse-pairs" and manifest["strengths"] == [-1.0, 0.0, 1.0, 2.0]
