"""Finding faces and their five landmarks in a photograph, and the ``latentedit align`` batch.

Detectors (``detector=``):

- ``mtcnn``: MTCNN (Zhang et al. 2016) from ``facenet-pytorch==2.5.3``, whose P/R/O-net weights (about 2 MB,
  MIT) ship inside the wheel, so nothing is downloaded. 2.6.0 pins torch < 2.3 and numpy < 2, hence the pin.
  Its five points are in this package's order already (left eye, right eye, nose, left and right mouth corner
  as seen in the image); they are used as given (sub-pixel, continuous coordinates).
- a path to a ``.json`` file: landmarks from any other tool, ``[5, 2]`` for one face or ``[F, 5, 2]`` (or
  ``{"landmarks": ...}``), in photo pixels; confidence 1.
- ``toyfaces``: the shipped toyfaces landmark detector (:mod:`latentedit.photos.landmarks`), for the cartoon
  toyfaces world that MTCNN does not see; one face per picture, its face score as the confidence.
- ``auto``: ``mtcnn`` here; the commands resolve it per generator first
  (:func:`latentedit.photos.workflow.detector_for`: ``toyfaces`` for toyfaces generators).

:func:`align_files` writes, per face ``k`` of image ``<stem>``: ``<stem>_face<k>.png`` (the aligned crop) and
``<stem>_face<k>.json`` (source path and sha256, detector and confidence, landmarks, box, the
:class:`~latentedit.photos.align.FaceAlignment` with its exact forward and inverse transforms). An image with no
face (or a face that cannot be aligned) is a one-line error for that image; the batch goes on.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from latentedit import io as lio
from latentedit.errors import InputError
from latentedit.photos.align import align_face

DETECTORS = ("auto", "mtcnn", "toyfaces")
#: MTCNN faces below this probability are ignored unless the caller says otherwise.
DEFAULT_MIN_CONFIDENCE = 0.9


_DETECTOR_NAMES = {"auto": "mtcnn (facenet-pytorch 2.5.3)", "mtcnn": "mtcnn (facenet-pytorch 2.5.3)",
                   "toyfaces": "toyfaces landmark detector (pretrained/toyfaces_landmarks.safetensors)"}


@dataclasses.dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face: ``landmarks [5, 2]`` (x, y) in photo pixels, ``box [4]`` (x0, y0, x1, y1) or None, ``confidence``."""

    landmarks: np.ndarray
    box: np.ndarray | None
    confidence: float

    @property
    def area(self) -> float:
        """Box area in px², or the landmarks' extent when there is no box (used to pick the largest face)."""
        if self.box is not None:
            return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))
        span = self.landmarks.max(axis=0) - self.landmarks.min(axis=0)
        return float(span[0] * span[1])


_mtcnn_cache: dict = {}


def _mtcnn():
    if "model" not in _mtcnn_cache:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as error:
            raise InputError("the MTCNN detector needs facenet-pytorch==2.5.3 (pip install facenet-pytorch==2.5.3), "
                             "or give landmarks with --detector FILE.json") from error
        # keep_all: every face, so that --all-faces and "the largest" are both possible; CPU: a few hundred ms.
        _mtcnn_cache["model"] = MTCNN(keep_all=True, device="cpu")
    return _mtcnn_cache["model"]


def _landmarks_from_file(path: Path) -> list[DetectedFace]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read landmarks file {path}: {error}") from error
    if isinstance(data, dict):
        data = data.get("landmarks")
    try:
        array = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.shape == (5, 2):
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (5, 2) or not len(array) or not np.isfinite(array).all():
        raise InputError(f"landmarks file {path} must hold [5, 2] or [F, 5, 2] finite numbers (x, y per point: left "
                         f"eye, right eye, nose, left and right mouth corner), got shape {list(array.shape)}")
    return [DetectedFace(points, None, 1.0) for points in array]


def detect_faces(photo: np.ndarray, detector: str = "auto",
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> list[DetectedFace]:
    """Faces in ``photo`` (``[H, W, 3]`` uint8 RGB), largest first. ``detector``: see the module docstring."""
    if detector not in DETECTORS:
        path = Path(detector)
        if path.suffix.lower() != ".json":
            raise InputError(f"--detector must be one of {', '.join(DETECTORS)} or a landmarks .json file, "
                             f"got {detector!r}")
        faces = _landmarks_from_file(path)
    elif detector == "toyfaces":
        from latentedit.photos.landmarks import load_detector

        landmarks, score = load_detector().detect(photo)
        faces = [DetectedFace(landmarks, None, score)] if score >= min_confidence else []
    else:
        import torch

        with torch.no_grad():
            boxes, probs, points = _mtcnn().detect(photo, landmarks=True)
        faces = []
        if boxes is not None:
            for box, prob, landmarks in zip(boxes, probs, points):
                if prob is not None and float(prob) >= min_confidence:
                    faces.append(DetectedFace(np.asarray(landmarks, np.float64), np.asarray(box, np.float64),
                                              float(prob)))
    return sorted(faces, key=lambda face: -face.area)


def align_files(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, size: int, *,
                detector: str = "auto", all_faces: bool = False, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                framing: str = "ffhq", log: Callable[[str], None] | None = None) -> dict:
    """What ``latentedit align`` runs: detect, align and write every image's face(s) (module docstring).

    ``framing``: the generator's crop convention (:data:`~latentedit.photos.align.FRAMINGS`).

    Returns ``{"faces": [records], "failed": [paths], "out_dir"}``; nothing is written for a failed image.
    """
    from latentedit.image_files import list_images
    from latentedit.photos.align import get_framing
    from latentedit.photos.workflow import load_photo

    log = log or (lambda message: None)
    if not isinstance(size, int) or size < 8:
        raise InputError(f"the crop size must be an integer of at least 8 px, got {size!r}")
    get_framing(framing)
    if detector not in DETECTORS and Path(detector).suffix.lower() != ".json":
        raise InputError(f"--detector must be one of {', '.join(DETECTORS)} or a landmarks .json file, "
                         f"got {detector!r}")
    paths = list_images(list(inputs), exclude=[out_dir])
    out_dir = lio.prepare_output_dir(out_dir)
    records, failed = [], []
    for path in paths:
        try:
            photo = load_photo(path)
            faces = detect_faces(photo, detector, min_confidence)
            if not faces:
                raise InputError(f"no face found in {path}" + ("" if detector not in DETECTORS else
                                 f" ({_DETECTOR_NAMES.get(detector, detector)}, confidence >= "
                                 f"{min_confidence:g})"))
            chosen = faces if all_faces else faces[:1]
            aligned = [(k, face, *align_face(photo, face.landmarks, size, framing=framing))
                       for k, face in enumerate(chosen)]
        except InputError as error:
            log(f"error: {error}")
            failed.append(str(path))
            continue
        for k, face, crop, alignment in aligned:
            name = f"{path.stem}_face{k}"
            record = {"command": "align", "source": {"path": str(path), "sha256": lio.sha256_file(path)},
                      "face": k, "faces_found": len(faces),
                      "detector": _DETECTOR_NAMES.get(detector, detector), "framing": framing,
                      "confidence": face.confidence, "landmarks": face.landmarks.tolist(),
                      "box": None if face.box is None else face.box.tolist(),
                      "alignment": alignment.to_json(), "files": [f"{name}.png", f"{name}.json"],
                      "versions": lio.versions()}
            lio.save_png(out_dir / f"{name}.png", crop)
            lio.write_json(out_dir / f"{name}.json", record)
            records.append(record)
    return {"faces": records, "failed": failed, "out_dir": str(out_dir)}
