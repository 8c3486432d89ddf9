"""Pivotal tuning (``invert --method pti``, issue #23): it beats its pivot, and its tuned generator is a checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentedit.checkpoints import inspect_checkpoint, load_generator, save_native
from latentedit.io import sha256_file
from latentedit.invert.pti import tune_generator
from helpers import make_small_generator, run_cli

pytestmark = pytest.mark.usefixtures("single_thread", "private_caches")


@pytest.fixture(scope="module")
def generator():
    return make_small_generator(6)


@pytest.fixture(scope="module")
def ckpt(generator, tmp_path_factory) -> Path:
    return save_native(generator, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def photo(path: Path, seed: int = 3) -> Path:
    """A smooth random picture the generator cannot make exactly (so a pivot leaves something to tune)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(small).resize((32, 32), Image.Resampling.BICUBIC).save(path)
    return path


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=int)


def test_pti_raises_psnr_over_its_pivot_and_writes_a_loadable_generator(ckpt, tmp_path):
    image = photo(tmp_path / "face.png")
    out = tmp_path / "out"
    result = run_cli("invert", image, "--ckpt", ckpt, "--method", "pti", "--steps", "10", "--lr", "0.05",
                     "--pti-steps", "30", "--pti-lr", "3e-3", "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "face.json").read_text())
    pti = manifest["pti"]
    assert manifest["settings"]["method"] == "pti" and manifest["settings"]["pti_steps"] == 30
    assert pti["psnr_db"] > pti["pivot_psnr_db"] + 1.0
    assert manifest["metrics"]["psnr_db"] == pytest.approx(pti["psnr_db"], abs=1e-3)
    assert "face_G.safetensors" in manifest["files"]
    tuned = out / "face_G.safetensors"
    report = inspect_checkpoint(tuned)
    assert report["provenance"]["derived_from_sha256"] == sha256_file(ckpt)
    assert json.loads(report["provenance"]["pti"])["steps"] == 30
    # Every command reads it with --ckpt: generate renders the inversion's PNG from the pivot latent.
    generated = tmp_path / "gen"
    assert run_cli("generate", "--ckpt", tuned, "--latent", out / "face.npy", "-o", generated).exit_code == 0
    assert np.abs(pixels(out / "face.png") - pixels(generated / "face.png")).max() <= 1
    info = run_cli("info", tuned)
    assert info.exit_code == 0 and "derived from sha256" in info.stdout
    # The base generator is untouched: it renders the pivot, not the tuned image.
    base = tmp_path / "base"
    assert run_cli("generate", "--ckpt", ckpt, "--latent", out / "face.npy", "-o", base).exit_code == 0
    assert np.abs(pixels(out / "face.png") - pixels(base / "face.png")).max() > 1
    # A rerun skips; other PTI settings are not silently reused.
    again = run_cli("invert", image, "--ckpt", ckpt, "--method", "pti", "--steps", "10", "--lr", "0.05",
                    "--pti-steps", "30", "--pti-lr", "3e-3", "-o", out)
    assert again.exit_code == 0 and "skipped 1" in again.stdout
    changed = run_cli("invert", image, "--ckpt", ckpt, "--method", "pti", "--steps", "10", "--lr", "0.05",
                      "--pti-steps", "31", "--pti-lr", "3e-3", "-o", out)
    assert changed.exit_code == 2 and "pti_steps" in changed.stderr


def test_locality_regulariser_keeps_the_generator_away_from_the_pivot(generator):
    """With the regulariser, renders of latents between the pivot and random faces move less."""
    target = torch.rand(3, 32, 32) * 2 - 1
    pivot = generator.mean_w().clone()
    probes = generator.mapping(torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(1)))
    probes = pivot + 0.3 * (probes - pivot)
    with torch.no_grad():
        original = generator.synthesis(probes)

    def drift(weight: float) -> float:
        tuned = tune_generator(generator, target, pivot, steps=25, lr=3e-3, locality_weight=weight, name="x")
        assert tuned.error is None and tuned.psnr_db > tuned.pivot_psnr_db
        with torch.no_grad():
            return float((tuned.generator.synthesis(probes) - original).square().mean())

    assert drift(10.0) < drift(0.0)


def test_pti_with_an_encoder_pivot_records_both(ckpt, tmp_path):
    from latentedit.invert.encoder import EncoderTrainConfig, train_encoder

    run = tmp_path / "enc"
    train_encoder(EncoderTrainConfig(ckpt=str(ckpt), batch=2, iters=2, base_channels=8, max_channels=16, hidden=32,
                                     device="cpu", perceptual="none", sample_every=100), run, progress=False)
    image = photo(tmp_path / "face.png", seed=4)
    result = run_cli("invert", image, "--ckpt", ckpt, "--method", "pti", "--pti-pivot", "encoder", "--encoder", run,
                     "--pti-steps", "3", "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "face.json").read_text())
    assert manifest["pti"]["pivot"] == "encoder" and manifest["steps"] == 0
    assert manifest["settings"]["encoder_sha256"] == sha256_file(run / "encoder.safetensors")
    # The encoder accepts the tuned generator, which derives from the one it was trained for.
    again = run_cli("invert", image, "--ckpt", tmp_path / "out" / "face_G.safetensors", "--method", "encoder",
                    "--encoder", run, "-o", tmp_path / "again", "--no-progress")
    assert again.exit_code == 0, again.output
    assert load_generator(tmp_path / "out" / "face_G.safetensors").info.provenance["derived_by"].endswith("pti")


def test_apply_direction_with_the_tuned_generator_edits_the_tuned_image(ckpt, tmp_path):
    """The issue's chain: invert --method pti, then apply-direction --ckpt <stem>_G.safetensors --latent <stem>.npy:
    strength 0 gives back the tuned reconstruction, a real strength changes it."""
    image = photo(tmp_path / "face.png", seed=5)
    out = tmp_path / "out"
    assert run_cli("invert", image, "--ckpt", ckpt, "--method", "pti", "--steps", "5", "--lr", "0.05",
                   "--pti-steps", "10", "--pti-lr", "3e-3", "-o", out, "--no-progress").exit_code == 0
    generator = load_generator(ckpt).generator
    direction = np.zeros((generator.num_ws, generator.w_dim), np.float32)
    direction[:, 0] = 1.0
    np.save(tmp_path / "v.npy", direction)
    edited = tmp_path / "edited"
    result = run_cli("apply-direction", "--vec", tmp_path / "v.npy", "--latent", out / "face.npy", "--ckpt",
                     out / "face_G.safetensors", "--strength", "0,2", "-o", edited, "--no-progress")
    assert result.exit_code == 0, result.output
    manifest = json.loads(next(edited.glob("*.json")).read_text())
    renders = sorted(p for p in edited.glob("*.png") if "sweep" not in p.name and "grid" not in p.name)
    assert len(renders) == 2, [p.name for p in edited.iterdir()]
    unedited, moved = (pixels(p) for p in renders)
    assert np.abs(unedited - pixels(out / "face.png")).max() <= 1
    assert np.abs(moved - unedited).mean() > 1
    assert manifest["checkpoint"]["sha256"] == sha256_file(out / "face_G.safetensors")
