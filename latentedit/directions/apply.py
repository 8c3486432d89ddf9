"""Applying a direction to latents: a fixed strength, or a target distance from an SVM boundary.

:func:`apply_direction` adds ``strength * direction`` to the chosen W+ rows of a latent; a W direction is
broadcast over the rows (every chosen row gets the same vector). :func:`apply_to_distance` moves each latent
to a target signed distance from a direction's hyperplane, InterFaceGAN's way of editing, so each latent gets
its own strength. :func:`apply_to_folder` is what ``latentedit apply-direction`` runs: latents, seeds or
images (inverted first) in, sweeps and edited latents with a manifest out.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from latentedit import io as lio
from latentedit.directions.arrays import (DEFAULT_BATCH, as_direction_array, check_direction_shape, format_layers,
                                          format_strength, parse_layers)
from latentedit.directions.files import (Boundary, boundary_of, direction_problems, latent_record, load_direction,
                                         recorded_generator_sha256)
from latentedit.errors import InputError
from latentedit.model.generator import Generator
from latentedit.model.sampling import w_spread


def apply_direction(w_plus: torch.Tensor, direction, strength: float | Sequence[float],
                    layers: Sequence[int] | None = None) -> torch.Tensor:
    """Add ``strength * direction`` to the chosen W+ rows.

    ``w_plus``: ``[N, num_ws, w_dim]``; ``direction``: W ``[w_dim]`` (every chosen row gets the same
    vector) or W+ ``[num_ws, w_dim]`` (row ``r`` gets row ``r``); ``layers``: row indices to edit (None:
    all). One strength gives ``[N, num_ws, w_dim]``; a sequence of ``S`` strengths gives
    ``[N, S, num_ws, w_dim]``. Rows outside ``layers`` are returned unchanged (bit for bit).
    """
    if w_plus.ndim != 3:
        raise InputError(f"latents must be W+ [N, num_ws, w_dim], got {list(w_plus.shape)}")
    num_ws, w_dim = w_plus.shape[1:]
    vector = torch.as_tensor(as_direction_array(direction)).to(device=w_plus.device, dtype=w_plus.dtype)
    check_direction_shape(vector, num_ws, w_dim)
    rows = parse_layers(layers, num_ws) if layers is not None else list(range(num_ws))
    single = isinstance(strength, (int, float)) and not isinstance(strength, bool)
    strengths = torch.as_tensor([float(strength)] if single else [float(s) for s in strength],
                                dtype=w_plus.dtype, device=w_plus.device)
    edited = _add_to_rows(w_plus, vector, strengths.expand(w_plus.shape[0], -1), rows)
    return edited[:, 0] if single else edited


def _add_to_rows(w_plus: torch.Tensor, vector: torch.Tensor, strengths: torch.Tensor, rows: Sequence[int]
                 ) -> torch.Tensor:
    """``w_plus [N, num_ws, w_dim] + strengths [N, S] * vector`` on ``rows`` -> ``[N, S, num_ws, w_dim]``; the
    other rows are copied bit for bit."""
    num_ws, w_dim = w_plus.shape[1:]
    mask = torch.zeros(num_ws, 1, dtype=torch.bool, device=w_plus.device)
    mask[list(rows)] = True
    step = vector.expand(num_ws, w_dim)
    edited = w_plus[:, None] + strengths[:, :, None, None] * step
    return torch.where(mask, edited, w_plus[:, None].expand_as(edited))


def apply_to_distance(w_plus: torch.Tensor, direction, boundary: Boundary, distance: float | Sequence[float],
                      layers: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """InterFaceGAN-style edit: move each latent along ``direction`` until its signed distance to ``boundary``
    (the mean over the edited rows) is ``distance``.

    Each latent ``i`` gets its own strength ``(distance - d_i) / (normal · v)``, where ``d_i`` is its distance
    before the edit and ``v`` the direction (a W+ direction: the mean of its edited rows), so a face far
    from the boundary moves further than one close to it. Shapes and row handling as in
    :func:`apply_direction`; returns the edited latents and the strengths ``[N]`` (or ``[N, S]`` for a
    sequence of ``S`` distances). InputError when the direction does not cross the boundary (``normal · v``
    close to 0).
    """
    if w_plus.ndim != 3:
        raise InputError(f"latents must be W+ [N, num_ws, w_dim], got {list(w_plus.shape)}")
    num_ws, w_dim = w_plus.shape[1:]
    vector = torch.as_tensor(as_direction_array(direction)).to(device=w_plus.device, dtype=w_plus.dtype)
    check_direction_shape(vector, num_ws, w_dim)
    if boundary.normal.shape != (w_dim,):
        raise InputError(f"the SVM boundary has {boundary.normal.shape[0]} dimensions, the generator's W {w_dim}")
    rows = parse_layers(layers, num_ws) if layers is not None else list(range(num_ws))
    normal = torch.as_tensor(boundary.normal, dtype=w_plus.dtype, device=w_plus.device)
    rate = float((vector.expand(num_ws, w_dim)[rows] @ normal).mean())
    if abs(rate) < 1e-6:
        raise InputError("the direction is (almost) parallel to the SVM boundary: moving along it does not change "
                         "the distance, so no strength reaches a target distance")
    before = boundary.distance(w_plus, rows)
    single = isinstance(distance, (int, float)) and not isinstance(distance, bool)
    targets = torch.as_tensor([float(distance)] if single else [float(d) for d in distance],
                              dtype=w_plus.dtype, device=w_plus.device)
    strengths = (targets[None, :] - before[:, None]) / rate
    edited = _add_to_rows(w_plus, vector, strengths, rows)
    return (edited[:, 0], strengths[:, 0]) if single else (edited, strengths)


@torch.no_grad()
def render_latents(generator: Generator, w_plus: torch.Tensor, batch_size: int = DEFAULT_BATCH,
           noise: str | Sequence[torch.Tensor] = "const") -> torch.Tensor:
    """W+ ``[N, num_ws, w_dim]`` (or W ``[N, w_dim]``) -> images ``[N, 3, S, S]`` on the CPU, float, not clamped.

    ``noise``: a generator noise mode or a list of maps ``[1, 1, r, r]`` shared by every image.
    """
    device = next(generator.parameters()).device
    images = [generator.synthesis(w_plus[start:start + batch_size].to(device), noise).float().cpu()
              for start in range(0, w_plus.shape[0], batch_size)]
    if not images:
        return torch.zeros(0, 3, generator.size, generator.size)
    return torch.cat(images)


@torch.no_grad()
def w_plus_from_seeds(generator: Generator, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
    """Seeds -> z (``numpy.random.RandomState(seed)``, as ``latentedit generate``) -> W+ ``[N, num_ws, w_dim]``."""
    from latentedit.model.sampling import w_from_seeds

    return w_from_seeds(generator, list(seeds), truncation)


def sweep_grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """Images ``[N, 3, S, S]`` in [-1, 1] tiled ``columns`` per row -> ``[H, W, 3]`` uint8."""
    return lio.make_grid(lio.to_uint8(images), columns=columns)


def _read_noise_file(path: Path, generator: Generator) -> list[torch.Tensor] | None:
    """Noise maps ``noise_<i>`` (``[r, r]`` or ``[1, 1, r, r]``) saved by ``pulse`` / ``invert``, as ``[1, 1, r, r]``;
    None when the file does not fit the generator."""
    from latentedit.model.generator import noise_shape

    try:
        with np.load(path, allow_pickle=False) as data:
            maps = []
            for i in range(generator.num_layers):
                array = np.asarray(data[f"noise_{i}"], np.float32)
                if array.size != int(np.prod(noise_shape(i))):
                    return None
                maps.append(torch.from_numpy(array.reshape(noise_shape(i))))
            return maps
    except (OSError, ValueError, KeyError, EOFError):
        return None


#: Units of ``--strength`` in :func:`apply_to_folder`.
STRENGTH_UNITS = ("spread", "raw")
#: Edited W+ rows farther than this many W spreads from the mean w get a warning (99 % of mapped w of the
#: shipped model lie within 1.31 spreads, the farthest of 10,000 at 1.54).
FAR_SPREADS = 2.0
#: Farther than this is refused: the generator has never seen anything like it and renders saturated noise.
MAX_SPREADS = 20.0
#: Names of files in a latent folder that are not one latent per file.
_BATCH_FILES = ("w_plus.npy",)


@dataclasses.dataclass(frozen=True)
class LatentSource:
    """One latent to edit: W+ ``[n, num_ws, w_dim]``, output names ``[n]``, noise, and its provenance record."""

    names: list[str]
    w_plus: torch.Tensor
    noise: str | list[torch.Tensor]
    record: dict


@torch.no_grad()
def w_distribution(generator: Generator) -> tuple[torch.Tensor, float]:
    """The mean w ``[w_dim]`` and the W spread: the RMS distance of 10,000 seeded mapped w from their mean.

    The spread is the unit of ``--strength`` (:func:`strength_scale`) and of the far-from-W warning. The same
    seeded samples as the projector's latent-noise scale (:func:`latentedit.model.sampling.w_spread`).
    """
    return generator.mean_w().detach().float().cpu(), w_spread(generator)


def strength_scale(direction: np.ndarray, rows: Sequence[int], spread: float, unit: str) -> float:
    """The raw multiplier of ``direction`` that one unit of strength means.

    ``unit="spread"``: strength 1 moves the most-moved chosen W+ row by one W spread, whatever the direction's
    norm (a W direction moves every chosen row by the same amount). ``unit="raw"``: strength multiplies the
    stored array as it is (the behaviour before units, and what ``evaluate edit`` measures).
    """
    if unit == "raw":
        return 1.0
    if unit != "spread":
        raise InputError(f"strength unit must be one of {', '.join(STRENGTH_UNITS)}, got {unit!r}")
    vector = np.asarray(direction, np.float64)
    row_norm = float(np.linalg.norm(vector)) if vector.ndim == 1 else float(np.linalg.norm(vector[list(rows)],
                                                                                           axis=1).max())
    if row_norm == 0.0:
        raise InputError("the direction is zero on every chosen W+ row: pick --layers where it is not")
    return spread / row_norm


def _latent_folder_files(folder: Path) -> list[Path]:
    """The latent files of a folder, as ``invert``, ``pulse`` and ``generate`` write them, sorted by name."""
    files = sorted(p for p in folder.glob("*.npy") if p.is_file() and not p.name.startswith("."))
    singles = [p for p in files if p.name not in _BATCH_FILES]
    # generate writes each image's W+ and also all of them as w_plus.npy: take each once.
    return singles or files


def _batch_names(path: Path, count: int) -> list[str]:
    """Names for the latents of a batch file: the names its folder's manifest lists (``generate`` writes
    ``seed0000``...), else ``<stem>_0000``..."""
    stem = path.stem
    manifest_path = path.with_name("manifest.json")
    if count > 1 and manifest_path.is_file():
        try:
            names = json.loads(manifest_path.read_text()).get("names")
        except (OSError, ValueError, AttributeError):
            names = None
        if isinstance(names, list) and len(names) == count and all(isinstance(n, str) for n in names):
            return list(names)
    return [stem] if count == 1 else [f"{stem}_{i:04d}" for i in range(count)]


def _load_latent_source(generator: Generator, path: Path, generator_sha: str | None,
                        log: Callable[[str], None]) -> LatentSource:
    from latentedit.latents import as_w_or_w_plus, load_latent_file

    array = load_latent_file(path)
    w_plus = generator.broadcast_w(as_w_or_w_plus(array, generator.num_ws, generator.w_dim,
                                                  name=f"latent {path}")).contiguous()
    record = {"path": str(path), "kind": "latent", "shape": list(array.shape), "sha256": lio.sha256_file(path)}
    recorded = recorded_generator_sha256(latent_record(path))
    if recorded and generator_sha and recorded != generator_sha:
        log(f"latent {path} was made with generator {recorded[:12]}, not this one ({generator_sha[:12]})")
    noise: str | list[torch.Tensor] = "const"
    noise_path = path.with_name(f"{path.stem}_noise.npz")
    if w_plus.shape[0] == 1 and noise_path.is_file() and generator.num_layers > 0:  # StyleGAN3: no noise inputs
        maps = _read_noise_file(noise_path, generator)
        if maps is not None:
            noise = maps
            record["noise"] = str(noise_path)
        else:
            log(f"{noise_path} does not fit this generator; rendering with its stored noise instead")
    return LatentSource(_batch_names(path, w_plus.shape[0]), w_plus, noise, record)


def apply_to_folder(generator: Generator, direction_path: str | os.PathLike, latent_path: str | os.PathLike,
                    out_dir: str | os.PathLike, strengths: Sequence[float], *,
                    layers: str | Sequence[int] | None = None, strength_unit: str = "spread",
                    checkpoint_info: Mapping | None = None, invert_settings=None, to_distance: bool = False,
                    paste_back: str | os.PathLike | None = None, mask: str | os.PathLike | None = None,
                    log: Callable[[str], None] | None = None, progress: bool = False) -> dict:
    """What ``latentedit apply-direction`` runs.

    ``latent_path``: a ``.npy`` latent (W ``[w_dim]``, W+ ``[num_ws, w_dim]`` or a batch ``[N, ...]``); a folder of
    them (every ``*.npy`` in it, as ``invert``, ``pulse`` and ``generate`` write them; ``generate``'s combined
    ``w_plus.npy`` is skipped when the per-image files are there); or an image, which is first inverted
    (:func:`latentedit.invert.invert`, ``invert_settings``; default settings otherwise) and saved as
    ``<stem>_inverted.npy`` / ``.png``. A noise file beside a latent (``<stem>_noise.npz``, as ``pulse`` and
    ``invert --noise optimize`` write) is used for rendering it; otherwise the generator's stored noise.

    ``strength_unit`` (:func:`strength_scale`): ``"spread"`` (default) counts strengths in W spreads, the RMS
    distance of mapped w from their mean, so strength 1 moves the most-moved chosen row by one spread for
    every direction; ``"raw"`` multiplies the stored array. An edited row farther than :data:`FAR_SPREADS`
    spreads from the mean w gets one warning naming the distance; farther than :data:`MAX_SPREADS` is an
    InputError (nothing is written).

    ``to_distance``: ``strengths`` are target signed distances to the SVM boundary in the direction's
    sidecar (:func:`apply_to_distance`); files are then named ``<name>_d<distance>`` and the manifest
    records each latent's step.

    Writes, for each latent ``<name>`` (the source file's stem, or the names its batch's manifest lists) and
    strength ``s``, ``<name>_s<s>.npy`` (W+ ``[num_ws, w_dim]``) and ``.png``, then ``sweep.png`` (one row per
    latent, one column per strength) and ``manifest.json``. ``log`` receives one-line warnings;
    ``progress`` shows the inversion's progress bar. Returns the manifest.
    """
    from latentedit.image_files import IMAGE_SUFFIXES

    log = log or (lambda message: warnings.warn(message, stacklevel=2))
    out_dir = Path(out_dir)
    latent_path = Path(latent_path)
    checkpoint_info = dict(checkpoint_info or {})
    generator_sha = checkpoint_info.get("sha256")
    direction = load_direction(direction_path)
    for problem in direction_problems(direction, generator.num_ws, generator.w_dim, generator_sha):
        log(problem)
    boundary = boundary_of(direction) if to_distance else None
    strengths = [float(s) for s in strengths]
    names_for = [format_strength(s) for s in strengths]
    if len(set(names_for)) != len(names_for):
        raise InputError(f"strengths {names_for} repeat after rounding to 6 significant digits; give distinct values")
    rows = parse_layers(layers, generator.num_ws)
    files = _latent_folder_files(latent_path) if latent_path.is_dir() else [latent_path]
    if latent_path.is_dir() and not files:
        raise InputError(f"no .npy latents in {latent_path}: invert images first (latentedit invert IMAGE -o "
                         f"{latent_path}) or pass --latent FILE")
    if not latent_path.exists():
        raise InputError(f"latent {latent_path} does not exist: invert an image first (latentedit invert IMAGE) or "
                         f"pass --latent FILE.npy")
    mean_w, spread = w_distribution(generator)
    scale = 1.0 if boundary is not None else strength_scale(direction.vector, rows, spread, strength_unit)

    if paste_back is not None and not latent_path.is_dir() and latent_path.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"--paste-back needs latents inverted from photos: run `latentedit invert --align "
                         f"{latent_path}` first, then apply-direction --paste-back")
    if latent_path.is_dir():
        sources = [_load_latent_source(generator, path, generator_sha, log) for path in files]
    elif latent_path.suffix.lower() in IMAGE_SUFFIXES:
        lio.prepare_output_dir(out_dir)  # before the inversion, the long part
        latent, inverted_noise, record = _invert_image(generator, latent_path, out_dir, invert_settings, log,
                                                       progress)
        w_plus = generator.broadcast_w(torch.from_numpy(latent)[None]).contiguous()
        sources = [LatentSource([latent_path.stem], w_plus,
                                inverted_noise if inverted_noise is not None else "const", record)]
    else:
        sources = [_load_latent_source(generator, latent_path, generator_sha, log)]
    latent_names = [name for source in sources for name in source.names]
    if len(set(latent_names)) != len(latent_names):
        raise InputError(f"latent names repeat in {latent_path} ({latent_names}); edit the files one at a time")

    targets, user_mask = _paste_setup(generator, sources, paste_back, mask, checkpoint_info, log)
    w_plus = torch.cat([source.w_plus for source in sources])
    steps = None
    if boundary is None:
        edited = apply_direction(w_plus, direction.vector, [s * scale for s in strengths], rows)
    else:
        edited, steps = apply_to_distance(w_plus, direction.vector, boundary, strengths, rows)
    far = (edited[:, :, rows, :] - mean_w).norm(dim=-1).div(spread)  # [N, strengths, rows]
    farthest = float(far.max())
    if not math.isfinite(farthest) or farthest > MAX_SPREADS:
        raise InputError(f"these strengths put edited latents {farthest:.3g} W spreads from the mean w (the "
                         f"generator's own latents lie within about 1.5); use strengths below "
                         f"{MAX_SPREADS:g} spreads")
    if farthest > FAR_SPREADS:
        index = np.unravel_index(int(far.argmax()), tuple(far.shape))
        log(f"strength {strengths[index[1]]:g} puts W+ row {rows[index[2]]} of {latent_names[index[0]]} "
            f"{farthest:.2f} W spreads from the mean w, far outside the generator's W distribution (99 % of "
            f"mapped w lie within about 1.3); expect artefacts")

    lio.prepare_output_dir(out_dir)
    prefix = "s" if boundary is None else "d"
    pixels_per_source, offset = [], 0
    for source in sources:
        count = source.w_plus.shape[0]
        chunk = edited[offset:offset + count].reshape(-1, generator.num_ws, generator.w_dim)
        images = render_latents(generator, chunk, noise=source.noise)
        source_pixels = lio.to_uint8(images).reshape(count, len(strengths), *images.shape[2:], 3)
        if user_mask is not None and user_mask.shape == tuple(images.shape[2:]):
            from latentedit.photos.workflow import blend_with_mask

            unedited = lio.to_uint8(render_latents(generator, source.w_plus, noise=source.noise))
            source_pixels = blend_with_mask(source_pixels, unedited[:, None], user_mask)
        pixels_per_source.append(source_pixels)
        offset += count
    pixels = np.concatenate(pixels_per_source)
    files = []
    edited_np = edited.numpy().astype(np.float32)
    for i, latent_name in enumerate(latent_names):
        for j, label in enumerate(names_for):
            name = f"{latent_name}_{prefix}{label}"
            lio.save_npy(out_dir / f"{name}.npy", edited_np[i, j])
            lio.save_png(out_dir / f"{name}.png", pixels[i, j])
            files += [f"{name}.npy", f"{name}.png"]
    lio.save_png(out_dir / "sweep.png", lio.make_grid(pixels.reshape(-1, *pixels.shape[2:]), columns=len(strengths)))
    pasted = []
    if targets is not None:
        from latentedit.photos.workflow import paste_edits, sweep_of_photos

        for i, (latent_name, target) in enumerate(zip(latent_names, targets)):
            if target is None:
                continue
            full = paste_edits(target, pixels[i])
            names = [f"{latent_name}_{prefix}{label}_full.png" for label in names_for]
            for name, photo in zip(names, full):
                lio.save_png(out_dir / name, photo)
            lio.save_png(out_dir / f"{latent_name}_sweep_full.png", sweep_of_photos(full))
            names.append(f"{latent_name}_sweep_full.png")
            files += names
            pasted.append({"latent": latent_name, **target.to_json(), "files": names})
    source_records = [source.record for source in sources]
    manifest = {
        "command": "apply-direction",
        "checkpoint": checkpoint_info,
        "direction": {"path": str(direction.path), "sha256": lio.sha256_file(direction.path),
                      "shape": list(direction.vector.shape), "space": direction.space,
                      "norm": round(float(np.linalg.norm(direction.vector)), 6),
                      "method": direction.meta.get("method"),
                      "generator_sha256": recorded_generator_sha256(direction.meta)},
        "source": source_records[0] if len(source_records) == 1 else {"path": str(latent_path), "kind": "folder",
                                                                      "latents": source_records},
        "strengths": strengths,
        "mode": "strength" if boundary is None else "distance",
        **({} if boundary is not None else {"strength_unit": strength_unit, "w_spread": round(spread, 6),
                                            "raw_strengths": [round(s * scale, 6) for s in strengths]}),
        **({} if steps is None else {"distance_before": [round(float(d), 6) for d in
                                                         boundary.distance(w_plus, rows)],
                                     "steps": [[round(float(x), 6) for x in row] for row in steps]}),
        "layers": format_layers(rows),
        "farthest_w_spreads": round(farthest, 4),
        "noise": ("from " + source_records[0]["noise"] if "noise" in source_records[0] else
                  "const (the generator's stored maps)") if len(sources) == 1 else
                 "per latent: its <stem>_noise.npz when present, else the generator's stored maps",
        "names": latent_names,
        "definition": ("edited = latent + raw_strength * direction on the chosen W+ rows (W directions broadcast); "
                       "raw_strength = strength * w_spread / (largest norm of the direction over the chosen rows) "
                       "with strength_unit 'spread', = strength with 'raw'"
                       if boundary is None else
                       "edited = latent + step * direction on the chosen W+ rows, step = (distance - distance_before) "
                       "/ (normal . direction); distance = mean over the chosen rows of normal . w + offset"),
        **({} if mask is None else {"mask": {"path": str(mask), "space": "crop" if user_mask.shape == (
            generator.size, generator.size) else "photo", "effect": "edited PNGs blended with the unedited "
            "rendering outside the mask (crop space); the paste-back mask"}}),
        **({} if targets is None else {"paste_back": pasted}),
        "files": files + ["sweep.png", "manifest.json"],
        "sweep": {"file": "sweep.png", "rows": latent_names, "columns": strengths},
        "versions": lio.versions(),
    }
    lio.write_json(out_dir / "manifest.json", manifest)
    return manifest


def _paste_setup(generator: Generator, sources: list, paste_back, mask, checkpoint_info, log):
    """Check the paste-back photo(s) and the mask before any rendering: ``(targets or None, mask or None)``."""
    from latentedit.photos.workflow import paste_target, read_mask

    user_mask = read_mask(mask) if mask is not None else None
    size = generator.size
    if user_mask is not None and paste_back is None and user_mask.shape != (size, size):
        raise InputError(f"mask {mask} is {user_mask.shape[1]}x{user_mask.shape[0]} but the crops are {size}x{size}; "
                         "a mask in photo coordinates needs --paste-back")
    if paste_back is None:
        return None, user_mask
    from latentedit.photos.workflow import find_alignment_record

    # A folder may hold latents of plain crops beside those of photos (the quick start's inverted/ and then
    # `invert --align`): those are edited but not pasted, with a note, unless a photo was named for them.
    folder = len(sources) > 1 and not paste_back
    targets, skipped = [], []
    for source in sources:
        if source.record.get("kind") != "latent" or source.w_plus.shape[0] != 1:
            raise InputError("--paste-back needs single latents inverted from photos (latentedit invert --align "
                             f"PHOTO); {source.record.get('path', source.names[0])} is "
                             + ("an image inverted without alignment" if source.record.get("kind") == "image"
                                else f"a batch of {source.w_plus.shape[0]} latents"))
        if folder and find_alignment_record(source.record["path"]) is None:
            targets.append(None)
            skipped.append(source.names[0])
            continue
        targets.append(paste_target(source.record["path"], size, photo=str(paste_back) or None, mask=user_mask,
                                    mask_name=None if mask is None else str(mask), checkpoint_info=checkpoint_info,
                                    log=log))
    if skipped and len(skipped) == len(sources):
        raise InputError(f"no latent in this folder was inverted from a photo ({', '.join(skipped)}): invert with "
                         "`latentedit invert --align PHOTO`, or name the photo: --paste-back PHOTO")
    if skipped:
        log(f"not pasted back (no photo recorded; they were not inverted with --align): {', '.join(skipped)}")
    return targets, user_mask


def _invert_image(generator: Generator, path: Path, out_dir: Path, settings, log: Callable[[str], None],
                  progress: bool = False) -> tuple[np.ndarray, list[torch.Tensor] | None, dict]:
    """Invert one image for :func:`apply_to_folder`: ``(latent, noise maps or None, source record)``.

    Writes ``<stem>_inverted.npy`` (and ``<stem>_inverted_noise.npz`` when the noise was optimised) and
    ``<stem>_inverted.png``.
    """
    from latentedit.image_files import load_image_tensor
    from latentedit.invert.optimize import InversionSettings, invert, prepare_perceptual
    from latentedit.model.generator import noise_shape

    settings = (settings or InversionSettings()).validated()
    device = next(generator.parameters()).device
    target, info = load_image_tensor(path, generator.size)
    setup = prepare_perceptual(settings, generator.size, device)
    if setup.notice:
        log(setup.notice)
    result = invert(generator, target[None], settings, names=[path.stem], perceptual=setup.loss,
                    lpips_metric=setup.lpips_metric, progress=progress, description=f"invert {path.name}")[0]
    lio.save_npy(out_dir / f"{path.stem}_inverted.npy", result.latent)
    lio.save_png(out_dir / f"{path.stem}_inverted.png", lio.to_uint8(result.reconstruction)[0])
    source = {"kind": "image", "image": info, "inverted": f"{path.stem}_inverted.npy",
              "inversion": {"settings": settings.to_dict(), "perceptual": setup.kind, "notice": setup.notice,
                            "psnr_db": round(result.psnr_db, 4), "steps": result.steps}}
    noise = None
    if result.noise is not None:
        noise = [torch.from_numpy(m).reshape(noise_shape(i)) for i, m in enumerate(result.noise)]
        buffer = io.BytesIO()
        np.savez(buffer, **{f"noise_{i}": m for i, m in enumerate(result.noise)})
        lio.write_bytes(out_dir / f"{path.stem}_inverted_noise.npz", buffer.getvalue())
        source["noise"] = str(out_dir / f"{path.stem}_inverted_noise.npz")
    return result.latent, noise, source
