"""``latentedit generate`` from Python and from the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from latentedit.cli.main import cli
from latentedit.latents import as_w_or_w_plus, parse_seeds, z_from_seeds
from latentedit.errors import InputError
from helpers import run_cli


def test_parse_seeds_ranges_and_errors():
    assert parse_seeds("0-3,7,9-10") == [0, 1, 2, 3, 7, 9, 10]
    for bad in ("", "a", "5-2", "1,,x"):
        with pytest.raises(InputError):
            parse_seeds(bad)


def test_seed_convention_is_numpy_randomstate():
    z = z_from_seeds([3], 16)
    np.testing.assert_allclose(z[0].numpy(), np.random.RandomState(3).randn(16).astype(np.float32))


def test_latent_shapes_accepted_and_rejected():
    assert as_w_or_w_plus(np.zeros(8), 6, 8).shape == (1, 8)
    assert as_w_or_w_plus(np.zeros((6, 8)), 6, 8).shape == (1, 6, 8)
    assert as_w_or_w_plus(np.zeros((3, 6, 8)), 6, 8).shape == (3, 6, 8)
    with pytest.raises(InputError, match="does not fit"):
        as_w_or_w_plus(np.zeros((3, 5, 8)), 6, 8)


def test_generate_latent_reproduces_reference_pngs(refdata, tmp_path):
    result = run_cli("generate", "--ckpt", refdata / "ros64_small.pt", "--latent", refdata / "ros64_wplus.npy",
                     "-o", tmp_path)
    assert result.exit_code == 0, result.output
    for i in range(4):
        ours = np.asarray(Image.open(tmp_path / f"ros64_wplus_{i:04d}.png"), dtype=int)
        reference = np.asarray(Image.open(refdata / f"ros64_out_{i}.png").convert("RGB"), dtype=int)
        assert np.abs(ours - reference).max() <= 1
    latent = np.load(tmp_path / "ros64_wplus_0000.npy")
    np.testing.assert_allclose(latent, np.load(refdata / "ros64_wplus.npy")[0])


def test_generate_seeds_writes_manifest_and_reloads_latents(refdata, tmp_path):
    ckpt = refdata / "ada64_small.pkl"
    result = run_cli("generate", "--ckpt", ckpt, "--seeds", "0-2", "--truncation", "0.7", "-o", tmp_path / "a")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["seeds"] == [0, 1, 2]
    assert manifest["truncation_psi"] == 0.7
    assert manifest["checkpoint"]["source_format"] == "nvidia-pkl"
    assert len(manifest["checkpoint"]["sha256"]) == 64
    assert (tmp_path / "a" / "grid.png").is_file()
    # A latent written by generate renders the same image when fed back (truncation is already applied).
    result = run_cli("generate", "--ckpt", ckpt, "--latent", tmp_path / "a" / "seed0001.npy", "-o", tmp_path / "b")
    assert result.exit_code == 0, result.output
    first = np.asarray(Image.open(tmp_path / "a" / "seed0001.png"))
    again = np.asarray(Image.open(tmp_path / "b" / "seed0001.png"))
    assert np.array_equal(first, again)


def test_generate_rejects_wrong_latent_shape(refdata, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 7), np.float32))
    result = CliRunner().invoke(cli, ["generate", "--ckpt", str(refdata / "ros64_small.pt"), "--latent", str(bad),
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "does not fit this generator" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_generate_noise_modes_differ(tiny_generator):
    from latentedit.model.sampling import synthesize, w_from_seeds

    w = w_from_seeds(tiny_generator, [1, 2])
    const = synthesize(tiny_generator, w, "const")
    assert np.array_equal(const.numpy(), synthesize(tiny_generator, w, "const").numpy())
    random_a = synthesize(tiny_generator, w, "random", noise_seed=1)
    assert np.array_equal(random_a.numpy(), synthesize(tiny_generator, w, "random", noise_seed=1).numpy())
    assert not np.array_equal(random_a.numpy(), const.numpy())
    assert not np.array_equal(synthesize(tiny_generator, w, "zero").numpy(), const.numpy())


def test_portable_paths_make_committed_results_machine_independent(tmp_path, monkeypatch):
    from pathlib import Path

    from latentedit.io import portable_paths

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = tmp_path / "repo"
    root.mkdir()
    report = {"checkpoint": {"path": str(root / "pretrained" / "g.safetensors")},
              "cache": Path(tmp_path / "home" / ".cache" / "fit.npz"),
              "references": [str(root / "examples" / "a.png"), "/elsewhere/b.png"], "steps": 100,
              "note": "a repo-less string"}
    assert portable_paths(report, root) == {
        "checkpoint": {"path": "pretrained/g.safetensors"}, "cache": "~/.cache/fit.npz",
        "references": ["examples/a.png", "/elsewhere/b.png"], "steps": 100, "note": "a repo-less string"}
    # A sibling folder whose name merely starts with the root's is not inside it.
    assert portable_paths(str(tmp_path / "repo2" / "x"), root) == str(tmp_path / "repo2" / "x")


def test_generate_refuses_unwritable_output_and_non_finite_images(tiny_generator, tmp_path):
    import copy

    import torch

    from latentedit.model.sampling import generate_to_folder

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="part of the path is a file"):
        generate_to_folder(tiny_generator, blocker / "out", checkpoint_info={}, seeds=[0], progress=False)
    broken = copy.deepcopy(tiny_generator)
    with torch.no_grad():
        next(p for name, p in broken.named_parameters() if "to_rgb" in name).fill_(float("nan"))
    with pytest.raises(InputError, match="NaN or infinite"):
        generate_to_folder(broken, tmp_path / "nan", checkpoint_info={}, seeds=[0, 1], progress=False)
    assert not list((tmp_path / "nan").iterdir())  # nothing written, not even a black PNG
    manifest = generate_to_folder(tiny_generator, tmp_path / "ok", checkpoint_info={"sha256": None}, seeds=[0],
                                  progress=False)
    assert json.loads((tmp_path / "ok" / "manifest.json").read_text(),
                      parse_constant=lambda token: pytest.fail(f"bare {token}"))["names"] == manifest["names"]
