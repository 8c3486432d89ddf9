"""Use a trained StarGAN on image files: attribute transfer and single-attribute grids.

Images are read with :func:`latentedit.image_files.load_image_tensor` (any Pillow mode, EXIF orientation,
centre square crop, Lanczos resize to the model's ``image_size``): for aligned CelebA photographs
(178 x 218) the square crop is the official 178 x 178 crop; square images are only resized.

Source labels (what the generator is told the input shows, needed for StarGAN's ``c_org``) come from
``source_attrs`` (``NAME=0|1`` for every image) and, for attributes not given there, from the
attribute classifier (:func:`latentedit.evaluate.classifier.predict_attributes`, probability > 0.5). At most one
hair colour is kept: a hair colour given as 1 clears the predicted ones, and of several predicted
colours above 0.5 only the most probable stays. When every attribute is given the classifier is not
loaded. An attribute that neither source knows is an :class:`InputError`.

Target labels: :func:`latentedit.baselines.stargan.apply_changes` (hair colours exclusive, other
attributes set as given, unset attributes keep the source's values). Grids use
:func:`latentedit.baselines.stargan.single_attribute_targets` (the official translations).

Models trained on exclusive categories (``label_mode = exclusive``, e.g. a class-folder layout) take ``to``
(``--to CATEGORY``): the target is that category's one-hot label, and no source label is needed (StarGAN uses the
source label only for its training-time reconstruction), so no classifier is loaded. For attribute models ``to``
means ``--set CATEGORY=1``. Their grids have one column per category. ``size`` runs the generator at another
size than it was trained at (both generators are fully convolutional; a multiple of 4), e.g. 512 px for a
256 px model as in seed 004.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from latentedit.baselines import stargan
from latentedit.errors import InputError

OUTPUT_SUFFIXES = (".png",)


@dataclass
class SourceLabels:
    """``labels [N, c]`` float 0/1 in the model's attribute order and, per attribute name, where its
    values came from (``given`` or ``classifier``); ``probabilities [N, c]`` holds the classifier's
    probability (NaN for given attributes)."""

    labels: torch.Tensor
    provenance: dict[str, str]
    probabilities: torch.Tensor


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def load_images(paths: Sequence[str | os.PathLike], size: int, warn=_warn) -> torch.Tensor:
    """Read image files as ``[N, 3, size, size]`` float32 in [-1, 1] (:func:`load_image_tensor`: images
    below :data:`~latentedit.image_files.MIN_IMAGE_SIDE` px are refused, strong upscaling is passed to
    ``warn``, by default one ``warning:`` line on stderr). InputError names the first unreadable file."""
    from latentedit.image_files import load_image_tensor

    if not paths:
        raise InputError("give at least one image")
    return torch.stack([load_image_tensor(path, size, warn=warn)[0] for path in paths])


def _prepare_output(output: Path) -> None:
    """Create the folder a ``.png`` ``output`` goes in (or the ``output`` folder) and prove it writable, before
    any model runs (:func:`latentedit.io.prepare_output_dir`)."""
    from latentedit.io import prepare_output_dir

    if output.suffix.lower() in OUTPUT_SUFFIXES:
        if output.is_dir():
            raise InputError(f"-o {output} is a folder; give a .png file path or a folder name without .png")
        prepare_output_dir(output.parent if str(output.parent) else Path("."))
    else:
        prepare_output_dir(output)


def _check_finite(images: torch.Tensor) -> torch.Tensor:
    bad = (~torch.isfinite(images).flatten(1).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        raise InputError(f"the StarGAN generator produced NaN or infinite pixels for image(s) {bad}; the checkpoint "
                         f"is probably broken (nothing was written)")
    return images


def source_labels(images: torch.Tensor, attribute_names: Sequence[str], given: Mapping[str, int] | None = None,
                  classifier_path: str | os.PathLike | None = None, classifier=None) -> SourceLabels:
    """The source labels of ``images [N, 3, H, W]`` (module docstring). ``given`` maps names to 0/1 for
    every image; ``classifier`` is a loaded attribute classifier, else it is read from ``classifier_path``
    (None: the shipped one) when needed."""
    names = list(attribute_names)
    given = dict(given or {})
    count = images.shape[0]
    labels = torch.zeros(count, len(names))
    probabilities = torch.full((count, len(names)), float("nan"))
    provenance = {name: "given" for name in given}
    needed = [name for name in names if name not in given]
    if needed:
        from latentedit.evaluate.classifier import load_classifier, predict_attributes

        classifier = classifier if classifier is not None else load_classifier(classifier_path)
        known = list(classifier.attribute_names)
        unknown = [name for name in needed if name not in known]
        if unknown:
            raise InputError(f"the attribute classifier does not predict {', '.join(unknown)}; give the source's "
                             f"values with --source-attrs {unknown[0]}=0|1,...")
        predicted = predict_attributes(classifier, images)
        for name in needed:
            probabilities[:, names.index(name)] = predicted[:, known.index(name)]
            provenance[name] = "classifier"
        labels = (probabilities > 0.5).float()
    for name, value in given.items():
        labels[:, names.index(name)] = float(value)
    predicted_hair = [i for i in stargan.hair_indices(names) if names[i] not in given]
    if any(given.get(names[i]) == 1 for i in stargan.hair_indices(names)):
        labels[:, predicted_hair] = 0  # a given hair colour wins over predicted ones
    elif len(predicted_hair) > 1:
        # Several colours above 0.5 describe no face; keep the most probable one.
        scores = probabilities[:, predicted_hair]
        several = labels[:, predicted_hair].sum(dim=1) > 1
        best = torch.zeros_like(scores).scatter_(1, scores.argmax(dim=1, keepdim=True), 1.0)
        labels[:, predicted_hair] = torch.where(several[:, None], best, labels[:, predicted_hair])
    return SourceLabels(labels, provenance, probabilities)


@torch.no_grad()
def translate(generator: stargan.StarGANGenerator, images: torch.Tensor, targets: torch.Tensor,
              batch_size: int = 16) -> torch.Tensor:
    """``generator(images, targets)`` in batches, on the generator's device: ``[N, 3, H, W]`` on the CPU."""
    device = next(generator.parameters()).device
    outputs = []
    for begin in range(0, images.shape[0], batch_size):
        outputs.append(generator(images[begin:begin + batch_size].to(device),
                                 targets[begin:begin + batch_size].to(device)).cpu())
    return torch.cat(outputs)


def _output_paths(paths: Sequence[Path], output: Path) -> list[Path]:
    """One ``.png`` per input: ``output`` itself for one input with an image suffix, else
    ``output/<stem>.png`` (``<stem>_2.png`` ... for repeated stems)."""
    if output.suffix.lower() in OUTPUT_SUFFIXES:
        if len(paths) != 1:
            raise InputError(f"-o {output} names one file but {len(paths)} images were given; pass a folder")
        return [output]
    if output.suffix:
        raise InputError(f"-o {output}: write PNG files (a .png path) or give a folder")
    if output.exists() and not output.is_dir():
        raise InputError(f"-o {output} exists and is not a folder")
    seen: dict[str, int] = {}
    result = []
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        result.append(output / (stem + ".png" if seen[stem] == 1 else f"{stem}_{seen[stem]}.png"))
    return result


def _labels_dict(row: torch.Tensor, names: Sequence[str]) -> dict[str, int]:
    return {name: int(value) for name, value in zip(names, row.tolist())}


def _check_size(size: int | None, info) -> int:
    """The translation size: ``size`` (a multiple of 4, >= 8) or the training size."""
    if size is None:
        return info.image_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size % 4:
        raise InputError(f"--size must be a multiple of 4 and at least 8 (the generators halve the image twice), "
                         f"got {size}")
    return size


def _category_target(to: str, names: Sequence[str], count: int) -> torch.Tensor:
    if to not in names:
        raise InputError(f"--to: unknown category {to!r}; this model has: {', '.join(names)}")
    target = torch.zeros(count, len(names))
    target[:, list(names).index(to)] = 1.0
    return target


def transfer_files(image_paths: Sequence[str | os.PathLike], changes: Sequence[str], output: str | os.PathLike,
                   ckpt: str | os.PathLike = stargan.DEFAULT_STARGAN, source_attrs: Sequence[str] = (),
                   classifier_path: str | os.PathLike | None = None, device: str = "auto", to: str | None = None,
                   size: int | None = None) -> dict:
    """Translate each image to its source labels with ``changes`` applied and write PNGs.

    ``changes`` / ``source_attrs``: items ``NAME=0|1`` (or comma-joined) over the model's attributes.
    ``output``: a ``.png`` file for one image, else a folder (``<stem>.png`` per image plus
    ``transfer.json``). Returns the manifest: checkpoint, changes, and per image the input, output,
    source labels (with provenance) and target labels. ``to`` and ``size``: module docstring.
    """
    from latentedit.device import resolve_device
    from latentedit.io import save_png, to_uint8, write_json

    paths = [Path(p) for p in image_paths]
    destinations = _output_paths(paths, Path(output))
    generator, info = stargan.load_stargan_generator(ckpt, device=resolve_device(device))
    names = info.attribute_names
    side = _check_size(size, info)
    if info.exclusive:
        if changes or source_attrs:
            raise InputError(f"this model translates between exclusive categories; use --to CATEGORY (one of "
                             f"{', '.join(names)}) instead of --set / --source-attrs")
        if to is None:
            raise InputError(f"give --to CATEGORY, one of {', '.join(names)}")
        _category_target(to, names, 1)  # an unknown category fails before any image is read
        _prepare_output(Path(output))
        images = load_images(paths, side)
        targets = _category_target(to, names, images.shape[0])
        results = _check_finite(translate(generator, images, targets))
        pixels = to_uint8(results)
        entries = []
        for index, (path, destination) in enumerate(zip(paths, destinations)):
            destination.parent.mkdir(parents=True, exist_ok=True)
            save_png(destination, pixels[index])
            entries.append({"input": str(path), "output": str(destination), "target": to})
        manifest = {"checkpoint": str(info.path), "attribute_names": list(names), "to": to, "size": side,
                    "images": entries}
        if Path(output).suffix.lower() not in OUTPUT_SUFFIXES:
            write_json(Path(output) / "transfer.json", manifest)
        return manifest
    changes = list(changes)
    if to is not None:
        if to not in names:
            raise InputError(f"--to: unknown attribute {to!r}; this model has: {', '.join(names)}")
        changes.append(f"{to}=1")
    change_map = stargan.parse_assignments(changes, names, "--set")
    if not change_map:
        raise InputError(f"nothing to change; give --set NAME=0|1 with NAME one of {', '.join(names)}")
    given = stargan.parse_assignments(source_attrs, names, "--source-attrs")
    _prepare_output(Path(output))  # before reading images and translating
    images = load_images(paths, side)
    source = source_labels(images, names, given, classifier_path)
    targets = stargan.apply_changes(source.labels, names, change_map)
    results = _check_finite(translate(generator, images, targets))
    pixels = to_uint8(results)
    entries = []
    for index, (path, destination) in enumerate(zip(paths, destinations)):
        destination.parent.mkdir(parents=True, exist_ok=True)
        save_png(destination, pixels[index])
        entries.append({"input": str(path), "output": str(destination),
                        "source": _labels_dict(source.labels[index], names),
                        "target": _labels_dict(targets[index], names)})
    manifest = {"checkpoint": str(info.path), "attribute_names": list(names), "changes": change_map,
                "source_provenance": source.provenance, "images": entries}
    if side != info.image_size:
        manifest["size"] = side
    if Path(output).suffix.lower() not in OUTPUT_SUFFIXES:
        write_json(Path(output) / "transfer.json", manifest)
    return manifest


def grid_files(image_paths: Sequence[str | os.PathLike], output: str | os.PathLike,
               ckpt: str | os.PathLike = stargan.DEFAULT_STARGAN, source_attrs: Sequence[str] = (),
               classifier_path: str | os.PathLike | None = None, device: str = "auto", size: int | None = None) -> dict:
    """Write one PNG grid (``output``, a ``.png`` path): a row per image, the input then every
    single-attribute translation in the model's attribute order (exclusive categories: the image translated to
    every category). Returns ``{"columns": ["input", names...], "rows": [{"input", "source"}...], "output",
    "checkpoint"}``."""
    from latentedit.device import resolve_device
    from latentedit.io import make_grid, save_png, to_uint8

    output = Path(output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"-o {output}: the grid is written as one PNG file; give a .png path")
    generator, info = stargan.load_stargan_generator(ckpt, device=resolve_device(device))
    names = info.attribute_names
    side = _check_size(size, info)
    if info.exclusive:
        if source_attrs:
            raise InputError("this model translates between exclusive categories; --source-attrs does not apply")
        from latentedit.baselines.faststyle import category_targets

        _prepare_output(output)
        paths = [Path(p) for p in image_paths]
        images = load_images(paths, side)
        columns = [images] + [_check_finite(translate(generator, images, target))
                              for target in category_targets(images.shape[0], len(names))]
        tiles = torch.stack(columns, dim=1).flatten(0, 1)
        output.parent.mkdir(parents=True, exist_ok=True)
        save_png(output, make_grid(to_uint8(tiles), columns=len(columns)))
        return {"output": str(output), "checkpoint": str(info.path), "columns": ["input", *names],
                "rows": [{"input": str(path)} for path in paths]}
    given = stargan.parse_assignments(source_attrs, names, "--source-attrs")
    _prepare_output(output)  # before reading images and translating
    paths = [Path(p) for p in image_paths]
    images = load_images(paths, side)
    source = source_labels(images, names, given, classifier_path)
    columns = [images] + [_check_finite(translate(generator, images, target))
                          for target in stargan.single_attribute_targets(source.labels, names)]
    tiles = torch.stack(columns, dim=1).flatten(0, 1)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_png(output, make_grid(to_uint8(tiles), columns=len(columns)))
    return {"output": str(output), "checkpoint": str(info.path), "columns": ["input", *names],
            "rows": [{"input": str(path), "source": _labels_dict(source.labels[i], names)}
                     for i, path in enumerate(paths)]}
