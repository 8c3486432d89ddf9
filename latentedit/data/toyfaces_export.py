"""Export toyfaces to disk, resumably, in the CelebA layout or as a plain folder.

Layouts (``k`` runs from 1 to ``count``; file ``k`` holds face ``start + k - 1`` of data set ``seed``):

* ``celeba``: ``DIR/img_align_celeba/{k:06d}.png`` and ``DIR/list_attr_celeba.txt`` (see
  :mod:`latentedit.data.celeba`; the names in the list are the ``.png`` names, and loaders take file
  names from the list).
* ``folder``: ``DIR/images/{k:06d}.png`` and ``DIR/attributes.csv`` with the header
  ``filename,index,<ATTRIBUTE_NAMES...>`` and 0/1 values.

Both write ``DIR/toyfaces.json`` (seed, start, count, size, format, renderer version). Each image is
written to a temporary name and renamed, so a killed export never leaves a truncated image; re-running
the same command skips the images already there and finishes the rest. The attribute list is written
last, atomically, recomputed from the parameters (cheap: no rendering).
"""
from __future__ import annotations

import csv
import io
import multiprocessing
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from latentedit.data import toyfaces
from latentedit.data.celeba import ATTR_FILE_NAME, IMAGE_DIR_NAME, write_attr_list
from latentedit.errors import InputError
from latentedit.io import atomic_write, write_json

FORMATS = ("celeba", "folder")
MANIFEST_NAME = "toyfaces.json"
_IMAGE_DIRS = {"celeba": IMAGE_DIR_NAME, "folder": "images"}


def image_name(k: int, count: int) -> str:
    """File name of image ``k`` (1-based) in an export of ``count`` images: ``000001.png`` style,
    zero-padded to at least 6 digits."""
    return f"{k:0{max(6, len(str(count)))}d}.png"


def _write_png_quick(path: Path, pixels: np.ndarray) -> None:
    # Temporary file + rename: a kill cannot leave a partial image under the final name. No fsync: it
    # costs more than rendering for tiny files, and a power cut only means re-rendering.
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=6)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, path)


def _render_chunk(job: tuple[int, int, str, list[tuple[int, int]]]) -> int:
    seed, size, image_dir, items = job
    for index, k_name in items:
        _write_png_quick(Path(image_dir) / k_name, toyfaces.render_face(seed, index, size))
    return len(items)


def _check_manifest(out_dir: Path, manifest: dict) -> None:
    import json

    path = out_dir / MANIFEST_NAME
    if not path.exists():
        return
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path} is unreadable ({error}); delete it or choose another output folder") from error
    keys = ("seed", "start", "size", "format", "renderer_version")
    different = [key for key in keys if previous.get(key) != manifest[key]]
    if different:
        details = ", ".join(f"{key}={previous.get(key)!r} (now {manifest[key]!r})" for key in different)
        raise InputError(f"{out_dir} already holds a different toyfaces export ({details}); "
                         "use another output folder or delete it")


def render_missing(image_dir: Path, names: list[str], start: int, job_args: tuple, render_chunk, *, chunk: int,
                   workers: int, progress: bool, desc: str) -> int:
    """Render the images of ``names`` (index ``start + k`` for name ``k``) that ``image_dir`` lacks; return how many.

    What makes an export resumable, shared by faces and scenes: temporaries of a killed run are removed, finished
    files are kept, and the rest is rendered in chunks of ``chunk`` by ``render_chunk((*job_args, image_dir,
    [(index, name), ...])) -> count`` (a module-level function, so worker processes can run it).
    """
    from tqdm import tqdm

    for leftover in image_dir.glob(".*.tmp"):  # from a killed run
        leftover.unlink(missing_ok=True)
    existing = {entry.name for entry in os.scandir(image_dir)}
    todo = [(start + k, name) for k, name in enumerate(names) if name not in existing]
    jobs = [(*job_args, str(image_dir), todo[i:i + chunk]) for i in range(0, len(todo), chunk)]
    with tqdm(total=len(names), initial=len(names) - len(todo), unit="img", disable=not progress, desc=desc) as bar:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                bar.update(render_chunk(job))
        else:
            with multiprocessing.get_context().Pool(min(workers, len(jobs))) as pool:
                for done in pool.imap_unordered(render_chunk, jobs):
                    bar.update(done)
    return len(todo)


def export_toyfaces(out_dir: str | os.PathLike, count: int, size: int = 64, seed: int = toyfaces.TRAIN_SEED,
                    start: int = 0, fmt: str = "celeba", workers: int = 1, progress: bool = True) -> dict:
    """Render faces ``start .. start + count - 1`` of data set ``seed`` into ``out_dir`` (resumable).

    ``workers`` > 1 renders in that many processes. Returns the manifest dict (also written to
    ``out_dir/toyfaces.json``) with ``rendered`` (images rendered by this call) and ``skipped`` (already
    present) added. Raises :class:`InputError` for bad arguments or a folder holding another export.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if count < 1:
        raise InputError(f"--n must be at least 1, got {count}")
    if seed < 0 or start < 0:
        raise InputError(f"--seed and --start must be >= 0, got seed={seed}, start={start}")
    if not 16 <= size <= 1024:
        raise InputError(f"--size must be in [16, 1024], got {size}")
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} exists and is not a folder")
    manifest = {
        "dataset": "latentedit.toyfaces",
        "renderer_version": toyfaces.RENDERER_VERSION,
        "seed": int(seed),
        "start": int(start),
        "count": int(count),
        "size": int(size),
        "format": fmt,
        "attribute_names": list(toyfaces.ATTRIBUTE_NAMES),
    }
    _check_manifest(out_dir, manifest)
    image_dir = out_dir / _IMAGE_DIRS[fmt]
    image_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / MANIFEST_NAME, manifest)
    names = [image_name(k, count) for k in range(1, count + 1)]
    rendered = render_missing(image_dir, names, start, (seed, size), _render_chunk, chunk=64, workers=workers,
                              progress=progress, desc=f"toyfaces {size}px")

    params = [toyfaces.sample_params(seed, start + k) for k in range(count)]
    values = np.stack([toyfaces.attribute_vector(p) for p in params]).astype(np.int8)
    if fmt == "celeba":
        write_attr_list(out_dir / ATTR_FILE_NAME, toyfaces.ATTRIBUTE_NAMES, names, values)
    else:
        _write_csv(out_dir / "attributes.csv", names, range(start, start + count), values)
    return {**manifest, "rendered": rendered, "skipped": count - rendered, "out_dir": str(out_dir)}


def _write_csv(path: Path, names: list[str], indices: Iterable[int], values: np.ndarray) -> None:
    with atomic_write(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["filename", "index", *toyfaces.ATTRIBUTE_NAMES])
        for name, index, row in zip(names, indices, values):
            writer.writerow([name, index, *(int(v) for v in row)])


def read_folder_attributes(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """Parse a ``folder`` export's ``attributes.csv`` into ``(names [A], filenames [N], values int8 [N, A])``
    with 0/1 values."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    if header[:2] != ["filename", "index"]:
        raise InputError(f"{path}: not a toyfaces attributes.csv (header starts {header[:2]})")
    values = np.array([[int(v) for v in row[2:]] for row in body], dtype=np.int8).reshape(len(body), len(header) - 2)
    return header[2:], [row[0] for row in body], values
