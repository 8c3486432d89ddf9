"""The toyfaces attribute classifier: a small CNN that labels faces with the 18 toyfaces attributes.

It serves two purposes in latentedit:

* labelling generated samples (InterFaceGAN directions, edit evaluation): :func:`predict_attributes`;
* a feature space for comparing image distributions: :func:`extract_features`, :func:`frechet_distance`
  and :func:`fd_toy`.

**FD-toy is not FID.** It is the Fréchet distance between Gaussians fitted to this classifier's
penultimate features (``feature_dim`` = 256), which were trained to separate toyfaces attributes. Its
scale has nothing to do with Inception features: never compare an FD-toy number with an FID number, and
compare FD-toy numbers only when they were computed with the same classifier weights and similar sample
counts (the estimate is biased upwards for small sets).

Architecture (:class:`AttributeClassifier`): five blocks of ``conv3x3 -> BatchNorm -> ReLU`` with 2x2
max-pooling between them (64 -> 32 -> 16 -> 8 -> 4 px), global average pooling, a fully connected
feature layer with ReLU (the features), and a linear head with one logit per attribute. Input images
are ``[N, 3, H, W]`` in [-1, 1]; any other size is resized to ``input_size`` (64) first.

Training (:func:`train_classifier`) renders toyfaces ``TRAIN_SEED`` faces ``[0, N)`` once into memory
as uint8 and runs multi-label BCE with light augmentation (flips, small affine jitter, colour jitter,
blur and noise, so that it also reads slightly blurry GAN samples). Per-epoch training state is saved
atomically beside the output, so a killed run continues where it stopped when re-run.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentedit.data import toyfaces
from latentedit.errors import CheckpointError, InputError
from latentedit.io import atomic_write, safetensors_bytes, write_bytes

#: File name of the shipped weights inside ``latentedit.pretrained``.
SHIPPED_CLASSIFIER_NAME = "attribute_classifier.safetensors"
#: ``format`` value in the safetensors metadata of a classifier file.
CLASSIFIER_FORMAT = "latentedit-attribute-classifier"
#: Faces ``[VALIDATION_START, VALIDATION_START + k)`` of ``HELDOUT_SEED`` are used to monitor training;
#: reported held-out numbers use faces from index 0, so the two never overlap.
VALIDATION_START = 1_000_000


@dataclass(frozen=True)
class ClassifierConfig:
    """Shape of an :class:`AttributeClassifier`.

    ``widths``: output channels of the conv blocks (the first runs at ``input_size``, each later one at
    half the previous resolution). ``feature_dim``: size of the penultimate (feature) layer.
    ``attribute_names``: one logit per name, in this order. ``input_size``: images are resized to this.
    """

    widths: tuple[int, ...] = (16, 32, 64, 128, 192)
    feature_dim: int = 256
    attribute_names: tuple[str, ...] = toyfaces.ATTRIBUTE_NAMES
    input_size: int = 64

    def to_json(self) -> str:
        return json.dumps({"widths": list(self.widths), "feature_dim": self.feature_dim,
                           "attribute_names": list(self.attribute_names), "input_size": self.input_size})

    @classmethod
    def from_json(cls, text: str) -> "ClassifierConfig":
        raw = json.loads(text)
        return cls(widths=tuple(int(w) for w in raw["widths"]), feature_dim=int(raw["feature_dim"]),
                   attribute_names=tuple(str(name) for name in raw["attribute_names"]),
                   input_size=int(raw["input_size"]))


class AttributeClassifier(nn.Module):
    """Multi-label attribute CNN. ``forward(images [N, 3, S, S]) -> logits [N, A]`` with
    ``S = config.input_size`` and ``A = len(config.attribute_names)``; ``features`` gives the
    penultimate activations ``[N, feature_dim]``. Callers normally go through :func:`predict_attributes`
    and :func:`extract_features`, which validate and resize inputs."""

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = config if config is not None else ClassifierConfig()
        layers: list[nn.Module] = []
        in_channels = 3
        for block, width in enumerate(self.config.widths):
            if block > 0:
                layers.append(nn.MaxPool2d(2))
            # No conv bias: BatchNorm's shift makes it redundant.
            layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            in_channels = width
        self.trunk = nn.Sequential(*layers)
        self.feature = nn.Sequential(nn.Linear(in_channels, self.config.feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(self.config.feature_dim, len(self.config.attribute_names))

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return self.config.attribute_names

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, feature_dim]`` (after ReLU) of ``images [N, 3, S, S]``."""
        pooled = self.trunk(images).mean(dim=(2, 3))
        return self.feature(pooled)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


# ----------------------------------------------------------------------------------------------------
# Saving and loading


def shipped_classifier_path() -> Path:
    """Where the shipped weights are (or would be) installed: ``latentedit/pretrained/`` + file name."""
    import importlib.resources

    return Path(str(importlib.resources.files("latentedit.pretrained") / SHIPPED_CLASSIFIER_NAME))


def save_classifier(classifier: AttributeClassifier, path: str | os.PathLike,
                    extra_metadata: dict[str, str] | None = None) -> None:
    """Write ``classifier`` as safetensors (float32) with its config in the metadata, atomically.

    ``extra_metadata`` (str -> str) is stored too, e.g. how the weights were trained.
    """

    tensors = {name: tensor.detach().float().cpu().contiguous()
               for name, tensor in classifier.state_dict().items() if tensor.is_floating_point()}
    metadata = {"format": CLASSIFIER_FORMAT, "config": classifier.config.to_json()}
    metadata.update(extra_metadata or {})
    write_bytes(path, safetensors_bytes(tensors, metadata))


def read_classifier_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of a classifier file (CheckpointError if it is not one)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises several unrelated types for a bad header
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if metadata.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{path}: not a latentedit attribute classifier (metadata format is "
                              f"{metadata.get('format')!r}, expected {CLASSIFIER_FORMAT!r})")
    return metadata


def load_classifier(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> AttributeClassifier:
    """Load an attribute classifier in eval mode on ``device``.

    ``path=None`` loads the shipped weights (:func:`shipped_classifier_path`). Raises CheckpointError
    when the file is missing, is not a classifier file, or its tensors do not match its config.
    """
    from safetensors.torch import load_file

    if path is None:
        path = shipped_classifier_path()
        if not path.is_file():
            raise CheckpointError(f"the shipped attribute classifier is not installed (expected {path}); "
                                  f"train one with 'latentedit classifier train -o FILE' and pass its path")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: attribute classifier file not found")
    metadata = read_classifier_metadata(path)
    try:
        config = ClassifierConfig.from_json(metadata["config"])
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: classifier config in the metadata is missing or malformed ({error})") from error
    classifier = AttributeClassifier(config)
    state = load_file(str(path))
    # BatchNorm's step counters are not stored (they do not affect inference); keep the fresh ones.
    for name, tensor in classifier.state_dict().items():
        if not tensor.is_floating_point():
            state[name] = tensor
    try:
        classifier.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not match the stored classifier config ({error})") from error
    return classifier.to(device).eval()


# ----------------------------------------------------------------------------------------------------
# Inference


def _as_image_batch(images) -> torch.Tensor:
    """Validate ``images [N, 3, H, W]`` (tensor or array, floating, in [-1, 1]) and return a float32
    tensor (out-of-range values from a generator are clamped later, in :func:`prepare_images`)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a tensor or array [N, 3, H, W], got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"images must have shape [N, 3, H, W] (RGB, channels first), got {list(images.shape)}")
    if not images.is_floating_point():
        raise InputError(f"images must be floating point in [-1, 1], got dtype {images.dtype}; "
                         "convert uint8 pixels with x / 127.5 - 1")
    if images.shape[2] < 8 or images.shape[3] < 8:
        raise InputError(f"images are too small to classify: {list(images.shape)} (need at least 8x8 pixels)")
    return images.float()


def load_attribute_classifier(path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
                              ) -> tuple[AttributeClassifier, dict]:
    """The attribute classifier (``path`` or the shipped one) and ``{path, sha256}`` identifying its weights.

    Every measurement records the second item, so a number can be traced to the exact weights.
    """
    from latentedit.io import sha256_file

    classifier = load_classifier(path, device=device)
    resolved = Path(path) if path is not None else shipped_classifier_path()
    return classifier, {"path": str(resolved), "sha256": sha256_file(resolved)}


def prepare_images(images: torch.Tensor, input_size: int, device: torch.device) -> torch.Tensor:
    """What a classifier is fed: ``images [N, 3, H, W]`` on ``device``, clamped to [-1, 1] and resized
    (bilinear, antialiased) to ``input_size``. Differentiable, so a guide classifier can steer an edit."""
    images = images.to(device).clamp(-1.0, 1.0)
    if images.shape[-2:] != (input_size, input_size):
        images = F.interpolate(images, size=(input_size, input_size), mode="bilinear", align_corners=False,
                               antialias=True)
    return images


def _batched(classifier: AttributeClassifier, images, batch_size: int,
             fn: Callable[[torch.Tensor], torch.Tensor], width: int) -> torch.Tensor:
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    images = _as_image_batch(images)
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    outputs = []
    try:
        with torch.no_grad():
            for begin in range(0, images.shape[0], batch_size):
                batch = prepare_images(images[begin:begin + batch_size], classifier.config.input_size, device)
                outputs.append(fn(batch).float().cpu())
    finally:
        classifier.train(was_training)
    if not outputs:
        return torch.zeros(0, width)
    return torch.cat(outputs)


def predict_attributes(classifier: AttributeClassifier, images, batch_size: int = 256) -> torch.Tensor:
    """Attribute probabilities ``[N, A]`` (float32, CPU; sigmoid of the logits) of ``images
    [N, 3, H, W]`` in [-1, 1] (any H, W: resized to the classifier's input size). Column ``k`` is
    ``classifier.attribute_names[k]``; threshold at 0.5 for 0/1 labels. InputError for a wrong shape
    or dtype."""
    return torch.sigmoid(_batched(classifier, images, batch_size, classifier, len(classifier.attribute_names)))


def extract_features(classifier: AttributeClassifier, images, batch_size: int = 256) -> torch.Tensor:
    """Penultimate features ``[N, feature_dim]`` (float32, CPU) of ``images [N, 3, H, W]`` in [-1, 1]."""
    return _batched(classifier, images, batch_size, classifier.features, classifier.config.feature_dim)


# ----------------------------------------------------------------------------------------------------
# Fréchet distance


def _as_feature_matrix(features, name: str) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise InputError(f"{name} must be a feature matrix [N, F], got shape {list(features.shape)}")
    if features.shape[0] < 2:
        raise InputError(f"{name} needs at least 2 samples to estimate a covariance, got {features.shape[0]}")
    if not np.all(np.isfinite(features)):
        raise InputError(f"{name} contains NaN or infinite values")
    return features


def frechet_distance(feats_a, feats_b, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N_a, F]`` and ``[N_b, F]``:
    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))`` with sample means and (unbiased) covariances,
    computed in float64.

    The matrix square root is ``scipy.linalg.sqrtm``; when the product is numerically singular (e.g. fewer
    samples than dimensions) it is recomputed with ``eps * I`` added to both covariances, and the tiny
    imaginary parts that round-off gives the square root are dropped. Symmetric in its arguments up to
    round-off; 0 for identical sets. Returns a float >= 0.
    """
    from scipy import linalg

    a = _as_feature_matrix(feats_a, "feats_a")
    b = _as_feature_matrix(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"feature sets differ in width: {a.shape[1]} vs {b.shape[1]}")
    mean_diff = a.mean(axis=0) - b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        # A singular product (fewer samples than dimensions) is handled below, not reported.
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            root = linalg.sqrtm(cov_a @ cov_b)
            singular = not np.all(np.isfinite(root))
        except linalg.LinAlgWarning:
            singular = True
    if singular:
        offset = np.eye(cov_a.shape[0]) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    # tr sqrt(C_a C_b) is real for PSD covariances; any imaginary part is round-off from the Schur form.
    trace_root = float(np.real(np.trace(root)))
    distance = float(mean_diff @ mean_diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root)
    return max(distance, 0.0)


def fd_toy(images_a, images_b, classifier: AttributeClassifier | None = None, batch_size: int = 256) -> float:
    """FD-toy: :func:`frechet_distance` between the classifier features of two image sets
    ``[N, 3, H, W]`` in [-1, 1] (the shipped classifier when ``classifier`` is None).

    A Fréchet distance in this classifier's feature space; not comparable to FID (see the module doc).
    """
    classifier = classifier if classifier is not None else load_classifier()
    return frechet_distance(extract_features(classifier, images_a, batch_size),
                            extract_features(classifier, images_b, batch_size))


# ----------------------------------------------------------------------------------------------------
# Rendering labelled toyfaces in bulk


def _render_range(job: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, start, count, size = job
    pixels = np.empty((count, 3, size, size), dtype=np.uint8)
    labels = np.empty((count, len(toyfaces.ATTRIBUTE_NAMES)), dtype=np.uint8)
    for offset in range(count):
        params = toyfaces.sample_params(seed, start + offset)
        pixels[offset] = toyfaces.render(params, size).transpose(2, 0, 1)
        labels[offset] = toyfaces.attribute_vector(params)
    return pixels, labels


def render_labelled(seed: int, start: int, count: int, size: int = 64, workers: int = 1,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Render toyfaces ``seed`` faces ``[start, start + count)``: pixels ``[count, 3, size, size]`` uint8
    (channels first) and labels ``[count, A]`` uint8 0/1 in ``ATTRIBUTE_NAMES`` order.

    ``workers > 1`` renders in that many processes; the result does not depend on it.
    """
    from tqdm import tqdm

    if count < 0 or start < 0:
        raise InputError(f"need start >= 0 and count >= 0, got start={start}, count={count}")
    chunk = 250
    jobs = [(seed, start + begin, min(chunk, count - begin), size) for begin in range(0, count, chunk)]
    pixels = np.empty((count, 3, size, size), dtype=np.uint8)
    labels = np.empty((count, len(toyfaces.ATTRIBUTE_NAMES)), dtype=np.uint8)
    bar = tqdm(total=count, desc=f"render toyfaces seed {seed}", unit="img", disable=not progress)
    position = 0

    def store(result):
        nonlocal position
        chunk_pixels, chunk_labels = result
        pixels[position:position + len(chunk_pixels)] = chunk_pixels
        labels[position:position + len(chunk_labels)] = chunk_labels
        position += len(chunk_pixels)
        bar.update(len(chunk_pixels))

    try:
        if workers > 1 and len(jobs) > 1:
            with multiprocessing.get_context().Pool(min(workers, len(jobs))) as pool:
                for result in pool.imap(_render_range, jobs):  # imap keeps order
                    store(result)
        else:
            for job in jobs:
                store(_render_range(job))
    finally:
        bar.close()
    return pixels, labels


def _cached_render(cache_dir: str | os.PathLike | None, seed: int, start: int, count: int, size: int,
                   workers: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    # The renderer version is in the name, so a changed renderer never reuses stale pixels.
    if cache_dir is None:
        return render_labelled(seed, start, count, size, workers, progress)
    path = Path(cache_dir) / (f"toyfaces_v{toyfaces.RENDERER_VERSION}_seed{seed}_start{start}_n{count}_"
                              f"{size}px.npz")
    if path.is_file():
        with np.load(path) as stored:
            return stored["pixels"], stored["labels"]
    pixels, labels = render_labelled(seed, start, count, size, workers, progress)
    with atomic_write(path) as handle:
        np.savez(handle, pixels=pixels, labels=labels)
    return pixels, labels


def _to_float(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(pixels, np.ndarray):
        pixels = torch.from_numpy(pixels)
    return pixels.float().div_(127.5).sub_(1.0)


# ----------------------------------------------------------------------------------------------------
# Evaluation


def evaluate_classifier(classifier: AttributeClassifier, count: int = 5000, seed: int = toyfaces.HELDOUT_SEED,
                        start: int = 0, batch_size: int = 256, workers: int = 1,
                        progress: bool = False) -> dict:
    """Per-attribute accuracy of ``classifier`` (threshold 0.5) on toyfaces ``seed`` faces
    ``[start, start + count)`` rendered at 64 px.

    Returns ``{"seed", "start", "count", "accuracy": {name: fraction}, "positive_rate": {name: fraction
    of faces with the attribute}, "mean_accuracy", "min_accuracy", "min_attribute"}``.
    """
    if count < 1:
        raise InputError(f"evaluation needs at least 1 face, got {count}")
    pixels, labels = render_labelled(seed, start, count, classifier.config.input_size, workers, progress)
    probabilities = predict_attributes(classifier, _to_float(pixels), batch_size)
    correct = ((probabilities.numpy() >= 0.5) == (labels == 1)).mean(axis=0)
    names = classifier.attribute_names
    accuracy = {name: float(correct[k]) for k, name in enumerate(names)}
    worst = min(accuracy, key=accuracy.get)
    return {
        "seed": int(seed), "start": int(start), "count": int(count),
        "accuracy": accuracy,
        "positive_rate": {name: float(labels[:, k].mean()) for k, name in enumerate(names)},
        "mean_accuracy": float(np.mean(correct)),
        "min_accuracy": accuracy[worst],
        "min_attribute": worst,
    }


def format_accuracy_table(result: dict) -> str:
    """A markdown table of :func:`evaluate_classifier`'s result: attribute, accuracy %, positive rate %."""
    lines = ["| attribute | accuracy (%) | positives (%) |", "|---|---:|---:|"]
    for name, value in result["accuracy"].items():
        lines.append(f"| {name} | {100 * value:.2f} | {100 * result['positive_rate'][name]:.1f} |")
    lines.append(f"| **mean** | {100 * result['mean_accuracy']:.2f} | |")
    lines.append(f"| **min** ({result['min_attribute']}) | {100 * result['min_accuracy']:.2f} | |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class TrainOptions:
    """Hyper-parameters of :func:`train_classifier` (all recorded in the output's metadata).

    ``count`` training faces ``TRAIN_SEED`` ``[start, start + count)``; ``epochs`` passes over them with
    batches of ``batch_size``; AdamW with peak learning rate ``lr`` (one-cycle schedule) and
    ``weight_decay``; ``seed`` seeds initialisation, shuffling and augmentation.
    """

    count: int = 30000
    start: int = 0
    epochs: int = 6
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    widths: tuple[int, ...] = ClassifierConfig.widths
    feature_dim: int = ClassifierConfig.feature_dim


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = 2
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    return F.conv2d(F.conv2d(padded, horizontal, groups=channels), vertical, groups=channels)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Label-preserving augmentation of a batch ``[N, 3, H, W]`` in [-1, 1]: horizontal flips, small
    affine jitter (shift <= 3 px at 64 px, scale 0.95-1.05, rotation <= 4 degrees), mild blur on half the
    batch, brightness/contrast/per-channel gain jitter and a little Gaussian noise. Kept small enough
    that hair colours, pale skin, lipstick and rosy cheeks stay distinguishable."""
    count = images.shape[0]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    flip = torch.rand(count, generator=generator) < 0.5
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)

    angle = uniform(-4.0, 4.0, count) * (math.pi / 180.0)
    scale = uniform(0.95, 1.05, count)
    shift = uniform(-3.0, 3.0, count, 2) * (2.0 / images.shape[-1])
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = torch.cos(angle) / scale
    theta[:, 0, 1] = -torch.sin(angle) / scale
    theta[:, 1, 0] = torch.sin(angle) / scale
    theta[:, 1, 1] = torch.cos(angle) / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

    blurred = torch.rand(count, generator=generator) < 0.5
    if blurred.any():
        sigma = float(uniform(0.4, 1.1, 1))
        images = torch.where(blurred.view(-1, 1, 1, 1), _gaussian_blur(images, sigma), images)

    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    contrast = uniform(0.9, 1.1, count, 1, 1, 1)
    brightness = uniform(-0.08, 0.08, count, 1, 1, 1)
    gain = uniform(0.96, 1.04, count, 3, 1, 1)
    images = ((images - mean) * contrast + mean) * gain + brightness
    noise = uniform(0.0, 0.03, count, 1, 1, 1)
    images = images + noise * torch.randn(images.shape, generator=generator)
    return images.clamp_(-1.0, 1.0)


def _state_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".train-state.pt")


def _save_state(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def train_classifier(out_path: str | os.PathLike, options: TrainOptions | None = None, workers: int = 2,
                     threads: int | None = None, cache_dir: str | os.PathLike | None = None,
                     validation_count: int = 1000, progress: bool = True,
                     log: Callable[[str], None] = print) -> dict:
    """Train an :class:`AttributeClassifier` on rendered toyfaces and save it to ``out_path``.

    Renders ``options.count`` faces of ``TRAIN_SEED`` with ``workers`` processes (cached as an .npz in
    ``cache_dir`` when given), then trains ``options.epochs`` epochs with ``threads`` torch threads
    (None: torch's default; 1 leaves the other cores to concurrent jobs). After every epoch it logs the
    accuracy on ``validation_count`` held-out faces (``HELDOUT_SEED``, from index
    :data:`VALIDATION_START`) and atomically saves the training state to ``<out_path>.train-state.pt``;
    calling again with the same options resumes from there (different options: InputError). On success
    the weights go to ``out_path`` (see :func:`save_classifier`) and the state file is removed.

    Returns ``{"out_path", "train_seconds", "render_seconds", "epochs", "validation": {...}}``, where
    ``train_seconds`` sums the time spent over all runs, including resumed ones.
    """
    from tqdm import tqdm

    options = options if options is not None else TrainOptions()
    if options.batch_size < 1 or not options.lr > 0:
        raise InputError(f"batch size must be >= 1 and lr > 0, got {options.batch_size} and {options.lr}")
    if options.count < options.batch_size:
        raise InputError(f"need at least one batch of training faces: count {options.count} < batch size "
                         f"{options.batch_size}")
    if options.epochs < 1:
        raise InputError(f"epochs must be >= 1, got {options.epochs}")
    out_path = Path(out_path)
    state_path = _state_path(out_path)
    options_record = dataclasses.asdict(options)
    options_record["widths"] = list(options.widths)

    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    torch.manual_seed(options.seed)
    config = ClassifierConfig(widths=tuple(options.widths), feature_dim=options.feature_dim)
    # channels_last roughly doubles CPU convolution throughput here.
    classifier = AttributeClassifier(config).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    steps_per_epoch = options.count // options.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, pct_start=0.15,
                                                    total_steps=steps_per_epoch * options.epochs)
    start_epoch, spent_seconds, render_seconds = 0, 0.0, 0.0
    history: list[dict] = []
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["options"] != options_record:
            raise InputError(f"{state_path} holds a run with different options ({state['options']}); "
                             "rerun with those options to resume, or delete the file to start over")
        classifier.load_state_dict(state["model"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, spent_seconds = int(state["epoch"]), float(state["train_seconds"])
        render_seconds, history = float(state["render_seconds"]), list(state["history"])
        log(f"resuming from {state_path} after epoch {start_epoch}/{options.epochs}")

    run_started = time.monotonic()
    pixels, labels = _cached_render(cache_dir, toyfaces.TRAIN_SEED, options.start, options.count,
                                    config.input_size, workers, progress)
    if start_epoch == 0:
        render_seconds = time.monotonic() - run_started
    pixels, labels = torch.from_numpy(pixels), torch.from_numpy(labels).float()
    validation_pixels, validation_labels = render_labelled(toyfaces.HELDOUT_SEED, VALIDATION_START,
                                                           validation_count, config.input_size, 1)
    validation_images = _to_float(validation_pixels)

    def validate() -> dict[str, float]:
        probabilities = predict_attributes(classifier, validation_images).numpy()
        correct = ((probabilities >= 0.5) == (validation_labels == 1)).mean(axis=0)
        return {name: float(correct[k]) for k, name in enumerate(config.attribute_names)}

    for epoch in range(start_epoch, options.epochs):
        epoch_started = time.monotonic()
        # Shuffling and augmentation depend only on (seed, epoch), so a resumed run sees the same batches.
        generator = torch.Generator().manual_seed(options.seed * 1000 + epoch)
        order = torch.randperm(options.count, generator=generator)
        classifier.train()
        running = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{options.epochs}", unit="batch",
                   disable=not progress)
        for step in bar:
            batch = order[step * options.batch_size:(step + 1) * options.batch_size]
            images = augment(_to_float(pixels[batch]), generator).contiguous(memory_format=torch.channels_last)
            loss = F.binary_cross_entropy_with_logits(classifier(images), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{running:.4f}")
        bar.close()
        accuracy = validate()
        spent_seconds += time.monotonic() - epoch_started
        worst = min(accuracy, key=accuracy.get)
        history.append({"epoch": epoch + 1, "loss": running, "mean_accuracy": float(np.mean(list(accuracy.values()))),
                        "min_accuracy": accuracy[worst], "min_attribute": worst})
        _save_state(state_path, {"options": options_record, "model": classifier.state_dict(),
                                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                 "epoch": epoch + 1, "train_seconds": spent_seconds,
                                 "render_seconds": render_seconds, "history": history})
        log(f"epoch {epoch + 1}/{options.epochs}: loss {running:.4f}, validation mean accuracy "
            f"{100 * history[-1]['mean_accuracy']:.2f}%, worst {worst} {100 * accuracy[worst]:.2f}% "
            f"({spent_seconds / 60:.1f} min training so far; state saved)")

    classifier.eval()
    validation = validate()
    metadata = {
        "training": json.dumps({"options": options_record, "train_seed": toyfaces.TRAIN_SEED,
                                "renderer_version": toyfaces.RENDERER_VERSION,
                                "render_seconds": round(render_seconds, 1),
                                "train_seconds": round(spent_seconds, 1), "history": history}),
    }
    save_classifier(classifier, out_path, metadata)
    state_path.unlink(missing_ok=True)
    return {"out_path": str(out_path), "train_seconds": spent_seconds, "render_seconds": render_seconds,
            "epochs": options.epochs, "history": history, "validation": validation}


def parameter_count(classifier: AttributeClassifier) -> int:
    """Number of trainable parameters."""
    return sum(parameter.numel() for parameter in classifier.parameters())


__all__ = [
    "AttributeClassifier", "ClassifierConfig", "TrainOptions", "load_classifier", "save_classifier",
    "shipped_classifier_path", "predict_attributes", "extract_features", "frechet_distance", "fd_toy",
    "render_labelled", "evaluate_classifier", "format_accuracy_table", "train_classifier", "augment",
]
