"""Training the toyfaces landmark detector (``latentedit train landmarks``) and measuring its error.

Data: toyfaces scenes of the training seed (:mod:`latentedit.data.toyfaces_scenes`, 256 px canvases) with
their exact landmarks, rendered once into memory, plus face-free scene backgrounds as negatives for the
coarse net's face score. Augmentation: horizontal mirror (left and right landmarks swapped) and a small
brightness and contrast jitter.

- **coarse** net: the scene area-resized to 64 px; smooth-L1 on the landmarks (positives only) plus the
  logistic loss of the face score.
- **refine** net: crops aligned (``toyfaces`` framing, 64 px) on the true landmarks moved by a random
  similarity (rotation σ 6°, log-scale σ 0.08, shift σ 0.12 IOD) and per-point jitter (σ 0.04 IOD), a
  quarter of them with a four times smaller perturbation, as the second refine step sees; its targets are
  the true landmarks in crop coordinates.

Both use Adam with a cosine learning-rate decay; the same arguments give the same weights on the same
machine and thread count. Evaluation (:func:`landmark_errors`) is on held-out scenes (another seed).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from latentedit.data import toyfaces
from latentedit.errors import InputError
from latentedit.photos.landmarks import (
    COARSE_CONFIG,
    REFINE_CONFIG,
    LandmarkNet,
    ToyfacesLandmarkDetector,
    save_detector,
    square_resize,
    to_input,
)

# Mirroring an image swaps the left and right eye and the left and right mouth corner.
_MIRROR_ORDER = [1, 0, 2, 4, 3]


@dataclass(frozen=True)
class LandmarkTrainConfig:
    """Hyper-parameters of :func:`train_landmark_detector` (all recorded in the output's metadata)."""

    scenes: int = 6000
    negatives: int = 1000
    crops_per_scene: int = 4
    coarse_steps: int = 3000
    refine_steps: int = 5000
    batch_size: int = 64
    lr: float = 2e-3
    canvas: int = 256
    seed: int = 0


def _iod(landmarks: np.ndarray) -> np.ndarray:
    """Inter-ocular distance of ``[..., 5, 2]`` landmarks."""
    return np.linalg.norm(landmarks[..., 1, :] - landmarks[..., 0, :], axis=-1)


def perturb_landmarks(landmarks: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """``[5, 2]`` landmarks moved by a random similarity and per-point jitter (module docstring), ``strength`` x."""
    iod = float(_iod(landmarks))
    centre = landmarks[:2].mean(axis=0)
    angle = math.radians(rng.normal(0.0, 6.0) * strength)
    scale = math.exp(rng.normal(0.0, 0.08) * strength)
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shift = rng.normal(0.0, 0.12 * iod * strength, size=2)
    jitter = rng.normal(0.0, 0.04 * iod * strength, size=(5, 2))
    return (landmarks - centre) @ rotation.T + centre + shift + jitter


def _render_pool(config: LandmarkTrainConfig, progress: bool) -> dict[str, np.ndarray]:
    from latentedit.data.toyfaces_scenes import render_scene, scene_background
    from latentedit.photos.align import align_face
    from latentedit.progress import progress_bar

    rng = np.random.default_rng([config.seed, 0x4C4D])
    size = COARSE_CONFIG.input_size
    coarse_images = np.zeros((config.scenes + config.negatives, size, size, 3), np.uint8)
    coarse_targets = np.zeros((config.scenes + config.negatives, 5, 2), np.float32)
    refine_count = config.scenes * config.crops_per_scene
    refine_images = np.zeros((refine_count, REFINE_CONFIG.input_size, REFINE_CONFIG.input_size, 3), np.uint8)
    refine_targets = np.zeros((refine_count, 5, 2), np.float32)
    bar = progress_bar(total=config.scenes + config.negatives, desc="rendering scenes", enabled=progress)
    k = 0
    for index in range(config.scenes):
        scene = render_scene(toyfaces.TRAIN_SEED, index, config.canvas)
        small, scale, pad = square_resize(scene.image, size)
        coarse_images[index] = small
        coarse_targets[index] = (scene.landmarks + np.asarray(pad)) * scale
        for crop_index in range(config.crops_per_scene):
            strength = 0.25 if crop_index % 4 == 3 else 1.0
            moved = perturb_landmarks(scene.landmarks, rng, strength)
            try:
                crop, alignment = align_face(scene.image, moved, REFINE_CONFIG.input_size, min_eye_distance=1.0,
                                             framing="toyfaces")
            except InputError:  # a rare perturbation that leaves the canvas: use the true landmarks
                crop, alignment = align_face(scene.image, scene.landmarks, REFINE_CONFIG.input_size,
                                             min_eye_distance=1.0, framing="toyfaces")
            refine_images[k] = crop
            refine_targets[k] = alignment.photo_to_crop(scene.landmarks)
            k += 1
        bar.update(1)
    for j in range(config.negatives):
        # Backgrounds of scenes the positives never use (variant 9), so a face is the only difference.
        background = scene_background(toyfaces.TRAIN_SEED, j, config.canvas, variant=9)
        coarse_images[config.scenes + j] = square_resize(np.clip(background + 0.5, 0, 255).astype(np.uint8),
                                                         size)[0]
        bar.update(1)
    bar.close()
    labels = np.concatenate([np.ones(config.scenes), np.zeros(config.negatives)]).astype(np.float32)
    return {"coarse_images": coarse_images, "coarse_targets": coarse_targets, "labels": labels,
            "refine_images": refine_images, "refine_targets": refine_targets}


def _batch(images: np.ndarray, targets: np.ndarray, indices: np.ndarray, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    x = to_input(images[indices])
    y = torch.from_numpy(targets[indices]).clone()
    size = x.shape[-1]
    mirror = torch.rand(len(indices), generator=generator) < 0.5
    if mirror.any():
        x[mirror] = x[mirror].flip(-1)
        flipped = y[mirror][:, _MIRROR_ORDER]
        flipped[..., 0] = size - flipped[..., 0]
        y[mirror] = flipped
    gain = 1.0 + 0.15 * (torch.rand(len(indices), 1, 1, 1, generator=generator) * 2 - 1)
    bias = 0.1 * (torch.rand(len(indices), 1, 1, 1, generator=generator) * 2 - 1)
    return (x * gain + bias).clamp(-1, 1), y


def _train_net(net: LandmarkNet, images: np.ndarray, targets: np.ndarray, labels: np.ndarray | None, steps: int,
               config: LandmarkTrainConfig, desc: str, progress: bool, log: Callable[[str], None]) -> dict:
    from latentedit.progress import progress_bar

    positives = targets[labels > 0] if labels is not None else targets
    net.mean_landmarks.copy_(torch.from_numpy(positives.mean(axis=0) / net.config.input_size))
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    generator = torch.Generator().manual_seed(config.seed)
    sampler = np.random.default_rng([config.seed, len(images)])
    net.train()
    bar = progress_bar(total=steps, desc=desc, enabled=progress)
    recent = []
    for step in range(steps):
        indices = sampler.integers(0, len(images), config.batch_size)
        x, y = _batch(images, targets, indices, generator)
        predicted, logit = net(x)
        # Pixel error in units of the input size / 64, so the two nets' losses read the same.
        error = F.smooth_l1_loss(predicted, y, reduction="none", beta=1.0).sum(-1).mean(-1)
        if labels is not None:
            label = torch.from_numpy(labels[indices])
            loss = (error * label).sum() / label.sum().clamp(min=1) + F.binary_cross_entropy_with_logits(logit, label)
        else:
            loss = error.mean()
        if not torch.isfinite(loss):
            raise InputError(f"{desc}: the loss became non-finite at step {step}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        recent.append(float(loss.detach()))
        if (step + 1) % 500 == 0:
            log(f"{desc} step {step + 1}/{steps}: loss {np.mean(recent[-500:]):.4f}")
        bar.update(1)
    bar.close()
    net.eval()
    return {"final_loss": float(np.mean(recent[-200:]))}


def train_landmark_detector(out_path, config: LandmarkTrainConfig | None = None, progress: bool = True,
                            log: Callable[[str], None] | None = None) -> dict:
    """Train both nets (module docstring), write them to ``out_path`` atomically and return a summary."""
    config = config or LandmarkTrainConfig()
    log = log or (lambda message: None)
    for name in ("scenes", "coarse_steps", "refine_steps", "batch_size", "crops_per_scene"):
        if getattr(config, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    torch.manual_seed(config.seed)
    started = time.time()
    pool = _render_pool(config, progress)
    rendered = time.time()
    coarse, refine = LandmarkNet(COARSE_CONFIG), LandmarkNet(REFINE_CONFIG)
    coarse_summary = _train_net(coarse, pool["coarse_images"], pool["coarse_targets"], pool["labels"],
                                config.coarse_steps, config, "coarse net", progress, log)
    refine_summary = _train_net(refine, pool["refine_images"], pool["refine_targets"], None, config.refine_steps,
                                config, "refine net", progress, log)
    finished = time.time()
    summary = {"config": asdict(config), "coarse": coarse_summary, "refine": refine_summary,
               "render_seconds": round(rendered - started, 1), "train_seconds": round(finished - rendered, 1),
               "threads": torch.get_num_threads(),
               "parameters": sum(p.numel() for p in coarse.parameters()) + sum(p.numel() for p in refine.parameters())}
    import json

    # Wall times stay out of the file, so the same command writes the same bytes.
    recorded = {key: value for key, value in summary.items() if not key.endswith("_seconds")}
    save_detector(coarse, refine, out_path, {"training": json.dumps(recorded, sort_keys=True)})
    return summary


def landmark_errors(detector: ToyfacesLandmarkDetector, count: int = 200, seed: int = toyfaces.HELDOUT_SEED,
                    canvas: int = 256, start: int = 0, progress: bool = False) -> dict:
    """Detect on held-out scenes ``start .. start + count - 1`` of ``seed``: per-point error / true IOD.

    Returns ``{"per_scene": [count] mean error of the 5 points / IOD, "per_point": [count, 5], "median", "p95",
    "max", "scores": [count]}`` (fractions of the inter-ocular distance).
    """
    from latentedit.data.toyfaces_scenes import render_scene
    from latentedit.progress import progress_bar

    per_point, scores = [], []
    bar = progress_bar(total=count, desc="landmark error", enabled=progress)
    for index in range(start, start + count):
        scene = render_scene(seed, index, canvas)
        found, score = detector.detect(scene.image)
        per_point.append(np.linalg.norm(found - scene.landmarks, axis=1) / _iod(scene.landmarks))
        scores.append(score)
        bar.update(1)
    bar.close()
    per_point = np.asarray(per_point)
    per_scene = per_point.mean(axis=1)
    return {"per_scene": per_scene.tolist(), "per_point": per_point.tolist(), "median": float(np.median(per_scene)),
            "p95": float(np.percentile(per_scene, 95)), "max": float(per_scene.max()), "scores": scores}
