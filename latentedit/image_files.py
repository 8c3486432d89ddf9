"""Reading user images safely: any Pillow mode, EXIF orientation, decompression bombs, centre crop.

Every failure is an :class:`~latentedit.errors.InputError` naming the file and what to do.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from latentedit.errors import InputError

#: Images above this many pixels are refused (a decompression bomb, or simply far too large to be a face).
MAX_PIXELS = 64 * 1024 * 1024

#: Images whose shorter side (after EXIF orientation) is below this many pixels are refused: a face needs
#: eyes, nose and mouth a few pixels apart, and below 8 px nothing of the sort survives; upscaling such an
#: image to the generator size only invents blur, so inverting or translating it gives a meaningless
#: result. 8 px is also the side of the generator's second-lowest resolution block.
MIN_IMAGE_SIDE = 8

#: Upscaling the shorter side by more than this factor is allowed but warned about (the result will be
#: blurry, and the inversion fits the blur).
UPSCALE_WARNING_FACTOR = 4.0


class ImageUpscaleWarning(UserWarning):
    """An image was upscaled by more than :data:`UPSCALE_WARNING_FACTOR` to reach the model's size."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def open_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS):
    """Open and fully decode an image with EXIF orientation applied. Returns a PIL image (any mode)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path} does not exist")
    if path.stat().st_size == 0:
        raise InputError(f"image {path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise InputError(f"image {path} is {width}x{height} pixels, above the limit of {max_pixels}; "
                                     f"downscale it first")
                image.load()
                image = ImageOps.exif_transpose(image)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(f"image {path} is too large to decode safely ({error}); downscale it first") from error
    except UnidentifiedImageError as error:
        raise InputError(f"cannot read image {path}: not an image format Pillow recognises") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise InputError(f"cannot read image {path}: the file is corrupt or truncated ({error})") from error
    if image.width < 1 or image.height < 1:
        raise InputError(f"image {path} has no pixels")
    return image


def to_rgba_array(image) -> np.ndarray:
    """Any Pillow mode -> float32 ``[H, W, 4]`` in [0, 1] (16-bit and float modes rescaled; no alpha -> 1)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(array / peak, 0, 1).astype(np.float32)
        return np.dstack([grey, grey, grey, np.ones_like(grey)])
    if mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
        return np.dstack([grey, grey, grey, np.ones_like(grey)])
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info)
    converted = image.convert("RGBA" if has_alpha else "RGB")
    array = np.asarray(converted, dtype=np.float32) / 255.0
    if not has_alpha:
        array = np.dstack([array, np.ones(array.shape[:2], np.float32)])
    return array


def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred square ``(left, top, right, bottom)``."""
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def load_image_tensor(path: str | os.PathLike, size: int, keep_alpha: bool = False,
                      max_pixels: int = MAX_PIXELS, warn=None) -> tuple[torch.Tensor, dict]:
    """Read an image as ``[3 or 4, size, size]`` float32: RGB in [-1, 1], alpha (if kept) in [0, 1].

    Non-square images are centre-cropped to a square; then resized with a Lanczos filter (antialiased
    downscale, smooth upscale). Alpha is premultiplied-free: colour under alpha 0 is kept as stored.
    Returns the tensor and a dict describing what was done (for manifests).

    An image whose shorter side is below :data:`MIN_IMAGE_SIDE` is an InputError. One upscaled by more
    than :data:`UPSCALE_WARNING_FACTOR` is read, with one line passed to ``warn`` (a callable taking the
    message; default: :class:`ImageUpscaleWarning` through :func:`warnings.warn`) and ``info["upscaled"]``.
    """
    from PIL import Image

    image = open_image(path, max_pixels)
    original_mode, (width, height) = image.mode, image.size
    side = min(width, height)
    if side < MIN_IMAGE_SIDE:
        raise InputError(f"image {path} is only {width}x{height} pixels; images need at least {MIN_IMAGE_SIDE} px "
                         f"on the shorter side (this model works at {size} px): use a larger image")
    factor = size / side
    if factor > UPSCALE_WARNING_FACTOR:
        message = (f"image {path} is {width}x{height} and is upscaled {factor:.1f}x to {size} px; expect a blurry "
                   f"target (and result)")
        if warn is None:
            warnings.warn(message, ImageUpscaleWarning, stacklevel=2)
        else:
            warn(message)
    rgba = to_rgba_array(image)
    box = center_crop_box(width, height)
    cropped = box != (0, 0, width, height)
    rgba = rgba[box[1]:box[3], box[0]:box[2]]
    if rgba.shape[0] != size:
        channels = [Image.fromarray(rgba[:, :, c], mode="F").resize((size, size), Image.Resampling.LANCZOS)
                    for c in range(4)]
        rgba = np.clip(np.stack([np.asarray(c) for c in channels], axis=-1), 0, 1)
    tensor = torch.from_numpy(np.ascontiguousarray(rgba.transpose(2, 0, 1))).float()
    rgb = tensor[:3] * 2 - 1
    info = {"path": str(path), "original_size": [width, height], "original_mode": original_mode,
            "center_cropped": cropped, "crop_box": list(box), "resized_to": size,
            "has_alpha": bool((tensor[3] < 1).any())}
    if factor > UPSCALE_WARNING_FACTOR:
        info["upscaled"] = round(factor, 3)
    if keep_alpha:
        return torch.cat([rgb, tensor[3:]]), info
    return rgb, info


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _folder_images(folder: Path, exclude: set[Path]) -> list[Path]:
    """Image files under ``folder`` at any depth, hidden files and folders (``.name``) and the ``exclude``
    folders skipped, sorted by their path relative to ``folder`` (compared part by part)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d) and (root_path / d).resolve() not in exclude)
        for name in files:
            candidate = root_path / name
            if not _is_hidden(name) and candidate.suffix.lower() in IMAGE_SUFFIXES and candidate.is_file():
                found.append(candidate)
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def list_named_images(inputs: list[str | os.PathLike], exclude: list[str | os.PathLike] = ()
                      ) -> list[tuple[Path, str]]:
    """Expand files and folders into ``(image path, output name)`` pairs, in input order.

    Folders are searched recursively (sorted by relative path, so the order is the same on every machine
    and every rank), keeping image suffixes only, skipping hidden files and folders (names starting with
    ``.``) and the folders in ``exclude`` (an output folder inside an input folder). Files given directly
    are kept whatever their suffix (a bad one fails when read).

    The name of an image is its file stem. When several images share a stem, each of them found below
    a folder input gets its path relative to that folder, joined with ``_`` (``sub/a.png`` -> ``sub_a``),
    so two subfolders holding ``a.png`` write distinct outputs. Names that still clash (``a.png`` and
    ``a.jpg`` side by side, the same file given twice) are left for the caller to refuse.
    """
    excluded = {Path(p).resolve() for p in exclude}
    found: list[tuple[Path, Path | None]] = []  # (path, relative path when found in a folder)
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found.extend((p, p.relative_to(item)) for p in _folder_images(item, excluded))
        else:
            found.append((item, None))
    if not found:
        raise InputError(f"no images found in {', '.join(map(str, inputs))} (folders are searched recursively "
                         f"for {', '.join(IMAGE_SUFFIXES)} files)")
    stems = [path.stem for path, _ in found]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    names = []
    for (path, relative), stem in zip(found, stems):
        if counts[stem] > 1 and relative is not None and relative.parent.parts:
            names.append("_".join(relative.parent.parts + (stem,)))
        else:
            names.append(stem)
    return [(path, name) for (path, _), name in zip(found, names)]


def list_images(inputs: list[str | os.PathLike], exclude: list[str | os.PathLike] = ()) -> list[Path]:
    """Expand files and folders into image paths (folders recursively; see :func:`list_named_images`)."""
    return [path for path, _ in list_named_images(inputs, exclude)]
