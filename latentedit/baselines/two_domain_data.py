"""Training data of the two-domain baselines: unpaired domains (CycleGAN) and aligned pairs (pix2pix).

Every image is a float tensor ``[3, L, L]`` in [-1, 1] at the *load size* ``L``; the trainers crop it randomly
to the training size and mirror it (the reference's ``resize_and_crop`` + flip). Folder images are read with
:class:`latentedit.data.datasets.ImageFolderDataset` (centre square crop, Lanczos resize; the reference instead
stretches to a square), which leaves out unreadable, tiny and huge files and says so in one line
(:func:`skip_notes`).

Sources, as the trainers' ``--data`` / ``--data-a`` / ``--data-b`` take them:

- Unpaired (:func:`open_unpaired`): ``--data DIR`` in the reference layout ``DIR/trainA``, ``DIR/trainB``
  (required) and ``DIR/testA``, ``DIR/testB`` (optional, used for the sample grids); or ``--data-a DIR --data-b
  DIR`` (any two folders); or ``--data toyfaces:A:B[:COUNT]``: toyfaces faces of the training seed among the
  first COUNT (default 30000) whose attributes satisfy condition A, resp. B, where a condition is ``NAME`` (=1)
  or ``NAME=0|1``, several joined by ``,`` (``toyfaces:Black_Hair:Blond_Hair``, ``toyfaces:Eyeglasses=0:
  Eyeglasses=1``); test faces come from the held-out seed. Domains may differ in size: each is its own shuffled
  stream (the reference pairs every A with a random B).
- Paired (:func:`open_paired`): ``--data DIR`` of aligned images (A left, B right, width = 2 x height) in
  ``DIR/train`` (``DIR/test`` optional) or in ``DIR`` itself; or ``--data-a DIR --data-b DIR`` of files matched
  by relative path; or ``--data toyfaces:A:B[:COUNT]``: a training face satisfying A and its exact counterfactual
  with B's attributes set (:meth:`latentedit.data.toyfaces.FaceParams.with_attributes`), the pairs no unpaired
  method sees.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from latentedit.data import toyfaces
from latentedit.errors import InputError
from latentedit.train.common import InfiniteShardSampler

DEFAULT_TOYFACES_COUNT = 30000


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``[S, S, 3]`` uint8 -> ``[3, S, S]`` float32 in [-1, 1]."""
    return torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


# --------------------------------------------------------------------------------------------------
# toyfaces domains

@dataclasses.dataclass(frozen=True)
class ToyfacesDomains:
    """A parsed ``toyfaces:A:B[:COUNT]``: conditions ``a`` and ``b`` (``{name: 0|1}``) and ``count``."""

    a: dict
    b: dict
    count: int = DEFAULT_TOYFACES_COUNT

    @staticmethod
    def describe(condition: dict) -> str:
        return ",".join(name if value == 1 else f"{name}={value}" for name, value in condition.items())

    @property
    def names(self) -> dict:
        return {"a": self.describe(self.a), "b": self.describe(self.b)}


def is_toyfaces_spec(spec: str | None) -> bool:
    return bool(spec) and str(spec).split(":")[0] == "toyfaces" and not Path(str(spec)).exists()


def _parse_condition(text: str, spec: str) -> dict:
    condition = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if name not in toyfaces.ATTRIBUTE_NAMES:
            raise InputError(f"{spec}: unknown toyfaces attribute {name!r}; known: {', '.join(toyfaces.ATTRIBUTE_NAMES)}")
        if sep and value not in ("0", "1"):
            raise InputError(f"{spec}: {name} must be 0 or 1, got {value!r}")
        condition[name] = int(value) if sep else 1
    if not condition:
        raise InputError(f"{spec}: empty domain; write toyfaces:A:B, e.g. toyfaces:Black_Hair:Blond_Hair")
    return condition


def parse_toyfaces_domains(spec: str) -> ToyfacesDomains:
    """``toyfaces:A:B[:COUNT]`` -> :class:`ToyfacesDomains` (module docstring); InputError when malformed."""
    parts = str(spec).split(":")
    if parts[0] != "toyfaces" or len(parts) not in (3, 4):
        raise InputError(f"toyfaces domains are written toyfaces:A:B[:COUNT] (e.g. toyfaces:Black_Hair:Blond_Hair), "
                         f"got {spec!r}")
    a, b = _parse_condition(parts[1], spec), _parse_condition(parts[2], spec)
    if a == b:
        raise InputError(f"{spec}: the two domains are the same")
    count = DEFAULT_TOYFACES_COUNT
    if len(parts) == 4:
        try:
            count = int(parts[3])
        except ValueError:
            raise InputError(f"{spec}: COUNT must be an integer") from None
        if count < 1:
            raise InputError(f"{spec}: COUNT must be >= 1")
    return ToyfacesDomains(a, b, count)


def _matches(params: toyfaces.FaceParams, condition: dict) -> bool:
    return all(params.attributes[name] == value for name, value in condition.items())


def toyfaces_indices(condition: dict, seed: int, count: int, limit: int | None = None) -> list[int]:
    """Indices in ``[0, count)`` of toyfaces ``seed`` whose attributes satisfy ``condition`` (at most ``limit``)."""
    found = []
    for index in range(count):
        if _matches(toyfaces.sample_params(seed, index), condition):
            found.append(index)
            if limit is not None and len(found) >= limit:
                break
    return found


class ToyfacesDomain(Dataset):
    """The toyfaces faces ``indices`` of ``seed`` rendered at ``size``: ``dataset[i]`` -> ``[3, size, size]``."""

    def __init__(self, seed: int, indices: Sequence[int], size: int, name: str):
        self.seed, self.indices, self.size, self.name = int(seed), list(indices), int(size), name

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return _to_tensor(toyfaces.render(toyfaces.sample_params(self.seed, self.indices[i]), self.size))


class ToyfacesPairs(Dataset):
    """Faces satisfying condition ``a`` and their counterfactuals with ``b`` set: ``dataset[i]`` ->
    ``(a [3, size, size], b [3, size, size])``, the same face and background, only ``b``'s attributes redrawn."""

    def __init__(self, seed: int, domains: ToyfacesDomains, size: int, count: int | None = None,
                 limit: int | None = None):
        self.seed, self.size, self.domains = int(seed), int(size), domains
        self.indices = []
        for index in range(domains.count if count is None else count):
            params = toyfaces.sample_params(seed, index)
            if not _matches(params, domains.a):
                continue
            try:
                params.with_attributes(**domains.b)
            except InputError:
                continue  # no counterfactual (bangs on a bald face, ...)
            self.indices.append(index)
            if limit is not None and len(self.indices) >= limit:
                break

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        params = toyfaces.sample_params(self.seed, self.indices[i])
        return (_to_tensor(toyfaces.render(params, self.size)),
                _to_tensor(toyfaces.render(params.with_attributes(**self.domains.b), self.size)))


# --------------------------------------------------------------------------------------------------
# Folders

class FolderDomain(Dataset):
    """The usable images of a folder (recursive) at ``size``: ``dataset[i]`` -> ``[3, size, size]``;
    ``skip_summary`` says what was left out (None when nothing)."""

    def __init__(self, root: str | os.PathLike, size: int, name: str):
        from latentedit.data.datasets import ImageFolderDataset

        self.images = ImageFolderDataset(root, size)
        self.name = name
        self.root = Path(root)

    def skip_summary(self) -> str | None:
        return self.images.skip_summary()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


class AlignedFolder(Dataset):
    """Aligned pairs, the reference's layout: every image holds A in its left half and B in its right half (width
    exactly twice the height). ``dataset[i]`` -> ``(a [3, size, size], b [3, size, size])``, each half resized with a
    Lanczos filter. Unreadable files are left out (``skip_summary``); an image of another shape is an InputError
    naming it, found when the folder is opened."""

    def __init__(self, root: str | os.PathLike, size: int):
        from PIL import Image

        from latentedit.data.datasets import ImageFolderDataset

        self.size = int(size)
        self.listing = ImageFolderDataset(root, max(8, size // 4), min_side=8)
        self.root = Path(root)
        for path in self.listing.paths:
            with Image.open(path) as image:
                width, height = image.size
            if width != 2 * height:
                raise InputError(f"aligned image {path} is {width}x{height}; pix2pix's aligned layout puts A and B side "
                                 f"by side, so the width must be twice the height")

    @property
    def paths(self) -> list[Path]:
        return self.listing.paths

    def skip_summary(self) -> str | None:
        return self.listing.skip_summary()

    def __len__(self) -> int:
        return len(self.listing)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        path = self.listing.paths[i]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                height = image.size[1]
                halves = [image.crop((k * height, 0, (k + 1) * height, height)) for k in (0, 1)]
        except Exception as error:
            raise InputError(f"cannot read aligned image {path}: {' '.join(str(error).split())}") from None
        return tuple(_to_tensor(np.asarray(half.resize((self.size, self.size), Image.LANCZOS))) for half in halves)


class MatchedFolders(Dataset):
    """Pairs from two folders matched by relative path without suffix: ``dataset[i]`` -> ``(a, b)``. A file with no
    counterpart is an InputError naming it (pairs must be complete)."""

    def __init__(self, root_a: str | os.PathLike, root_b: str | os.PathLike, size: int):
        self.a = FolderDomain(root_a, size, "A")
        self.b = FolderDomain(root_b, size, "B")

        def keys(domain: FolderDomain) -> dict:
            return {path.relative_to(domain.root).with_suffix("").as_posix(): k
                    for k, path in enumerate(domain.images.paths)}

        keys_a, keys_b = keys(self.a), keys(self.b)
        only_a = sorted(set(keys_a) - set(keys_b))
        only_b = sorted(set(keys_b) - set(keys_a))
        if only_a or only_b:
            side, names = ("A", only_a) if only_a else ("B", only_b)
            raise InputError(f"paired folders differ: {len(only_a)} image(s) only in A, {len(only_b)} only in B (e.g. "
                             f"{side}: {names[0]}); pix2pix needs every image of one folder matched by name in the other")
        self.pairs = [(keys_a[key], keys_b[key]) for key in sorted(keys_a)]

    def skip_summary(self) -> str | None:
        notes = [note for note in (self.a.skip_summary(), self.b.skip_summary()) if note]
        return "; ".join(notes) or None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k_a, k_b = self.pairs[i]
        return self.a[k_a], self.b[k_b]


# --------------------------------------------------------------------------------------------------
# Opening a source

@dataclasses.dataclass
class TwoDomainData:
    """What a trainer trains on: ``train`` (unpaired: ``(domain A, domain B)``; paired: one data set of pairs),
    ``test`` (the same, for sample grids, or None), ``domains`` (``{"a": name, "b": name}``) and ``notes`` (lines
    to show the user: skipped files, unequal sizes)."""

    train: object
    test: object | None
    domains: dict
    notes: list
    description: dict


def _require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{path} not found; {what}")
    if not path.is_dir():
        raise InputError(f"{path} is not a folder; {what}")
    return path


def open_unpaired(data: str | None, data_a: str | None, data_b: str | None, size: int,
                  sample_count: int = 4) -> TwoDomainData:
    """The two domains of an unpaired run (module docstring), images at ``size`` (the load size)."""
    layout = "the reference layout is DIR/trainA/ DIR/trainB/ [DIR/testA/ DIR/testB/]"
    if data is not None and (data_a is not None or data_b is not None):
        raise InputError("give --data, or --data-a with --data-b, not both")
    if data is None and (data_a is None or data_b is None):
        raise InputError("give --data DIR (trainA/ trainB/), --data toyfaces:A:B, or both --data-a and --data-b")
    notes = []
    if data is not None and is_toyfaces_spec(data):
        domains = parse_toyfaces_domains(data)
        train = tuple(ToyfacesDomain(toyfaces.TRAIN_SEED, toyfaces_indices(cond, toyfaces.TRAIN_SEED, domains.count),
                                     size, name) for cond, name in ((domains.a, "A"), (domains.b, "B")))
        for domain, cond in zip(train, (domains.a, domains.b)):
            if len(domain) == 0:
                raise InputError(f"{data}: no training face among the first {domains.count} has "
                                 f"{ToyfacesDomains.describe(cond)}")
        test = tuple(ToyfacesDomain(toyfaces.HELDOUT_SEED, toyfaces_indices(cond, toyfaces.HELDOUT_SEED, 100000,
                                                                            limit=sample_count), size, name)
                     for cond, name in ((domains.a, "A"), (domains.b, "B")))
        names = domains.names
        description = {"kind": "toyfaces", "spec": data, "a": domains.a, "b": domains.b, "count": domains.count}
    else:
        if data is not None:
            root = _require_dir(Path(data), layout)
            dirs = {key: root / f"train{key.upper()}" for key in "ab"}
            for key, path in dirs.items():
                _require_dir(path, f"missing train{key.upper()}/: {layout}")
            test_dirs = {key: root / f"test{key.upper()}" for key in "ab"}
            names = {"a": f"{root.name}/A", "b": f"{root.name}/B"}
        else:
            dirs = {"a": Path(data_a), "b": Path(data_b)}
            for key, path in dirs.items():
                _require_dir(path, f"--data-{key} takes a folder of images")
            test_dirs = {}
            names = {"a": Path(data_a).name, "b": Path(data_b).name}
        train = tuple(FolderDomain(dirs[key], size, key.upper()) for key in "ab")
        test = None
        if test_dirs and all(path.is_dir() for path in test_dirs.values()):
            test = tuple(FolderDomain(test_dirs[key], size, key.upper()) for key in "ab")
        for domain in train + (test or ()):
            if domain.skip_summary():
                notes.append(domain.skip_summary())
        description = {"kind": "folders", "a": str(dirs["a"]), "b": str(dirs["b"])}
    if len(train[0]) != len(train[1]):
        notes.append(f"domains differ in size (A {len(train[0])}, B {len(train[1])} images): each is drawn from its own "
                     "shuffled stream")
    description.update({"train_a": len(train[0]), "train_b": len(train[1])})
    return TwoDomainData(train, test, names, notes, description)


def open_paired(data: str | None, data_a: str | None, data_b: str | None, size: int,
                sample_count: int = 4) -> TwoDomainData:
    """The pairs of a pix2pix run (module docstring), images at ``size`` (the load size)."""
    if data is not None and (data_a is not None or data_b is not None):
        raise InputError("give --data, or --data-a with --data-b, not both")
    if data is None and (data_a is None or data_b is None):
        raise InputError("give --data DIR (aligned A|B images), --data toyfaces:A:B, or both --data-a and --data-b")
    notes = []
    if data is not None and is_toyfaces_spec(data):
        domains = parse_toyfaces_domains(data)
        train = ToyfacesPairs(toyfaces.TRAIN_SEED, domains, size)
        if len(train) == 0:
            raise InputError(f"{data}: no training face among the first {domains.count} has "
                             f"{ToyfacesDomains.describe(domains.a)} and a counterfactual")
        test = ToyfacesPairs(toyfaces.HELDOUT_SEED, domains, size, count=100000, limit=sample_count)
        names = domains.names
        description = {"kind": "toyfaces-pairs", "spec": data, "a": domains.a, "b": domains.b, "count": domains.count}
    elif data is not None:
        root = _require_dir(Path(data), "--data takes a folder of aligned A|B images (or DIR/train/, DIR/test/)")
        train_dir = root / "train" if (root / "train").is_dir() else root
        train = AlignedFolder(train_dir, size)
        test = AlignedFolder(root / "test", size) if train_dir != root and (root / "test").is_dir() else None
        for part in (train, test):
            if part is not None and part.skip_summary():
                notes.append(part.skip_summary())
        names = {"a": f"{root.name}/A", "b": f"{root.name}/B"}
        description = {"kind": "aligned", "root": str(train_dir)}
    else:
        for key, value in (("a", data_a), ("b", data_b)):
            _require_dir(Path(value), f"--data-{key} takes a folder of images")
        train = MatchedFolders(data_a, data_b, size)
        test = None
        if train.skip_summary():
            notes.append(train.skip_summary())
        names = {"a": Path(data_a).name, "b": Path(data_b).name}
        description = {"kind": "matched-folders", "a": str(data_a), "b": str(data_b)}
    description["train_pairs"] = len(train)
    return TwoDomainData(train, test, names, notes, description)


# --------------------------------------------------------------------------------------------------
# Streams

class ZippedDomains(Dataset):
    """``dataset[(i, j)]`` -> ``(a[i], b[j])``: one item from each of two data sets (fed by :class:`ZippedSampler`)."""

    def __init__(self, a: Dataset, b: Dataset):
        self.a, self.b = a, b

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def __getitem__(self, index: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, j = index
        return self.a[i], self.b[j]


class ZippedSampler(Sampler):
    """Two independent, resumable, rank-sharded shuffled streams (:class:`InfiniteShardSampler`) over data sets of
    ``length_a`` and ``length_b`` items, zipped into ``(i, j)`` pairs."""

    def __init__(self, length_a: int, length_b: int, per_rank_batch: int, rank: int, world_size: int, seed: int,
                 start_position: int):
        self.a = InfiniteShardSampler(length_a, per_rank_batch, rank, world_size, seed, start_position)
        self.b = InfiniteShardSampler(length_b, per_rank_batch, rank, world_size, seed + 500_009, start_position)

    def __iter__(self):
        return zip(iter(self.a), iter(self.b))

    def __len__(self) -> int:
        return 2 ** 62
