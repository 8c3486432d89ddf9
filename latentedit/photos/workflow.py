"""Photo-level glue for the commands: which framing and detector a generator wants, where a latent's photo and
alignment are recorded, and reading user masks.

The chain ``latentedit invert --align photo.jpg`` -> ``latentedit apply-direction --vec v.npy --paste-back``
works through files only: ``invert --align`` writes the aligned crops and their alignment records
(``<out>/aligned/<stem>_face<k>.json``, see :func:`~latentedit.photos.detect.align_files`) and copies the record
into each inversion manifest (``input.alignment_record``); :func:`find_alignment_record` finds it again from a
latent file, also for a crop that was aligned with ``latentedit align`` and inverted separately.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from latentedit.errors import InputError
from latentedit.photos.align import FaceAlignment

#: ``command`` value of the records :func:`~latentedit.photos.detect.align_files` writes.
ALIGN_COMMAND = "align"


def generator_world(info) -> str:
    """``"toyfaces"`` for a generator trained on toyfaces, else ``"photo"``.

    ``info`` is a :class:`~latentedit.checkpoints.CheckpointInfo` or its dict. A generator is a toyfaces one when
    it is a shipped ``toyfaces*`` file or its provenance records toyfaces training data (``data`` starting with
    ``toyfaces``, as ``latentedit train stylegan2 --data toyfaces...`` records).
    """
    data = info.to_dict() if hasattr(info, "to_dict") else dict(info or {})
    provenance = data.get("provenance") or {}
    if str(provenance.get("data", "")).startswith("toyfaces"):
        return "toyfaces"
    path = Path(str(data.get("path", "")))
    try:
        from latentedit.evaluate.classifier import shipped_classifier_path

        shipped = path.parent.resolve() == shipped_classifier_path().parent.resolve()
    except OSError:
        shipped = False
    return "toyfaces" if shipped and path.name.startswith("toyfaces") else "photo"


def framing_for(info) -> str:
    """The crop framing (:data:`~latentedit.photos.align.FRAMINGS`) a generator was trained with."""
    return "toyfaces" if generator_world(info) == "toyfaces" else "ffhq"


def detector_for(detector: str, info) -> str:
    """Resolve ``detector="auto"``: ``toyfaces`` for toyfaces generators, ``mtcnn`` otherwise."""
    if detector != "auto":
        return detector
    return "toyfaces" if generator_world(info) == "toyfaces" else "mtcnn"


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sibling_alignment_record(image_path: str | os.PathLike) -> dict | None:
    """The ``latentedit align`` record beside an aligned crop (``<stem>.json`` with ``command == "align"``)."""
    record = _read_json(Path(image_path).with_suffix(".json"))
    return record if record is not None and record.get("command") == ALIGN_COMMAND else None


def find_alignment_record(latent_path: str | os.PathLike) -> dict | None:
    """The alignment record of the photo a latent was inverted from, or None.

    Looks in the latent's inversion manifest (``<stem>.json`` beside it) for ``input.alignment_record`` (what
    ``invert --align`` and ``invert`` of an aligned crop record), then beside the manifest's input image.
    """
    latent_path = Path(latent_path)
    manifest = _read_json(latent_path.with_suffix(".json"))
    if manifest is None:
        return None
    source = manifest.get("input") if isinstance(manifest.get("input"), dict) else {}
    record = source.get("alignment_record")
    if isinstance(record, dict) and record.get("command") == ALIGN_COMMAND:
        return record
    if isinstance(source.get("path"), str):
        return sibling_alignment_record(source["path"])
    return None


def photo_for_record(record: dict, photo: str | os.PathLike | None = None,
                     log=None) -> tuple[np.ndarray, FaceAlignment, np.ndarray | None, Path]:
    """``(photo [H, W, 3] uint8, alignment, landmarks [5, 2] or None, photo path)`` for an alignment record.

    ``photo`` overrides the recorded source path (e.g. the photo moved); it must have the size the alignment
    was made on. A photo whose sha256 differs from the recorded one gets a warning through ``log``.
    """
    from latentedit import io as lio

    alignment = FaceAlignment.from_json(record.get("alignment"))
    source = record.get("source") if isinstance(record.get("source"), dict) else {}
    path = Path(photo) if photo else Path(str(source.get("path", "")))
    if not path.is_file():
        raise InputError(f"the photo {path} that this face was aligned from is not there; pass it with "
                         f"--paste-back PHOTO")
    image = load_photo(path)
    if (image.shape[1], image.shape[0]) != tuple(alignment.photo_size):
        raise InputError(f"{path} is {image.shape[1]}x{image.shape[0]} but the face was aligned on a "
                         f"{alignment.photo_size[0]}x{alignment.photo_size[1]} photo; pass the original photo")
    recorded = source.get("sha256")
    if log is not None and recorded and lio.sha256_file(path) != recorded:
        log(f"{path} differs from the photo the face was aligned from (sha256); pasting back all the same")
    landmarks = record.get("landmarks")
    try:
        landmarks = np.asarray(landmarks, dtype=np.float64) if landmarks is not None else None
    except (TypeError, ValueError):
        landmarks = None
    if landmarks is not None and landmarks.shape != (5, 2):
        landmarks = None
    return image, alignment, landmarks, path


def load_photo(path: str | os.PathLike) -> np.ndarray:
    """A photo file as ``[H, W, 3]`` uint8 RGB, EXIF orientation applied (a phone photo comes out upright).

    Every Pillow mode is accepted: CMYK and palette images are converted, 16-bit grey-scale is scaled down
    (not clipped), an alpha channel is dropped. Bad files are one-line InputErrors (:func:`open_image`).
    """
    from latentedit.image_files import open_image, to_rgba_array

    rgba = to_rgba_array(open_image(path))
    return np.clip(np.rint(rgba[:, :, :3] * 255.0), 0, 255).astype(np.uint8)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask image as float32 ``[H, W]`` in [0, 1]: white (or opaque) = edit, black (or transparent) = keep.

    Grey-scale (8 or 16 bit) and RGB images are read by their brightness; images with an alpha channel
    (RGBA, LA, transparent palette) by their alpha.
    """
    from latentedit.image_files import open_image, to_rgba_array

    image = open_image(path)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    rgba = to_rgba_array(image)
    array = rgba[:, :, 3] if has_alpha else rgba[:, :, :3].mean(axis=2)
    if not np.isfinite(array).all():
        raise InputError(f"mask {path} holds non-finite values")
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def align_and_invert(inputs, out_dir: str | os.PathLike, settings=None, *, ckpt: str | os.PathLike = "toyfaces64",
                     device: str = "auto", detector: str = "auto", all_faces: bool = False,
                     min_confidence: float = 0.9, overwrite: bool = False, progress: bool = True,
                     log=None) -> dict:
    """What ``latentedit invert --align`` runs: detect and align the faces of photos, then invert each crop.

    The crops and their alignment records go to ``<out_dir>/aligned/`` (:func:`~latentedit.photos.detect.align_files`,
    with the detector and framing the generator wants: :func:`detector_for`, :func:`framing_for`); the inversions
    to ``out_dir`` as :func:`latentedit.invert.invert_files` writes them, named ``<stem>_face<k>``, each manifest
    holding the alignment record (``input.alignment_record``). Returns the inversion summary with
    ``"aligned"`` (the align result) added.
    """
    from latentedit import io as lio
    from latentedit.checkpoints import load_generator
    from latentedit.device import resolve_device
    from latentedit.invert import invert_files
    from latentedit.photos.detect import align_files

    log = log or (lambda message: None)
    out_dir = Path(out_dir)
    lio.prepare_output_dir(out_dir)
    loaded = load_generator(ckpt, device=resolve_device(device))
    generator, info = loaded
    aligned = align_files(inputs, out_dir / "aligned", generator.size, detector=detector_for(detector, info),
                          all_faces=all_faces, min_confidence=min_confidence, framing=framing_for(info), log=log)
    crops = [Path(aligned["out_dir"]) / record["files"][0] for record in aligned["faces"]]
    if not crops:
        raise InputError(f"no face aligned in {len(aligned['failed'])} photo(s) (see the errors above); nothing "
                         "to invert")
    summary = invert_files(crops, out_dir, settings, ckpt=ckpt, device=device, overwrite=overwrite,
                           progress=progress, log=log, loaded=loaded)
    summary["aligned"] = {"faces": len(aligned["faces"]), "failed": aligned["failed"], "out_dir": aligned["out_dir"]}
    return summary


class PasteTarget:
    """Where one latent's edits go back: the photo, its alignment and the blend mask (and its coordinates)."""

    def __init__(self, photo: np.ndarray, photo_path: Path, alignment: FaceAlignment, mask: np.ndarray,
                 mask_space: str, mask_source: str, landmarks: np.ndarray | None):
        self.photo, self.photo_path, self.alignment = photo, photo_path, alignment
        self.mask, self.mask_space, self.mask_source, self.landmarks = mask, mask_space, mask_source, landmarks

    def to_json(self) -> dict:
        from latentedit import io as lio

        return {"photo": str(self.photo_path), "photo_sha256": lio.sha256_file(self.photo_path),
                "photo_size": list(self.alignment.photo_size), "alignment": self.alignment.to_json(),
                "mask": self.mask_source, "mask_space": self.mask_space}


def _align_photo_now(path: Path, size: int, checkpoint_info, log) -> tuple[FaceAlignment, np.ndarray]:
    from latentedit.photos.align import align_face
    from latentedit.photos.detect import detect_faces

    photo = load_photo(path)
    detector = detector_for("auto", checkpoint_info)
    faces = detect_faces(photo, detector)
    if not faces:
        raise InputError(f"no face found in {path} to paste back into ({detector}); align it with "
                         f"`latentedit invert --align {path}` first")
    _, alignment = align_face(photo, faces[0].landmarks, size, framing=framing_for(checkpoint_info))
    log(f"{path}: no alignment was recorded for this latent; aligned the photo again ({detector})")
    return alignment, faces[0].landmarks


def paste_target(latent_path: str | os.PathLike | None, crop_size: int, *, photo: str | os.PathLike | None = None,
                 mask: np.ndarray | None = None, mask_name: str | None = None, checkpoint_info=None,
                 log=None) -> PasteTarget:
    """Everything needed to paste edits of the latent at ``latent_path`` back into its photo, checked up front.

    The alignment comes from the latent's records (:func:`find_alignment_record`); without one, ``photo`` is
    aligned now with the generator's detector and framing. ``mask`` (from :func:`read_mask`) is in crop
    coordinates when it is ``[crop_size, crop_size]`` and in photo coordinates when it has the photo's size;
    without it the face-and-hair ellipse of :func:`~latentedit.photos.paste.face_mask` is used.
    """
    from latentedit.photos.paste import face_mask

    log = log or (lambda message: None)
    record = find_alignment_record(latent_path) if latent_path is not None else None
    if record is not None:
        image, alignment, landmarks, path = photo_for_record(record, photo, log)
    elif photo:
        path = Path(photo)
        image = load_photo(path)
        alignment, landmarks = _align_photo_now(path, crop_size, checkpoint_info or {}, log)
    else:
        raise InputError(f"no photo is recorded for {latent_path}: invert it with `latentedit invert --align PHOTO`, "
                         f"or name the photo: --paste-back PHOTO")
    if mask is None:
        return PasteTarget(image, path, alignment, face_mask(alignment, crop_size, landmarks), "crop",
                           "face-and-hair ellipse from the landmarks" if landmarks is not None else
                           "default face-and-hair ellipse", landmarks)
    height, width = image.shape[:2]
    if mask.shape == (crop_size, crop_size):
        space = "crop"
    elif mask.shape == (height, width):
        space = "photo"
    else:
        raise InputError(f"mask {mask_name or ''} is {mask.shape[1]}x{mask.shape[0]}; it must be the crop's size "
                         f"({crop_size}x{crop_size}) or the photo's ({width}x{height})")
    return PasteTarget(image, path, alignment, mask, space, str(mask_name), landmarks)


def paste_edits(target: PasteTarget, crops: np.ndarray) -> np.ndarray:
    """Paste ``[K, S, S, 3]`` uint8 edited crops into the target's photo: ``[K, H, W, 3]`` uint8.

    Pixels where the warped mask is 0 are bit-identical to the photo (:func:`~latentedit.photos.paste.paste_back`).
    """
    from latentedit.photos.paste import paste_back

    return np.stack([paste_back(target.photo, crop, target.alignment, target.mask, mask_space=target.mask_space)
                     for crop in crops])


def blend_with_mask(edited: np.ndarray, unedited: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``unedited + mask * (edited - unedited)``, rounded: uint8 ``[..., S, S, 3]`` from a ``[S, S]`` mask.

    Where ``mask`` is 0 the result is ``unedited`` exactly, where it is 1 ``edited`` exactly.
    """
    edited_f, unedited_f = edited.astype(np.float32), unedited.astype(np.float32)
    mixed = unedited_f + (edited_f - unedited_f) * mask[..., None].astype(np.float32)
    out = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    out[..., mask == 0, :] = unedited[..., mask == 0, :]
    out[..., mask == 1, :] = edited[..., mask == 1, :]
    return out


def sweep_of_photos(photos: np.ndarray, max_side: int = 512) -> np.ndarray:
    """One row of ``[K, H, W, 3]`` photos side by side, each reduced (Lanczos) to at most ``max_side`` px."""
    from PIL import Image

    from latentedit import io as lio

    height, width = photos.shape[1:3]
    factor = min(1.0, max_side / max(height, width))
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        photos = np.stack([np.asarray(Image.fromarray(p).resize(size, Image.LANCZOS)) for p in photos])
    return lio.make_grid(photos, columns=len(photos))
