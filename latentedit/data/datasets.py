"""Image data sets for training: a folder of images, and the CelebA layout.

Every item's image is a float tensor ``[3, size, size]`` in [-1, 1] (``x / 127.5 - 1`` of the 8-bit
RGB pixels). Images are read with :func:`latentedit.image_files.load_image_tensor`: any Pillow mode to
RGB, EXIF orientation applied, centre-cropped to a square (the shorter side) and resized to ``size``
with a Lanczos filter, so aligned CelebA (178 x 218) becomes its central 178 x 178 face crop, as in
StarGAN. Pre-resize large photographs once if data loading, not the networks, limits the speed.

- :class:`ImageFolderDataset`: every usable image file (:data:`latentedit.image_files.IMAGE_SUFFIXES`)
  under a folder, recursively, in sorted order. Items are images.
- :class:`CelebADataset`: ``ROOT/img_align_celeba/*.jpg`` and ``ROOT/list_attr_celeba.txt``. Items are
  ``(image, attributes)`` with ``attributes`` a float tensor ``[A]`` of 0/1 (the file's -1/1), for the
  selected attribute names in the order given.
- :func:`open_image_dataset`: picks one of these (or the procedural toyfaces set) from a string.

Skipping. :class:`ImageFolderDataset` reads every file's header once, when it is created (no pixels are
decoded), and leaves out files that cannot be opened as images, images whose shorter side is below
:func:`min_image_side` and images above :data:`latentedit.image_files.MAX_PIXELS`; the data set is what is
left, and :meth:`ImageFolderDataset.skip_summary` says in one line what was left out and why. Nothing
left is an :class:`~latentedit.errors.InputError`. An image that passes that check but fails to decode
later (a truncated file) is replaced by the next readable one, with one log line (logger
``latentedit.data``, once per file and process); if :data:`MAX_CONSECUTIVE_FAILURES` images in a row
cannot be read the data set raises :class:`~latentedit.errors.InputError`, because then the folder is
not an image folder. :class:`CelebADataset` checks only that its files exist (reading 200k headers
at every start would cost more than the rare bad file) and relies on the second mechanism.
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from latentedit.data.celeba import ATTR_FILE_NAME, IMAGE_DIR_NAME, read_attr_list
from latentedit.errors import InputError
from latentedit.image_files import (IMAGE_SUFFIXES, MAX_PIXELS, MIN_IMAGE_SIDE, UPSCALE_WARNING_FACTOR,
                                    load_image_tensor)

MAX_CONSECUTIVE_FAILURES = 16
DATA_FORMATS = ("auto", "folder", "celeba", "toyfaces")
#: File names shown per reason in :meth:`ImageFolderDataset.skip_summary` (then "and N more").
SKIP_EXAMPLES = 3

log = logging.getLogger("latentedit.data")


def min_image_side(size: int) -> int:
    """The smallest shorter side, in pixels, of an image :class:`ImageFolderDataset` trains on at ``size``:
    ``max(MIN_IMAGE_SIDE, ceil(size / UPSCALE_WARNING_FACTOR))`` = ``max(8, ceil(size / 4))``, so 16 px for
    the default 64 px run and 64 px for a 256 px one.

    Why: the resize would enlarge a smaller image more than 4x. What comes out is blur with almost no
    detail at the training resolution, and a discriminator shown such images as "real" learns that blur
    is real. The limit scales with ``size`` because a fixed one would either let 16 px thumbnails into a
    256 px run or refuse usable images of a 16 px run; 4x is the factor above which
    :func:`~latentedit.image_files.load_image_tensor` warns about upscaling, and 8 px the side below which
    it refuses an image, so every image kept loads without a warning.
    """
    return max(MIN_IMAGE_SIDE, math.ceil(size / UPSCALE_WARNING_FACTOR))


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Read one image file as ``[3, size, size]`` float32 in [-1, 1]: RGB, EXIF orientation applied,
    centre square crop, Lanczos resize (:func:`latentedit.image_files.load_image_tensor`).

    Raises :class:`InputError` naming the file when it is missing, corrupt or too large.
    """
    return load_image_tensor(path, size)[0]


def _check_size(size: int) -> int:
    if not isinstance(size, int) or size < 1:
        raise InputError(f"image size must be a positive integer, got {size!r}")
    return size


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _probe(path: Path, min_side: int) -> str | None:
    """Why ``path`` cannot be trained on, from its header alone: ``"unreadable"``, ``"small"``
    (shorter side below ``min_side``), ``"large"`` (above :data:`MAX_PIXELS`); None when it looks usable."""
    from PIL import Image

    try:
        if path.stat().st_size == 0:
            return "unreadable"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "large"
    except Exception:  # UnidentifiedImageError, OSError, SyntaxError, ...: whatever a decoder raises
        return "unreadable"
    if width * height > MAX_PIXELS:
        return "large"
    if min(width, height) < min_side:
        return "small"
    return None


class _SkippingImageLoader:
    """Shared skip-unreadable logic: ``load(index)`` returns ``(index_used, image)``."""

    def __init__(self, paths: Sequence[Path], size: int):
        self.paths = list(paths)
        self.size = size
        self._warned: set[int] = set()

    def load(self, index: int) -> tuple[int, torch.Tensor]:
        count = len(self.paths)
        errors = []
        for attempt in range(min(MAX_CONSECUTIVE_FAILURES, count)):
            candidate = (index + attempt) % count
            try:
                return candidate, load_image(self.paths[candidate], self.size)
            except Exception as error:  # InputError from the reader; anything else a decoder may raise
                reason = _one_line(error if isinstance(error, InputError) else f"{self.paths[candidate]}: {error}")
                errors.append(reason)
                if candidate not in self._warned:
                    self._warned.add(candidate)
                    log.warning("latentedit: skipping an unreadable image, using the next one instead (%s)", reason)
        raise InputError(f"{len(errors)} images in a row could not be read, the first: {errors[0]}; "
                         "check that the data folder holds valid image files")


class ImageFolderDataset(Dataset):
    """The usable images under ``root`` (recursive, sorted by relative path, hidden files skipped).

    ``dataset[i]`` -> image ``[3, size, size]`` float32 in [-1, 1]. ``paths`` lists the files used;
    ``skipped`` lists ``(path, reason)`` for the image files left out, ``reason`` one of
    ``"unreadable"`` (no image header Pillow reads, or an empty file), ``"small"`` (shorter side below
    ``min_side``) and ``"large"`` (above :data:`latentedit.image_files.MAX_PIXELS` pixels), in path order;
    :meth:`skip_summary` puts them in one line. ``min_side`` None means :func:`min_image_side` of ``size``.

    Raises :class:`InputError` if ``root`` is missing, not a folder, holds no image files, or none of
    them is usable (the message says why, as :meth:`skip_summary` does).
    """

    def __init__(self, root: str | os.PathLike, size: int, min_side: int | None = None):
        self.root = Path(root)
        self.size = _check_size(size)
        if not self.root.exists():
            raise InputError(f"data folder {self.root} does not exist")
        if not self.root.is_dir():
            raise InputError(f"data path {self.root} is not a folder; pass a folder of images")
        paths = sorted(p for p in self.root.rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(self.root).parts))
        if not paths:
            raise InputError(f"no images ({' '.join(IMAGE_SUFFIXES)}) found under {self.root}")
        self.min_side = min_image_side(self.size) if min_side is None else int(min_side)
        self.found = len(paths)
        reasons = [(path, _probe(path, self.min_side)) for path in paths]
        self.skipped: list[tuple[Path, str]] = [(path, reason) for path, reason in reasons if reason is not None]
        self.paths = [path for path, reason in reasons if reason is None]
        if not self.paths:
            raise InputError(f"none of the {self.found} image files under {self.root} can be trained on: "
                             f"{self._reasons_text()}")
        self._loader = _SkippingImageLoader(self.paths, self.size)

    def _reasons_text(self) -> str:
        labels = {"unreadable": "unreadable", "small": f"smaller than {self.min_side} px",
                  "large": f"larger than {MAX_PIXELS} pixels"}
        parts = []
        for reason, label in labels.items():
            names = [path.relative_to(self.root).as_posix() for path, why in self.skipped if why == reason]
            if names:
                shown = ", ".join(names[:SKIP_EXAMPLES])
                if len(names) > SKIP_EXAMPLES:
                    shown += f" and {len(names) - SKIP_EXAMPLES} more"
                parts.append(f"{len(names)} {label} ({shown})")
        return ", ".join(parts)

    def skip_summary(self) -> str | None:
        """One line on the files left out, e.g. ``"skipped 3 of 120 images under data: 2 unreadable (a.png,
        b.jpg), 1 smaller than 16 px (c.png)"`` (at most :data:`SKIP_EXAMPLES` names per reason, then "and N
        more"; names relative to ``root``); None when nothing was skipped."""
        if not self.skipped:
            return None
        return f"skipped {len(self.skipped)} of {self.found} images under {self.root}: {self._reasons_text()}"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self._loader.load(index)[1]


class CelebADataset(Dataset):
    """The CelebA layout: ``root/img_align_celeba/<file>`` and ``root/list_attr_celeba.txt``.

    File names come from the attribute list (in its order). ``attrs`` selects attribute names (in
    that order); None keeps all 40. ``dataset[i]`` -> ``(image [3, size, size] in [-1, 1],
    attributes [A] float32 in {0, 1})``. Attributes: ``attribute_names``; the full table:
    ``attributes`` int8 ``[N, A]``.

    Raises :class:`InputError` when the attribute file or image folder is missing, an attribute name is
    unknown (the message lists the valid ones), or image files named in the list are missing.
    """

    def __init__(self, root: str | os.PathLike, size: int, attrs: Sequence[str] | None = None):
        self.root = Path(root)
        self.size = _check_size(size)
        attribute_file = self.root / ATTR_FILE_NAME
        image_dir = self.root / IMAGE_DIR_NAME
        if not attribute_file.is_file():
            raise InputError(f"{attribute_file} not found; a CelebA folder holds {ATTR_FILE_NAME} and "
                             f"{IMAGE_DIR_NAME}/")
        if not image_dir.is_dir():
            raise InputError(f"{image_dir} not found; a CelebA folder holds {ATTR_FILE_NAME} and "
                             f"{IMAGE_DIR_NAME}/")
        names, files, signed = read_attr_list(attribute_file)
        values = (signed > 0).astype(np.int8)
        if attrs is None:
            selected = list(range(len(names)))
        else:
            unknown = [a for a in attrs if a not in names]
            if unknown:
                raise InputError(f"unknown CelebA attribute(s) {', '.join(unknown)}; available: {' '.join(names)}")
            selected = [names.index(a) for a in attrs]
        present = set(os.listdir(image_dir))
        missing = [f for f in files if f not in present]
        if missing:
            raise InputError(f"{len(missing)} image(s) listed in {attribute_file.name} are missing from "
                             f"{image_dir}, e.g. {missing[0]}")
        self.attribute_names = [names[i] for i in selected]
        self.attributes = values[:, selected]
        self.paths = [image_dir / f for f in files]
        self._loader = _SkippingImageLoader(self.paths, self.size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        used, image = self._loader.load(index)
        return image, torch.from_numpy(self.attributes[used].astype(np.float32))


def parse_toyfaces_spec(spec: str) -> dict[str, int]:
    """``toyfaces[:SEED[:COUNT]]`` -> the given ``{"seed": SEED, "count": COUNT}`` entries (omitted ones
    take :class:`~latentedit.data.toyfaces.ToyFacesDataset`'s defaults: the training seed and its count)."""
    parts = spec.split(":")
    if parts[0] != "toyfaces" or len(parts) > 3:
        raise InputError(f"toyfaces data must be written toyfaces[:SEED[:COUNT]], got {spec!r}")
    options = {}
    try:
        for name, text in zip(("seed", "count"), parts[1:]):
            if text:
                options[name] = int(text)
    except ValueError:
        raise InputError(f"toyfaces data must be written toyfaces[:SEED[:COUNT]] with integers, got {spec!r}") from None
    if options.get("count", 1) < 1:
        raise InputError(f"toyfaces COUNT must be >= 1, got {options['count']}")
    if options.get("seed", 0) < 0:
        raise InputError(f"toyfaces SEED must be >= 0, got {options['seed']}")
    return options


def detect_data_format(spec: str) -> str:
    """``toyfaces`` for ``toyfaces[:...]`` strings that are not existing paths, ``celeba`` for a folder
    holding ``list_attr_celeba.txt``, else ``folder``."""
    path = Path(spec)
    if spec.split(":")[0] == "toyfaces" and not path.exists():
        return "toyfaces"
    if (path / ATTR_FILE_NAME).is_file():
        return "celeba"
    return "folder"


def open_image_dataset(spec: str, size: int, data_format: str = "auto",
                       attrs: Sequence[str] | None = None) -> Dataset:
    """Open a training data set from a string.

    ``data_format``: ``folder`` (:class:`ImageFolderDataset`), ``celeba`` (:class:`CelebADataset`,
    ``attrs`` selects attributes), ``toyfaces`` (procedural faces rendered on the fly, ``spec`` =
    ``toyfaces[:SEED[:COUNT]]``), or ``auto`` (:func:`detect_data_format`). Items are an image
    ``[3, size, size]`` or a tuple whose first element is that image.
    """
    if data_format not in DATA_FORMATS:
        raise InputError(f"data format must be one of {', '.join(DATA_FORMATS)}, got {data_format!r}")
    if data_format == "auto":
        data_format = detect_data_format(spec)
    if data_format == "folder":
        if attrs:
            raise InputError("--attrs needs attribute labels; a plain image folder has none")
        return ImageFolderDataset(spec, size)
    if data_format == "celeba":
        return CelebADataset(spec, size, attrs)
    options = parse_toyfaces_spec(spec)
    from latentedit.data.toyfaces import ToyFacesDataset

    return ToyFacesDataset(start=0, size=size, **options)
