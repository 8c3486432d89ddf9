"""Directions learned with a guide classifier: add one attribute, keep the others.

InterFaceGAN's SVM normal separates the attribute's samples from the rest in W, but nothing in that fit
asks the normal to leave other attributes alone; conditioning only removes other attributes' *linear*
normals. Learning the direction instead (as GANalyze and "classifier-guided" editing do) states the wish
directly: find one unit direction ``v`` such that, for generated sources lacking the attribute,
``G(w + strength · v)`` on the chosen W+ rows is labelled with the attribute by a *guide* classifier
while every other attribute keeps the probability the guide gave the unedited image.

Loss, averaged over a batch of sources (``p`` are the guide's probabilities of the unedited render,
``ℓ`` its logits of the edited one; BCE is binary cross-entropy with logits):

    BCE(ℓ[attribute], 1) + keep_weight · mean_k∈keep BCE(ℓ[k], p[k])
                         + other_weight · mean_k∈others BCE(ℓ[k], p[k])

``keep`` are the attributes named by the user (e.g. Male); ``others`` every other side-effect
attribute (:func:`latentedit.evaluate.edit.side_effect_attributes`: for a hair colour, the other hair
colours are not kept, since they must change). ``v`` is normalised in the forward pass, so the strength
is a fixed distance in W, and it starts from the difference of the guide-labelled class means of mapped
w (guide-only, so nothing of the measuring classifier enters when a different guide is used). Adam on
``v``; the generator and the guide are frozen. Each step the edited images are translated by up to
``shift`` pixels (one random offset per step, reflect padding) before the guide sees them: without it the
direction can learn where this particular guide looks, which another classifier need not share. The result is saved as a W+ direction that is zero
outside the chosen rows, so applying the file touches only those rows.

The guide should not be the classifier that evaluates the edit: a direction optimised against one
network can exploit its blind spots. ``latentedit classifier train --seed 1`` gives an independent one.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latentedit.errors import InputError
from latentedit.model.generator import Generator

#: Added to the seed of the learning pool's z: `evaluate edit` draws its generated sources from
#: ``torch.Generator().manual_seed(seed)``, and a direction must not be scored on the latents it learned from.
POOL_SEED_OFFSET = 1_000_003


@dataclasses.dataclass(frozen=True)
class LearnSettings:
    """How a direction is learned (see the module docstring)."""

    strength: float = 12.0
    steps: int = 200
    batch_size: int = 16
    lr: float = 0.05
    keep_weight: float = 10.0
    other_weight: float = 1.0
    pool: int = 1000
    seed: int = 0
    shift: int = 4
    #: Learn only from sources the guide labels with this attribute too (e.g. ``Gray_Hair``): a direction for
    #: one source group, where the average direction fails on it. None: every source lacking the attribute.
    sources_with: str | None = None

    def validated(self) -> "LearnSettings":
        if not (self.strength > 0 and math.isfinite(self.strength)):
            raise InputError(f"strength must be a positive number, got {self.strength}")
        for name in ("steps", "batch_size", "pool"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr}")
        if self.keep_weight < 0 or self.other_weight < 0:
            raise InputError("keep and other weights must be >= 0")
        if self.shift < 0:
            raise InputError(f"shift must be >= 0 pixels, got {self.shift}")
        return self


def learn_direction(generator: Generator, guide, attribute: str, keep: Sequence[str] = ("Male",),
                    layers: Sequence[int] | None = None, settings: LearnSettings | None = None,
                    progress: bool = False) -> tuple[np.ndarray, dict]:
    """Learn a unit direction that adds ``attribute`` and keeps the rest (see the module docstring).

    ``layers``: W+ rows to edit (None: all). Returns the direction as W+ ``[num_ws, w_dim]`` (float32,
    unit rows on ``layers``, zero elsewhere) and a report: the settings, the pool, the loss every 10
    steps, and the guide's success and flip rates on the pool before and after.
    """
    from tqdm.auto import tqdm

    from latentedit.directions.arrays import parse_layers
    from latentedit.directions.svm import sample_and_label
    from latentedit.evaluate.classifier import prepare_images
    from latentedit.evaluate.edit import side_effect_attributes

    settings = (settings or LearnSettings()).validated()
    names = list(guide.attribute_names)
    for name in [attribute, *keep]:
        if name not in names:
            raise InputError(f"unknown attribute {name!r}; the guide classifier knows {', '.join(names)}")
    if attribute in keep:
        raise InputError(f"{attribute} cannot be both added and kept")
    rows = parse_layers(layers, generator.num_ws) if layers is not None else list(range(generator.num_ws))
    target = names.index(attribute)
    keep_columns = [names.index(name) for name in dict.fromkeys(keep)]
    other_columns = [names.index(name) for name in side_effect_attributes(attribute, names)
                     if names.index(name) not in keep_columns]
    device = next(generator.parameters()).device
    generator = generator.eval().requires_grad_(False)
    guide = guide.eval().requires_grad_(False)

    # The pool: mapped w of seeded z, labelled by the guide; the sources are those lacking the attribute.
    # Its z stream is offset so that it never holds the sources `evaluate edit --seed N` draws.
    pool = sample_and_label(generator, guide, settings.pool, POOL_SEED_OFFSET + settings.seed)
    w, probs = torch.from_numpy(pool.w).to(device), torch.from_numpy(pool.probs).to(device)
    present = probs[:, target] >= 0.5
    chosen = ~present
    if settings.sources_with is not None:
        if settings.sources_with not in names:
            raise InputError(f"unknown attribute {settings.sources_with!r} for --sources-with; the guide knows "
                             f"{', '.join(names)}")
        chosen &= probs[:, names.index(settings.sources_with)] >= 0.5
    sources = torch.nonzero(chosen).flatten()
    if len(sources) < 2 or int(present.sum()) < 2:
        group = f" with {settings.sources_with}" if settings.sources_with else ""
        raise InputError(f"the guide labels {int(present.sum())} of {len(w)} pool samples {attribute} and "
                         f"{len(sources)} sources{group} lacking it; learning needs at least 2 of each (raise --pool)")
    # From the chosen sources' mean towards the attribute's: for a source group this already points from
    # that group (gray hair, say) to the attribute, not from the average source.
    initial = w[present].mean(0) - w[chosen].mean(0)
    vector = (initial / initial.norm()).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([vector], lr=settings.lr)
    mask = torch.zeros(generator.num_ws, 1, device=device)
    mask[rows] = 1.0

    def edited_logits(index: torch.Tensor, unit: torch.Tensor, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
        w_plus = generator.broadcast_w(w[index])
        images = generator.synthesis(w_plus + settings.strength * mask * unit, "const")
        if shift != (0, 0):
            # A random translation per step, so that the direction cannot rely on where the guide looks.
            pad = settings.shift
            images = F.pad(images, (pad, pad, pad, pad), mode="reflect")
            size = generator.size
            images = images[..., pad + shift[0]:pad + shift[0] + size, pad + shift[1]:pad + shift[1] + size]
        return guide(prepare_images(images, guide.config.input_size, device))

    def pool_rates(unit: torch.Tensor) -> dict:
        with torch.no_grad():
            logits = torch.cat([edited_logits(sources[i:i + 256], unit) for i in range(0, len(sources), 256)])
        after = logits >= 0
        before = probs[sources] >= 0.5
        return {"success_rate": round(float(after[:, target].float().mean()), 4),
                **{f"flips_{names[k]}": round(float((after[:, k] != before[:, k]).float().mean()), 4)
                   for k in keep_columns},
                "mean_other_flips": round(float((after[:, other_columns] != before[:, other_columns])
                                                .float().mean()), 4) if other_columns else 0.0}

    before_rates = pool_rates(vector.detach() / vector.detach().norm())
    losses = []
    draw = np.random.default_rng(settings.seed)
    for step in tqdm(range(settings.steps), desc=f"learn {attribute}", unit="step", disable=not progress):
        index = sources[torch.from_numpy(draw.choice(len(sources), min(settings.batch_size, len(sources)),
                                                     replace=False))]
        shift = tuple(int(x) for x in draw.integers(-settings.shift, settings.shift + 1, 2)) if settings.shift else (0, 0)
        logits = edited_logits(index, vector / vector.norm(), shift)
        loss = F.binary_cross_entropy_with_logits(logits[:, target], torch.ones_like(logits[:, target]))
        if keep_columns and settings.keep_weight > 0:
            loss = loss + settings.keep_weight * F.binary_cross_entropy_with_logits(
                logits[:, keep_columns], probs[index][:, keep_columns])
        if other_columns and settings.other_weight > 0:
            loss = loss + settings.other_weight * F.binary_cross_entropy_with_logits(
                logits[:, other_columns], probs[index][:, other_columns])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == settings.steps - 1:
            losses.append({"step": step, "loss": round(float(loss.detach()), 5)})
    unit = (vector.detach() / vector.detach().norm()).cpu()
    direction = np.zeros((generator.num_ws, generator.w_dim), np.float32)
    direction[rows] = unit.numpy()
    report = {"attribute": attribute, "keep": list(dict.fromkeys(keep)),
              "others": [names[k] for k in other_columns], "rows": rows,
              "settings": dataclasses.asdict(settings),
              "pool": {"samples": len(w), "sources": int(len(sources)), "present": int(present.sum())},
              "cosine_with_initial": round(float(unit @ (initial / initial.norm()).cpu()), 4),
              "guide_on_pool": {"before": before_rates, "after": pool_rates(unit.to(device))},
              "loss": losses}
    return direction, report


def learn_to_file(generator: Generator, guide, attribute: str, out_path, *, keep: Sequence[str] = ("Male",),
                  layers: str | Sequence[int] | None = None, settings: LearnSettings | None = None,
                  checkpoint_info: dict | None = None, guide_info: dict | None = None, progress: bool = True) -> dict:
    """What ``latentedit direction learn`` runs: :func:`learn_direction`, then the W+ direction and its sidecar
    (method ``guided``, the guide's path and sha256, the settings and the report). Returns the sidecar."""
    from latentedit.directions.arrays import format_layers, parse_layers
    from latentedit.directions.files import save_direction

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".npy":
        raise InputError(f"direction files are .npy arrays; name the output {out_path.with_suffix('.npy')}")
    rows = parse_layers(layers, generator.num_ws) if layers is not None else None
    settings = (settings or LearnSettings()).validated()
    direction, report = learn_direction(generator, guide, attribute, keep, rows, settings, progress=progress)
    checkpoint_info = dict(checkpoint_info or {})
    return save_direction(
        out_path, direction, method="guided", generator=generator, generator_sha256=checkpoint_info.get("sha256"),
        seeds=[settings.seed],
        params={"attribute": attribute, "keep": report["keep"], "layers": format_layers(report["rows"]),
                "guide": dict(guide_info or {}), "noise": "const", "truncation_psi": 1.0,
                **dataclasses.asdict(settings)},
        extra={"report": report})
