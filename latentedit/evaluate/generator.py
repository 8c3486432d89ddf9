"""How good is a generator trained on toyfaces? FD-toy and attribute frequencies (issue: the embedded default).

- FD-toy (a Fréchet distance in the attribute classifier's feature space; see :mod:`latentedit.evaluate.classifier`)
  between ``count`` generated samples (ψ = 1, stored noise) and ``count`` held-out renders, next to two
  reference points measured in the same run: the same architecture at initialisation (the ceiling) and
  two disjoint sets of held-out renders (the floor).
- Attribute frequencies of generated samples, as the classifier labels them (p ≥ 0.5), against the
  frequencies of the training data (its true labels, seed 0).
"""
from __future__ import annotations

import numpy as np
import torch

from latentedit.evaluate.classifier import extract_features, frechet_distance, load_classifier, predict_attributes, \
    render_labelled
from latentedit.data import toyfaces
from latentedit.model.generator import Generator

#: Attributes whose frequencies the issue's quality goal names.
GOAL_ATTRIBUTES = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Eyeglasses", "Smiling", "Male")


@torch.no_grad()
def sample_images(generator: Generator, count: int, seed: int = 0, batch_size: int = 64,
                  progress: bool = False) -> torch.Tensor:
    """``count`` samples ``[count, 3, size, size]`` (float, clamped to [-1, 1]) at ψ = 1 with stored noise;
    z drawn from ``torch.Generator().manual_seed(seed)``."""
    from tqdm import tqdm

    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    images = []
    for start in tqdm(range(0, count, batch_size), desc="sample generator", unit="batch", disable=not progress):
        z = torch.randn(min(batch_size, count - start), generator.z_dim, generator=rng).to(device)
        images.append(generator.synthesis(generator.mapping(z), "const").clamp(-1, 1).cpu())
    return torch.cat(images)


def initial_generator(generator: Generator, seed: int = 0):
    """The same architecture with freshly initialised weights (``torch.manual_seed(seed)`` first): the
    ceiling of :func:`evaluate_generator`.

    StyleGAN3 (:class:`~latentedit.model.sg3.SG3Generator`): new parameters, but the buffers that training
    never changes are taken from ``generator`` (the filters designed from the cutoffs, the Fourier input's
    frequencies, phases and transform), and every ``magnitude_ema`` starts at 1, as NVIDIA's trainer starts.
    """
    torch.manual_seed(seed)  # the same architecture with the trainer's initial weights
    if getattr(generator, "architecture", None) != "stylegan3":
        return Generator(generator.config)
    untrained = type(generator)(generator.config)
    fixed = {name: buffer for name, buffer in generator.named_buffers()
             if not name.endswith("magnitude_ema") and name != "w_avg" and name in dict(untrained.named_buffers())}
    with torch.no_grad():
        for name, buffer in untrained.named_buffers():
            if name in fixed and buffer.shape == fixed[name].shape:
                buffer.copy_(fixed[name].to(buffer))
    return untrained


def _as_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).float() / 127.5 - 1


def evaluate_generator(generator: Generator, count: int = 5000, seed: int = 0, classifier=None,
                       workers: int = 2, progress: bool = True) -> dict:
    """Measure ``generator`` against held-out toyfaces; returns a JSON-ready dict (see the module doc)."""
    classifier = classifier if classifier is not None else load_classifier()
    names = list(toyfaces.ATTRIBUTE_NAMES)
    generated = sample_images(generator, count, seed, progress=progress)
    untrained = initial_generator(generator, seed).to(next(generator.parameters()).device).eval()
    initial = sample_images(untrained, count, seed, progress=progress)

    size = generator.size
    heldout, _ = render_labelled(toyfaces.HELDOUT_SEED, 0, count, size, workers, progress)
    heldout_other, _ = render_labelled(toyfaces.HELDOUT_SEED, count, count, size, workers, progress)
    _, train_labels = render_labelled(toyfaces.TRAIN_SEED, 0, count, size, workers, progress)

    features = {name: extract_features(classifier, images) for name, images in
                (("generated", generated), ("initial", initial), ("heldout", _as_float(heldout)),
                 ("heldout_other", _as_float(heldout_other)))}
    fd = {
        "generated_vs_heldout": frechet_distance(features["generated"], features["heldout"]),
        "initial_vs_heldout": frechet_distance(features["initial"], features["heldout"]),
        "floor_heldout_vs_heldout": frechet_distance(features["heldout_other"], features["heldout"]),
    }
    fd["ratio_to_floor"] = fd["generated_vs_heldout"] / fd["floor_heldout_vs_heldout"]
    generated_freq = (predict_attributes(classifier, generated) >= 0.5).float().mean(0).numpy()
    train_freq = train_labels.astype(np.float64).mean(0)
    frequencies = {name: {"generated": float(generated_freq[i]), "training": float(train_freq[i]),
                          "difference_points": float(100 * (generated_freq[i] - train_freq[i]))}
                   for i, name in enumerate(names)}
    worst = max(abs(frequencies[name]["difference_points"]) for name in GOAL_ATTRIBUTES)
    return {"count": count, "seed": seed, "fd_toy": fd, "attribute_frequencies": frequencies,
            "goal_attributes": list(GOAL_ATTRIBUTES), "max_goal_difference_points": worst,
            "goals": {"fd_within_3x_floor": fd["ratio_to_floor"] <= 3.0, "frequencies_within_5_points": worst <= 5.0}}


def format_report(result: dict) -> str:
    """Markdown tables of :func:`evaluate_generator`'s result."""
    fd = result["fd_toy"]
    lines = [f"FD-toy ({result['count']} vs {result['count']} images):", "",
             "| sets | FD-toy |", "|---|---:|",
             f"| generated (ψ 1) vs held-out renders | {fd['generated_vs_heldout']:.2f} |",
             f"| same architecture at initialisation vs held-out | {fd['initial_vs_heldout']:.2f} |",
             f"| two disjoint held-out sets (floor) | {fd['floor_heldout_vs_heldout']:.2f} |",
             f"| generated / floor | {fd['ratio_to_floor']:.2f}× |", "",
             "Attribute frequencies (generated: classifier p ≥ 0.5; training: true labels):", "",
             "| attribute | generated % | training % | difference (points) |", "|---|---:|---:|---:|"]
    for name, row in result["attribute_frequencies"].items():
        mark = " *" if name in result["goal_attributes"] else ""
        lines.append(f"| {name}{mark} | {100 * row['generated']:.1f} | {100 * row['training']:.1f} | "
                     f"{row['difference_points']:+.1f} |")
    lines += ["", "`*`: attributes of the ±5 point goal."]
    return "\n".join(lines)


def attribute_frequency_hook(samples: int = 512, seed: int = 12345):
    """A trainer eval hook (``eval_hook(g_ema, kimg, run_dir) -> dict``): the classifier's frequencies of
    the goal attributes on ``samples`` generated faces, and their differences in points from the data
    set's expected frequencies — the SPEC §9 advice to watch attribute balance during training."""
    classifier = load_classifier()
    names = list(toyfaces.ATTRIBUTE_NAMES)

    def hook(generator: Generator, kimg: float, run_dir) -> dict:
        was_training = generator.training
        generator.eval()
        probabilities = predict_attributes(classifier, sample_images(generator, samples, seed))
        generator.train(was_training)
        frequency = (probabilities >= 0.5).float().mean(0)
        result = {}
        for name in GOAL_ATTRIBUTES:
            value = float(frequency[names.index(name)])
            result[f"freq_{name}"] = round(value, 4)
            result[f"diff_points_{name}"] = round(100 * (value - toyfaces.EXPECTED_FREQUENCIES[name]), 2)
        return result

    return hook
