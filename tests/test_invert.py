"""``latentedit invert``: Image2StyleGAN / projector inversion, from Python and from the CLI."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentedit.checkpoints import load_generator, save_native
from latentedit.errors import InputError
from latentedit.invert.optimize import InversionSettings, invert, noise_regularization, prepare_perceptual, projector_lr
from latentedit.model import Generator
from latentedit.invert.perceptual import VGG16_FILENAME, build_perceptual, choose_perceptual
from helpers import make_generator, run_cli


@pytest.fixture(scope="module")
def generator() -> Generator:
    return make_generator(3, style_dim=32, channels={4: 32, 8: 32, 16: 16, 32: 16}, noise_weight=0.2,
                          w_avg_samples=512)


@pytest.fixture(scope="module")
def ckpt(generator, tmp_path_factory) -> Path:
    return save_native(generator, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def targets(generator) -> torch.Tensor:
    """Two images the generator can make exactly: renders of random W+ latents."""
    with torch.no_grad():
        w = generator.mapping(torch.randn(2, generator.w_dim, generator=torch.Generator().manual_seed(5)))
        return generator.synthesis(w).clamp(-1, 1)


@pytest.fixture(scope="module")
def random_lpips(generator):
    return build_perceptual("lpips", image_size=generator.size, random_backbone=True, seed=0)


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to download (torch.hub, urllib) fails the test."""
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def save_rgb(path: Path, seed: int, size=(40, 40), mode="RGB") -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def png_bomb(path: Path, side: int = 50_000) -> Path:
    """A tiny PNG whose header claims ``side`` x ``side`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------------------------------
# The optimisation itself

def test_w_plus_inversion_improves_psnr_and_beats_w(generator, targets):
    settings = InversionSettings(steps=40, lr=0.05)
    w_plus = invert(generator, targets, settings)
    w_only = invert(generator, targets, InversionSettings(steps=40, lr=0.05, space="w"))
    for result in w_plus:
        assert result.latent.shape == (generator.num_ws, generator.w_dim)
        assert result.latent.dtype == np.float32
        assert result.psnr_db > result.loss_curve[0]["psnr_db"] + 3
        assert [entry["step"] for entry in result.loss_curve][:3] == [0, 10, 20]
        assert result.loss_curve[-1]["step"] == 40
    assert w_only[0].latent.shape == (generator.w_dim,)
    # W+ has more freedom than W: after the same steps it fits at least as well (the paper's finding).
    assert np.mean([r.psnr_db for r in w_plus]) > np.mean([r.psnr_db for r in w_only])


def test_reconstruction_is_the_latent_rendered(generator, targets):
    result = invert(generator, targets[:1], InversionSettings(steps=5))[0]
    with torch.no_grad():
        again = generator.synthesis(torch.from_numpy(result.latent)[None]).clamp(-1, 1)[0]
    torch.testing.assert_close(again, result.reconstruction, atol=1e-4, rtol=0)
    expected = ((again - targets[0]) / 2).square().mean()
    assert result.psnr_db == pytest.approx(float(-10 * torch.log10(expected)), abs=1e-3)


@pytest.mark.parametrize("preset", ["image2stylegan", "projector"])
def test_batch_gives_each_image_its_own_result(generator, targets, preset):
    """Batched inversion equals one-by-one inversion: per-image losses and per-image random streams."""
    settings = InversionSettings(preset=preset, steps=12, seed=4)
    together = invert(generator, targets, settings, names=["a", "b"])
    alone = [invert(generator, targets[i:i + 1], settings, names=[name])[0] for i, name in enumerate("ab")]
    for batched, single in zip(together, alone):
        np.testing.assert_allclose(batched.latent, single.latent, atol=5e-4)


def test_seeded_projector_is_deterministic(generator, targets):
    settings = InversionSettings(preset="projector", steps=10, seed=1)
    first = invert(generator, targets[:1], settings)[0]
    second = invert(generator, targets[:1], settings)[0]
    other = invert(generator, targets[:1], InversionSettings(preset="projector", steps=10, seed=2))[0]
    np.testing.assert_array_equal(first.latent, second.latent)
    for a, b in zip(first.noise, second.noise):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first.latent, other.latent)


def test_projector_optimises_and_renormalises_noise(generator, targets):
    settings = InversionSettings(preset="projector", steps=8)
    result = invert(generator, targets[:1], settings)[0]
    assert len(result.noise) == generator.num_layers
    stored = [n[0, 0].numpy() for n in generator.noises.maps()]
    assert any(not np.allclose(n, s) for n, s in zip(result.noise, stored))
    for noise_map in result.noise:
        assert abs(noise_map.mean()) < 1e-4
        assert noise_map.var() == pytest.approx(1.0, abs=1e-3)
    # image2stylegan keeps the stored noise: nothing is optimised or returned
    assert invert(generator, targets[:1], InversionSettings(steps=2))[0].noise is None


def test_target_psnr_stops_early_and_keeps_that_latent(generator, targets):
    reachable = invert(generator, targets[:1], InversionSettings(steps=200, lr=0.05, target_psnr=14))[0]
    assert reachable.reached_target is True
    assert 0 < reachable.steps < 200
    assert reachable.psnr_db >= 14
    assert reachable.loss_curve[-1]["step"] == reachable.steps
    unreachable = invert(generator, targets[:1], InversionSettings(steps=5, target_psnr=99))[0]
    assert unreachable.reached_target is False and unreachable.steps == 5


def test_divergence_is_reported_per_image_not_returned_as_a_result(generator, targets):
    results = invert(generator, targets, InversionSettings(steps=4, lr=1e30, perceptual="none"))
    assert all(r.error is not None and "diverged" in r.error and "learning rate" in r.error for r in results)
    fine = invert(generator, targets[:1], InversionSettings(steps=2, perceptual="none"))[0]
    assert fine.error is None and np.isfinite(fine.latent).all()


def test_noise_regulariser_is_per_image():
    ones = torch.ones(1, 1, 16, 16)
    values = noise_regularization([torch.cat([ones, torch.zeros_like(ones)])])
    # a constant map correlates perfectly with its shifts: 1² + 1² at 16x16 and again at 8x8
    torch.testing.assert_close(values, torch.tensor([4.0, 0.0]))
    assert noise_regularization([torch.ones(2, 1, 4, 4)]).tolist() == [2.0, 2.0]


def test_projector_learning_rate_schedule():
    assert projector_lr(0.1, 0.0) == 0
    assert projector_lr(0.1, 0.025) == pytest.approx(0.05)
    assert projector_lr(0.1, 0.5) == pytest.approx(0.1)
    assert projector_lr(0.1, 0.875) == pytest.approx(0.05)
    assert projector_lr(0.1, 0.999) < 1e-4


def test_bad_settings_are_input_errors(generator, targets):
    for bad in (dict(preset="nope"), dict(space="z"), dict(steps=0), dict(lr=-1.0), dict(noise="random"),
                dict(target_psnr=-3.0), dict(mse_weight=float("nan"))):
        with pytest.raises(InputError):
            invert(generator, targets[:1], InversionSettings(**bad))
    with pytest.raises(InputError, match="loss is empty"):
        invert(generator, targets[:1], InversionSettings(mse_weight=0.0, steps=1))
    with pytest.raises(InputError, match="targets must be"):
        invert(generator, torch.zeros(1, 3, 16, 16), InversionSettings(steps=1))


# --------------------------------------------------------------------------------------------------
# Perceptual losses, offline

def test_perceptual_auto_without_weights_falls_back_with_a_notice(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    choice = choose_perceptual("auto", "vgg")
    assert choice.kind is None and "--vgg-weights" in choice.notice and VGG16_FILENAME in choice.notice
    for kind in ("vgg", "lpips"):
        with pytest.raises(InputError, match=VGG16_FILENAME):
            choose_perceptual(kind, "vgg")
    with pytest.raises(InputError, match="does not exist"):
        choose_perceptual("auto", "vgg", tmp_path / "missing.pth")
    assert choose_perceptual("none", "vgg").kind is None


def test_local_vgg_weights_are_loaded_without_downloading(generator, tmp_path, monkeypatch, no_network):
    from latentedit.invert.perceptual import LPIPS_SLICE_ENDS, vgg16_features

    torch.manual_seed(11)
    state = {f"features.{k}": v for k, v in vgg16_features(LPIPS_SLICE_ENDS[-1]).state_dict().items()}
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / VGG16_FILENAME)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    setup = prepare_perceptual(InversionSettings(), generator.size)
    assert setup.kind == "vgg" and setup.notice is None and setup.source == str(cache / VGG16_FILENAME)
    torch.testing.assert_close(setup.loss.slices[2][-2].weight, state["features.12.weight"])  # conv3_2
    torch.testing.assert_close(setup.lpips_metric.model.net.slice4[-2].weight, state["features.21.weight"])
    # a file that is not a VGG16 state dict is a clear error
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="lack features"):
        prepare_perceptual(InversionSettings(perceptual="vgg", vgg_weights=str(tmp_path / "bad.pth")), 32)


@pytest.mark.parametrize("kind", ["vgg", "lpips"])
def test_perceptual_distances_are_per_image(kind, targets, random_lpips):
    distance = random_lpips if kind == "lpips" else build_perceptual("vgg", image_size=32, random_backbone=True)
    reference = distance.target_features(targets)
    same = distance(targets, reference)
    assert same.shape == (2,) and torch.all(same.abs() < 1e-6)
    moved = targets.clone().requires_grad_(True)
    values = distance(moved.flip(0), reference)
    assert torch.all(values > 0)
    values[0].backward()
    assert moved.grad[1].abs().sum() > 0 and moved.grad[0].abs().sum() == 0  # image 0 of the flip is target 1


def test_inversion_with_lpips_reports_the_metric(generator, targets, random_lpips):
    results = invert(generator, targets, InversionSettings(preset="projector", steps=6), perceptual=random_lpips,
                     lpips_metric=random_lpips)
    assert all(r.lpips is not None and r.lpips >= 0 for r in results)


# --------------------------------------------------------------------------------------------------
# Files and the command line

@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """Real photographs (SPEC §8) and odd image modes and sizes."""
    import matplotlib.cbook
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    shutil.copy(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), folder / "grace_hopper.jpg")
    Image.fromarray(skimage.data.astronaut()).save(folder / "astronaut.png")
    save_rgb(folder / "rgba.png", 1, (30, 50), "RGBA")
    save_rgb(folder / "grey.png", 2, (17, 17), "L")
    save_rgb(folder / "palette.gif", 3, (64, 48), "P")
    save_rgb(folder / "cmyk.jpg", 4, (33, 33), "CMYK")
    Image.fromarray(np.arange(400, dtype=np.uint16).reshape(20, 20) * 150).save(folder / "deep16.png")
    return folder


def bad_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good = save_rgb(folder / "source.png", 9)
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:60])
    good.unlink()
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    text = folder / "text.png"
    text.write_text("not an image\n")
    return [corrupt, empty, text, png_bomb(folder / "bomb.png")]


def test_cli_inverts_photos_and_skips_bad_files(ckpt, photo_dir, tmp_path, generator):
    bad = bad_files(tmp_path / "bad")
    out = tmp_path / "out"
    result = run_cli("invert", photo_dir, *bad, "--ckpt", ckpt, "-o", out, "--steps", "3", "--no-progress",
                     "--save-video")
    assert result.exit_code == 0, result.output + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4 and all(line.endswith("skipped") for line in errors)
    assert any("bomb.png" in line and ("too large" in line or "above the limit" in line) for line in errors)
    assert "inverted 7, skipped 0 (already done), failed 4 of 11" in result.stdout
    manifest = json.loads((out / "grace_hopper.json").read_text())
    assert manifest["input"]["center_cropped"] is True and manifest["input"]["original_size"] == [512, 600]
    assert manifest["checkpoint"]["sha256"] == load_generator(ckpt)[1].sha256
    assert manifest["settings"]["perceptual"] == "none" and manifest["settings"]["steps"] == 3
    assert set(manifest["metrics"]) == {"mse", "psnr_db", "lpips"}
    assert manifest["latent_shape"] == [generator.num_ws, generator.w_dim]
    astronaut = json.loads((out / "astronaut.json").read_text())
    assert astronaut["input"]["center_cropped"] is False
    assert Image.open(out / "astronaut_compare.png").size == (2 * 32 + 6, 32 + 4)
    gif = Image.open(out / "cmyk_progress.gif")
    assert gif.n_frames == 4  # steps 0, 1, 2 and the final reconstruction
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"inverted": 7, "skipped": 0, "failed": 4, "total": 11}
    assert {r["name"] for r in summary["images"] if r["status"] == "failed"} == {"corrupt", "empty", "text", "bomb"}


def test_cli_latent_is_read_by_generate(ckpt, tmp_path):
    image = save_rgb(tmp_path / "img.png", 5, (32, 32))
    out = tmp_path / "out"
    assert run_cli("invert", image, "--ckpt", ckpt, "-o", out, "--steps", "4", "--no-progress").exit_code == 0
    result = run_cli("generate", "--ckpt", ckpt, "--latent", out / "img.npy", "-o", tmp_path / "gen")
    assert result.exit_code == 0, result.output
    ours = np.asarray(Image.open(out / "img.png"), dtype=int)
    generated = np.asarray(Image.open(tmp_path / "gen" / "img.png"), dtype=int)
    assert np.abs(ours - generated).max() <= 1


def test_cli_all_inputs_bad_exits_2_with_one_line(ckpt, tmp_path):
    result = run_cli("invert", *bad_files(tmp_path / "bad"), "--ckpt", ckpt, "-o", tmp_path / "out", "--steps", "2")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: all 4 input(s) failed")
    assert "Traceback" not in result.stderr


def test_cli_checkpoint_and_argument_errors(ckpt, tmp_path):
    image = save_rgb(tmp_path / "img.png", 6)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(256))
    for args in (["--ckpt", tmp_path / "missing.pt"], ["--ckpt", garbage]):
        result = run_cli("invert", image, *args, "-o", tmp_path / "out")
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = run_cli("invert", image, "--ckpt", ckpt, "--perceptual", "lpips", "-o", tmp_path / "out",
                     "--vgg-weights", tmp_path / "nope.pth")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    twin = tmp_path / "twin"
    twin.mkdir()
    save_rgb(twin / "img.jpg", 7)
    result = run_cli("invert", image, twin / "img.jpg", "--ckpt", ckpt, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "would both write img" in result.stderr
    result = run_cli("invert", tmp_path, "--ckpt", ckpt, "-o", tmp_path)
    assert result.exit_code == 2 and "holds the input" in result.stderr


def test_rerun_skips_finished_images_and_resumes(ckpt, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        save_rgb(folder / f"im{i}.png", 10 + i)
    out = tmp_path / "out"
    common = ["--ckpt", ckpt, "-o", out, "--steps", "3", "--no-progress", "--batch-size", "2"]
    assert run_cli("invert", folder, *common).exit_code == 0
    first = (out / "im1.npy").read_bytes()
    (out / "im2.json").unlink()  # as if the run had been killed before im2 finished
    result = run_cli("invert", folder, *common)
    assert "inverted 1, skipped 2 (already done)" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["images"]] == ["skipped", "skipped", "inverted"]
    changed = run_cli("invert", folder, *common[:-2], "--steps", "4")
    assert changed.exit_code == 2 and "other settings (steps)" in changed.stderr
    redo = run_cli("invert", folder, *common, "--overwrite", "--seed", "3")
    assert "inverted 3, skipped 0" in redo.stdout
    assert (out / "im1.npy").read_bytes() == first  # fixed-noise image2stylegan does not depend on the seed
    assert not list(out.glob(".*.tmp"))


def test_cli_projector_writes_noise(ckpt, tmp_path):
    image = save_rgb(tmp_path / "img.png", 8)
    out = tmp_path / "out"
    result = run_cli("invert", image, "--ckpt", ckpt, "-o", out, "--preset", "projector", "--steps", "4",
                     "--space", "w", "--no-progress")
    assert result.exit_code == 0, result.stderr
    noise = np.load(out / "img_noise.npz", allow_pickle=False)
    assert sorted(noise.files, key=lambda k: int(k.split("_")[1]))[0] == "noise_0"
    assert noise["noise_0"].shape == (4, 4)
    assert np.load(out / "img.npy").shape == (32,)
    manifest = json.loads((out / "img.json").read_text())
    assert manifest["settings"]["noise"] == "optimize" and manifest["settings"]["mse_weight"] == 1.0


def test_refdata_checkpoint_inversion(refdata, tmp_path):
    """A rosinality checkpoint: invert one of its own renders (the reference PNG of a known W+)."""
    out = tmp_path / "out"
    result = run_cli("invert", refdata / "ros64_out_0.png", "--ckpt", refdata / "ros64_small.pt", "-o", out,
                     "--steps", "15", "--no-progress")
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((out / "ros64_out_0.json").read_text())
    assert manifest["latent_shape"] == [10, 128]
    assert manifest["metrics"]["psnr_db"] > manifest["loss_curve"][0]["psnr_db"]


def test_torchrun_two_cpu_ranks_invert_each_image_once(ckpt, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        save_rgb(folder / f"im{i}.png", 20 + i)
    (folder / "broken.png").write_text("nope")
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "latentedit", "invert", str(folder), "--ckpt", str(ckpt), "-o", str(out), "--steps", "2",
               "--no-progress", "--device", "cpu"]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["counts"] == {"inverted": 5, "skipped": 0, "failed": 1, "total": 6}
    ranks = {r["name"]: r["rank"] for r in summary["images"]}
    assert ranks == {"broken": 0, "im0": 1, "im1": 0, "im2": 1, "im3": 0, "im4": 1}  # sorted index % 2
    for name in ("im0", "im1", "im2", "im3", "im4"):
        assert json.loads((out / f"{name}.json").read_text())["rank"] == ranks[name]
    assert completed.stdout.count("inverted 5") == 1  # only rank 0 reports


def test_the_same_command_gives_the_same_latent_under_the_default_backend(ckpt, tmp_path, monkeypatch):
    """Under the default LATENTEDIT_OPS=auto the backend follows a fixed rule (it used to be timed, and three
    identical runs differed by up to 0.11); the manifest says which backend ran."""
    from latentedit.ops import backend

    monkeypatch.delenv("LATENTEDIT_OPS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(Path.home() / ".cache"))  # share the kernel build with the suite
    save_rgb(tmp_path / "face.png", 21)
    latents = []
    for run in ("a", "b"):
        backend.reset()  # as a new process would
        result = run_cli("invert", tmp_path / "face.png", "--ckpt", ckpt, "--steps", "4", "--no-progress",
                         "-o", tmp_path / run)
        assert result.exit_code == 0, result.output
        latents.append((tmp_path / run / "face.npy").read_bytes())
        ops = json.loads((tmp_path / run / "face.json").read_text())["versions"]["ops"]
        assert ops["LATENTEDIT_OPS"] == "auto" and ops["upfirdn2d"]["cpu"] in ("native", "compiled")
    assert latents[0] == latents[1]


def test_a_warm_start_from_the_encoder_gets_its_own_defaults_and_plain_optimisation_keeps_the_papers():
    from latentedit.invert.optimize import WARM_START_LR, WARM_START_STEPS

    plain = InversionSettings().validated()
    assert (plain.steps, plain.lr) == (1000, 0.01)
    warm = InversionSettings(method="encoder+optimize").validated()
    assert (warm.steps, warm.lr) == (WARM_START_STEPS, WARM_START_LR)
    assert InversionSettings(method="pti", pti_pivot="encoder+optimize").validated().lr == WARM_START_LR
    assert InversionSettings(method="pti").validated().lr == 0.01  # an optimised pivot starts at the mean w
    assert InversionSettings(method="encoder+optimize", steps=30, lr=0.02).validated().lr == 0.02
    assert InversionSettings(method="encoder+optimize", preset="projector").validated().lr == 0.1
