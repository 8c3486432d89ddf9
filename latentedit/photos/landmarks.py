"""The toyfaces landmark detector: finds a cartoon face and its five landmarks in a picture.

MTCNN was trained on photographs and does not see toyfaces' cartoon faces, so the embedded world ships its
own detector (``pretrained/toyfaces_landmarks.safetensors``, trained by ``latentedit train landmarks`` on
toyfaces scenes; see its model card). It is a two-stage cascade of small CNNs, both regressing the five
points of :mod:`latentedit.photos.align` in the continuous ``(x, y)`` coordinates of their input:

1. **coarse**: the whole picture, padded to a square with its edge colour and area-resized to
   ``[input_size, input_size]``, gives rough landmarks and a face score (``sigmoid`` of a logit trained
   against face-free backgrounds), reported as the face's confidence.
2. **refine** (``refine_steps`` times, default 2): the picture is aligned with the current landmarks under the
   ``toyfaces`` framing (:func:`~latentedit.photos.align.align_face`, ``input_size`` px), the refine net
   predicts the landmarks in that crop, and the crop's inverse transform maps them back to the picture.

The detector finds one face per picture (toyfaces scenes hold one). Inputs are ``[N, 3, S, S]`` float in
[-1, 1]; outputs ``[N, 5, 2]`` pixel coordinates of the input, and for the coarse net ``[N]`` logits.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from latentedit.errors import CheckpointError, InputError

#: ``format`` value in the safetensors metadata of a landmark detector file.
DETECTOR_FORMAT = "latentedit.landmark_detector/1"
SHIPPED_DETECTOR_NAME = "toyfaces_landmarks.safetensors"


@dataclass(frozen=True)
class LandmarkNetConfig:
    """Shape of one :class:`LandmarkNet`: ``input_size`` px input, one stride-2 stage per entry of ``channels``."""

    input_size: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 96, 128)
    with_score: bool = False


class ConvStage(nn.Module):
    """3x3 stride-2 conv, batch norm, ReLU, then a 3x3 conv, batch norm, ReLU: halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.down = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)
        self.down_norm = nn.BatchNorm2d(out_channels)
        self.conv = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.conv_norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.down_norm(self.down(x)))
        return torch.relu(self.conv_norm(self.conv(x)))


class LandmarkNet(nn.Module):
    """``[N, 3, S, S]`` in [-1, 1] -> landmarks ``[N, 5, 2]`` in input pixels (and ``[N]`` face logits).

    The head regresses offsets from the mean landmark layout (``mean_landmarks``, a buffer in units of
    the input size, set by the trainer), so an untrained net already answers "the average face".
    """

    def __init__(self, config: LandmarkNetConfig):
        super().__init__()
        self.config = config
        stages, previous = [], 3
        for channels in config.channels:
            stages.append(ConvStage(previous, channels))
            previous = channels
        self.stages = nn.Sequential(*stages)
        side = config.input_size // 2 ** len(config.channels)
        if side < 1 or config.input_size % 2 ** len(config.channels):
            raise InputError(f"landmark net input {config.input_size} px cannot be halved {len(config.channels)} "
                             "times")
        self.head = nn.Linear(previous * side * side, 10 + int(config.with_score))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("mean_landmarks", torch.full((5, 2), 0.5))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.head(self.stages(images).flatten(1))
        size = self.config.input_size
        landmarks = (self.mean_landmarks + out[:, :10].view(-1, 5, 2)) * size
        score = out[:, 10] if self.config.with_score else None
        return landmarks, score


COARSE_CONFIG = LandmarkNetConfig(input_size=64, channels=(16, 32, 48, 64), with_score=True)
REFINE_CONFIG = LandmarkNetConfig(input_size=64, channels=(16, 32, 64, 80, 96), with_score=False)


def to_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, S, S, 3]`` (or ``[S, S, 3]``) -> float32 ``[N, 3, S, S]`` in [-1, 1]."""
    array = np.asarray(pixels)
    if array.ndim == 3:
        array = array[None]
    return torch.from_numpy(np.array(array, dtype=np.uint8)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def square_resize(photo: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Pad ``photo`` (``[H, W, 3]`` uint8) to a square with edge replication and area-resize it to ``size``.

    Returns ``(image [size, size, 3], scale, (pad_x, pad_y))``: a photo point ``p`` lands at
    ``(p + pad) * scale`` in the result.
    """
    from PIL import Image

    height, width = photo.shape[:2]
    side = max(height, width)
    pad_x, pad_y = (side - width) // 2, (side - height) // 2
    if side != width or side != height:
        photo = np.pad(photo, ((pad_y, side - height - pad_y), (pad_x, side - width - pad_x), (0, 0)), mode="edge")
    image = Image.fromarray(photo)
    if side != size:
        # BOX for shrinking is an exact area average; BICUBIC when a small picture is enlarged.
        image = image.resize((size, size), Image.BOX if side > size else Image.BICUBIC)
    return np.asarray(image), size / side, (pad_x, pad_y)


class ToyfacesLandmarkDetector:
    """The coarse + refine cascade (module docstring). ``detect(photo)`` -> ``(landmarks [5, 2], score)``."""

    def __init__(self, coarse: LandmarkNet, refine: LandmarkNet, refine_steps: int = 2,
                 metadata: dict[str, str] | None = None):
        self.coarse = coarse.eval()
        self.refine = refine.eval()
        self.refine_steps = int(refine_steps)
        self.metadata = dict(metadata or {})

    @torch.no_grad()
    def detect(self, photo: np.ndarray) -> tuple[np.ndarray, float]:
        """Landmarks float64 ``[5, 2]`` in ``photo`` pixels and the face score in [0, 1] of one picture."""
        from latentedit.photos.align import align_face

        size = self.coarse.config.input_size
        small, scale, pad = square_resize(photo, size)
        landmarks, logit = self.coarse(to_input(small))
        score = float(torch.sigmoid(logit[0]))
        points = landmarks[0].double().numpy() / scale - np.asarray(pad, dtype=np.float64)
        for _ in range(self.refine_steps):
            try:
                crop, alignment = align_face(photo, points, self.refine.config.input_size, min_eye_distance=1.0,
                                             framing="toyfaces")
            except InputError:
                break  # the coarse guess is degenerate or far outside: keep it, the caller checks the score
            refined, _ = self.refine(to_input(crop))
            points = alignment.crop_to_photo(refined[0].double().numpy())
        return points, score


def save_detector(coarse: LandmarkNet, refine: LandmarkNet, path: str | os.PathLike,
                  extra_metadata: dict[str, str] | None = None) -> None:
    """Write both nets to one safetensors file (float32) with their configs in the metadata, atomically."""

    from latentedit.io import safetensors_bytes, write_bytes

    tensors = {f"coarse.{k}": v.detach().cpu().contiguous() for k, v in coarse.state_dict().items()}
    tensors.update({f"refine.{k}": v.detach().cpu().contiguous() for k, v in refine.state_dict().items()})
    metadata = {"format": DETECTOR_FORMAT, "coarse": json.dumps(asdict(coarse.config)),
                "refine": json.dumps(asdict(refine.config))}
    metadata.update(extra_metadata or {})
    write_bytes(path, safetensors_bytes(tensors, metadata))


def shipped_detector_path() -> Path:
    """Path of the shipped toyfaces detector (``pretrained/toyfaces_landmarks.safetensors``)."""
    import importlib.resources

    return Path(str(importlib.resources.files("latentedit.pretrained") / SHIPPED_DETECTOR_NAME))


def _config(text: str | None, path) -> LandmarkNetConfig:
    try:
        data = json.loads(text)
        return LandmarkNetConfig(input_size=int(data["input_size"]), channels=tuple(int(c) for c in data["channels"]),
                                 with_score=bool(data["with_score"]))
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path}: landmark detector config in the metadata is missing or malformed "
                              f"({error})") from error


_cache: dict[str, ToyfacesLandmarkDetector] = {}


def load_detector(path: str | os.PathLike | None = None) -> ToyfacesLandmarkDetector:
    """Load a detector file (default: the shipped one); CheckpointError naming the problem otherwise. Cached."""
    from safetensors import safe_open

    path = Path(path) if path is not None else shipped_detector_path()
    key = str(path.resolve())
    if key in _cache:
        return _cache[key]
    if not path.is_file():
        raise CheckpointError(f"landmark detector {path} not found; reinstall latentedit or train one with "
                              "`latentedit train landmarks`")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises several unrelated types for a bad header
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if metadata.get("format") != DETECTOR_FORMAT:
        raise CheckpointError(f"{path}: not a latentedit landmark detector (metadata format is "
                              f"{metadata.get('format')!r}, expected {DETECTOR_FORMAT!r})")
    nets = []
    for name in ("coarse", "refine"):
        net = LandmarkNet(_config(metadata.get(name), path))
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(state)
        except RuntimeError as error:
            raise CheckpointError(f"{path}: the {name} weights do not match its config ({error})") from error
        nets.append(net)
    detector = ToyfacesLandmarkDetector(*nets, metadata=metadata)
    _cache[key] = detector
    return detector
