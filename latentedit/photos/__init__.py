"""Real photographs in and out: align a face FFHQ-style, then paste an edited crop back.

A generator trained on FFHQ-like crops only understands faces cropped the way FFHQ was. This package turns
a photograph plus five facial landmarks into such a crop, keeps the exact photo <-> crop transform in a
:class:`FaceAlignment` (JSON-serialisable for manifests), and after inversion and editing warps the edited
crop back into the photo under a soft face-and-hair mask.

- :mod:`~latentedit.photos.align`: the 5-point landmark convention, :func:`ffhq_quad`, :func:`align_face`.
- :mod:`~latentedit.photos.paste`: :func:`face_mask`, :func:`paste_back`.
- :mod:`~latentedit.photos.detect`: :func:`detect_faces` (MTCNN from facenet-pytorch, the toyfaces detector, or
  a landmarks file) and :func:`align_files` (``latentedit align``).
- :mod:`~latentedit.photos.landmarks`: the toyfaces landmark detector (two small CNNs).
- :mod:`~latentedit.photos.workflow`: the command glue: :func:`align_and_invert` (``invert --align``),
  :func:`find_alignment_record` and :func:`photo_for_record` (``apply-direction --paste-back``), :func:`read_mask`.
"""
from latentedit.photos.align import (
    FRAMINGS,
    MIN_EYE_DISTANCE,
    FaceAlignment,
    Framing,
    align_face,
    face_scale,
    ffhq_quad,
    get_framing,
    outside_fraction,
)
from latentedit.photos.detect import DetectedFace, align_files, detect_faces
from latentedit.photos.paste import face_mask, paste_back
from latentedit.photos.workflow import (
    align_and_invert,
    detector_for,
    find_alignment_record,
    framing_for,
    load_photo,
    photo_for_record,
    read_mask,
)

__all__ = [
    "FRAMINGS",
    "Framing",
    "get_framing",
    "MIN_EYE_DISTANCE",
    "FaceAlignment",
    "align_face",
    "face_scale",
    "ffhq_quad",
    "outside_fraction",
    "face_mask",
    "paste_back",
    "DetectedFace",
    "detect_faces",
    "align_files",
    "align_and_invert",
    "detector_for",
    "find_alignment_record",
    "framing_for",
    "load_photo",
    "photo_for_record",
    "read_mask",
]
