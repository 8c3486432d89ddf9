"""Translate image files with a trained CycleGAN or pix2pix (``latentedit cyclegan|pix2pix transfer``).

Images are read as StarGAN's transfer reads them (:func:`latentedit.baselines.stargan_transfer.load_images`: any
Pillow mode, EXIF orientation, centre square crop, Lanczos resize to the model's ``image_size``), translated
with :func:`latentedit.baselines.cyclegan.translate` (batch norm with per-image statistics, as the reference
tests; dropout off) and written as PNGs. The checkpoint is read and the output location checked (created and
proven writable) before any image is read or translated, so a bad call writes nothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from latentedit.baselines import cyclegan
from latentedit.baselines.stargan_transfer import OUTPUT_SUFFIXES, _output_paths, _prepare_output, load_images
from latentedit.errors import InputError


def check_finite(images: torch.Tensor, kind: str) -> torch.Tensor:
    bad = (~torch.isfinite(images).flatten(1).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        raise InputError(f"the {kind} generator produced NaN or infinite pixels for image(s) {bad}; the checkpoint is "
                         "probably broken (nothing was written)")
    return images


def transfer_files(kind: str, image_paths: Sequence[str | os.PathLike], output: str | os.PathLike, ckpt: str,
                   direction: str = "a2b", device: str = "auto", norm_stats: str = "image",
                   cycle: bool = False) -> dict:
    """Translate each image in ``direction`` with the ``kind`` (``cyclegan`` / ``pix2pix``) model ``ckpt`` and
    write PNGs: ``output`` is a ``.png`` file for one image, else a folder (``<stem>.png`` per image and
    ``transfer.json``). ``cycle`` (CycleGAN only) also writes ``<stem>_cycle.png``, the translation translated
    back. Returns the manifest."""
    from latentedit.device import resolve_device
    from latentedit.io import save_png, to_uint8, write_json

    paths = [Path(p) for p in image_paths]
    if not paths:
        raise InputError("give at least one image")
    output = Path(output)
    translator = cyclegan.load_translator(ckpt, kind, device=resolve_device(device))
    generator = translator.generator(direction)
    if cycle and kind != "cyclegan":
        raise InputError("--cycle needs a CycleGAN (pix2pix has no reverse generator)")
    destinations = _output_paths(paths, output)
    if cycle and output.suffix.lower() in OUTPUT_SUFFIXES:
        raise InputError("--cycle writes two images per input; give a folder with -o")
    _prepare_output(output)
    images = load_images(paths, translator.image_size)
    results = check_finite(cyclegan.translate(generator, images, norm_stats=norm_stats), kind)
    back = None
    if cycle:
        reverse = translator.generator("b2a" if direction == "a2b" else "a2b")
        back = check_finite(cyclegan.translate(reverse, results.clamp(-1, 1), norm_stats=norm_stats), kind)
    entries = []
    for index, (path, destination) in enumerate(zip(paths, destinations)):
        destination.parent.mkdir(parents=True, exist_ok=True)
        save_png(destination, to_uint8(results[index:index + 1])[0])
        entry = {"input": str(path), "output": str(destination)}
        if back is not None:
            cycle_path = destination.with_name(destination.stem + "_cycle.png")
            save_png(cycle_path, to_uint8(back[index:index + 1])[0])
            entry["cycle"] = str(cycle_path)
        entries.append(entry)
    source, target = ("a", "b") if direction == "a2b" else ("b", "a")
    manifest = {"checkpoint": str(translator.path), "kind": kind, "direction": direction,
                "from": translator.domains.get(source), "to": translator.domains.get(target),
                "image_size": translator.image_size, "norm_stats": norm_stats, "images": entries}
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        write_json(output / "transfer.json", manifest)
    return manifest
