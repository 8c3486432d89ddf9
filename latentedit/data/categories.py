"""Mutually exclusive categories for StarGAN-style training (seed 004): class folders and toyfaces hair colours.

Two sources, both yielding ``(image [3, S, S] float32 in [-1, 1], one-hot label [C] float32)``:

- A class-folder layout, ``DIR/<category>/*.jpg`` as torchvision's ``ImageFolder`` reads it: every visible
  sub-folder is a category (sorted by name; that is the label order), holding images at any depth (hidden files
  and folders skipped). Images go through StarGAN's transform (:func:`latentedit.baselines.celeba_split.load_cropped`:
  centre crop ``crop_size``, bilinear resize to ``image_size``), so every image must have the same size.
  The split is StarGAN's: all images in sorted order, shuffled by ``random.Random(1234)``, the first
  ``test_count`` are the test split.
- ``toyfaces-hair[:COUNT]``: toyfaces rendered on the fly with their hair colour (``Black_Hair``, ``Blond_Hair``,
  ``Brown_Hair``, ``Gray_Hair``; every face has exactly one) as four exclusive domains. Training faces are
  ``0 .. COUNT - 1`` (default 30000) of the training seed; the test split is the first ``test_count`` faces of
  the held-out seed. The category names are the toyfaces attribute names, so ``evaluate stargan`` measures such
  a model with the attribute classifier unchanged. :func:`export_toyfaces_categories` writes the same faces as a
  class-folder layout (``latentedit data toyfaces --format categories``), which trains faster than on-the-fly
  rendering when the accelerator outpaces the CPU.

Errors (one-line :class:`~latentedit.errors.InputError`): a missing folder, a folder without category
sub-folders, an empty category folder, a single category, an unknown category in ``--attrs``, images of
mixed sizes, a crop larger than the images, and a split that leaves no training images.
"""
from __future__ import annotations

import multiprocessing
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from latentedit.errors import InputError

TOYFACES_HAIR = "toyfaces-hair"
HAIR_CATEGORIES: tuple[str, ...] = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
DEFAULT_TOYFACES_COUNT = 30000
SPLIT_SEED = 1234


def is_toyfaces_hair(spec: str) -> bool:
    """Whether ``spec`` names the on-the-fly toyfaces hair categories (and is not an existing path)."""
    return str(spec).split(":")[0] == TOYFACES_HAIR and not Path(spec).exists()


def parse_toyfaces_hair(spec: str) -> int:
    """``toyfaces-hair[:COUNT]`` -> COUNT (default :data:`DEFAULT_TOYFACES_COUNT`)."""
    parts = str(spec).split(":")
    if parts[0] != TOYFACES_HAIR or len(parts) > 2:
        raise InputError(f"toyfaces categories are written {TOYFACES_HAIR}[:COUNT], got {spec!r}")
    if len(parts) == 1 or not parts[1]:
        return DEFAULT_TOYFACES_COUNT
    try:
        count = int(parts[1])
    except ValueError:
        raise InputError(f"{TOYFACES_HAIR}:COUNT needs an integer COUNT, got {spec!r}") from None
    if count < 1:
        raise InputError(f"{TOYFACES_HAIR}:COUNT must be >= 1, got {count}")
    return count


def is_category_folder(spec: str) -> bool:
    """A folder with visible sub-folders and no CelebA attribute list: the class-folder layout."""
    from latentedit.data.celeba import ATTR_FILE_NAME, IMAGE_DIR_NAME

    path = Path(spec)
    if not path.is_dir() or (path / ATTR_FILE_NAME).exists():
        return False
    folders = [entry.name for entry in path.iterdir() if entry.is_dir() and not entry.name.startswith(".")]
    return bool(folders) and folders != [IMAGE_DIR_NAME]  # a CelebA folder missing its list: say so, as before


def is_categorical(spec: str) -> bool:
    """Whether StarGAN training on ``spec`` uses exclusive one-hot categories."""
    return is_toyfaces_hair(spec) or is_category_folder(spec)


@dataclass(frozen=True)
class CategoryIndex:
    """The images of a class-folder layout: ``categories`` (label order), ``paths`` and their category
    ``indices`` (int64 ``[N]``), in sorted order."""

    root: Path
    categories: tuple[str, ...]
    paths: tuple[Path, ...]
    indices: np.ndarray

    def counts(self) -> dict[str, int]:
        return {name: int((self.indices == k).sum()) for k, name in enumerate(self.categories)}


def read_category_folder(root: str | os.PathLike, categories: Sequence[str] | None = None) -> CategoryIndex:
    """Index ``root/<category>/**`` (module docstring). ``categories`` chooses and orders a subset (at least two);
    None takes every sub-folder. Raises :class:`InputError` for the bad inputs the module docstring lists."""
    from latentedit.image_files import IMAGE_SUFFIXES, _folder_images

    root = Path(root)
    if not root.exists():
        raise InputError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise InputError(f"data {root} is not a folder; give a folder of category folders (DIR/<category>/*.jpg)")
    folders = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not folders:
        raise InputError(f"{root} has no category folders; the layout is DIR/<category>/*.jpg (one folder per "
                         "category)")
    if categories:
        chosen = list(categories)
        unknown = [name for name in chosen if name not in folders]
        if unknown:
            raise InputError(f"category {unknown[0]!r} is not a folder of {root}; categories: {', '.join(folders)}")
        if len(set(chosen)) != len(chosen):
            raise InputError(f"--attrs names a category twice: {','.join(chosen)}")
    else:
        chosen = folders
    if len(chosen) < 2:
        raise InputError(f"{root} has a single category ({chosen[0]}); translating between categories needs at "
                         "least two category folders")
    paths, indices = [], []
    for k, name in enumerate(chosen):
        found = _folder_images(root / name, set())
        if not found:
            raise InputError(f"category folder {root / name} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        paths.extend(found)
        indices.extend([k] * len(found))
    return CategoryIndex(root, tuple(chosen), tuple(paths), np.asarray(indices, dtype=np.int64))


def check_same_size(paths: Sequence[Path]) -> tuple[int, int]:
    """The common ``(width, height)`` of ``paths`` (headers only); InputError naming two files that differ, or
    the first unreadable one."""
    from PIL import Image, UnidentifiedImageError

    first_size, first_path = None, None
    for path in paths:
        try:
            with Image.open(path) as image:
                size = image.size
        except (OSError, UnidentifiedImageError) as error:
            raise InputError(f"cannot read image {path}: {error}".splitlines()[0]) from None
        if first_size is None:
            first_size, first_path = size, path
        elif size != first_size:
            raise InputError(f"images of mixed sizes: {first_path} is {first_size[0]}x{first_size[1]} but {path} is "
                             f"{size[0]}x{size[1]}; StarGAN crops and resizes every image alike, so resize them to "
                             "one size first")
    return first_size


def split_order(count: int, seed: int = SPLIT_SEED) -> list[int]:
    """Indices ``0 .. count - 1`` shuffled by ``random.Random(seed)`` (StarGAN's split rule)."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order


class CategoryFolderDataset(Dataset):
    """One split of a class-folder layout with StarGAN's transform. ``dataset[i]`` -> ``(image [3, S, S],
    one-hot label [C])``; ``attribute_names`` are the categories."""

    exclusive = True

    def __init__(self, root: str | os.PathLike, categories: Sequence[str] | None = None, split: str = "train",
                 image_size: int = 128, crop_size: int = 178, test_count: int = 2000):
        if split not in ("train", "test"):
            raise InputError(f"split must be train or test, got {split!r}")
        if test_count < 0:
            raise InputError(f"--test-count must be >= 0, got {test_count}")
        index = read_category_folder(root, categories)
        width, height = check_same_size(index.paths)
        if min(width, height) < crop_size:
            raise InputError(f"the images of {index.root} are {width}x{height} px, smaller than the crop size "
                             f"{crop_size}; pass --crop-size {min(width, height)}")
        order = split_order(len(index.paths))
        chosen = order[:test_count] if split == "test" else order[test_count:]
        if split == "train" and not chosen:
            raise InputError(f"{index.root} holds {len(index.paths)} images and the first {test_count} are the test "
                             "split, which leaves none to train on; lower --test-count or add images")
        self.index = index
        self.paths = [index.paths[i] for i in chosen]
        self.category_indices = index.indices[np.asarray(chosen, dtype=np.int64)] if chosen else np.zeros(0, np.int64)
        self.image_size, self.crop_size = image_size, crop_size

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return self.index.categories

    @property
    def labels(self) -> np.ndarray:
        """One-hot ``[N, C]`` float32."""
        return np.eye(len(self.index.categories), dtype=np.float32)[self.category_indices]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from latentedit.baselines.celeba_split import load_cropped

        label = torch.zeros(len(self.index.categories))
        label[int(self.category_indices[i])] = 1.0
        return load_cropped(self.paths[i], self.crop_size, self.image_size), label


def hair_category(seed: int, index: int) -> int:
    """Index in :data:`HAIR_CATEGORIES` of toyfaces face ``seed``/``index`` (attributes only: no rendering)."""
    from latentedit.data import toyfaces

    attributes = toyfaces.sample_params(seed, index).attributes
    return next(k for k, name in enumerate(HAIR_CATEGORIES) if attributes[name])


class ToyFacesHairDataset(Dataset):
    """Toyfaces ``seed``/``start + i`` rendered at ``size`` with the one-hot hair colour (module docstring)."""

    exclusive = True
    attribute_names = HAIR_CATEGORIES

    def __init__(self, seed: int, start: int, count: int, size: int):
        if size < 16:
            raise InputError(f"toyfaces need --image-size >= 16, got {size}")
        self.seed, self.start, self.count, self.size = int(seed), int(start), int(count), int(size)
        self._labels = None

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            categories = [hair_category(self.seed, self.start + i) for i in range(self.count)]
            self._labels = np.eye(len(HAIR_CATEGORIES), dtype=np.float32)[categories].reshape(self.count, -1)
        return self._labels

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from latentedit.data import toyfaces

        params = toyfaces.sample_params(self.seed, self.start + i)
        pixels = toyfaces.render(params, self.size)
        image = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float() / 127.5 - 1.0
        label = torch.zeros(len(HAIR_CATEGORIES))
        label[next(k for k, name in enumerate(HAIR_CATEGORIES) if params.attributes[name])] = 1.0
        return image, label


def open_category_dataset(spec: str, categories: Sequence[str] | None, split: str, image_size: int, crop_size: int,
                          test_count: int) -> Dataset:
    """The split of ``spec`` (a class-folder layout or ``toyfaces-hair[:COUNT]``) for StarGAN training."""
    if is_toyfaces_hair(spec):
        from latentedit.data import toyfaces

        count = parse_toyfaces_hair(spec)
        if categories and list(categories) != list(HAIR_CATEGORIES):
            raise InputError(f"{TOYFACES_HAIR} has the categories {','.join(HAIR_CATEGORIES)}; drop --attrs")
        if split == "test":
            return ToyFacesHairDataset(toyfaces.HELDOUT_SEED, 0, test_count, image_size)
        return ToyFacesHairDataset(toyfaces.TRAIN_SEED, 0, count, image_size)
    return CategoryFolderDataset(spec, categories, split, image_size, crop_size, test_count)


def categories_of(spec: str) -> tuple[str, ...]:
    """The category names (label order) of ``spec``."""
    if is_toyfaces_hair(spec):
        return HAIR_CATEGORIES
    return read_category_folder(spec).categories


# --------------------------------------------------------------------------------------------------
# Export

def _render_items(job: tuple[int, int, list[tuple[int, str]]]) -> int:
    from latentedit.data import toyfaces
    from latentedit.data.toyfaces_export import _write_png_quick

    seed, size, items = job
    for index, path in items:
        _write_png_quick(Path(path), toyfaces.render_face(seed, index, size))
    return len(items)


def export_toyfaces_categories(out_dir: str | os.PathLike, count: int, size: int = 64, seed: int = 0, start: int = 0,
                               workers: int = 1, progress: bool = True) -> dict:
    """Render faces ``start .. start + count - 1`` of ``seed`` into ``out_dir/<hair colour>/{index:06d}.png``
    (resumable: existing files are kept). Returns ``{"out_dir", "count", "rendered", "skipped", "counts"}``."""
    from tqdm import tqdm

    from latentedit.io import write_json

    if count < 1:
        raise InputError(f"--n must be at least 1, got {count}")
    if seed < 0 or start < 0:
        raise InputError(f"--seed and --start must be >= 0, got seed={seed}, start={start}")
    if not 16 <= size <= 1024:
        raise InputError(f"--size must be in [16, 1024], got {size}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} exists and is not a folder")
    for name in HAIR_CATEGORIES:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        for leftover in (out_dir / name).glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
    width = max(6, len(str(start + count)))
    todo, counts = [], {name: 0 for name in HAIR_CATEGORIES}
    for index in range(start, start + count):
        name = HAIR_CATEGORIES[hair_category(seed, index)]
        counts[name] += 1
        path = out_dir / name / f"{index:0{width}d}.png"
        if not path.exists():
            todo.append((index, str(path)))
    jobs = [(seed, size, todo[i:i + 64]) for i in range(0, len(todo), 64)]
    with tqdm(total=count, initial=count - len(todo), unit="img", disable=not progress,
              desc=f"toyfaces hair {size}px") as bar:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                bar.update(_render_items(job))
        else:
            with multiprocessing.get_context().Pool(min(workers, len(jobs))) as pool:
                for done in pool.imap_unordered(_render_items, jobs):
                    bar.update(done)
    write_json(out_dir / "toyfaces_categories.json",
               {"dataset": "latentedit.toyfaces", "factor": "hair colour", "seed": seed, "start": start,
                "count": count, "size": size, "categories": list(HAIR_CATEGORIES), "counts": counts})
    return {"out_dir": str(out_dir), "count": count, "rendered": len(todo), "skipped": count - len(todo),
            "counts": counts}
