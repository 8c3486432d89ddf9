"""The toyfaces landmark detector: the shipped weights find faces in held-out scenes; training and loading."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from latentedit.data import toyfaces
from latentedit.data.toyfaces_scenes import render_scene, scene_background
from latentedit.errors import CheckpointError
from latentedit.photos import detect_faces
from latentedit.photos.landmarks import load_detector, shipped_detector_path

pytestmark = pytest.mark.usefixtures("single_thread")


def run(*args):
    from latentedit.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_the_shipped_detector_is_small_and_finds_landmarks_in_held_out_scenes():
    path = shipped_detector_path()
    assert path.is_file() and path.stat().st_size <= 2_000_000
    detector = load_detector()
    errors, scores = [], []
    # Scenes 300-329 of the held-out seed: disjoint from training (seed 0) and from benchmarks/photos.py (0-199).
    for index in range(300, 330):
        scene = render_scene(toyfaces.HELDOUT_SEED, index)
        found, score = detector.detect(scene.image)
        iod = np.linalg.norm(scene.landmarks[1] - scene.landmarks[0])
        errors.append(np.linalg.norm(found - scene.landmarks, axis=1).mean() / iod)
        scores.append(score)
    assert np.median(errors) < 0.05, np.round(errors, 3)
    assert np.max(errors) < 0.25
    assert min(scores) > 0.9
    # Backgrounds without a face, and a flat grey picture: no face (below the default confidence).
    for index in range(5):
        background = np.clip(scene_background(toyfaces.HELDOUT_SEED, index, 256, variant=3) + 0.5, 0, 255)
        assert detect_faces(background.astype(np.uint8), "toyfaces") == []
    assert detect_faces(np.full((200, 300, 3), 128, np.uint8), "toyfaces") == []


def test_align_with_the_default_generator_uses_the_toyfaces_detector_and_framing(tmp_path):
    scene = render_scene(toyfaces.HELDOUT_SEED, 331)
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    result = run("align", tmp_path / "scene.png", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "scene_face0.json").read_text())
    assert record["detector"].startswith("toyfaces") and record["framing"] == "toyfaces"
    assert Image.open(tmp_path / "out" / "scene_face0.png").size == (64, 64)
    # The true eyes land where a toyfaces render has them (about x 26 and 38, y 32 of 64).
    from latentedit.photos import FaceAlignment

    eyes = FaceAlignment.from_json(record["alignment"]).photo_to_crop(scene.landmarks[:2])
    np.testing.assert_allclose(eyes, [[26.2, 32.4], [37.9, 32.4]], atol=3.0)
    Image.new("RGB", (128, 128), (128, 128, 128)).save(tmp_path / "blank.png")
    result = run("align", tmp_path / "blank.png", "--detector", "toyfaces", "-o", tmp_path / "none")
    assert result.exit_code == 2 and "no face found" in result.output and "Traceback" not in result.output


def test_training_is_deterministic_and_writes_a_loadable_detector(tmp_path):
    args = ("train", "landmarks", "--scenes", 6, "--negatives", 2, "--coarse-steps", 2, "--refine-steps", 2,
            "--batch-size", 4, "--eval", 2, "--no-progress")
    first = run(*args, "-o", tmp_path / "a.safetensors")
    assert first.exit_code == 0, first.output
    assert "held-out landmark error" in first.output
    second = run(*args, "-o", tmp_path / "b.safetensors")
    assert second.exit_code == 0, second.output
    digest = [hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in ("a.safetensors", "b.safetensors")]
    assert digest[0] == digest[1]
    detector = load_detector(tmp_path / "a.safetensors")
    found, score = detector.detect(render_scene(toyfaces.HELDOUT_SEED, 0).image)
    assert found.shape == (5, 2) and np.isfinite(found).all() and 0.0 <= score <= 1.0


def test_bad_detector_files_are_one_line_errors(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_detector(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_detector(tmp_path / "missing.safetensors")
    from latentedit.evaluate.classifier import shipped_classifier_path

    with pytest.raises(CheckpointError, match="not a latentedit landmark detector"):
        load_detector(shipped_classifier_path())
