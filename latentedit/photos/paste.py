"""Pasting an edited face crop back into the photograph it was aligned from.

:func:`face_mask` gives a soft face-and-hair mask in crop coordinates; :func:`paste_back` warps an edited
crop and its mask into the photo with the exact inverse of the alignment (see
:class:`latentedit.photos.align.FaceAlignment`) and alpha-blends. Coordinates follow the convention of
:mod:`latentedit.photos.align` (pixel ``(r, c)`` covers ``[c, c + 1) x [r, r + 1)``).
"""
from __future__ import annotations

import math

import numpy as np

from latentedit.errors import InputError
from latentedit.photos.align import FRAMINGS, FaceAlignment, _as_landmarks, _as_photo, _eye_mouth, _rot90

#: Default face-and-hair ellipse in an FFHQ crop, as fractions of the crop side: centre ``(x, y)`` and
#: semi-axes ``(horizontal, vertical)``. The FFHQ quad puts the eyes at about ``y = 0.47`` and one
#: inter-ocular distance is a quarter of the side, so this spans the ears horizontally and the top of the
#: hair (``y = 0.05``) to below the chin (``y = 0.89``) vertically. With landmarks the same ellipse is
#: ``(1.36, 1.68)`` face scales around the eye midpoint. Other framings have their own
#: (:class:`~latentedit.photos.align.Framing`'s ``mask_*`` fields; the alignment records its framing).
DEFAULT_ELLIPSE = FRAMINGS["ffhq"].mask_ellipse

#: Default width of the mask's soft edge as a fraction of the mask side.
DEFAULT_FEATHER = 0.05


def face_mask(alignment: FaceAlignment, size: int | None = None, landmarks=None,
              feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """A soft face-and-hair mask in crop coordinates: float32 ``[size, size]`` with values in [0, 1].

    Args:
        alignment: the alignment the crop was made with.
        size: side of the mask (the edited crop's side; it may differ from ``alignment.size``, e.g. a
            256 px generator output for a 1024 px alignment). Default: ``alignment.size``.
        landmarks: optional ``[5, 2]`` *photo* landmarks; when given the ellipse is centred on their eye
            midpoint, sized by their :func:`~latentedit.photos.align.face_scale` and turned to their eye
            line (all mapped into the crop). Without them :data:`DEFAULT_ELLIPSE` is used, which is where
            the FFHQ crop puts a face by construction.
        feather: width of the soft edge as a fraction of ``size`` (> 0): the mask is 1 farther than
            ``feather * size / 2`` inside the ellipse, 0 as far outside, and a smoothstep in between.

    The mask is also tapered to 0 over ``feather * size`` at the crop border, so a pasted crop never shows
    its square outline even when landmarks push the ellipse beyond the crop.
    """
    size = alignment.size if size is None else size
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise InputError(f"mask size must be a positive integer, got {size!r}")
    if not (isinstance(feather, (int, float)) and math.isfinite(feather) and feather > 0):
        raise InputError(f"feather must be a positive number (a fraction of the mask side), got {feather!r}")
    size = int(size)
    framing = FRAMINGS.get(alignment.framing, FRAMINGS["ffhq"])
    if landmarks is None:
        (cx, cy), (ax, ay) = framing.mask_ellipse
        centre = np.array([cx, cy]) * size
        axes = np.array([ax, ay]) * size
        direction = np.array([1.0, 0.0])
    else:
        points = alignment.photo_to_crop(_as_landmarks(landmarks)) * (size / alignment.size)
        eye_avg, eye_to_eye, eye_to_mouth = _eye_mouth(points)
        scale = max(np.hypot(*eye_to_eye), 0.9 * np.hypot(*eye_to_mouth))
        axes = np.array(framing.mask_axes) * scale
        # The same averaged eye-line direction as the FFHQ quad's x axis.
        direction = eye_to_eye - _rot90(eye_to_mouth)
        norm = np.hypot(*direction)
        direction = direction / norm if norm > 0 else np.array([1.0, 0.0])
        # Towards the chin: the eye-line direction turned by +90 degrees in image coordinates (y down).
        centre = eye_avg + framing.mask_shift * scale * _rot90(direction)
    coords = np.arange(size, dtype=np.float64) + 0.5
    dx = coords[None, :] - centre[0]
    dy = coords[:, None] - centre[1]
    # Ellipse-frame coordinates (u along the eye line, v towards the chin).
    u = dx * direction[0] + dy * direction[1]
    v = -dx * direction[1] + dy * direction[0]
    level = (u / axes[0]) ** 2 + (v / axes[1]) ** 2 - 1.0
    gradient = 2.0 * np.sqrt((u / axes[0] ** 2) ** 2 + (v / axes[1] ** 2) ** 2)
    # level / |grad level| is the signed distance to the ellipse to first order: exact on the boundary,
    # which is where the feather lives; the centre (zero gradient) is far inside.
    distance = np.where(gradient > 0, level / np.maximum(gradient, 1e-12), -np.inf)
    width = feather * size
    t = np.clip(0.5 - distance / width, 0.0, 1.0)
    mask = t * t * (3.0 - 2.0 * t)
    edge = np.minimum(coords, size - coords) / width
    taper = np.clip(np.minimum(edge[None, :], edge[:, None]) - 0.5, 0.0, 1.0)
    return (mask * taper).astype(np.float32)


def _as_mask(mask, shape: tuple[int, int], name: str) -> np.ndarray:
    """A float32 mask of ``shape`` with values in [0, 1], or an InputError."""
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != shape:
        raise InputError(f"{name} must have shape {list(shape)}, got {list(mask.shape)}")
    if not np.isfinite(mask).all() or mask.min() < 0.0 or mask.max() > 1.0:
        raise InputError(f"{name} values must be finite and in [0, 1]")
    return mask


def paste_back(photo, edited_crop, alignment: FaceAlignment, mask=None, *, mask_space: str | None = None,
               return_mask: bool = False):
    """Warp an edited crop back into the photo and alpha-blend it there.

    Args:
        photo: the original ``[H, W, 3]`` uint8 photo (or PIL image) of size ``alignment.photo_size``.
        edited_crop: ``[S, S, 3]`` uint8 crop; ``S`` may differ from ``alignment.size`` (the crop is taken
            to cover the same quad at another resolution).
        alignment: the :class:`FaceAlignment` returned by :func:`~latentedit.photos.align.align_face`.
        mask: float ``[S, S]`` mask in crop coordinates, or float ``[H, W]`` mask in photo coordinates,
            values in [0, 1]; ``None`` uses :func:`face_mask` ``(alignment, S)``. The two are told apart by
            shape; when ``H == W == S`` that is ambiguous and ``mask_space`` must say which.
        mask_space: ``"crop"`` or ``"photo"`` to state the mask's coordinates; ``None`` infers from shape.
        return_mask: also return the blend weight actually used.

    Returns:
        The blended ``[H, W, 3]`` uint8 photo, and with ``return_mask`` also the float32 ``[H, W]`` weight
        ``alpha`` (``out = photo + (warped_crop - photo) * alpha``, rounded). Wherever ``alpha`` is exactly 0
        the output is bit-identical to ``photo``; a photo-space mask is multiplied by the crop's coverage,
        since the crop holds nothing outside its quad.

    The crop is warped with bicubic interpolation; when the face is smaller in the photo than in the crop
    the crop (and a crop-space mask) is first Lanczos-reduced to the quad's photo size so the warp does not
    alias. The mask is warped bilinearly (no overshoot outside [0, 1]).
    """
    from PIL import Image

    image = _as_photo(photo)
    height, width = image.shape[:2]
    if (width, height) != tuple(alignment.photo_size):
        raise InputError(f"photo is {width}x{height} but the alignment was made on a "
                         f"{alignment.photo_size[0]}x{alignment.photo_size[1]} photo")
    crop = np.asarray(edited_crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] != crop.shape[1] or crop.dtype != np.uint8:
        raise InputError(f"edited crop must be a square [S, S, 3] uint8 array, got shape {list(crop.shape)} "
                         f"and dtype {crop.dtype}")
    crop_size = crop.shape[0]
    if mask_space not in (None, "crop", "photo"):
        raise InputError(f"mask_space must be 'crop', 'photo' or None, got {mask_space!r}")
    if mask is None:
        if mask_space == "photo":
            raise InputError("mask_space='photo' needs a mask")
        mask, mask_space = face_mask(alignment, crop_size), "crop"
    elif mask_space is None:
        shape = np.shape(mask)
        fits_crop, fits_photo = shape == (crop_size, crop_size), shape == (height, width)
        if fits_crop and fits_photo:
            raise InputError("mask shape fits both the crop and the photo; pass mask_space='crop' or 'photo'")
        if not (fits_crop or fits_photo):
            raise InputError(f"mask must be [S, S] = {[crop_size, crop_size]} (crop) or [H, W] = "
                             f"{[height, width]} (photo), got {list(shape)}")
        mask_space = "crop" if fits_crop else "photo"
    mask = _as_mask(mask, (crop_size, crop_size) if mask_space == "crop" else (height, width), "mask")

    # Reduce the crop first when it is denser than the photo is at the face, so the warp never subsamples.
    quad_side = float(np.hypot(*(alignment.quad[3] - alignment.quad[0])))
    crop_image = Image.fromarray(np.ascontiguousarray(crop))
    crop_mask = Image.fromarray(np.ascontiguousarray(mask, dtype=np.float32)) if mask_space == "crop" else None
    if crop_size > quad_side:
        reduced = max(1, int(math.ceil(quad_side)))
        crop_image = crop_image.resize((reduced, reduced), Image.LANCZOS)
        if crop_mask is not None:
            crop_mask = crop_mask.resize((reduced, reduced), Image.LANCZOS)
        crop_size = reduced
    # Photo -> (possibly reduced) crop pixel coordinates.
    forward = np.diag([crop_size / alignment.size, crop_size / alignment.size, 1.0]) @ alignment.forward

    # Only the quad's bounding box (clipped to the photo) can receive crop pixels.
    x0 = max(0, int(math.floor(alignment.quad[:, 0].min())))
    y0 = max(0, int(math.floor(alignment.quad[:, 1].min())))
    x1 = min(width, int(math.ceil(alignment.quad[:, 0].max())))
    y1 = min(height, int(math.ceil(alignment.quad[:, 1].max())))
    alpha = np.zeros((height, width), dtype=np.float32)
    out = image.copy()
    if x1 <= x0 or y1 <= y0:
        return (out, alpha) if return_mask else out
    box = (x1 - x0, y1 - y0)
    # Pillow's AFFINE data maps output (x, y) to input (a x + b y + c, d x + e y + f); output (0, 0) is
    # photo (x0, y0).
    a, b, c = forward[0]
    d, e, f = forward[1]
    coefficients = (a, b, c + a * x0 + b * y0, d, e, f + d * x0 + e * y0)
    coefficients = tuple(float(v) for v in coefficients)
    warped = np.asarray(crop_image.transform(box, Image.AFFINE, coefficients, resample=Image.BICUBIC),
                        dtype=np.float32)
    if crop_mask is None:
        ones = Image.fromarray(np.ones((crop_size, crop_size), np.float32))
        coverage = np.asarray(ones.transform(box, Image.AFFINE, coefficients, resample=Image.BILINEAR))
        region_alpha = mask[y0:y1, x0:x1] * np.clip(coverage, 0.0, 1.0)
    else:
        region_alpha = np.asarray(crop_mask.transform(box, Image.AFFINE, coefficients, resample=Image.BILINEAR))
    region_alpha = np.clip(region_alpha, 0.0, 1.0).astype(np.float32)
    alpha[y0:y1, x0:x1] = region_alpha
    region = out[y0:y1, x0:x1]
    blend = region_alpha > 0
    original = region.astype(np.float32)
    mixed = original + (warped - original) * region_alpha[:, :, None]
    # Only touch pixels with a positive weight, so the rest stays bit-identical to the photo.
    region[blend] = np.clip(np.rint(mixed[blend]), 0, 255).astype(np.uint8)
    return (out, alpha) if return_mask else out
