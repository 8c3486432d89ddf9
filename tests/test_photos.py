"""Real-photo alignment and paste-back (latentedit.photos): geometry, resampling, masks, errors, JSON."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from latentedit.errors import InputError
from latentedit.photos import FaceAlignment, align_face, face_mask, face_scale, ffhq_quad, paste_back


def upright_landmarks(cx: float, cy: float, d: float, mouth: float = 1.1) -> np.ndarray:
    """``[5, 2]`` landmarks of an upright frontal face: eyes ``d`` apart at height ``cy``, the mouth
    corners ``mouth * d`` below the eye midpoint."""
    return np.array([
        [cx - d / 2, cy],
        [cx + d / 2, cy],
        [cx, cy + 0.6 * d],
        [cx - 0.4 * d, cy + mouth * d],
        [cx + 0.4 * d, cy + mouth * d],
    ])


def similarity(points, angle_deg: float, scale: float, translation, centre=(0.0, 0.0)) -> np.ndarray:
    """Rotate by ``angle_deg`` (clockwise on screen) and scale about ``centre``, then translate."""
    angle = math.radians(angle_deg)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = np.asarray(centre, dtype=np.float64)
    return (np.asarray(points) - centre) @ rotation.T * scale + centre + np.asarray(translation)


def render_markers(width: int, height: int, landmarks: np.ndarray, sigma: float) -> np.ndarray:
    """A flat grey photo with a bright Gaussian blob at each landmark, ``[H, W, 3]`` uint8."""
    xs = np.arange(width) + 0.5
    ys = np.arange(height) + 0.5
    image = np.full((height, width), 60.0)
    for x, y in landmarks:
        image += 190.0 * np.exp(-((xs[None, :] - x) ** 2 + (ys[:, None] - y) ** 2) / (2 * sigma ** 2))
    return np.repeat(np.clip(np.rint(image), 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def smooth_photo(width: int, height: int) -> np.ndarray:
    """A smooth, non-periodic-looking colour image, ``[H, W, 3]`` uint8."""
    xs = np.arange(width)[None, :] + 0.5
    ys = np.arange(height)[:, None] + 0.5
    channels = [
        128 + 60 * np.sin(2 * np.pi * xs / 83) * np.cos(2 * np.pi * ys / 97),
        128 + 50 * np.cos(2 * np.pi * (xs + ys) / 131) + 20 * np.sin(2 * np.pi * ys / 59),
        128 + 70 * np.sin(2 * np.pi * (xs - 0.5 * ys) / 113),
    ]
    return np.clip(np.rint(np.stack(channels, axis=2)), 0, 255).astype(np.uint8)


def blob_centroid(crop: np.ndarray, guess: np.ndarray, radius: float) -> np.ndarray:
    """Intensity-weighted centroid (above the grey background) of the blob near ``guess``; re-centred once."""
    signal = crop[:, :, 0].astype(np.float64) - 60.0
    xs = np.arange(crop.shape[1]) + 0.5
    ys = np.arange(crop.shape[0]) + 0.5
    centre = np.asarray(guess, dtype=np.float64)
    for _ in range(2):
        window = ((xs[None, :] - centre[0]) ** 2 + (ys[:, None] - centre[1]) ** 2) <= radius ** 2
        weights = np.clip(signal, 0, None) * window
        total = weights.sum()
        assert total > 0, "no blob found near the expected position"
        centre = np.array([(weights * xs[None, :]).sum() / total, (weights * ys[:, None]).sum() / total])
    return centre


def test_upright_quad_is_axis_aligned_and_centred():
    cx, cy, d = 200.0, 150.0, 50.0
    quad = ffhq_quad(upright_landmarks(cx, cy, d))
    # eye_to_mouth = (0, 1.1 d): 1.8 * 1.1 d < 2 d, so half the side is 2 d; the centre is 0.1 of the way
    # from the eyes to the mouth.
    half, centre_y = 2 * d, cy + 0.1 * 1.1 * d
    expected = np.array([[cx - half, centre_y - half], [cx - half, centre_y + half],
                         [cx + half, centre_y + half], [cx + half, centre_y - half]])
    np.testing.assert_allclose(quad, expected, atol=1e-9)
    # A long face: the eye-to-mouth term sets the size.
    quad = ffhq_quad(upright_landmarks(cx, cy, d, mouth=1.5))
    assert quad[3, 0] - quad[0, 0] == pytest.approx(2 * 1.8 * 1.5 * d)


@pytest.mark.parametrize("angle, scale, translation", [
    (0.0, 2.0, (10.0, -5.0)), (17.0, 1.0, (0.0, 0.0)), (-63.0, 0.7, (300.0, 41.5)),
    (90.0, 1.3, (-20.0, 7.0)), (171.0, 3.1, (5.0, 5.0)),
])
def test_quad_follows_a_similarity_transform(angle, scale, translation):
    landmarks = upright_landmarks(200.0, 150.0, 50.0) + np.array([[0, 3], [0, -2], [4, 0], [1, 2], [-3, 1]])
    moved = similarity(landmarks, angle, scale, translation, centre=(123.0, 77.0))
    expected = similarity(ffhq_quad(landmarks), angle, scale, translation, centre=(123.0, 77.0))
    np.testing.assert_allclose(ffhq_quad(moved), expected, atol=1e-6)


def test_forward_and_inverse_are_exact_and_upright():
    landmarks = similarity(upright_landmarks(200.0, 150.0, 50.0), 35.0, 1.0, (0.0, 0.0), (200.0, 150.0))
    quad = ffhq_quad(landmarks)
    size = 256
    alignment = FaceAlignment.from_quad(quad, size, (400, 300))
    np.testing.assert_allclose(alignment.forward @ alignment.inverse, np.eye(3), atol=1e-12)
    corners = alignment.photo_to_crop(quad)
    np.testing.assert_allclose(corners, [[0, 0], [0, size], [size, size], [size, 0]], atol=1e-9)
    points = np.random.default_rng(0).uniform(-100, 500, size=(20, 2))
    np.testing.assert_allclose(alignment.crop_to_photo(alignment.photo_to_crop(points)), points, atol=1e-9)
    # Upright: the left eye is left of the right eye on one row, the mouth below them.
    crop_points = alignment.photo_to_crop(landmarks)
    assert crop_points[0, 0] < size / 2 < crop_points[1, 0]
    assert crop_points[0, 1] == pytest.approx(crop_points[1, 1], abs=1e-9)
    assert crop_points[3, 1] > crop_points[0, 1] + 0.2 * size
    # A similarity: the determinant is positive (no mirror) and the map is conformal.
    linear = alignment.forward[:2, :2]
    assert np.linalg.det(linear) > 0
    np.testing.assert_allclose(linear @ linear.T, np.eye(2) * (linear @ linear.T)[0, 0], atol=1e-12)


@pytest.mark.parametrize("case", ["plain", "rotated", "shrunk", "border", "pil"])
def test_markers_land_where_expected_in_the_crop(case):
    size = 128
    d, width, height, angle, sigma = 60.0, 400, 420, 0.0, 4.0
    cx, cy = 200.0, 200.0
    if case == "rotated":
        angle = 30.0
    elif case == "shrunk":  # quad side 16 d = 1600 px > 2 * size: shrink by floor(1600 / 256) = 6.
        d, width, height, cx, cy, sigma = 400.0, 2400, 2200, 1200.0, 1000.0, 24.0
    elif case == "border":  # the quad pokes out of the top and left edges.
        cx, cy = 120.0, 90.0
    plain = upright_landmarks(cx, cy, d)
    landmarks = similarity(plain, angle, 1.0, (0.0, 0.0), centre=(cx, cy))
    photo = render_markers(width, height, landmarks, sigma)
    crop, alignment = align_face(Image.fromarray(photo) if case == "pil" else photo, landmarks, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    # Where the quad puts the landmarks is the same for any rotation (equivariance), so compare both with
    # the non-rotated face's crop coordinates.
    reference = FaceAlignment.from_quad(ffhq_quad(plain), size, (width, height)).photo_to_crop(plain)
    np.testing.assert_allclose(alignment.photo_to_crop(landmarks), reference, atol=1e-6)
    radius = 3 * sigma * size / (4 * d)
    for guess in reference:
        np.testing.assert_allclose(blob_centroid(crop, guess, radius), guess, atol=1.0)
    if case == "shrunk":
        assert alignment.shrink == 6
    else:
        assert alignment.shrink == 1 and alignment.supersample == 2
    if case == "border":
        left, top, right, bottom = alignment.padding
        assert left > 0 and top > 0 and right == 0 and bottom == 0
        # Reflect-padded and blurred, never black fill.
        assert crop.min() >= 50
    else:
        assert alignment.padding == (0, 0, 0, 0)


@pytest.mark.parametrize("size", [128, 256])
def test_round_trip_reproduces_the_photo_inside_the_mask_and_exactly_outside(size):
    photo = smooth_photo(320, 300)
    landmarks = similarity(upright_landmarks(160.0, 130.0, 50.0), 12.0, 1.0, (0.0, 0.0), (160.0, 130.0))
    crop, alignment = align_face(photo, landmarks, size)
    out, alpha = paste_back(photo, crop, alignment, face_mask(alignment, size), return_mask=True)
    assert out.shape == photo.shape and out.dtype == np.uint8
    inside, outside = alpha >= 0.999, alpha == 0
    assert inside.sum() > 5000 and outside.sum() > 5000
    error = out[inside].astype(np.float64) - photo[inside]
    psnr = 10 * math.log10(255.0 ** 2 / np.mean(error ** 2))
    assert psnr > 30.0, psnr
    assert np.array_equal(out[outside], photo[outside])


def test_pasted_pixels_change_only_where_the_mask_is_positive():
    photo = smooth_photo(320, 300)
    landmarks = upright_landmarks(150.0, 140.0, 45.0)
    _, alignment = align_face(photo, landmarks, 64)
    noise = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    out, alpha = paste_back(photo, noise, alignment, return_mask=True)  # default face_mask
    assert np.array_equal(out[alpha == 0], photo[alpha == 0])
    assert (alpha == 0).sum() > 0.5 * alpha.size
    changed = np.any(out != photo, axis=2)
    assert changed[alpha > 0.5].mean() > 0.9
    # The mask lives within the quad's bounding box.
    ys, xs = np.nonzero(alpha)
    assert xs.min() >= alignment.quad[:, 0].min() - 1 and xs.max() <= alignment.quad[:, 0].max() + 1


def test_photo_space_masks_are_accepted_and_told_apart_by_shape():
    photo = smooth_photo(300, 300)
    landmarks = upright_landmarks(150.0, 140.0, 40.0)
    crop, alignment = align_face(photo, landmarks, 96)
    edited = np.full_like(crop, 255)
    photo_mask = np.zeros((300, 300), np.float32)
    photo_mask[120:170, 110:190] = 1.0
    out = paste_back(photo, edited, alignment, photo_mask)
    assert np.array_equal(out[photo_mask == 0], photo[photo_mask == 0])
    assert (out[photo_mask == 1] >= 254).all()
    # A square photo whose side is the crop side: the shape no longer says which space the mask is in.
    small = smooth_photo(96, 96)
    crop, alignment = align_face(small, upright_landmarks(48.0, 40.0, 33.0), 96)
    mask = face_mask(alignment)
    with pytest.raises(InputError, match="mask_space"):
        paste_back(small, crop, alignment, mask)
    as_crop = paste_back(small, crop, alignment, mask, mask_space="crop")
    as_photo = paste_back(small, crop, alignment, mask, mask_space="photo")
    assert as_crop.shape == as_photo.shape == small.shape
    with pytest.raises(InputError):
        paste_back(small, crop, alignment, np.ones((50, 50), np.float32))
    with pytest.raises(InputError):
        paste_back(small, crop, alignment, np.full((96, 96), 1.5, np.float32), mask_space="crop")


def test_face_mask_shape_range_and_placement():
    landmarks = upright_landmarks(160.0, 130.0, 50.0)
    quad = ffhq_quad(landmarks)
    alignment = FaceAlignment.from_quad(quad, 256, (320, 300))
    for mask in (face_mask(alignment), face_mask(alignment, 128, landmarks=landmarks, feather=0.1)):
        assert mask.dtype == np.float32 and mask.shape[0] == mask.shape[1]
        assert mask.min() >= 0.0 and mask.max() <= 1.0
        n = mask.shape[0]
        eyes = (alignment.photo_to_crop(landmarks[:2]) * n / 256).astype(int)
        mouth = (alignment.photo_to_crop(landmarks[3:]) * n / 256).astype(int)
        for x, y in np.concatenate([eyes, mouth]):
            assert mask[y, x] == 1.0
        # Zero along the whole crop border, so no square seam.
        assert mask[0].max() == mask[-1].max() == mask[:, 0].max() == mask[:, -1].max() == 0.0
        assert 0.0 < mask.mean() < 0.6
    with pytest.raises(InputError):
        face_mask(alignment, feather=0.0)


def test_five_point_adaptation_mouth_contour_mean_moves_the_quad_little(capsys):
    """How far the quad moves if the mouth 'corners' are replaced by the mean of a 12-point outer-mouth
    contour (dlib points 48-59), synthesised as two half-ellipses through the corners with a fuller lower
    lip. A symmetric ellipse would move nothing (its mean is the corners' midpoint)."""
    results = {}
    for mouth in (1.0, 1.3):  # eye-term-limited and mouth-term-limited face proportions
        landmarks = upright_landmarks(500.0, 400.0, 100.0, mouth=mouth)
        left, right = landmarks[3], landmarks[4]
        centre, half_width = (left + right) / 2, (right[0] - left[0]) / 2
        angles = np.radians(np.arange(12) * 30.0)  # 0 = right corner, 180 = left corner
        upper, lower = 0.25 * half_width, 0.45 * half_width
        heights = np.where(np.sin(angles) < 0, upper, lower)  # y down: sin < 0 is the upper lip
        contour = centre + np.stack([half_width * np.cos(angles), heights * np.sin(angles)], axis=1)
        contour_mean = contour.mean(axis=0)
        moved = landmarks.copy()
        moved[3] = moved[4] = contour_mean  # mouth_avg becomes the contour mean
        shift = np.abs(ffhq_quad(moved) - ffhq_quad(landmarks)).max()
        side = 4 * face_scale(landmarks)
        results[mouth] = (shift, shift / side)
        with capsys.disabled():
            print(f"\n5-point adaptation, mouth at {mouth} eye distances: mouth mean moves "
                  f"{np.hypot(*(contour_mean - centre)):.2f} px, quad corners move {shift:.3f} px "
                  f"= {100 * shift / side:.3f}% of the {side:.0f} px side")
    assert 0 < results[1.0][1] < 0.002  # 2 |eye_to_eye| sets the size: only the centre moves
    assert 0 < results[1.3][1] < 0.015  # 1.8 |eye_to_mouth| sets the size, which moves too


def test_bad_inputs_raise_one_line_input_errors():
    good = upright_landmarks(200.0, 150.0, 50.0)
    photo = smooth_photo(400, 300)
    bad_landmarks = [
        good[:4], good[:, :1], np.concatenate([good, good[:1]]), good.reshape(-1),
        np.where(np.arange(10).reshape(5, 2) == 3, np.nan, good),
        np.where(np.arange(10).reshape(5, 2) == 7, np.inf, good),
        "eyes",
    ]
    for landmarks in bad_landmarks:
        with pytest.raises(InputError) as caught:
            align_face(photo, landmarks, 64)
        assert "\n" not in str(caught.value)
    degenerate = good.copy()
    degenerate[1] = degenerate[0]  # eyes on top of each other
    mirrored = good[[1, 0, 2, 4, 3]]  # left and right swapped
    collinear = good.copy()
    collinear[3:, 1] = good[0, 1]  # mouth on the eye line, beside the eye midpoint
    collinear[3:, 0] += 30.0
    for landmarks, match in ((degenerate, "degenerate"), (np.zeros((5, 2)), "degenerate"),
                             (mirrored, "mirrored"), (collinear, "mirrored")):
        with pytest.raises(InputError, match=match):
            ffhq_quad(landmarks)
        with pytest.raises(InputError, match=match):
            align_face(photo, landmarks, 64)
    with pytest.raises(InputError, match="too small"):
        align_face(photo, upright_landmarks(200.0, 150.0, 6.0), 64)
    align_face(photo, upright_landmarks(200.0, 150.0, 6.0), 64, min_eye_distance=5)
    # Centred on the photo's corner: about three quarters of the quad lie outside.
    with pytest.raises(InputError, match="border"):
        align_face(photo, upright_landmarks(0.0, 0.0, 50.0), 64)
    # A quarter outside is fine (padded).
    align_face(photo, upright_landmarks(200.0, 50.0, 50.0), 64)
    with pytest.raises(InputError):
        align_face(photo.astype(np.float32), good, 64)
    with pytest.raises(InputError):
        align_face(photo[:, :, :2], good, 64)
    with pytest.raises(InputError):
        align_face(photo, good, 0)
    _, alignment = align_face(photo, good, 64)
    with pytest.raises(InputError, match="alignment was made"):
        paste_back(photo[:200], np.zeros((64, 64, 3), np.uint8), alignment)
    with pytest.raises(InputError):
        paste_back(photo, np.zeros((64, 32, 3), np.uint8), alignment)


def test_json_round_trip_is_strict_and_validated():
    photo = smooth_photo(400, 300)
    _, alignment = align_face(photo, upright_landmarks(120.0, 80.0, 50.0), 64)
    record = alignment.to_json()
    text = json.dumps(record, allow_nan=False)
    for restored in (FaceAlignment.from_json(json.loads(text)), FaceAlignment.from_json(text)):
        np.testing.assert_array_equal(restored.quad, alignment.quad)
        np.testing.assert_array_equal(restored.forward, alignment.forward)
        np.testing.assert_array_equal(restored.inverse, alignment.inverse)
        assert (restored.size, restored.photo_size, restored.shrink, restored.padding, restored.supersample) == (
            alignment.size, alignment.photo_size, alignment.shrink, alignment.padding, alignment.supersample)
    assert any(alignment.padding)
    tampered = json.loads(text)
    tampered["forward"][0][2] += 5.0
    missing = json.loads(text)
    del missing["quad"]
    wrong_type = json.loads(text)
    wrong_type["size"] = 64.0
    for bad in (tampered, missing, wrong_type, {"format": "other"}, "not json", [1, 2]):
        with pytest.raises(InputError):
            FaceAlignment.from_json(bad)
