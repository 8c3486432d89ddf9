"""``latentedit align``: MTCNN on a real photograph (skimage's astronaut), landmarks files, bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from latentedit.errors import InputError
from latentedit.photos import FaceAlignment, detect_faces

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


def run(*args):
    from latentedit.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_mtcnn_finds_the_astronaut_and_follows_a_rotation(astronaut):
    (face,) = detect_faces(astronaut)
    assert face.confidence > 0.99
    left, right = face.landmarks[0], face.landmarks[1]
    assert 180 < left[0] < right[0] < 270 and 80 < left[1] < 125 and abs(left[1] - right[1]) < 10
    # Rotate the photo 25 degrees about its centre: the detected landmarks must follow the known rotation.
    angle = 25.0
    rotated = np.asarray(Image.fromarray(astronaut).rotate(angle, resample=Image.BICUBIC))
    (turned,) = detect_faces(rotated)
    centre = np.array([astronaut.shape[1], astronaut.shape[0]]) / 2.0
    theta = math.radians(angle)  # PIL rotates counter-clockwise on screen (y down)
    rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    expected = (face.landmarks - centre) @ rotation.T + centre
    assert np.abs(turned.landmarks - expected).max() < 6.0  # px, on a face of about 40 px eye distance


def test_align_writes_the_crop_and_its_exact_transform_and_skips_photos_without_a_face(astronaut, tmp_path):
    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    Image.new("RGB", (300, 300), (90, 120, 160)).save(tmp_path / "blank.png")
    result = run("align", tmp_path / "astronaut.png", tmp_path / "blank.png", "--size", 128, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "no face found in" in result.output and "blank.png" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astronaut_face0.json", "astronaut_face0.png"]
    record = json.loads((tmp_path / "out" / "astronaut_face0.json").read_text())
    alignment = FaceAlignment.from_json(record["alignment"])
    assert alignment.size == 128 and record["source"]["sha256"] and record["confidence"] > 0.99
    # the eyes land where the FFHQ crop puts them: level, in the upper half, symmetric about the centre
    eyes = alignment.photo_to_crop(np.asarray(record["landmarks"])[:2])
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1.0 and 30 < eyes[0, 1] < 64
    assert abs((eyes[0, 0] + eyes[1, 0]) / 2 - 64) < 2.0
    assert Image.open(tmp_path / "out" / "astronaut_face0.png").size == (128, 128)
    # only photos without faces: a one-line error for each and exit 2
    result = run("align", tmp_path / "blank.png", "--size", 64, "-o", tmp_path / "none")
    assert result.exit_code == 2 and "no face aligned" in result.output


def test_a_landmarks_file_replaces_the_detector(tmp_path):
    from latentedit.data.toyfaces_scenes import render_scene

    scene = render_scene(1, 6, canvas=256)
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    other = scene.landmarks * 0.9 + 10.0  # a second, slightly smaller face
    (tmp_path / "one.json").write_text(json.dumps({"landmarks": scene.landmarks.tolist()}))
    (tmp_path / "two.json").write_text(json.dumps([scene.landmarks.tolist(), other.tolist()]))
    result = run("align", tmp_path / "scene.png", "--detector", tmp_path / "one.json", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output  # --size from the default generator: 64
    record = json.loads((tmp_path / "out" / "scene_face0.json").read_text())
    assert record["alignment"]["size"] == 64 and np.allclose(record["landmarks"], scene.landmarks)
    result = run("align", tmp_path / "scene.png", "--detector", tmp_path / "two.json", "--all-faces",
                 "-o", tmp_path / "all")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "all" / "scene_face0.png").is_file() and (tmp_path / "all" / "scene_face1.png").is_file()
    (tmp_path / "bad.json").write_text(json.dumps([[1, 2], [3, 4]]))
    with pytest.raises(InputError, match=r"\[5, 2\]"):
        detect_faces(scene.image, str(tmp_path / "bad.json"))
    result = run("align", tmp_path / "scene.png", "--detector", "dlib", "-o", tmp_path / "x")
    assert result.exit_code == 2 and "--detector must be" in result.output
