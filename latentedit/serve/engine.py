"""What the page does, without the page: uploads checked, inversions, edits, translations, PULSE searches.

Every operation calls the same library function as the command it stands for, with the same arguments, so
the files it writes are the files the command writes (same names, same manifests) and a visitor can take
them to the CLI:

======================  ==========================================================================
page                    library call (command)
======================  ==========================================================================
invert                  :func:`latentedit.invert.invert_files` (``latentedit invert``), or
                        :func:`latentedit.photos.align_and_invert` for photos (``invert --align``)
save the edit           :func:`latentedit.directions.apply_to_folder` (``latentedit apply-direction``),
                        once per direction, each step reading the latent the previous one wrote
live edit preview       the functions ``apply_to_folder`` is built from: :func:`strength_scale`,
                        :func:`apply_direction`, :func:`render_latents` (pixel-identical to its PNG)
translate               :func:`latentedit.baselines.transfer_files` (``latentedit stargan transfer``)
PULSE                   :func:`latentedit.pulse.pulse_to_folder` (``latentedit pulse``)
SVM direction           :func:`latentedit.directions.svm_to_file` (``latentedit direction svm``)
======================  ==========================================================================

The preview does not call ``apply_to_folder`` itself because that recomputes the W spread (10,000 mapped
samples, about 0.45 s at 64 px on 2 cores) and writes four files on every call; the preview computes the
spread once and writes nothing. ``tests/test_serve.py`` checks that the preview equals the command's PNG.
"""
from __future__ import annotations

import inspect
import math
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from latentedit.errors import InputError

#: Uploads larger than this many bytes are refused (``latentedit serve --max-upload-mb``).
DEFAULT_MAX_UPLOAD_MB = 10.0
#: Inversion steps the page starts with (``latentedit invert`` uses 1000; the page favours a quick first edit).
DEFAULT_PAGE_STEPS = 300
#: A square upload at most this many times the generator's side is taken as an aligned crop.
CROP_FACTOR = 2.0
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def repo_examples_dir() -> Path | None:
    """``examples/`` of a source checkout (where the example faces and the learned blond direction live)."""
    import latentedit

    folder = Path(latentedit.__file__).resolve().parent.parent / "examples"
    return folder if folder.is_dir() else None


def safe_stem(name: str, default: str = "upload") -> str:
    """A file stem made of letters, digits, ``_ . -`` (an uploaded file's name, reduced)."""
    stem = Path(str(name or "")).name
    for suffix in (".png", ".jpg", ".jpeg", ".npy"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = _NAME.sub("_", stem).strip("._-")[:80]
    return stem or default


@dataclass
class ServeConfig:
    """Settings of ``latentedit serve``."""

    ckpt: str = "toyfaces64"
    stargan_ckpt: str = "stargan_toyfaces64"
    runs: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    device: str = "auto"
    examples: str | None = None
    default_steps: int = DEFAULT_PAGE_STEPS
    pulse_fit_samples: int | None = None  # None: PULSE's default (``latentedit pulse --fit-samples``)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass
class Inverted:
    """An inversion the page made: the files ``latentedit invert`` writes for it."""

    name: str
    folder: Path
    latent: Path
    reconstruction: Path
    compare: Path
    manifest: Path
    psnr_db: float | None
    aligned: bool
    files: list[Path] = field(default_factory=list)


@dataclass
class DirectionEdit:
    """One direction of an edit: its file, its strength in W spreads, its label on the page."""

    path: Path
    strength: float
    label: str = ""


class Engine:
    """The loaded models and the operations of the page (thread-safe where it needs to be)."""

    def __init__(self, config: ServeConfig, log: Callable[[str], None] | None = None) -> None:
        from latentedit.checkpoints import load_generator
        from latentedit.device import resolve_device

        self.config = config
        self.log = log or (lambda message: None)
        self.device = resolve_device(config.device)
        self.generator, self.checkpoint = load_generator(config.ckpt, device=self.device)
        self.checkpoint_info = self.checkpoint.to_dict()
        self._spread: tuple[torch.Tensor, float] | None = None
        self._lock = threading.Lock()
        self._directions: dict[tuple[str, float], object] = {}
        self.examples_dir = Path(config.examples) if config.examples else repo_examples_dir()
        self._stargan_names: tuple[str, ...] | None = None

    # -- files the page offers ---------------------------------------------------------------------------
    def example_images(self) -> dict[str, Path]:
        """Example faces by name (``face.png``...); never a path the browser names."""
        folder = self.examples_dir
        if folder is None:
            return {}
        return {p.name: p for p in sorted(folder.glob("face*.png")) if p.is_file()}

    def example_references(self) -> dict[str, Path]:
        """Example RGBA PULSE references by name."""
        folder = self.examples_dir
        if folder is None:
            return {}
        return {p.name: p for p in sorted(folder.glob("*.rgba.png")) if p.is_file()}

    def shipped_blond(self) -> Path | None:
        """The learned blond direction shipped in ``examples/``, when this checkout has it and it fits this
        generator (it was learned for the shipped toyfaces model: another checkpoint, e.g. a StyleGAN3 one,
        gets no blond slider rather than an error on every edit)."""
        folder = self.examples_dir
        path = folder / "blond_learned.npy" if folder is not None else None
        if path is None or not path.is_file():
            return None
        try:
            shape = tuple(np.load(path, mmap_mode="r").shape)
        except (OSError, ValueError):
            return None
        return path if shape in ((self.generator.w_dim,), (self.num_ws, self.generator.w_dim)) else None

    @property
    def size(self) -> int:
        return int(self.generator.size)

    @property
    def num_ws(self) -> int:
        return int(self.generator.num_ws)

    # -- uploads -----------------------------------------------------------------------------------------
    def accept_image(self, source: str | Path, folder: Path, name: str | None = None,
                     keep_alpha: bool = False) -> tuple[Path, dict]:
        """Check an uploaded image and copy it into ``folder`` under a safe name (same stem as the upload).

        Refused with an InputError: more than the upload cap, not an image Pillow can read, more pixels than
        the decompression-bomb guard allows (:func:`latentedit.image_files.open_image`), or smaller than the
        library's minimum side. Returns the copy and ``{"width", "height", "mode"}``.
        """
        from latentedit.image_files import IMAGE_SUFFIXES, MIN_IMAGE_SIDE, open_image

        source = Path(source)
        shown = name or source.name
        if not source.is_file():
            raise InputError("no image was uploaded")
        size = source.stat().st_size
        if size > self.config.max_upload_bytes:
            raise InputError(f"{shown} is {size / 2**20:.1f} MB; uploads are limited to "
                             f"{self.config.max_upload_mb:g} MB")
        try:
            image = open_image(source)
        except InputError as error:
            raise InputError(str(error).replace(str(source), shown)) from None
        width, height, mode = image.width, image.height, image.mode
        image.close()
        if min(width, height) < MIN_IMAGE_SIDE:
            raise InputError(f"{shown} is only {width}x{height} pixels; images need at least {MIN_IMAGE_SIDE} px "
                             f"on each side")
        suffix = source.suffix.lower() if source.suffix.lower() in IMAGE_SUFFIXES else ".png"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{safe_stem(shown)}{suffix}"
        if suffix == source.suffix.lower():
            shutil.copyfile(source, target)
        else:  # a readable image with an unusual name: stored as PNG so the library's file listing finds it
            from PIL import Image

            with Image.open(source) as original:
                original.save(target, format="PNG")
        return target, {"width": width, "height": height, "mode": mode}

    def needs_alignment(self, width: int, height: int) -> bool:
        """``auto``: a square image up to :data:`CROP_FACTOR` x the generator size is already a crop."""
        return not (width == height and width <= CROP_FACTOR * self.size)

    # -- inversion (heavy) -------------------------------------------------------------------------------
    def invert(self, image: Path, out_dir: Path, steps: int, align: bool = False) -> Inverted:
        """Invert one image as ``latentedit invert IMAGE --steps N -o OUT`` (``--align`` for photos)."""
        from latentedit.invert import InversionSettings, invert_files

        settings = InversionSettings(steps=int(steps))
        messages: list[str] = []
        if align:
            from latentedit.photos import align_and_invert

            try:
                summary = align_and_invert([image], out_dir, settings, ckpt=self.config.ckpt,
                                           device=self.config.device, progress=False, log=messages.append)
            except InputError as error:
                errors = [m[len("error: "):] for m in messages if m.startswith("error: ")]
                text = errors[-1] if errors else str(error)
                raise InputError(text.replace(str(image), image.name)) from None
        else:
            summary = invert_files([image], out_dir, settings, loaded=(self.generator, self.checkpoint),
                                   progress=False, log=messages.append, overwrite=True)
        records = [r for r in summary["images"] if r["status"] in ("inverted", "skipped")]
        if not records:
            errors = [r.get("error") for r in summary["images"] if r.get("error")] or messages[-1:]
            text = errors[0] if errors else f"cannot invert {image.name}"
            raise InputError(text.replace(str(image), image.name))
        record = records[0]
        name = record["name"]
        folder = Path(out_dir)
        paths = {kind: folder / f"{name}{suffix}" for kind, suffix in
                 (("latent", ".npy"), ("png", ".png"), ("compare", "_compare.png"), ("json", ".json"))}
        files = [p for p in paths.values() if p.is_file()]
        return Inverted(name=name, folder=folder, latent=paths["latent"], reconstruction=paths["png"],
                        compare=paths["compare"], manifest=paths["json"], psnr_db=record.get("psnr_db"),
                        aligned=bool(align), files=files)

    # -- edits -------------------------------------------------------------------------------------------
    def w_distribution(self) -> tuple[torch.Tensor, float]:
        """The mean w and W spread, computed once (:func:`latentedit.directions.apply.w_distribution`)."""
        from latentedit.directions.apply import w_distribution

        with self._lock:
            if self._spread is None:
                self._spread = w_distribution(self.generator)
            return self._spread

    def load_direction(self, path: Path):
        """A direction file, checked against the generator's shape, cached by path and modification time."""
        from latentedit.directions import check_direction_shape, load_direction

        path = Path(path)
        key = (str(path.resolve()), path.stat().st_mtime)
        cached = self._directions.get(key)
        if cached is None:
            cached = load_direction(path)
            check_direction_shape(torch.as_tensor(cached.vector), self.num_ws, self.generator.w_dim)
            if len(self._directions) > 64:
                self._directions.clear()
            self._directions[key] = cached
        return cached

    def accept_direction(self, source: str | Path, folder: Path, name: str | None = None) -> Path:
        """Check an uploaded direction ``.npy`` (never a pickle) and copy it into ``folder``; its sidecar is
        not uploaded, so its provenance is unknown to the page."""
        source = Path(source)
        shown = name or source.name
        if not source.is_file():
            raise InputError("no direction was uploaded")
        if source.stat().st_size > self.config.max_upload_bytes:
            raise InputError(f"{shown} is larger than the {self.config.max_upload_mb:g} MB upload limit")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{safe_stem(shown, 'direction')}.npy"
        shutil.copyfile(source, target)
        try:
            self.load_direction(target)
        except InputError as error:
            target.unlink(missing_ok=True)
            raise InputError(str(error).replace(str(target), shown)) from None
        except (ValueError, OSError) as error:
            target.unlink(missing_ok=True)
            raise InputError(f"{shown} is not a direction .npy ({error})") from None
        return target

    def read_latent(self, path: Path) -> torch.Tensor:
        """A latent file as W+ ``[1, num_ws, w_dim]`` (as ``apply-direction`` reads it)."""
        from latentedit.latents import as_w_or_w_plus, load_latent_file

        array = load_latent_file(path)
        w = as_w_or_w_plus(array, self.num_ws, self.generator.w_dim, name=f"latent {Path(path).name}")
        w_plus = self.generator.broadcast_w(w).contiguous()
        if w_plus.shape[0] != 1:
            raise InputError(f"latent {Path(path).name} holds {w_plus.shape[0]} latents; the page edits one")
        return w_plus

    def edited_latent(self, w_plus: torch.Tensor, edits: Sequence[DirectionEdit], layers: str | None
                      ) -> tuple[torch.Tensor, list[str]]:
        """``w_plus`` after each edit in turn, exactly as chained ``apply-direction`` calls compute it."""
        from latentedit.directions import apply_direction, parse_layers
        from latentedit.directions.apply import FAR_SPREADS, MAX_SPREADS, strength_scale

        rows = parse_layers(layers, self.num_ws)
        mean_w, spread = self.w_distribution()
        notes = []
        for edit in edits:
            direction = self.load_direction(edit.path)
            scale = strength_scale(direction.vector, rows, spread, "spread")
            w_plus = apply_direction(w_plus, direction.vector, [float(edit.strength) * scale], rows)[:, 0]
            far = float((w_plus[:, rows, :] - mean_w).norm(dim=-1).div(spread).max())
            if not math.isfinite(far) or far > MAX_SPREADS:
                raise InputError(f"this edit puts the latent {far:.3g} W spreads from the mean w; lower the "
                                 f"strengths (at most {MAX_SPREADS:g} spreads)")
            if far > FAR_SPREADS:
                notes.append(f"{edit.label or edit.path.name}: {far:.2f} W spreads from the mean w, far outside "
                             f"the generator's W distribution; expect artefacts")
        return w_plus, notes

    def preview(self, latent: Path, edits: Sequence[DirectionEdit], layers: str | None = None
                ) -> tuple[np.ndarray, list[str]]:
        """The edited image ``[S, S, 3]`` uint8, equal to the PNG ``save_edit`` (``apply-direction``) writes."""
        from latentedit import io as lio
        from latentedit.directions import render_latents

        w_plus, notes = self.edited_latent(self.read_latent(latent), edits, layers)
        images = render_latents(self.generator, w_plus, noise="const")
        return lio.to_uint8(images)[0], notes

    def supports_paste_back(self) -> bool:
        """True when ``apply_to_folder`` (``apply-direction``) has ``--paste-back``."""
        from latentedit.directions import apply_to_folder

        return "paste_back" in inspect.signature(apply_to_folder).parameters

    def save_edit(self, latent: Path, edits: Sequence[DirectionEdit], layers: str | None, out_dir: Path,
                  paste_back: bool = False) -> dict:
        """Write the edit as ``latentedit apply-direction`` does, one call per direction.

        The first direction's outputs go to ``out_dir/edited/`` (``apply-direction --vec D1 --latent LATENT
        --strength S1 [--layers L] -o edited``), the second's to ``edited_2/`` with the first's edited latent as
        ``--latent``, and so on. A strength of 0 is skipped, unless every strength is 0. Returns
        ``{"png", "npy", "manifests", "commands", "folders", "full"}`` (``full``: pasted-back photos).
        """
        from latentedit.directions import apply_to_folder, format_strength

        chosen = [e for e in edits if float(e.strength) != 0.0] or list(edits[:1])
        if not chosen:
            raise InputError("no direction to apply")
        current = Path(latent)
        manifests, commands, folders, full = [], [], [], []
        png = npy = None
        for index, edit in enumerate(chosen):
            folder = out_dir / ("edited" if index == 0 else f"edited_{index + 1}")
            if folder.exists():
                shutil.rmtree(folder)
            extra = {}
            if paste_back and index == len(chosen) - 1:
                extra["paste_back"] = ""
            notes: list[str] = []
            manifest = apply_to_folder(self.generator, edit.path, current, folder, [float(edit.strength)],
                                       layers=layers, strength_unit="spread", checkpoint_info=self.checkpoint_info,
                                       log=notes.append, **extra)
            name = f"{manifest['names'][0]}_s{format_strength(float(edit.strength))}"
            png, npy = folder / f"{name}.png", folder / f"{name}.npy"
            full += sorted(folder.glob("*_full.png"))
            manifests.append(folder / "manifest.json")
            folders.append(folder)
            commands.append(" ".join(["latentedit apply-direction", f"--vec {edit.path.name}",
                                      f"--latent {current.parent.name}/{current.name}",
                                      f"--strength {format_strength(float(edit.strength))}"]
                                     + ([f"--layers {layers}"] if layers else [])
                                     + (["--paste-back"] if "paste_back" in extra else [])
                                     + [f"-o {folder.name}"]))
            current = npy
        return {"png": png, "npy": npy, "manifests": manifests, "commands": commands, "folders": folders,
                "full": full}

    def svm_direction(self, attribute: str, cache_dir: Path, count: int = 2000, seed: int = 0) -> Path:
        """An InterFaceGAN direction for ``attribute`` (``latentedit direction svm --attr A --n COUNT``),
        computed once per generator and cached in ``cache_dir``."""
        from latentedit.directions import svm_to_file
        from latentedit.evaluate import load_attribute_classifier

        sha = str(self.checkpoint_info.get("sha256", "unknown"))[:16]
        path = Path(cache_dir) / f"svm_{safe_stem(attribute)}_{sha}_n{int(count)}_seed{int(seed)}.npy"
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        classifier, classifier_info = load_attribute_classifier(None, device=self.device)
        svm_to_file(self.generator, classifier, attribute, path, n=int(count), seed=int(seed), conditions=[],
                    checkpoint_info=self.checkpoint_info, classifier_info=classifier_info, progress=True)
        return path

    # -- StarGAN (heavy) ---------------------------------------------------------------------------------
    def stargan_attributes(self) -> tuple[str, ...]:
        """The StarGAN model's attribute names, in label order."""
        if self._stargan_names is None:
            from latentedit.baselines import stargan

            _, info = stargan.load_stargan_generator(self.config.stargan_ckpt, device=torch.device("cpu"))
            self._stargan_names = tuple(info.attribute_names)
        return self._stargan_names

    def translate(self, image: Path, present: Sequence[str], absent: Sequence[str], out_dir: Path) -> dict:
        """``latentedit stargan transfer IMAGE --set A=1 ... --set B=0 ... -o OUT``; returns the manifest with
        ``"png"`` (the written image) and ``"command"`` added."""
        from latentedit.baselines import transfer_files

        both = set(present) & set(absent)
        if both:
            raise InputError(f"{', '.join(sorted(both))}: ticked as both present and absent")
        changes = [f"{name}=1" for name in present] + [f"{name}=0" for name in absent]
        if not changes:
            raise InputError("tick at least one attribute to change")
        manifest = transfer_files([image], changes, out_dir, ckpt=self.config.stargan_ckpt,
                                  device=self.config.device)
        manifest["png"] = Path(manifest["images"][0]["output"])
        manifest["command"] = " ".join(["latentedit stargan transfer", image.name]
                                       + [f"--set {c}" for c in changes] + [f"-o {Path(out_dir).name}"])
        return manifest

    # -- PULSE (heavy) -----------------------------------------------------------------------------------
    def reference_sizes(self) -> list[int]:
        from latentedit.pulse.search import valid_reference_sizes

        return [s for s in valid_reference_sizes(self.size) if s < self.size] or [self.size]

    def pulse(self, reference: Path, out_dir: Path, seed: int, count: int, steps: int) -> list[dict]:
        """``latentedit pulse --ref REF --seed SEED --duplicates COUNT --batch-size COUNT --steps STEPS -o OUT``
        (and ``--fit-samples`` when the server was given ``--pulse-fit-samples``)."""
        from latentedit.pulse import PulseSettings, pulse_to_folder

        extra = {} if self.config.pulse_fit_samples is None else {"fit_samples": int(self.config.pulse_fit_samples)}
        settings = PulseSettings(steps=int(steps), **extra)
        lines: list[str] = []
        return pulse_to_folder(self.generator, [reference], out_dir, settings, seed=int(seed), duplicates=int(count),
                               batch_size=int(count), checkpoint_info=self.checkpoint_info, progress=False,
                               report=lines.append, log=lines.append)


def painted_reference(rgba: np.ndarray, side: int) -> np.ndarray:
    """A painted canvas ``[H, W, 4]`` uint8 -> a PULSE reference ``[side, side, 4]`` uint8.

    Each reference pixel averages its block of the canvas (colours weighted by their alpha); it is opaque
    where at least half of the block is painted and fully transparent elsewhere, so unpainted areas stay
    unconstrained. A canvas that is not square is centre-cropped first.
    """
    array = np.asarray(rgba)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InputError(f"the painted reference must be an RGBA picture, got shape {list(array.shape)}")
    if array.shape[2] == 3:
        array = np.concatenate([array, np.full(array.shape[:2] + (1,), 255, array.dtype)], axis=2)
    height, width = array.shape[:2]
    square = min(height, width)
    top, left = (height - square) // 2, (width - square) // 2
    array = array[top:top + square, left:left + square].astype(np.float64) / 255.0
    if square < side:
        raise InputError(f"the canvas is {square} px; it must be at least {side} px")
    # Block averages over an exact grid: edges from linspace so every canvas pixel belongs to one block.
    edges = np.linspace(0, square, side + 1).round().astype(int)
    out = np.zeros((side, side, 4))
    for i in range(side):
        for j in range(side):
            block = array[edges[i]:edges[i + 1], edges[j]:edges[j + 1]].reshape(-1, 4)
            coverage = float(block[:, 3].mean())
            if coverage >= 0.5:
                weights = block[:, 3:4]
                out[i, j, :3] = (block[:, :3] * weights).sum(0) / max(float(weights.sum()), 1e-12)
                out[i, j, 3] = 1.0
    if out[..., 3].max() == 0:
        raise InputError("nothing is painted: paint the pixels PULSE should match (unpainted = unconstrained)")
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
