"""Photos end to end: ``invert --align`` -> ``apply-direction --paste-back`` / ``--mask``, framings, bad photos."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from latentedit.data import toyfaces
from latentedit.data.toyfaces_scenes import render_scene
from latentedit.errors import InputError
from latentedit.photos import FRAMINGS, ffhq_quad, find_alignment_record, load_photo, read_mask
from latentedit.photos.workflow import blend_with_mask, framing_for

pytestmark = pytest.mark.usefixtures("single_thread")

BLOND = "examples/blond_learned.npy"


def run(*args):
    from latentedit.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A toyfaces scene with its true landmarks, aligned and inverted (few steps) with ``invert --align``."""
    import os

    folder = tmp_path_factory.mktemp("chain")
    scene = render_scene(toyfaces.HELDOUT_SEED, 6)
    Image.fromarray(scene.image).save(folder / "scene.png")
    (folder / "scene_lm.json").write_text(json.dumps({"landmarks": scene.landmarks.tolist()}))
    cwd = os.getcwd()
    result = run("invert", "--align", folder / "scene.png", "--detector", folder / "scene_lm.json", "--steps", 30,
                 "-o", folder / "inverted", "--no-progress")
    os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return folder, scene


def repo_file(name: str) -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1] / name)


def test_toyfaces_framing_reproduces_the_render_frame_and_ffhq_is_unchanged():
    # The toyfaces crop of a render's own landmarks is, on average, the render itself.
    centres, sides = [], []
    for index in range(200):
        landmarks = toyfaces.face_landmarks(toyfaces.sample_params(toyfaces.HELDOUT_SEED, index), 64)
        quad = ffhq_quad(landmarks, "toyfaces")
        centres.append(quad.mean(axis=0))
        sides.append(np.hypot(*(quad[3] - quad[0])))
        np.testing.assert_allclose(ffhq_quad(landmarks), ffhq_quad(landmarks, FRAMINGS["ffhq"]))
    assert np.abs(np.mean(centres, axis=0) - 32.0).max() < 0.5
    assert abs(np.mean(sides) - 64.0) < 1.5
    # The FFHQ crop is much tighter: the reason toyfaces generators need their own framing.
    assert np.hypot(*(ffhq_quad(landmarks)[3] - ffhq_quad(landmarks)[0])) < 0.8 * sides[-1]
    with pytest.raises(InputError, match="unknown framing"):
        ffhq_quad(landmarks, "celeba")


def test_the_shipped_toyfaces_generator_gets_the_toyfaces_framing_and_others_ffhq():
    from latentedit.checkpoints import load_generator

    assert framing_for(load_generator("toyfaces64").info) == "toyfaces"
    assert framing_for({"path": "/somewhere/ffhq.pkl", "provenance": {}}) == "ffhq"
    assert framing_for({"path": "/x/g.safetensors", "provenance": {"data": "toyfaces:0:1000"}}) == "toyfaces"


def test_invert_align_keeps_the_alignment_and_paste_back_leaves_the_rest_of_the_photo_untouched(chain, tmp_path):
    folder, scene = chain
    latent = folder / "inverted" / "scene_face0.npy"
    manifest = json.loads(latent.with_suffix(".json").read_text())
    record = manifest["input"]["alignment_record"]
    assert record["framing"] == "toyfaces" and record["detector"].endswith("scene_lm.json")
    assert find_alignment_record(latent) == record
    out = tmp_path / "edited"
    result = run("apply-direction", "--vec", repo_file(BLOND), "--latent", latent, "--strength", "0,1",
                 "--paste-back", "-o", out)
    assert result.exit_code == 0, result.output
    assert "pasted back into 1 photo" in result.output
    edit = json.loads((out / "manifest.json").read_text())
    (pasted,) = edit["paste_back"]
    assert pasted["photo"] == str(folder / "scene.png") and pasted["mask_space"] == "crop"
    full = np.asarray(Image.open(out / "scene_face0_s1_full.png"))
    assert full.shape == scene.image.shape
    # Outside the warped face-and-hair mask every pixel is the photo's; inside, the edit changed the hair.
    from latentedit.photos import FaceAlignment, face_mask, paste_back

    alignment = FaceAlignment.from_json(record["alignment"])
    crop = np.asarray(Image.open(out / "scene_face0_s1.png"))
    again, alpha = paste_back(scene.image, crop, alignment, face_mask(alignment, 64, np.asarray(record["landmarks"])),
                              return_mask=True)
    np.testing.assert_array_equal(full, again)
    assert (alpha == 0).mean() > 0.8
    np.testing.assert_array_equal(full[alpha == 0], scene.image[alpha == 0])
    assert np.abs(full.astype(int) - scene.image).max() > 40
    sweep = Image.open(out / "scene_face0_sweep_full.png")
    assert sweep.size[0] > 2 * scene.image.shape[1]


def test_a_crop_mask_restricts_the_edit_and_a_photo_mask_restricts_the_paste(chain, tmp_path):
    folder, scene = chain
    latent = folder / "inverted" / "scene_face0.npy"
    crop_mask = np.zeros((64, 64), np.uint8)
    crop_mask[:, 32:] = 255  # edit the right half of the crop only
    Image.fromarray(crop_mask).save(tmp_path / "half.png")
    out = tmp_path / "masked"
    result = run("apply-direction", "--vec", repo_file(BLOND), "--latent", latent, "--strength", "0,1.5",
                 "--mask", tmp_path / "half.png", "-o", out)
    assert result.exit_code == 0, result.output
    unedited = np.asarray(Image.open(out / "scene_face0_s0.png"))
    edited = np.asarray(Image.open(out / "scene_face0_s1.5.png"))
    np.testing.assert_array_equal(edited[:, :32], unedited[:, :32])
    assert np.abs(edited[:, 32:].astype(int) - unedited[:, 32:]).max() > 40
    assert json.loads((out / "manifest.json").read_text())["mask"]["space"] == "crop"

    photo_mask = np.zeros(scene.image.shape[:2], np.uint8)
    photo_mask[:128] = 255  # the top half of the photo
    Image.fromarray(photo_mask).save(tmp_path / "top.png")
    out = tmp_path / "photo_masked"
    result = run("apply-direction", "--vec", repo_file(BLOND), "--latent", latent, "--strength", "1.5",
                 "--paste-back", "--mask", tmp_path / "top.png", "-o", out)
    assert result.exit_code == 0, result.output
    full = np.asarray(Image.open(out / "scene_face0_s1.5_full.png"))
    np.testing.assert_array_equal(full[128:], scene.image[128:])


def test_paste_back_problems_are_one_line_errors_and_nothing_is_written(chain, tmp_path):
    folder, scene = chain
    latent = folder / "inverted" / "scene_face0.npy"
    bare = tmp_path / "bare.npy"
    np.save(bare, np.load(latent))
    cases = [
        (("--latent", bare, "--paste-back"), "no photo is recorded"),
        (("--latent", folder / "scene.png", "--paste-back"), "invert --align"),
        (("--latent", latent, "--paste-back", tmp_path / "missing.png"), "is not there"),
    ]
    Image.new("L", (50, 40)).save(tmp_path / "odd_mask.png")
    cases.append((("--latent", latent, "--paste-back", "--mask", tmp_path / "odd_mask.png"), "must be the crop"))
    cases.append((("--latent", latent, "--mask", tmp_path / "odd_mask.png"), "needs --paste-back"))
    Image.fromarray(scene.image[:100]).save(tmp_path / "cut.png")
    cases.append((("--latent", latent, "--paste-back", tmp_path / "cut.png"), "pass the original photo"))
    for index, (args, message) in enumerate(cases):
        out = tmp_path / f"out{index}"
        result = run("apply-direction", "--vec", repo_file(BLOND), *args, "--strength", "1", "-o", out)
        assert result.exit_code != 0, (args, result.output)
        assert message in result.output and result.output.startswith("error:"), (args, result.output)
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
        assert not out.exists(), args
    result = run("invert", folder / "scene.png", "--detector", "mtcnn", "-o", tmp_path / "x")
    assert result.exit_code == 2 and "need --align" in result.output


def test_blend_with_mask_is_exact_where_the_mask_is_zero_or_one():
    rng = np.random.default_rng(0)
    edited = rng.integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
    unedited = rng.integers(0, 256, (2, 1, 8, 8, 3), dtype=np.uint8)
    mask = np.zeros((8, 8), np.float32)
    mask[:, 4:] = 1.0
    mask[0, 0] = 0.5
    out = blend_with_mask(edited, unedited, mask)
    assert out.shape == edited.shape
    np.testing.assert_array_equal(out[..., 1:, :4, :], np.broadcast_to(unedited, edited.shape)[..., 1:, :4, :])
    np.testing.assert_array_equal(out[..., 4:, :], edited[..., 4:, :])
    middle = (edited[..., 0, 0, :].astype(float) + unedited[..., 0, 0, :]) / 2
    assert np.abs(out[..., 0, 0, :] - middle).max() <= 0.5 + 1e-6


def test_bad_photos_load_upright_and_in_rgb(tmp_path):
    scene = render_scene(toyfaces.HELDOUT_SEED, 3, 128).image
    # CMYK JPEG -> RGB of about the same colours.
    Image.fromarray(scene).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    cmyk = load_photo(tmp_path / "cmyk.jpg")
    assert cmyk.shape == scene.shape and cmyk.dtype == np.uint8
    assert np.abs(cmyk.astype(int) - scene).mean() < 12
    # 16-bit grey: scaled, not clipped to white.
    grey16 = (np.asarray(Image.fromarray(scene).convert("L"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    loaded = load_photo(tmp_path / "grey16.png")
    assert loaded.shape == scene.shape and 40 < loaded.mean() < 220
    np.testing.assert_allclose(loaded[:, :, 0], grey16 / 257, atol=1)
    # A phone photo stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to view).
    sideways = Image.fromarray(scene).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = load_photo(tmp_path / "phone.jpg")
    assert upright.shape == scene.shape and np.abs(upright.astype(int) - scene).mean() < 8
    # Masks: alpha of RGBA, brightness of grey, 16-bit grey scaled.
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :, 3] = 255
    rgba[:, :4, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "mask_rgba.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "mask_rgba.png")[:, :4], 0)
    np.testing.assert_array_equal(read_mask(tmp_path / "mask_rgba.png")[:, 4:], 1)
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "mask16.png")
    np.testing.assert_allclose(read_mask(tmp_path / "mask16.png"), 1.0)


def test_a_folder_mixing_photo_and_plain_latents_pastes_back_those_with_a_photo(chain, tmp_path):
    import shutil

    folder, _ = chain
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for suffix in (".npy", ".json"):
        shutil.copy(folder / "inverted" / f"scene_face0{suffix}", mixed / f"scene_face0{suffix}")
    np.save(mixed / "face.npy", np.load(folder / "inverted" / "scene_face0.npy"))
    result = run("apply-direction", "--vec", repo_file(BLOND), "--latent", mixed, "--strength", "1", "--paste-back",
                 "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "not pasted back" in result.output and "face" in result.output
    assert (tmp_path / "out" / "scene_face0_s1_full.png").is_file()
    assert (tmp_path / "out" / "face_s1.png").is_file() and not (tmp_path / "out" / "face_s1_full.png").exists()
    (mixed / "scene_face0.npy").unlink()
    result = run("apply-direction", "--vec", repo_file(BLOND), "--latent", mixed, "--strength", "1", "--paste-back",
                 "-o", tmp_path / "none")
    assert result.exit_code != 0 and "no photo is recorded" in result.output and not (tmp_path / "none").exists()


def test_a_photo_for_a_non_toyfaces_generator_goes_through_mtcnn_and_the_ffhq_crop(refdata, tmp_path):
    data = pytest.importorskip("skimage.data")
    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    result = run("invert", "--align", tmp_path / "astronaut.png", "--ckpt", refdata / "ros64_small.pt", "--steps", 3,
                 "-o", tmp_path / "inverted", "--no-progress")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "inverted" / "aligned" / "astronaut_face0.json").read_text())
    assert record["detector"].startswith("mtcnn") and record["framing"] == "ffhq" and record["confidence"] > 0.99
    result = run("apply-direction", "--vec", tmp_path / "vec.npy", "--latent", tmp_path / "inverted", "-o",
                 tmp_path / "edited")
    assert result.exit_code != 0  # no such direction file: a one-line error
    latent = np.load(tmp_path / "inverted" / "astronaut_face0.npy")
    np.save(tmp_path / "vec.npy", np.ones_like(latent[0]))
    result = run("apply-direction", "--vec", tmp_path / "vec.npy", "--latent", tmp_path / "inverted", "--ckpt",
                 refdata / "ros64_small.pt", "--strength", "0,0.5", "--paste-back", "-o", tmp_path / "edited")
    assert result.exit_code == 0, result.output
    full = np.asarray(Image.open(tmp_path / "edited" / "astronaut_face0_s0.5_full.png"))
    assert full.shape == data.astronaut().shape
    # The astronaut's face is near the top left; the bottom right quarter of the photo is untouched.
    np.testing.assert_array_equal(full[256:, 256:], data.astronaut()[256:, 256:])
