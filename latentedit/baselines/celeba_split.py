"""The CelebA layout read as StarGAN's official code reads it: its split and its transforms.

A data folder holds ``list_attr_celeba.txt`` and ``img_align_celeba/`` (real CelebA unchanged, or a
``latentedit data toyfaces --format celeba`` export); file names come from the attribute list.

- Split: the attribute lines are shuffled with Python's ``random`` seeded 1234 (``random.seed(1234);
  random.shuffle(lines)``, reproduced with a private ``random.Random(1234)``, which draws the same
  permutation); the first ``test_count`` (2000) shuffled lines are the test set, the rest the
  training set. (The official loop tests ``(i + 1) < 2000`` and so keeps 1999 test images; this
  module keeps 2000, as the paper and SPEC §6 state.)
- Labels: the selected attributes, in the order given, as float 0/1 (the file's -1/1).
- Transform: RGB, ``CenterCrop(crop_size)`` (torchvision's rule: offsets ``round((side - crop) / 2)``),
  ``Resize(image_size)`` with Pillow's bilinear filter, then ``x / 127.5 - 1`` into [-1, 1]. For real
  CelebA (178 x 218) the official sizes are crop 178 and image 128; for square toyfaces exports use
  a crop size equal to the image side. The training-time random horizontal flip is applied by the
  trainer to whole batches (with its own, checkpointed random state), not here.

Errors (:class:`~latentedit.errors.InputError`, one line each): a missing attribute list or image
folder, unknown attribute names (the message lists the valid ones), image files named in the list
but missing, a crop larger than the images, and a split that leaves no training images.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from latentedit.data.celeba import ATTR_FILE_NAME, IMAGE_DIR_NAME, read_attr_list
from latentedit.errors import InputError

OFFICIAL_SPLIT_SEED = 1234
OFFICIAL_TEST_COUNT = 2000
OFFICIAL_CROP_SIZE = 178
OFFICIAL_IMAGE_SIZE = 128
SPLITS = ("train", "test")


def official_order(count: int, seed: int = OFFICIAL_SPLIT_SEED) -> list[int]:
    """Indices ``0 .. count-1`` in the order ``random.seed(seed); random.shuffle(lines)`` leaves
    ``count`` lines (a shuffle's permutation depends only on the length and the seed)."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order


@dataclass(frozen=True)
class CelebASplit:
    """One split of a CelebA folder: ``paths`` of its images and their ``labels`` float32
    ``[N, len(attribute_names)]`` of 0/1, in the official shuffled order."""

    root: Path
    split: str
    attribute_names: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: np.ndarray


def read_celeba_split(root: str | os.PathLike, attrs: Sequence[str], split: str = "train",
                      test_count: int = OFFICIAL_TEST_COUNT, seed: int = OFFICIAL_SPLIT_SEED) -> CelebASplit:
    """Read the attribute list of the CelebA folder ``root`` and return the ``split`` (train/test) of the
    official shuffle, with labels of ``attrs`` (in that order). Raises :class:`InputError` as the module
    docstring lists; an empty training split is an error naming ``--test-count``."""
    if split not in SPLITS:
        raise InputError(f"split must be train or test, got {split!r}")
    if test_count < 0:
        raise InputError(f"--test-count must be >= 0, got {test_count}")
    attrs = list(attrs)
    if not attrs:
        raise InputError("choose at least one attribute with --attrs")
    if len(set(attrs)) != len(attrs):
        raise InputError(f"--attrs names an attribute twice: {','.join(attrs)}")
    root = Path(root)
    attribute_file, image_dir = root / ATTR_FILE_NAME, root / IMAGE_DIR_NAME
    for required in (attribute_file, image_dir):
        if not required.exists():
            raise InputError(f"{required} not found; the data folder must hold {ATTR_FILE_NAME} and {IMAGE_DIR_NAME}/ "
                             "(the CelebA layout, e.g. from 'latentedit data toyfaces --format celeba')")
    names, files, signed = read_attr_list(attribute_file)
    unknown = [name for name in attrs if name not in names]
    if unknown:
        raise InputError(f"attribute(s) {', '.join(unknown)} not in {attribute_file}; available: {' '.join(names)}")
    order = official_order(len(files), seed)
    chosen = order[:test_count] if split == "test" else order[test_count:]
    if split == "train" and not chosen:
        raise InputError(f"{attribute_file} lists {len(files)} images and the first {test_count} are the test "
                         "split, which leaves none to train on; lower --test-count or add images")
    present = set(os.listdir(image_dir))
    missing = [files[i] for i in chosen if files[i] not in present]
    if missing:
        raise InputError(f"{len(missing)} image(s) listed in {attribute_file.name} are missing from {image_dir}, "
                         f"e.g. {missing[0]}")
    columns = [names.index(name) for name in attrs]
    labels = (signed[np.asarray(chosen, dtype=np.int64)][:, columns] > 0).astype(np.float32)
    return CelebASplit(root, split, tuple(attrs), tuple(image_dir / files[i] for i in chosen),
                       labels.reshape(len(chosen), len(attrs)))


def load_cropped(path: str | os.PathLike, crop_size: int, image_size: int) -> torch.Tensor:
    """One image through the official transform (module docstring): ``[3, image_size, image_size]``
    float32 in [-1, 1]. Raises :class:`InputError` naming the file when it cannot be read or is
    smaller than ``crop_size``."""
    from PIL import Image

    from latentedit.image_files import open_image

    image = open_image(path).convert("RGB")
    width, height = image.size
    if width < crop_size or height < crop_size:
        raise InputError(f"image {path} is {width}x{height} px, smaller than the crop size {crop_size}; pass "
                         f"--crop-size {min(width, height)} (the official 178 is for 178x218 CelebA images)")
    top, left = int(round((height - crop_size) / 2.0)), int(round((width - crop_size) / 2.0))
    image = image.crop((left, top, left + crop_size, top + crop_size))
    if crop_size != image_size:
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))) / 127.5 - 1.0


class StarGANCelebA(Dataset):
    """A split of a CelebA folder with the official transform. ``dataset[i]`` -> ``(image [3, image_size,
    image_size] float32 in [-1, 1], label [c] float32 0/1)``; ``attribute_names`` gives the label order.

    The first image is opened at construction, so a crop larger than the images fails at once.
    """

    def __init__(self, root: str | os.PathLike, attrs: Sequence[str], split: str = "train",
                 image_size: int = OFFICIAL_IMAGE_SIZE, crop_size: int = OFFICIAL_CROP_SIZE,
                 test_count: int = OFFICIAL_TEST_COUNT):
        for name, value in (("--image-size", image_size), ("--crop-size", crop_size)):
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        self.split_data = read_celeba_split(root, attrs, split, test_count)
        self.image_size = image_size
        self.crop_size = crop_size
        if self.split_data.paths:
            self[0]  # a wrong --crop-size or an unreadable image fails here, not in a DataLoader worker

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return self.split_data.attribute_names

    @property
    def labels(self) -> np.ndarray:
        """All labels of the split, ``[N, c]`` float32 0/1."""
        return self.split_data.labels

    def __len__(self) -> int:
        return len(self.split_data.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = load_cropped(self.split_data.paths[index], self.crop_size, self.image_size)
        return image, torch.from_numpy(self.split_data.labels[index].copy())
