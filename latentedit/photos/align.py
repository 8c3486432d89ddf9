"""FFHQ-style alignment of a face in a real photograph, with the exact transform kept for pasting back.

Coordinates
-----------
All positions are continuous ``(x, y)`` pixel coordinates in which pixel ``(row r, column c)`` covers the
square ``[c, c + 1) x [r, r + 1)``, so its centre is ``(c + 0.5, r + 0.5)`` and an image of width ``W`` and
height ``H`` spans ``[0, W] x [0, H]``. This is Pillow's convention for ``Image.transform`` and
``Image.resize``, which is why the transforms recorded here are exact for the resampling done here. A
landmark detector that reports pixel *indices* (centre of the first pixel at 0) should add 0.5.

5-point landmark convention
---------------------------
Landmarks are a ``[5, 2]`` float array of ``(x, y)`` positions in photo pixels, in this order::

    0  left eye centre        (the eye on the left of the image, i.e. the subject's right eye)
    1  right eye centre       (the eye on the right of the image)
    2  nose tip
    3  left mouth corner      (as seen in the image)
    4  right mouth corner     (as seen in the image)

This is the order MTCNN and RetinaFace report. The nose tip is validated but not used by the FFHQ recipe.

The crop
--------
:func:`ffhq_quad` reproduces the rule the FFHQ data set was cropped with; :func:`align_face` resamples that
quad into an upright ``size x size`` image and returns a :class:`FaceAlignment` holding the affine map from
photo to crop coordinates and its inverse, so that an edited crop can be pasted back exactly
(:func:`latentedit.photos.paste.paste_back`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from latentedit.errors import InputError

#: Faces whose effective inter-ocular distance (see :func:`face_scale`) is below this many photo pixels are
#: refused by :func:`align_face`: the FFHQ crop is 4 such distances wide, so 8 px is a face of about 32 px (the
#: smallest face issue #18 accepts) in a 32 px crop. A crop larger than the face is upsampled and blurred; the
#: alignment records that (``supersample``, the quad side) so callers can warn, but it is not refused, since
#: the 64 px toyfaces generator crops faces of 12-40 px eye distance from 256 px scenes.
MIN_EYE_DISTANCE = 8.0

#: :func:`align_face` refuses a quad with more than this fraction of its area outside the photo: the crop
#: would then be mostly invented (reflected and blurred) background.
MAX_OUTSIDE_FRACTION = 0.5

#: The ``format`` tag written by :meth:`FaceAlignment.to_json` and required by :meth:`FaceAlignment.from_json`.
JSON_FORMAT = "latentedit.face_alignment/1"


@dataclass(frozen=True)
class Framing:
    """How a generator's training crops frame a face, relative to the FFHQ recipe of :func:`ffhq_quad`.

    The quad's centre is ``eye_avg + centre_shift * eye_to_mouth`` (FFHQ: 0.1) and its half-side ``zoom``
    times FFHQ's ``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)`` (FFHQ: 1); its direction is FFHQ's.
    """

    name: str
    centre_shift: float
    zoom: float
    #: The face-and-hair mask of :func:`~latentedit.photos.paste.face_mask` from landmarks: semi-axes
    #: ``(along the eye line, towards the chin)`` and the shift of its centre from the eye midpoint towards
    #: the chin, all in units of :func:`face_scale`.
    mask_axes: tuple[float, float] = (1.36, 1.68)
    mask_shift: float = 0.0
    #: The same mask without landmarks, in crop fractions: centre ``(x, y)`` and semi-axes.
    mask_ellipse: tuple[tuple[float, float], tuple[float, float]] = ((0.5, 0.47), (0.34, 0.42))


#: ``ffhq``: the FFHQ data set's crop, for generators trained on FFHQ-like data (every public face model).
#: ``toyfaces``: the frame of a toyfaces render, which shows the whole head, hair and shoulders and is 1.375
#: times wider than an FFHQ crop of the same face; the two numbers are the mean over 3,000 training faces
#: of the render frame measured against their true landmarks (per-face spread: centre shift ±0.12
#: eye-to-mouth, zoom ±0.10, the renderer's head placement nuisance). ``benchmarks/photos.py`` refits them.
#: Their masks differ too: toyfaces hair reaches the shoulders, so its mask spans x 10-54 and y 10-63 of a
#: 64 px render, the region where Black_Hair and Blond_Hair counterfactuals differ on at least 5 % of faces.
FRAMINGS = {
    "ffhq": Framing("ffhq", 0.1, 1.0),
    "toyfaces": Framing("toyfaces", -0.038, 1.375, mask_axes=(1.85, 2.25), mask_shift=0.35,
                        mask_ellipse=((0.5, 0.57), (0.34, 0.41))),
}


def get_framing(framing: "str | Framing") -> Framing:
    """A :class:`Framing` from its name in :data:`FRAMINGS` (or the object itself); InputError otherwise."""
    if isinstance(framing, Framing):
        return framing
    if framing not in FRAMINGS:
        raise InputError(f"unknown framing {framing!r}; choose one of {', '.join(FRAMINGS)}")
    return FRAMINGS[framing]


# The largest supersampling factor align_face uses; after the integer shrink the quad side is below
# 4 * size (see _shrink_factor), so 4 always suffices to avoid aliasing in the bicubic sampling step.
_MAX_SUPERSAMPLE = 4


def _as_landmarks(landmarks) -> np.ndarray:
    """``landmarks`` as a float64 ``[5, 2]`` array, or an InputError naming what is wrong."""
    try:
        points = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"landmarks must be a [5, 2] array of (x, y) numbers ({error})") from error
    if points.shape != (5, 2):
        raise InputError(f"landmarks must have shape [5, 2] (eyes, nose, mouth corners as x, y), got "
                         f"{list(points.shape)}")
    if not np.isfinite(points).all():
        raise InputError("landmarks contain NaN or infinite values; the detector found no usable face")
    return points


def _rot90(vector: np.ndarray) -> np.ndarray:
    """``flipud(v) * [-1, 1]``: (a, b) -> (-b, a), a quarter turn (clockwise on screen, y pointing down)."""
    return np.array([-vector[1], vector[0]], dtype=np.float64)


def _eye_mouth(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(eye_avg, eye_to_eye, eye_to_mouth)`` of validated ``[5, 2]`` landmarks."""
    eye_left, eye_right = points[0], points[1]
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (points[3] + points[4]) * 0.5
    return eye_avg, eye_to_eye, mouth_avg - eye_avg


def face_scale(landmarks) -> float:
    """The effective inter-ocular distance in photo pixels: ``max(|eye_to_eye|, 0.9 * |eye_to_mouth|)``.

    It is a quarter of the FFHQ quad's side (see :func:`ffhq_quad`), equals the inter-ocular distance for a
    frontal face and does not collapse for a face in profile (where the eyes close up but the eye-to-mouth
    distance stays). :func:`align_face` compares it with :data:`MIN_EYE_DISTANCE`.
    """
    _, eye_to_eye, eye_to_mouth = _eye_mouth(_as_landmarks(landmarks))
    return float(max(np.hypot(*eye_to_eye), np.hypot(*eye_to_mouth) * 0.9))


def ffhq_quad(landmarks, framing: "str | Framing" = "ffhq") -> np.ndarray:
    """The FFHQ crop quad of a face: a float64 ``[4, 2]`` array of ``(x, y)`` photo coordinates.

    ``landmarks`` is ``[5, 2]`` in the order of the module docstring. The recipe is the one the FFHQ data
    set was built with::

        eye_avg = (left_eye + right_eye) / 2          eye_to_eye   = right_eye - left_eye
        mouth_avg = (left_mouth + right_mouth) / 2    eye_to_mouth = mouth_avg - eye_avg
        x = eye_to_eye - rot90(eye_to_mouth)          rot90(a, b) = flipud((a, b)) * [-1, 1] = (-b, a)
        x = x / |x| * max(2.0 * |eye_to_eye|, 1.8 * |eye_to_mouth|)
        y = rot90(x)
        c = eye_avg + 0.1 * eye_to_mouth
        quad = [c - x - y, c - x + y, c + x + y, c + x - y]

    so ``x`` points along the eye line (averaged with the perpendicular of the eye-to-mouth direction) and
    ``y`` from the forehead to the chin; the quad is a square of side ``2 |x|`` and its corners are, for an
    upright face: top-left, bottom-left, bottom-right, top-right (the order Pillow's ``Image.QUAD`` uses).

    5-point adaptation: FFHQ took ``left_eye``/``right_eye`` as the means of the six dlib 68-point contour
    points of each eye and the mouth corners as dlib points 48 and 54. With 5 points the detector's eye
    centres and mouth corners are used directly. Eye-contour means and eye centres agree to a pixel or so;
    the mouth corners are the same points, so the difference is detector noise, not a change of recipe
    (``tests/test_photos.py`` measures how far the quad moves if the mouth *contour* mean were used instead).

    ``framing`` (a name in :data:`FRAMINGS` or a :class:`Framing`) replaces the 0.1 of ``c`` and scales ``x``;
    the default ``"ffhq"`` is the recipe above exactly.

    Raises InputError for landmarks of the wrong shape or with non-finite values, for a degenerate
    configuration (eyes or eye line and mouth on top of each other) and for mirrored landmarks (left and
    right swapped: the mouth must lie on the clockwise side of the left-to-right eye line, as in any
    rotation of an upright face).
    """
    frame = get_framing(framing)
    points = _as_landmarks(landmarks)
    eye_avg, eye_to_eye, eye_to_mouth = _eye_mouth(points)
    eye_distance = float(np.hypot(*eye_to_eye))
    mouth_distance = float(np.hypot(*eye_to_mouth))
    span = float(np.ptp(points, axis=0).max())
    # Relative tolerance: landmarks are in pixels, and a configuration a millionth of the landmark spread
    # across carries no direction.
    tolerance = 1e-6 * max(span, 1e-300)
    if eye_distance <= tolerance or mouth_distance <= tolerance:
        raise InputError("degenerate landmarks: the two eyes, or the eyes and the mouth, are at the same "
                         "position; pass the 5 points of one detected face")
    # In image coordinates (y down) an upright face has eye_to_eye = (+, 0), eye_to_mouth = (0, +), so
    # cross(eye_to_eye, eye_to_mouth) > 0; rotations keep the sign and only a mirror image flips it.
    cross = eye_to_eye[0] * eye_to_mouth[1] - eye_to_eye[1] * eye_to_mouth[0]
    if cross <= 1e-3 * eye_distance * mouth_distance:
        raise InputError("landmarks look mirrored or collinear (the mouth is not below the left-to-right "
                         "eye line); the order must be left eye, right eye, nose, left mouth, right mouth as "
                         "seen in the image")
    x = eye_to_eye - _rot90(eye_to_mouth)
    x = x / np.hypot(*x)
    x = x * max(eye_distance * 2.0, mouth_distance * 1.8)
    if frame.zoom != 1.0:
        x = x * frame.zoom
    y = _rot90(x)
    centre = eye_avg + eye_to_mouth * frame.centre_shift
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


def quad_to_crop_matrices(quad, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(forward, inverse)`` float64 ``[3, 3]`` affine matrices for a ``[4, 2]`` quad and output ``size``.

    ``forward @ [x, y, 1]`` maps photo to crop coordinates, sending ``quad[0], quad[1], quad[2], quad[3]``
    to ``(0, 0), (0, size), (size, size), (size, 0)``; ``inverse`` maps crop to photo. The inverse is
    built directly from the corners (``p = quad[0] + (quad[3] - quad[0]) u / size + (quad[1] - quad[0])
    v / size``), which is exact for any parallelogram; an FFHQ quad is a square, so both are similarities.
    """
    quad = np.asarray(quad, dtype=np.float64)
    inverse = np.eye(3)
    inverse[:2, 0] = (quad[3] - quad[0]) / size
    inverse[:2, 1] = (quad[1] - quad[0]) / size
    inverse[:2, 2] = quad[0]
    return np.linalg.inv(inverse), inverse


def _apply(matrix: np.ndarray, points) -> np.ndarray:
    """Apply a ``[3, 3]`` affine matrix to ``[..., 2]`` points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


@dataclass(frozen=True)
class FaceAlignment:
    """How a face was cropped out of a photo: everything needed to map between the two and paste back.

    Attributes:
        quad: float64 ``[4, 2]`` crop quad in photo coordinates (:func:`ffhq_quad`), corners going to the
            crop's top-left, bottom-left, bottom-right and top-right.
        size: side ``N`` of the square crop in pixels.
        photo_size: ``(width, height)`` of the photo the quad refers to.
        forward: float64 ``[3, 3]`` affine map photo -> crop coordinates (last row ``[0, 0, 1]``).
        inverse: float64 ``[3, 3]`` affine map crop -> photo coordinates, ``inv(forward)``.
        shrink: integer factor the photo was box-downscaled by before sampling (1 = not shrunk).
        padding: ``(left, top, right, bottom)`` pixels of reflect padding (in shrunk-photo pixels) added
            where the quad's neighbourhood extended beyond the photo; the padded part was blurred.
        supersample: the quad was sampled at ``supersample * N`` and Lanczos-reduced to ``N`` (1 = direct).
        framing: name of the :class:`Framing` the quad was computed with (informational).

    ``forward`` and ``inverse`` describe the overall geometry in the original photo's coordinates: the
    shrink, crop and padding steps only change the resampling route, not where a photo point lands.
    """

    quad: np.ndarray
    size: int
    photo_size: tuple[int, int]
    forward: np.ndarray
    inverse: np.ndarray
    shrink: int = 1
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    supersample: int = 1
    framing: str = "ffhq"

    @classmethod
    def from_quad(cls, quad, size: int, photo_size: tuple[int, int], shrink: int = 1,
                  padding: tuple[int, int, int, int] = (0, 0, 0, 0), supersample: int = 1,
                  framing: str = "ffhq") -> "FaceAlignment":
        """Build an alignment (with its matrices) for a ``[4, 2]`` quad and crop side ``size``."""
        quad = np.array(quad, dtype=np.float64)
        forward, inverse = quad_to_crop_matrices(quad, size)
        return cls(quad=quad, size=int(size), photo_size=(int(photo_size[0]), int(photo_size[1])),
                   forward=forward, inverse=inverse, shrink=int(shrink),
                   padding=tuple(int(p) for p in padding), supersample=int(supersample), framing=str(framing))

    def photo_to_crop(self, points) -> np.ndarray:
        """Map ``[..., 2]`` photo ``(x, y)`` points to crop coordinates (float64, same shape)."""
        return _apply(self.forward, points)

    def crop_to_photo(self, points) -> np.ndarray:
        """Map ``[..., 2]`` crop ``(x, y)`` points to photo coordinates (float64, same shape)."""
        return _apply(self.inverse, points)

    def to_json(self) -> dict:
        """A dict of plain lists, ints, floats and strings; ``json.dumps(d, allow_nan=False)`` accepts it."""
        return {
            "format": JSON_FORMAT,
            "quad": [[float(v) for v in row] for row in self.quad],
            "size": int(self.size),
            "photo_size": [int(self.photo_size[0]), int(self.photo_size[1])],
            "forward": [[float(v) for v in row] for row in self.forward],
            "inverse": [[float(v) for v in row] for row in self.inverse],
            "shrink": int(self.shrink),
            "padding": [int(p) for p in self.padding],
            "supersample": int(self.supersample),
            "framing": self.framing,
        }

    @classmethod
    def from_json(cls, data: dict | str) -> "FaceAlignment":
        """Rebuild an alignment from :meth:`to_json`'s dict (or its JSON text). InputError if malformed.

        The matrices are recomputed from ``quad`` and ``size`` and must agree with the stored ones (to
        1e-6 relative), so a manifest whose entries were edited inconsistently is refused.
        """
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as error:
                raise InputError(f"face alignment is not valid JSON ({error})") from error
        if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
            raise InputError(f"not a face alignment record (expected a JSON object with format "
                             f"{JSON_FORMAT!r})")
        try:
            quad = np.asarray(data["quad"], dtype=np.float64)
            size = data["size"]
            photo_size = data["photo_size"]
            forward = np.asarray(data["forward"], dtype=np.float64)
            inverse = np.asarray(data["inverse"], dtype=np.float64)
            shrink, padding, supersample = data["shrink"], data["padding"], data["supersample"]
        except KeyError as error:
            raise InputError(f"face alignment record lacks the field {error.args[0]!r}") from error
        except (TypeError, ValueError) as error:
            raise InputError(f"face alignment record has a malformed field ({error})") from error
        ints_ok = (isinstance(size, int) and size > 0 and isinstance(shrink, int) and shrink >= 1
                   and isinstance(supersample, int) and supersample >= 1
                   and isinstance(photo_size, list) and len(photo_size) == 2
                   and all(isinstance(v, int) and v > 0 for v in photo_size)
                   and isinstance(padding, list) and len(padding) == 4
                   and all(isinstance(v, int) and v >= 0 for v in padding))
        if not ints_ok:
            raise InputError("face alignment record: size, shrink, supersample, photo_size and padding must "
                             "be positive integers (padding non-negative, 4 of them; photo_size 2)")
        if quad.shape != (4, 2) or forward.shape != (3, 3) or inverse.shape != (3, 3):
            raise InputError("face alignment record: quad must be [4, 2], forward and inverse [3, 3]")
        if not (np.isfinite(quad).all() and np.isfinite(forward).all() and np.isfinite(inverse).all()):
            raise InputError("face alignment record contains non-finite numbers")
        framing = data.get("framing", "ffhq")
        if not isinstance(framing, str):
            raise InputError("face alignment record: framing must be a string")
        alignment = cls.from_quad(quad, size, tuple(photo_size), shrink, tuple(padding), supersample, framing)
        for name, stored, recomputed in (("forward", forward, alignment.forward),
                                         ("inverse", inverse, alignment.inverse)):
            if not np.allclose(stored, recomputed, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(recomputed).max())):
                raise InputError(f"face alignment record: the {name} matrix does not match the quad and size")
        return alignment


def _as_photo(photo) -> np.ndarray:
    """A photo (PIL image or ``[H, W, 3]`` uint8 array) as a C-contiguous ``[H, W, 3]`` uint8 array."""
    from PIL import Image

    if isinstance(photo, Image.Image):
        photo = np.asarray(photo.convert("RGB"))
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise InputError(f"photo must be an [H, W, 3] uint8 RGB array or a PIL image, got shape "
                         f"{list(photo.shape)} and dtype {photo.dtype}")
    if photo.shape[0] < 1 or photo.shape[1] < 1:
        raise InputError("photo is empty")
    return np.ascontiguousarray(photo)


def _polygon_area(polygon: np.ndarray) -> float:
    """Area of a simple polygon given as ``[K, 2]`` vertices (shoelace formula)."""
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clip_to_rectangle(polygon: np.ndarray, width: float, height: float) -> np.ndarray:
    """The part of a convex polygon inside ``[0, width] x [0, height]`` (clipping against each edge)."""
    # Each half-plane as (axis, bound, keep_below).
    for axis, bound, below in ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True)):
        if len(polygon) == 0:
            break
        inside = polygon[:, axis] <= bound if below else polygon[:, axis] >= bound
        clipped = []
        for i in range(len(polygon)):
            current, following = polygon[i], polygon[(i + 1) % len(polygon)]
            current_in, following_in = inside[i], inside[(i + 1) % len(polygon)]
            if current_in:
                clipped.append(current)
            if current_in != following_in:
                t = (bound - current[axis]) / (following[axis] - current[axis])
                clipped.append(current + t * (following - current))
        polygon = np.array(clipped, dtype=np.float64).reshape(-1, 2)
    return polygon


def outside_fraction(quad, photo_size: tuple[int, int]) -> float:
    """The fraction of a ``[4, 2]`` quad's area lying outside a ``(width, height)`` photo, in [0, 1]."""
    quad = np.asarray(quad, dtype=np.float64)
    area = _polygon_area(quad)
    inside = _polygon_area(_clip_to_rectangle(quad, float(photo_size[0]), float(photo_size[1])))
    return float(min(max(1.0 - inside / area, 0.0), 1.0))


def _shrink_factor(quad_side: float, size: int) -> int:
    """Integer box-shrink factor so that the quad side ends below ``4 * size`` pixels (FFHQ's rule).

    ``floor(side / (2 size))``: with factor k >= 2 the shrunk side is ``side / k < 3 size``; k = 1 (no
    shrink) is only chosen for sides below ``4 size``.
    """
    return max(1, int(math.floor(quad_side / (2.0 * size))))


def _blur_padding(image: np.ndarray, padding: tuple[int, int, int, int], sigma: float) -> np.ndarray:
    """Blend a Gaussian blur and the image median into reflect-padded borders, more so further out.

    Inside the original photo the weight is exactly 0, so those pixels are returned unchanged; in the
    padding it grows linearly with the distance from the photo border relative to that side's padding
    width (reaching 1 at the padded image's edge). Reflected content would otherwise show mirrored
    features (a second ear, a mirrored shoulder) that the generator would try to reproduce.
    """
    from PIL import Image, ImageFilter

    left, top, right, bottom = padding
    height, width = image.shape[:2]
    xs = np.arange(width, dtype=np.float64) + 0.5
    ys = np.arange(height, dtype=np.float64) + 0.5
    # Distance outside the photo on each side, normalised by that side's padding (0 where there is none).
    fx = np.zeros(width)
    fy = np.zeros(height)
    if left:
        fx = np.maximum(fx, (left - xs) / left)
    if right:
        fx = np.maximum(fx, (xs - (width - right)) / right)
    if top:
        fy = np.maximum(fy, (top - ys) / top)
    if bottom:
        fy = np.maximum(fy, (ys - (height - bottom)) / bottom)
    weight = np.clip(np.maximum(fx[None, :], fy[:, None]), 0.0, 1.0)[:, :, None]
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=sigma)), np.float64)
    result = image.astype(np.float64)
    # Blur ramps in three times faster than the fade to the median, as FFHQ's crops do: the near padding
    # is a blurred reflection, the far padding an almost flat colour.
    result += (blurred - result) * np.clip(weight * 3.0, 0.0, 1.0)
    median = np.median(image.reshape(-1, 3), axis=0)
    result += (median - result) * weight
    out = np.clip(np.rint(result), 0, 255).astype(np.uint8)
    out[weight[:, :, 0] == 0] = image[weight[:, :, 0] == 0]
    return out


def align_face(photo, landmarks, size: int, min_eye_distance: float = MIN_EYE_DISTANCE,
               framing: "str | Framing" = "ffhq") -> tuple[np.ndarray, FaceAlignment]:
    """Crop the FFHQ quad of a face out of a photo as an upright ``[size, size, 3]`` uint8 image.

    Args:
        photo: the photograph, a PIL image (converted to RGB) or an ``[H, W, 3]`` uint8 array.
        landmarks: ``[5, 2]`` float ``(x, y)`` photo coordinates (module docstring for order and origin).
        size: side of the output crop in pixels (e.g. the generator's resolution).
        min_eye_distance: smallest accepted :func:`face_scale`, in photo pixels.
        framing: the generator's crop convention (:data:`FRAMINGS`): ``"ffhq"`` or ``"toyfaces"``.

    Returns:
        ``(crop, alignment)``: the ``[size, size, 3]`` uint8 crop and the :class:`FaceAlignment` whose
        ``forward`` maps photo coordinates to crop coordinates exactly (``alignment.photo_to_crop``).

    Resampling (anti-aliased at any scale):

    1. When the quad side exceeds ``2 * size`` the photo is box-reduced by the integer factor
       ``floor(side / (2 size))`` (:meth:`PIL.Image.Image.reduce`; photo point ``p`` becomes ``p / k``).
    2. The quad's bounding box, grown by a border of ``max(3, 0.1 * side)`` pixels, is cut out; where it
       extends beyond the photo the photo is reflect-padded and the padding blurred towards a flat colour
       (see :func:`_blur_padding`), so the crop never shows hard mirrored edges or black.
    3. The quad is sampled with bicubic interpolation at ``supersample * size``, ``supersample =
       clip(ceil(side_after_shrink / size), 1, 4)``, and Lanczos-reduced to ``size``, so no sampling step
       reduces by more than a factor of about 1 without a low-pass filter.

    Raises InputError for bad landmarks (see :func:`ffhq_quad`), a bad photo, ``size < 1``, a face whose
    :func:`face_scale` is below ``min_eye_distance``, or a quad with more than
    :data:`MAX_OUTSIDE_FRACTION` of its area outside the photo.
    """
    from PIL import Image

    image = _as_photo(photo)
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise InputError(f"crop size must be a positive integer, got {size!r}")
    size = int(size)
    points = _as_landmarks(landmarks)
    frame = get_framing(framing)
    quad = ffhq_quad(points, frame)
    scale = face_scale(points)
    if scale < min_eye_distance:
        raise InputError(f"face too small: eye distance about {scale:.1f} px, below the minimum of "
                         f"{min_eye_distance:g} px; use a higher-resolution photo")
    height, width = image.shape[:2]
    outside = outside_fraction(quad, (width, height))
    if outside > MAX_OUTSIDE_FRACTION:
        raise InputError(f"face too close to the photo border: {outside:.0%} of its crop lies outside the "
                         f"photo (at most {MAX_OUTSIDE_FRACTION:.0%} allowed)")
    side = float(np.hypot(*(quad[3] - quad[0])))

    # 1. Integer shrink: an exact coordinate scaling p -> p / k (partial boxes at the far edges are averaged
    # over the pixels they have, which only touches the outermost row and column).
    shrink = _shrink_factor(side, size)
    work = Image.fromarray(image)
    if shrink > 1:
        work = work.reduce(shrink)
    work_quad = quad / shrink
    work_side = side / shrink

    # 2. Cut out the quad's neighbourhood and reflect-pad what lies beyond the photo.
    border = max(3, int(math.ceil(work_side * 0.1)))
    x0 = int(math.floor(work_quad[:, 0].min())) - border
    y0 = int(math.floor(work_quad[:, 1].min())) - border
    x1 = int(math.ceil(work_quad[:, 0].max())) + border
    y1 = int(math.ceil(work_quad[:, 1].max())) + border
    work_width, work_height = work.size
    padding = (max(0, -x0), max(0, -y0), max(0, x1 - work_width), max(0, y1 - work_height))
    region = np.asarray(work.crop((max(x0, 0), max(y0, 0), min(x1, work_width), min(y1, work_height))))
    if any(padding):
        left, top, right, bottom = padding
        region = np.pad(region, ((top, bottom), (left, right), (0, 0)), mode="reflect")
        region = _blur_padding(region, padding, sigma=max(1.0, work_side * 0.02))
    region_quad = work_quad - np.array([x0, y0], dtype=np.float64)

    # 3. Supersampled bicubic sampling of the quad, then an anti-aliased reduction to the output size.
    supersample = int(min(max(math.ceil(work_side / size), 1), _MAX_SUPERSAMPLE))
    sampled_size = size * supersample
    # Pillow's AFFINE data maps output (x, y) to input (a x + b y + c, d x + e y + f).
    _, to_region = quad_to_crop_matrices(region_quad, sampled_size)
    coefficients = tuple(float(v) for v in to_region[:2].reshape(-1))
    sampled = Image.fromarray(region).transform((sampled_size, sampled_size), Image.AFFINE, coefficients,
                                                resample=Image.BICUBIC)
    if supersample > 1:
        sampled = sampled.resize((size, size), Image.LANCZOS)
    crop = np.asarray(sampled, dtype=np.uint8).copy()
    alignment = FaceAlignment.from_quad(quad, size, (width, height), shrink=shrink, padding=padding,
                                        supersample=supersample, framing=frame.name)
    return crop, alignment
