"""toyfaces landmarks and scenes: landmarks against rendered pixels, placement rules, determinism,
counterfactual scenes and the ``data toyfaces --scene`` CLI."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from latentedit.data import toyfaces, toyfaces_scenes
from latentedit.data.toyfaces import face_landmarks, render, sample_params
from latentedit.data.toyfaces_scenes import (render_counterfactual_scene, render_scene, scene_placement,
                                             scene_record)
from latentedit.errors import InputError


def _with_nuisance(params, **values):
    return dataclasses.replace(params, nuisance=dataclasses.replace(params.nuisance, **values))


def _probe(render_fn, params, field, first, second):
    """Per-pixel |difference| (summed over RGB) between renders with one nuisance value changed: it marks
    exactly the pixels that value paints (the iris for eye_colour, the lips for lip_shade)."""
    a = render_fn(_with_nuisance(params, **{field: first})).astype(np.float64)
    b = render_fn(_with_nuisance(params, **{field: second})).astype(np.float64)
    return np.abs(a - b).sum(axis=-1)


def _iris_centre(difference, guess, radius):
    """Centre of the iris disc from its probe mask near ``guess``. x: mass centroid (the disc is symmetric
    left/right). y: centroid of the outer columns only, because the eyelid line covers the top of the disc
    and would pull a plain centroid down."""
    ys, xs = np.mgrid[0:difference.shape[0], 0:difference.shape[1]] + 0.5
    mass = difference * (np.hypot(xs - guess[0], ys - guess[1]) < radius)
    x = (mass * xs).sum() / mass.sum()
    columns = mass.sum(axis=0)
    on = np.nonzero(columns > 0.05 * columns.max())[0]
    half_width = (on.max() + 1 - on.min()) / 2.0
    sides = mass * (np.abs(xs - x) >= 0.5 * half_width)
    return np.array([x, (sides * ys).sum() / sides.sum()])


@pytest.mark.parametrize("size", [64, 128])
def test_eye_landmarks_are_the_rendered_iris_centres(size):
    for seed, index in [(0, 0), (0, 3), (0, 11), (1, 5), (1, 22), (1, 40)]:
        params = sample_params(seed, index)
        landmarks = face_landmarks(params, size)
        assert landmarks.shape == (5, 2) and landmarks.dtype == np.float64
        assert landmarks[0, 0] < landmarks[1, 0] and landmarks[3, 0] < landmarks[4, 0]  # viewer's left first
        # Brown vs blue irises: the difference is the iris disc (minus the unchanged pupil) and nothing else.
        difference = _probe(lambda p: render(p, size), params, "eye_colour", 0.1, 0.5)
        for row in (0, 1):
            found = _iris_centre(difference, landmarks[row], 0.08 * size)
            assert np.abs(found - landmarks[row]).max() <= 1.0, (seed, index, row, found, landmarks[row])


@pytest.mark.parametrize("size", [64, 128])
def test_mouth_corners_touch_the_drawn_lips_and_nose_is_on_the_midline(size):
    faces = [p for p in (sample_params(0, i) for i in range(40)) if not p.attributes["Mustache"]][:8]
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    for params in faces:
        landmarks = face_landmarks(params, size)
        lips = _probe(lambda p: render(p, size), params, "lip_shade", 0.05, 0.95) > 0
        lip_points = np.stack([xs[lips], ys[lips]], axis=1)
        for row in (3, 4):
            # The corner is the end of the drawn lip shape: some pixel the lip colour reaches lies within 1 px of it.
            assert np.hypot(*(lip_points - landmarks[row]).T).min() <= 1.0, (params.index, row)
        mouth_centre = landmarks[3:].mean(axis=0)
        eyes_centre = landmarks[:2].mean(axis=0)
        # Nose tip between the eyes and the mouth, on the line joining their midpoints.
        t = np.dot(landmarks[2] - eyes_centre, mouth_centre - eyes_centre) / np.sum((mouth_centre - eyes_centre) ** 2)
        assert 0.3 < t < 0.9
        along = eyes_centre + t * (mouth_centre - eyes_centre)
        assert np.hypot(*(landmarks[2] - along)) < 0.01 * size


def test_face_landmarks_scale_with_size_and_reject_bad_sizes():
    params = sample_params(0, 9)
    assert np.allclose(face_landmarks(params, 128), 2.0 * face_landmarks(params, 64))
    with pytest.raises(InputError):
        face_landmarks(params, 8)


def test_scene_is_a_pure_function_of_its_arguments():
    first = render_scene(0, 5, canvas=128)
    again = render_scene(0, 5, canvas=128)
    assert first.image.shape == (128, 128, 3) and first.image.dtype == np.uint8
    assert first.image.tobytes() == again.image.tobytes()
    assert first.landmarks.tobytes() == again.landmarks.tobytes()
    assert json.dumps(first.to_json()) == json.dumps(again.to_json())
    assert not np.array_equal(first.image, render_scene(0, 6, canvas=128).image)
    assert not np.array_equal(first.image, render_scene(1, 5, canvas=128).image)
    assert not np.array_equal(first.image, render_scene(0, 5, canvas=128, variant=1).image)
    # The record computed without rendering is the rendered scene's.
    assert scene_record(0, 5, canvas=128) == first.to_json()


def test_landmarks_follow_the_placement_affine_exactly():
    for index in range(6):
        scene = render_scene(1, index, canvas=192)
        placement = scene.placement
        affine = placement.affine
        assert affine.shape == (2, 3)
        homogeneous = np.concatenate([scene.landmarks_render, np.ones((5, 1))], axis=1)
        assert np.allclose(scene.landmarks, homogeneous @ affine.T, rtol=0, atol=1e-9)
        assert np.allclose(scene.landmarks_render,
                           face_landmarks(scene.params, placement.render_size), rtol=0, atol=0)
        # The linear part is scale * (counter-clockwise on screen rotation by angle_deg).
        angle = math.radians(placement.angle_deg)
        expected = placement.scale * np.array([[math.cos(angle), math.sin(angle)],
                                               [-math.sin(angle), math.cos(angle)]])
        assert np.allclose(affine[:, :2], expected, atol=1e-12)
        centre = affine @ np.array([placement.render_size / 2, placement.render_size / 2, 1.0])
        assert np.allclose(centre, placement.centre, atol=1e-9)
        assert np.allclose(np.array(placement.offset), np.array(placement.centre) - 96.0, atol=1e-12)


def test_scene_iris_is_at_the_canvas_landmarks():
    # End to end through resize, rotation and compositing: the iris probe, now in canvas pixels.
    params = sample_params(0, 3)
    face_size = 150
    scene = toyfaces_scenes._render(0, 3, params, {}, 256, face_size, 0)
    difference = _probe(lambda p: toyfaces_scenes._render(0, 3, p, {}, 256, face_size, 0).image, params,
                        "eye_colour", 0.1, 0.5)
    for row in (0, 1):
        found = _iris_centre(difference, scene.landmarks[row], 0.08 * face_size)
        assert np.abs(found - scene.landmarks[row]).max() <= 1.0


def test_placement_rules_rotation_size_and_whole_tile_inside():
    canvas = 256
    angles = []
    for index in range(300):
        placement = scene_placement(0, index, canvas)
        angles.append(placement.angle_deg)
        assert -30.0 <= placement.angle_deg <= 30.0
        assert 0.25 * canvas - 1e-9 <= placement.face_size <= 0.60 * canvas + 1e-9
        size = placement.render_size
        assert size >= placement.face_size and size & (size - 1) == 0  # never upscaled; a power of two
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
        mapped = corners @ placement.affine.T
        assert mapped.min() >= -1e-9 and mapped.max() <= canvas + 1e-9  # the whole rotated tile is inside
    assert min(angles) < -25 and max(angles) > 25  # the range is actually used
    fixed = scene_placement(0, 7, canvas, face_size=100)
    drawn = scene_placement(0, 7, canvas)
    assert fixed.face_size == 100.0 and fixed.angle_deg == drawn.angle_deg


@pytest.mark.parametrize("kwargs", [dict(canvas=32), dict(canvas=256, face_size=250), dict(canvas=256, face_size=8),
                                    dict(canvas=256, variant=-1), dict(canvas=256.5)])
def test_scene_rejects_bad_arguments(kwargs):
    with pytest.raises(InputError):
        scene_placement(0, 0, **kwargs)


def test_counterfactual_scene_differs_only_inside_the_tile():
    original = render_scene(0, 4, canvas=160)
    changed = render_counterfactual_scene(0, 4, {"Eyeglasses": 1 - original.params.attributes["Eyeglasses"],
                                                 "Blond_Hair": 1}, canvas=160)
    assert changed.placement.to_json() == original.placement.to_json()
    assert np.array_equal(changed.alpha, original.alpha)
    differs = np.any(changed.image != original.image, axis=-1)
    assert differs.sum() > 50
    outside = original.alpha == 0
    assert not differs[outside].any()
    # alpha == 0 covers everything outside the tile's square: check against the inverse of the affine.
    placement = original.placement
    ys, xs = np.mgrid[0:160, 0:160] + 0.5
    full = np.vstack([placement.affine, [0, 0, 1]])
    u, v, _ = np.tensordot(np.linalg.inv(full), np.stack([xs, ys, np.ones_like(xs)]), axes=1)
    geometric_outside = (u < 0) | (v < 0) | (u > placement.render_size) | (v > placement.render_size)
    assert geometric_outside.sum() > 0 and np.all(outside[geometric_outside])
    assert changed.params.attributes["Blond_Hair"] == 1 and changed.changes["Blond_Hair"] == 1
    with pytest.raises(InputError):
        render_counterfactual_scene(0, 4, {"Blonde_Hair": 1}, canvas=160)


def _cli(args):
    from latentedit.cli.main import cli

    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_cli_writes_a_scene_png_and_its_json(tmp_path):
    out = tmp_path / "scene.png"
    code, text = _cli(["data", "toyfaces", "--scene", "--canvas", "128", "--seed", "1", "--index", "3",
                       "--set", "Smiling=1", "-o", str(out)])
    assert code == 0, text
    expected = render_counterfactual_scene(1, 3, {"Smiling": 1}, canvas=128)
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), expected.image)
    record = _strict_json(tmp_path / "scene.json")
    assert record["landmark_names"] == list(toyfaces.LANDMARK_NAMES)
    assert np.allclose(record["landmarks"], expected.landmarks, rtol=0, atol=0)
    assert np.allclose(record["placement"]["affine"], expected.placement.affine, rtol=0, atol=0)
    assert record["attributes"]["Smiling"] == 1 and record["changes"] == {"Smiling": 1}
    assert record["canvas"] == 128 and record["seed"] == 1 and record["index"] == 3


def test_cli_exports_scenes_with_a_scenes_json(tmp_path):
    code, text = _cli(["data", "toyfaces", "--scene", "--n", "3", "--start", "2", "--canvas", "96", "--quiet",
                       "--workers", "1", "-o", str(tmp_path / "set")])
    assert code == 0, text
    manifest = _strict_json(tmp_path / "set" / "scenes.json")
    assert manifest["count"] == 3 and len(manifest["scenes"]) == 3
    for k, record in enumerate(manifest["scenes"]):
        assert record["index"] == 2 + k
        pixels = np.asarray(Image.open(tmp_path / "set" / record["file"]).convert("RGB"))
        assert np.array_equal(pixels, render_scene(0, 2 + k, canvas=96).image)


@pytest.mark.parametrize("args, message", [
    (["--scene", "--index", "3", "--size", "32"], "--size does not apply to --scene"),
    (["--canvas", "128", "--index", "3"], "needs --scene"),
    (["--scene", "--index", "3", "--canvas", "20"], "canvas must be an integer in"),
    (["--scene", "--n", "2", "--set", "Smiling=1"], "needs --index"),
    (["--scene"], "give --n"),
])
def test_cli_scene_errors_are_one_line(tmp_path, args, message):
    code, text = _cli(["data", "toyfaces", "-o", str(tmp_path / "x.png"), *args])
    assert code == 2, text
    assert message in text and "Traceback" not in text
