"""InterFaceGAN directions: sample the generator, label with the attribute classifier, fit a linear SVM.

Sampling: z from a seeded ``torch.Generator``, psi = 1, the stored ``const`` noise; every image is labelled
by the attribute classifier (:func:`sample_and_label`, cached on disk). :func:`fit_attribute_normal` fits
the SVM on the raw w; the unit normal of its hyperplane, pointing to the side where the attribute is
present, is a W direction. Conditioning (:func:`condition_direction`) removes the components along the
normals of any number of other attributes (orthogonal projection onto the complement of their span; an
orthonormal basis of the span is built by Gram-Schmidt, i.e. a QR factorisation) and renormalises.

Decisions where the paper leaves a choice: scikit-learn ``LinearSVC`` (squared hinge, L2 penalty,
``C = 1``) on the raw w, centred (which moves only the intercept) so that the solver converges quickly, with
``class_weight="balanced"`` because many attributes are rare (InterFaceGAN balances by taking equally many
extreme samples); labels are the classifier's probabilities thresholded at 0.5. A held-out 20 % of the
samples gives the reported validation accuracy. Directions live in W only: generated samples have identical
rows.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from latentedit import io as lio
from latentedit.directions.arrays import DEFAULT_BATCH
from latentedit.directions.files import BOUNDARY_DEFINITION, save_direction
from latentedit.errors import InputError
from latentedit.model.generator import Generator

#: Format tag of a cache file of labelled samples (:func:`sample_and_label`).
SAMPLES_FORMAT = "latentedit-labelled-samples-v1"


@dataclasses.dataclass
class LabelledSamples:
    """Generated samples and their labels: ``w [n, w_dim]`` float32 (psi 1), ``probs [n, A]`` float32 classifier
    probabilities in ``attribute_names`` order; ``seed`` of the z draws; ``from_cache``."""

    w: np.ndarray
    probs: np.ndarray
    attribute_names: tuple[str, ...]
    seed: int
    from_cache: bool = False

    def labels(self, attribute: str) -> np.ndarray:
        """0/1 labels ``[n]`` (probability >= 0.5) of ``attribute``."""
        return (self.probs[:, self.column(attribute)] >= 0.5).astype(np.int64)

    def column(self, attribute: str) -> int:
        if attribute not in self.attribute_names:
            raise InputError(f"unknown attribute {attribute!r}; the classifier knows {', '.join(self.attribute_names)}")
        return self.attribute_names.index(attribute)


def _read_samples_cache(path: Path, key: Mapping, w_dim: int) -> LabelledSamples | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_key = json.loads(str(data["key"]))
            if str(data["format"]) != SAMPLES_FORMAT or stored_key != json.loads(json.dumps(dict(key))):
                return None
            w, probs = data["w"].astype(np.float32), data["probs"].astype(np.float32)
            names = tuple(str(n) for n in data["attribute_names"])
            seed = int(data["seed"])
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if w.ndim != 2 or w.shape[1] != w_dim or probs.shape != (w.shape[0], len(names)):
        return None
    return LabelledSamples(w, probs, names, seed, from_cache=True)


@torch.no_grad()
def sample_and_label(generator: Generator, classifier, n: int, seed: int = 0, *, batch_size: int = DEFAULT_BATCH,
                     progress: bool = False, cache_path: str | os.PathLike | None = None,
                     cache_key: Mapping | None = None) -> LabelledSamples:
    """Draw ``n`` z ``[n, z_dim]`` from ``torch.Generator().manual_seed(seed)`` (one ``randn`` call), map them to
    w (psi 1), render with the stored noise and label the images with ``classifier``, ``batch_size`` at a
    time.

    ``cache_path`` (a ``.npz``): reused when it holds samples made under the same ``cache_key`` (a JSON-
    ready dict: generator and classifier identity, ``n``, ``seed``), otherwise (re)written.
    """
    from tqdm.auto import tqdm

    from latentedit.evaluate.classifier import predict_attributes

    if not isinstance(n, int) or n < 2:
        raise InputError(f"the number of samples must be an integer >= 2, got {n!r}")
    key = dict(cache_key or {})
    key.update(n=int(n), seed=int(seed))
    if cache_path is not None and Path(cache_path).is_file():
        cached = _read_samples_cache(Path(cache_path), key, generator.w_dim)
        if cached is not None:
            return cached
    device = next(generator.parameters()).device
    z = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(int(seed)))
    ws, probs = [], []
    for start in tqdm(range(0, n, batch_size), desc="label samples", unit="batch", disable=not progress,
                      leave=False):
        w = generator.mapping(z[start:start + batch_size].to(device))
        images = generator.synthesis(w, "const")
        probs.append(predict_attributes(classifier, images, batch_size=batch_size).numpy())
        ws.append(w.float().cpu().numpy())
    samples = LabelledSamples(np.concatenate(ws).astype(np.float32), np.concatenate(probs).astype(np.float32),
                              tuple(classifier.attribute_names), int(seed))
    if cache_path is not None:
        buffer = io.BytesIO()
        np.savez(buffer, format=np.str_(SAMPLES_FORMAT), key=np.str_(json.dumps(key, sort_keys=True)),
                 w=samples.w, probs=samples.probs, attribute_names=np.asarray(samples.attribute_names),
                 seed=np.int64(seed))
        lio.write_bytes(cache_path, buffer.getvalue())
    return samples


def fit_attribute_normal(w: np.ndarray, labels: np.ndarray, *, C: float = 1.0, seed: int = 0,
                         validation_fraction: float = 0.2, name: str = "attribute") -> tuple[np.ndarray, dict]:
    """Fit a linear SVM separating ``labels`` (0/1 ``[n]``) in w ``[n, w_dim]``; return its unit normal ``[w_dim]``
    (float64, pointing towards label 1) and ``{train_accuracy, validation_accuracy, positives, negatives,
    boundary_offset}``: the SVM's signed distance of ``w`` to its plane is ``normal · w + boundary_offset``.

    scikit-learn ``LinearSVC(C, class_weight="balanced")`` on centred w; a random ``validation_fraction``
    (seeded) is held out for the reported accuracy (skipped when it would hold fewer than 10 samples).
    InputError when either class has fewer than 2 samples.
    """
    from sklearn.svm import LinearSVC

    w = np.asarray(w, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    positives = int(labels.sum())
    negatives = int(len(labels) - positives)
    if min(positives, negatives) < 2:
        raise InputError(f"{name}: only {positives} of {len(labels)} samples are labelled present and {negatives} "
                         f"absent; a linear SVM needs both classes (raise --n)")
    order = np.random.default_rng(seed).permutation(len(labels))
    held = int(round(validation_fraction * len(labels)))
    held = held if held >= 10 and len(labels) - held >= 4 else 0
    train, validation = order[held:], order[:held]
    if len(set(labels[train].tolist())) < 2:
        train, validation = order, order[:0]
    centre = w[train].mean(0)
    with warnings.catch_warnings():
        # A separable problem can stop at max_iter with a perfectly usable normal; say nothing then.
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        svm = LinearSVC(C=C, class_weight="balanced", max_iter=20000, random_state=seed)
        svm.fit(w[train] - centre, labels[train])
    normal = svm.coef_[0].astype(np.float64)
    norm = np.linalg.norm(normal)
    if not np.isfinite(norm) or norm == 0:
        raise InputError(f"{name}: the SVM found no separating direction (all weights zero)")
    # decision(w) = coef . (w - centre) + intercept; divided by |coef| it is the signed distance to the plane.
    offset = float(svm.intercept_[0]) / norm - float(normal @ centre) / norm
    info = {"positives": positives, "negatives": negatives, "train_samples": int(len(train)),
            "boundary_offset": offset,
            "train_accuracy": round(float(svm.score(w[train] - centre, labels[train])), 4),
            "validation_samples": int(len(validation)),
            "validation_accuracy": (round(float(svm.score(w[validation] - centre, labels[validation])), 4)
                                    if len(validation) else None)}
    return normal / norm, info


def condition_direction(primary: np.ndarray, conditions: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Remove from ``primary [D]`` its components along ``conditions`` (``[k, D]``, any k >= 0), then renormalise.

    The conditions need not be orthogonal or unit: an orthonormal basis of their span is built by
    Gram-Schmidt (QR) and the projection onto it is subtracted, so the result is orthogonal to every
    condition. Conditions that are (numerically) dependent add nothing. InputError when ``primary``
    lies (almost) inside their span. Returns float64 ``[D]`` of unit length.
    """
    primary = np.asarray(primary, np.float64)
    conditions = np.asarray(conditions, np.float64).reshape(-1, primary.shape[0])
    result = primary / np.linalg.norm(primary)
    if len(conditions):
        basis, triangle = np.linalg.qr(conditions.T)
        scale = np.abs(np.diag(triangle))
        basis = basis[:, scale > 1e-8 * max(1.0, float(scale.max(initial=0.0)))]
        result = result - basis @ (basis.T @ result)
    norm = np.linalg.norm(result)
    if norm < 1e-6:
        raise InputError("the direction lies inside the span of the conditioning directions: conditioning would "
                         "leave nothing of it")
    return result / norm


def interfacegan_direction(samples: LabelledSamples, attribute: str, conditions: Sequence[str] = (), *,
                           C: float = 1.0, seed: int = 0) -> tuple[np.ndarray, dict]:
    """InterFaceGAN: the unit SVM normal ``[w_dim]`` (float32) of ``attribute`` in W, optionally conditioned.

    ``conditions``: other attributes whose SVM normals (fitted on the same samples) are projected out
    (:func:`condition_direction`). Returns the direction and a report: the primary fit, each condition's
    fit, the cosine between the primary normal and each condition normal before conditioning, and the
    primary SVM's ``boundary`` (its unit normal and offset, for :func:`apply_to_distance`).
    """
    conditions = list(dict.fromkeys(conditions))
    if attribute in conditions:
        raise InputError(f"{attribute} cannot be conditioned on itself")
    normal, info = fit_attribute_normal(samples.w, samples.labels(attribute), C=C, seed=seed, name=attribute)
    report = {"attribute": attribute, "fit": info, "conditions": {},
              "boundary": {"normal": [round(float(x), 8) for x in normal], "offset": info["boundary_offset"],
                           "definition": BOUNDARY_DEFINITION}}
    condition_normals = []
    for other in conditions:
        other_normal, other_info = fit_attribute_normal(samples.w, samples.labels(other), C=C, seed=seed, name=other)
        condition_normals.append(other_normal)
        report["conditions"][other] = {"fit": other_info,
                                       "cosine_before": round(float(normal @ other_normal), 4)}
    direction = condition_direction(normal, condition_normals) if condition_normals else normal
    report["cosine_with_unconditioned"] = round(float(direction @ normal), 4)
    return direction.astype(np.float32), report


def svm_to_file(generator: Generator, classifier, attribute: str, out_path: str | os.PathLike, *, n: int = 20000,
                seed: int = 0, conditions: Sequence[str] = (), C: float = 1.0, batch_size: int = DEFAULT_BATCH,
                samples_path: str | os.PathLike | None = None, checkpoint_info: Mapping | None = None,
                classifier_info: Mapping | None = None, progress: bool = True) -> dict:
    """What ``latentedit direction svm`` runs: label ``n`` samples (:func:`sample_and_label`, cached in
    ``samples_path`` when given), fit :func:`interfacegan_direction` and write the W direction ``[w_dim]``
    with its sidecar (the fit report under ``report``). Returns the sidecar."""
    checkpoint_info = dict(checkpoint_info or {})
    classifier_info = dict(classifier_info or {})
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".npy":
        raise InputError(f"direction files are .npy arrays; name the output {out_path.with_suffix('.npy')}")
    for name in [attribute, *conditions]:
        if name not in classifier.attribute_names:
            raise InputError(f"unknown attribute {name!r}; the classifier knows "
                             f"{', '.join(classifier.attribute_names)}")
    samples = sample_and_label(generator, classifier, n, seed, batch_size=batch_size, progress=progress,
                               cache_path=samples_path,
                               cache_key={"generator_sha256": checkpoint_info.get("sha256"),
                                          "classifier_sha256": classifier_info.get("sha256")})
    vector, report = interfacegan_direction(samples, attribute, conditions, C=C, seed=seed)
    report["samples"] = {"n": n, "seed": seed, "from_cache": samples.from_cache,
                         "cache": None if samples_path is None else str(samples_path),
                         "frequency": {name: round(float((samples.probs[:, i] >= 0.5).mean()), 4)
                                       for i, name in enumerate(samples.attribute_names)}}
    return save_direction(
        out_path, vector, method="interfacegan-svm", generator=generator,
        generator_sha256=checkpoint_info.get("sha256"), seeds=[seed],
        params={"attribute": attribute, "condition": list(conditions), "n": n, "seed": seed, "C": C,
                "truncation_psi": 1.0, "noise": "const", "space": "w", "classifier": classifier_info,
                "svm": "sklearn LinearSVC, class_weight=balanced, centred w, labels p >= 0.5"},
        extra={"report": report})
