"""Issue #17, "fail before working, never after": unwritable outputs are refused before any work,
non-finite results are never written, resume checks what it skips, tiny images and broken latent files
get messages that say what is wrong, and folders are searched recursively with unique output names."""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentedit import io as lio
from latentedit.checkpoints import save_native
from latentedit.errors import InputError
from latentedit.model import Generator
from helpers import make_generator, run_cli

pytestmark = pytest.mark.usefixtures("single_thread", "private_caches")

ATTRS = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"]
ALL_GIVEN = ["Black_Hair=1,Blond_Hair=0,Brown_Hair=0,Male=1,Young=1"]


def strict_json(path: Path):
    """Parse as RFC 8259 JSON: a bare NaN / Infinity is a failure."""
    def refuse(token):
        raise AssertionError(f"{path} holds a bare {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def generator() -> Generator:
    return make_generator(3, style_dim=16, n_mlp=1, channels={4: 16, 8: 16, 16: 8, 32: 8}, noise_weight=None)


@pytest.fixture(scope="module")
def ckpt(generator, tmp_path_factory) -> Path:
    return save_native(generator, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def stargan_ckpt(tmp_path_factory) -> Path:
    from latentedit.baselines import stargan

    torch.manual_seed(0)
    model = stargan.StarGANGenerator(stargan.StarGANGeneratorConfig(c_dim=len(ATTRS), conv_dim=4, repeat_num=0))
    path = tmp_path_factory.mktemp("stargan") / "generator.safetensors"
    stargan.save_stargan_generator(model.eval(), path, ATTRS, image_size=16, crop_size=16)
    return path


def save_rgb(path: Path, seed: int = 0, size=(40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def unwritable(tmp_path) -> list[Path]:
    """Output folders nobody can create: under a regular file, and in /proc (tests run as root, where a
    chmod read-only folder is still writable)."""
    regular = tmp_path / "a_file"
    regular.write_text("x")
    return [regular / "out", Path("/proc/latentedit_test")]


# --------------------------------------------------------------------------------------------------
# 1. Unwritable outputs fail before any work


def test_prepare_output_dir_creates_and_refuses(tmp_path, unwritable):
    made = lio.prepare_output_dir(tmp_path / "new" / "deeper")
    assert made.is_dir() and not list(made.iterdir())  # the probe file is gone
    for bad in unwritable:
        with pytest.raises(InputError, match=re.escape(str(bad)) + ".*choose a folder you can write to"):
            lio.prepare_output_dir(bad)
    with pytest.raises(InputError, match="exists and is not a folder"):
        lio.prepare_output_dir(tmp_path / "a_file")
    assert not Path("/proc/latentedit_test").exists()


def test_invert_refuses_unwritable_output_before_inverting(ckpt, tmp_path, unwritable, monkeypatch):
    import latentedit.invert.optimize as optimize

    def never(*args, **kwargs):
        raise AssertionError("the inversion ran although the output cannot be written")

    monkeypatch.setattr(optimize, "invert", never)
    monkeypatch.setattr("latentedit.checkpoints.load_generator", never)
    image = save_rgb(tmp_path / "img.png")
    for bad in unwritable:
        result = run_cli("invert", image, "--ckpt", ckpt, "-o", bad, "--steps", "1", "--no-progress")
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0]
        assert "internal error" not in result.stderr


def test_pulse_generate_and_stargan_refuse_unwritable_output(generator, ckpt, stargan_ckpt, tmp_path, unwritable,
                                                             monkeypatch):
    import latentedit.pulse.search as search
    from latentedit.baselines.stargan_transfer import grid_files, transfer_files
    from latentedit.model.sampling import generate_to_folder

    monkeypatch.setattr(search, "run_pulse", lambda *a, **k: pytest.fail("PULSE ran"))
    monkeypatch.setattr(search, "gaussian_fit", lambda *a, **k: pytest.fail("the fit ran"))
    reference = tmp_path / "ref.png"
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(reference)
    image = save_rgb(tmp_path / "face.png", size=(16, 16))
    for bad in unwritable:
        with pytest.raises(InputError, match="choose a folder you can write to"):
            search.pulse_to_folder(generator, [reference], bad, search.PulseSettings(steps=1), progress=False)
        with pytest.raises(InputError, match="choose a folder you can write to"):
            generate_to_folder(generator, bad, checkpoint_info={}, seeds=[0], progress=False)
        with pytest.raises(InputError, match="choose a folder you can write to"):
            transfer_files([image], ["Male=0"], bad, ckpt=stargan_ckpt, source_attrs=ALL_GIVEN, device="cpu")
        with pytest.raises(InputError, match="choose a folder you can write to"):
            grid_files([image], bad / "grid.png", ckpt=stargan_ckpt, source_attrs=ALL_GIVEN, device="cpu")
    result = run_cli("generate", "--ckpt", ckpt, "--seeds", "0", "-o", unwritable[1])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "internal error" not in result.output


# --------------------------------------------------------------------------------------------------
# 2. Non-finite results are failures; JSON is strict


def test_write_json_writes_null_for_non_finite_numbers(tmp_path):
    path = tmp_path / "r.json"
    lio.write_json(path, {"a": float("nan"), "b": [1.5, float("inf"), np.float32("-inf")],
                          "c": np.array([0.5, np.nan]), "d": np.int64(3), "e": {"f": np.float64(2.0)}, "g": True})
    assert strict_json(path) == {"a": None, "b": [1.5, None, None], "c": [0.5, None], "d": 3, "e": {"f": 2.0},
                                 "g": True}


def test_diverging_inversion_writes_nothing_and_fails(ckpt, tmp_path):
    image = save_rgb(tmp_path / "img.png")
    out = tmp_path / "out"
    result = run_cli("invert", image, "--ckpt", ckpt, "-o", out, "--steps", "4", "--lr", "1e30", "--no-progress")
    assert result.exit_code == 2, result.output
    assert "diverged" in result.stderr and "learning rate" in result.stderr and "PSNR nan" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]  # no .npy, .png or .json for img
    summary = strict_json(out / "summary.json")
    assert summary["counts"]["failed"] == 1 and summary["images"][0]["status"] == "failed"
    assert "diverged" in summary["images"][0]["error"]


def nan_for_row(generator: Generator, row: int, from_call: int = 0):
    """Patch ``generator.synthesis`` (on the instance) so that batch row ``row`` renders NaN from the
    ``from_call``-th call on; returns the undo function."""
    original = generator.synthesis
    calls = [0]

    def synthesis(*args, **kwargs):
        images = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] > from_call and images.shape[0] > row:
            images = images.clone()
            images[row] = float("nan")
        return images

    generator.synthesis = synthesis
    return lambda: vars(generator).pop("synthesis", None)


def test_a_diverging_image_fails_alone_and_the_batch_goes_on(generator, tmp_path):
    from latentedit.invert.optimize import InversionSettings, invert_files

    folder = tmp_path / "in"
    save_rgb(folder / "a.png", 1)
    save_rgb(folder / "b.png", 2)
    out = tmp_path / "out"
    lines: list[str] = []
    undo = nan_for_row(generator, row=1, from_call=2)
    try:
        summary = invert_files([folder], out, InversionSettings(steps=4, batch_size=2, perceptual="none"),
                               loaded=(generator, {"sha256": "x"}), progress=False, log=lines.append)
    finally:
        undo()
    assert [r["status"] for r in summary["images"]] == ["inverted", "failed"]
    assert (out / "a.npy").is_file() and not list(out.glob("b*"))
    assert any(line.startswith("error: cannot invert") and "b.png" in line and "diverged at step 2" in line
               for line in lines)
    assert np.isfinite(np.load(out / "a.npy")).all()
    strict_json(out / "a.json"), strict_json(out / "summary.json")


def pulse_fit(generator):
    from latentedit.pulse.fit import GaussianFit, compute_gaussian_fit, mapping_digest

    mean, std = compute_gaussian_fit(generator, num_samples=500)
    return GaussianFit(mean, std, 500, 0, mapping_digest(generator))


def test_a_diverging_pulse_result_is_an_error_and_is_not_written(generator, tmp_path):
    from latentedit.pulse.search import PulseSettings, pulse_to_folder, run_pulse

    fit = pulse_fit(generator)
    refs = torch.full((2, 3, 8, 8), 0.5)
    undo = nan_for_row(generator, row=1, from_call=1)
    try:
        results = run_pulse(generator, refs, [0, 1], PulseSettings(steps=4), fit=fit)
    finally:
        undo()
    assert results[0].error is None and math.isfinite(results[0].l2)
    assert results[1].error is not None and "diverged at step 1" in results[1].error and not results[1].success
    assert "FAILED" in results[1].eps_report("b")

    for name, value in (("a", 100), ("b", 160)):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(tmp_path / f"{name}.png")
    lines: list[str] = []
    undo = nan_for_row(generator, row=1, from_call=0)
    try:
        records = pulse_to_folder(generator, [tmp_path / "a.png", tmp_path / "b.png"], tmp_path / "out",
                                  PulseSettings(steps=3), batch_size=2, fit=fit, progress=False, log=lines.append)
    finally:
        undo()
    assert records[1]["status"] == "failed" and records[1]["success"] is False
    assert (tmp_path / "out" / "a.npy").is_file() and not list((tmp_path / "out").glob("b*"))
    assert len(lines) == 1 and lines[0].startswith("error: PULSE of") and "diverged" in lines[0]
    strict_json(tmp_path / "out" / "a.json")
    undo = nan_for_row(generator, row=0, from_call=0)
    try:
        with pytest.raises(InputError, match="all 1 PULSE result"):
            pulse_to_folder(generator, [tmp_path / "a.png"], tmp_path / "out2", PulseSettings(steps=2), fit=fit,
                            progress=False, log=lines.append)
    finally:
        undo()


# --------------------------------------------------------------------------------------------------
# 3. Resume checks what it skips and removes stale temporaries


def test_resume_redoes_broken_outputs_and_removes_temporaries(ckpt, tmp_path):
    folder = tmp_path / "in"
    for i in range(4):
        save_rgb(folder / f"{i:06d}.png", 30 + i)
    out = tmp_path / "out"
    common = ["--ckpt", ckpt, "-o", out, "--steps", "2", "--no-progress"]
    assert run_cli("invert", folder, *common).exit_code == 0
    good = (out / "000000.npy").read_bytes()
    (out / "000001.npy").write_bytes((out / "000001.npy").read_bytes()[:100])  # cut short
    (out / "000002.json").write_text('{"checkpoint": ')  # unparsable sidecar
    np.save(out / "000003.npy", np.zeros((3, 3), np.float32))  # another shape
    stale = out / ".000004.npy.k2j4h5g6.tmp"
    stale.write_bytes(b"half")
    keep = out / "notes.tmp"
    keep.write_text("not ours")
    result = run_cli("invert", folder, *common)
    assert result.exit_code == 0, result.output
    assert "inverted 3, skipped 1 (already done)" in result.stdout
    notes = [line for line in result.stderr.splitlines() if "not usable" in line]
    assert len(notes) == 3 and any("000001.npy is not a valid .npy" in line for line in notes)
    assert any("000003.npy has shape [3, 3]" in line for line in notes)
    assert "removed 1 temporary file" in result.stderr
    assert not stale.exists() and keep.exists()
    assert (out / "000000.npy").read_bytes() == good
    assert np.load(out / "000001.npy").shape == np.load(out / "000000.npy").shape
    assert [r["status"] for r in strict_json(out / "summary.json")["images"]] == \
        ["skipped", "inverted", "inverted", "inverted"]


def test_remove_stale_temporaries_matches_atomic_write_names(tmp_path):
    with pytest.raises(RuntimeError):
        with lio.atomic_write(tmp_path / "x.npy") as handle:
            handle.write(b"1")
            leftover = [p.name for p in tmp_path.iterdir()]
            raise RuntimeError("killed")
    (tmp_path / leftover[0]).write_bytes(b"as if the process had died")  # atomic_write removed its own
    (tmp_path / "x.npy.tmp").write_bytes(b"user file")
    removed = lio.remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == leftover and [p.name for p in tmp_path.iterdir()] == ["x.npy.tmp"]


# --------------------------------------------------------------------------------------------------
# 4. Tiny images


def test_tiny_images_are_refused_and_strong_upscaling_warns(ckpt, stargan_ckpt, tmp_path):
    from latentedit.image_files import MIN_IMAGE_SIDE, ImageUpscaleWarning, load_image_tensor

    dot = save_rgb(tmp_path / "dot.png", size=(1, 1))
    with pytest.raises(InputError, match=f"only 1x1 pixels.*at least {MIN_IMAGE_SIDE} px"):
        load_image_tensor(dot, 32)
    thin = save_rgb(tmp_path / "thin.png", size=(300, MIN_IMAGE_SIDE - 1))
    with pytest.raises(InputError, match="at least"):
        load_image_tensor(thin, 32)
    small = save_rgb(tmp_path / "small.png", size=(MIN_IMAGE_SIDE, MIN_IMAGE_SIDE))
    messages: list[str] = []
    tensor, info = load_image_tensor(small, 64, warn=messages.append)
    assert tensor.shape == (3, 64, 64) and info["upscaled"] == 8.0
    assert len(messages) == 1 and "upscaled 8.0x" in messages[0] and "small.png" in messages[0]
    with pytest.warns(ImageUpscaleWarning):
        load_image_tensor(small, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "upscaled" not in load_image_tensor(small, 32)[1]  # 4x is fine

    result = run_cli("invert", dot, "--ckpt", ckpt, "-o", tmp_path / "out", "--steps", "1", "--no-progress")
    assert result.exit_code == 2 and "only 1x1 pixels" in result.stderr
    result = run_cli("stargan", "transfer", dot, "--set", "Male=0", "--ckpt", stargan_ckpt, "--source-attrs",
                     ALL_GIVEN[0], "-o", tmp_path / "t.png", "--device", "cpu")
    assert result.exit_code == 2 and result.output.startswith("error: ") and "only 1x1 pixels" in result.output
    assert not (tmp_path / "t.png").exists()


# --------------------------------------------------------------------------------------------------
# 5. Messages that say what is really wrong


def test_a_one_pixel_pulse_reference_says_it_is_too_small(tmp_path):
    from latentedit.pulse.search import check_reference_size, load_reference

    reference = tmp_path / "dot.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(reference)
    with pytest.raises(InputError) as caught:
        load_reference(reference, 64)
    message = str(caught.value)
    assert "too small" in message and "at least 2x2" in message and "does not divide" not in message
    with pytest.raises(InputError, match="larger than the 64 px"):
        check_reference_size(128, 128, 64)
    with pytest.raises(InputError, match="does not divide"):
        check_reference_size(12, 12, 64)


def test_broken_npy_files_never_suggest_allow_pickle(ckpt, tmp_path):
    from latentedit.latents import load_latent_file, read_npy_array

    noise = tmp_path / "noise.npy"
    noise.write_bytes(np.random.default_rng(0).bytes(300))
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    truncated = tmp_path / "cut.npy"
    np.save(truncated, np.zeros((8, 16), np.float32))
    truncated.write_bytes(truncated.read_bytes()[:100])
    for path, fragment in [(noise, "not a valid .npy array file"), (objects, "object array"),
                           (truncated, "not a valid .npy array file")]:
        with pytest.raises(InputError) as caught:
            load_latent_file(path)
        message = str(caught.value)
        assert fragment in message and "never loaded" in message and "allow_pickle" not in message
    with pytest.raises(InputError, match="direction .*not a valid .npy"):
        read_npy_array(noise, "direction")
    result = run_cli("generate", "--ckpt", ckpt, "--latent", noise, "-o", tmp_path / "gen")
    assert result.exit_code == 2 and "allow_pickle" not in result.output and "not a valid .npy" in result.output


# --------------------------------------------------------------------------------------------------
# 6. Folders are searched recursively


def test_list_images_recurses_skips_hidden_and_names_uniquely(tmp_path):
    from latentedit.image_files import list_images, list_named_images

    for relative in ("b/x.png", "a/x.png", "a/deeper/y.jpg", "top.png", ".hidden/z.png", "a/.secret.png",
                     "a/notes.txt", "out/old.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    named = list_named_images([tmp_path], exclude=[tmp_path / "out"])
    assert [(p.relative_to(tmp_path).as_posix(), n) for p, n in named] == [
        ("a/deeper/y.jpg", "y"), ("a/x.png", "a_x"), ("b/x.png", "b_x"), ("top.png", "top")]
    assert len(list_images([tmp_path])) == 5  # out/ included when not excluded
    (tmp_path / "empty" / ".cache").mkdir(parents=True)
    (tmp_path / "empty" / ".cache" / "w.png").write_bytes(b"x")
    with pytest.raises(InputError, match="no images found.*searched recursively"):
        list_images([tmp_path / "empty"])


def test_invert_finds_images_one_level_down(ckpt, tmp_path):
    from latentedit.data.toyfaces_export import export_toyfaces

    data = tmp_path / "toy"
    export_toyfaces(data, 2, size=32, seed=0, start=0, fmt="folder", progress=False)
    save_rgb(data / "more" / "000001.png", 5)  # the same file name in another subfolder
    out = data / "inverted"  # an output folder inside the input folder is not read back as input
    common = ["--ckpt", ckpt, "-o", out, "--steps", "1", "--no-progress"]
    result = run_cli("invert", data, *common)
    assert result.exit_code == 0, result.output
    assert "inverted 3, skipped 0 (already done), failed 0 of 3" in result.stdout
    assert sorted(p.name for p in out.glob("*.npy")) == ["000002.npy", "images_000001.npy", "more_000001.npy"]
    again = run_cli("invert", data, *common)
    assert "inverted 0, skipped 3 (already done), failed 0 of 3" in again.stdout
