"""StarGAN attribute transfer measured on the same footing as latent edits (``latentedit evaluate stargan``).

Sources are held-out toyfaces renders lacking the attribute whose counterfactual exists
(:func:`latentedit.evaluate.edit.iter_heldout_faces`, the faces ``evaluate edit --source inverted`` uses),
rendered at the StarGAN's ``image_size``; with ``require_absent`` (default) a face is kept only when the
classifier also labels its render as lacking the attribute, as ``evaluate edit`` does with reconstructions.
Each face is translated with target labels = its source labels (the classifier's, one hair colour; see
:func:`latentedit.baselines.stargan_transfer.source_labels`) with the attribute set to 1 (a hair colour
clears the others). The metrics are :func:`latentedit.evaluate.edit.edit_record`'s: success rate, the flip rate
of every other attribute against the classifier's labels of the *source render*, pixel / LPIPS change,
PSNR to the counterfactual render; plus the translation time per image and the side effects of the
reconstruction ``G(x, c_src)`` (:func:`reconstruction_record`), which tell redrawing apart from editing.

A model trained on exclusive categories (``label_mode = exclusive``, e.g. the toyfaces hair colours as four
domains) gets one-hot source labels: the category the classifier finds most probable. ``size`` renders the
sources (and their counterfactuals) at another size than the model's training size, to measure a fully
convolutional generator at, e.g., twice its training size.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from latentedit import io as lio
from latentedit.data import toyfaces
from latentedit.errors import InputError
from latentedit.evaluate.edit import DEFAULT_WATCH, SOURCE_GROUPS, edit_record, group_records, iter_heldout_faces, \
    psnr_per_image, render_faces, source_groups

#: Files written by :func:`evaluate_stargan_to_folder`.
REPORT_JSON, REPORT_MARKDOWN = "stargan_eval.json", "stargan_eval.md"


@dataclasses.dataclass
class HeldoutSources:
    """Held-out faces lacking an attribute: ``ids`` (face indices), ``images`` / ``truths`` ``[N, 3, S, S]`` in
    [-1, 1] (the renders and their counterfactuals), ``probs [N, A]`` (classifier probabilities of ``images``)
    and ``details`` (how they were chosen)."""

    ids: list[int]
    images: torch.Tensor
    truths: torch.Tensor
    probs: np.ndarray
    details: dict


def heldout_sources(classifier, attribute: str, n: int, size: int, *, start: int = 0,
                    seed: int = toyfaces.HELDOUT_SEED, require_absent: bool = True, batch_size: int = 64,
                    max_candidates: int | None = None, where: Mapping[str, int] | None = None,
                    progress: bool = False) -> HeldoutSources:
    """The first ``n`` held-out faces from ``start`` lacking ``attribute`` (module docstring), at ``size`` px.
    At most ``max_candidates`` (default ``4 n + 16``) are examined, then InputError. ``where`` (``{name: 0|1}``)
    keeps only faces whose true attributes match it (a two-domain translator's source domain, e.g.
    ``{"Black_Hair": 1}``); faces it leaves out are not counted as examined. ``progress``: a bar over the
    kept faces (rendering them is most of an evaluation's time)."""
    from latentedit.evaluate.classifier import predict_attributes
    from latentedit.progress import progress_bar

    names = list(classifier.attribute_names)
    if attribute not in names:
        raise InputError(f"unknown attribute {attribute!r}; the classifier knows {', '.join(names)}")
    if not isinstance(n, int) or n < 1:
        raise InputError(f"the number of sources must be an integer >= 1, got {n!r}")
    column = names.index(attribute)
    max_candidates = max_candidates or 4 * n + 16
    candidates = iter_heldout_faces(attribute, start, seed)
    if where:
        unknown = [name for name in where if name not in toyfaces.ATTRIBUTE_NAMES]
        if unknown:
            raise InputError(f"unknown toyfaces attribute(s) {', '.join(unknown)} in the source domain")
        candidates = (face for face in candidates
                      if all(face[1].attributes[name] == value for name, value in where.items()))
    kept_ids, kept_images, kept_truths, kept_probs, dropped = [], [], [], [], []
    examined = 0
    bar = progress_bar(n, f"{attribute} sources", enabled=progress, unit="face")
    while len(kept_ids) < n:
        faces = [face for _, face in zip(range(min(batch_size, max_candidates - examined)), candidates)]
        if not faces:
            bar.close()
            raise InputError(f"only {len(kept_ids)} of {examined} held-out faces lacking {attribute} are labelled "
                             f"as lacking it by the classifier (need {n}); lower --n")
        examined += len(faces)
        images, truths = render_faces(faces, size)
        probs = predict_attributes(classifier, images).numpy()
        for k, (index, _, _) in enumerate(faces):
            if len(kept_ids) == n:
                break
            if require_absent and probs[k, column] >= 0.5:
                dropped.append(index)
                continue
            kept_ids.append(index)
            kept_images.append(images[k])
            kept_truths.append(truths[k])
            kept_probs.append(probs[k])
        bar.n = len(kept_ids)
        bar.refresh()
    bar.close()
    details = {"seed": seed, "start": start, "indices": kept_ids, "size": size,
               "selection": f"true {attribute} = 0, a counterfactual exists"
                            + (f", true {', '.join(f'{k} = {v}' for k, v in where.items())}" if where else "")
                            + (f", and the classifier labels the render as lacking {attribute}" if require_absent
                               else ""),
               "dropped_renders_labelled_present": dropped}
    return HeldoutSources(kept_ids, torch.stack(kept_images), torch.stack(kept_truths), np.stack(kept_probs), details)


@torch.no_grad()
def mean_lpips(lpips_metric, outputs: torch.Tensor, originals: torch.Tensor, batch_size: int = 16) -> float | None:
    """Mean LPIPS distance of ``outputs`` to ``originals`` (both ``[N, 3, S, S]``); None without a metric."""
    if lpips_metric is None:
        return None
    device = next(lpips_metric.parameters()).device
    distances = []
    for begin in range(0, outputs.shape[0], batch_size):
        reference = lpips_metric.target_features(originals[begin:begin + batch_size].to(device))
        distances.append(lpips_metric(outputs[begin:begin + batch_size].to(device), reference).cpu())
    return float(torch.cat(distances).mean())


@torch.no_grad()
def evaluate_stargan(generator, model_names: Sequence[str], classifier, sources: HeldoutSources, attribute: str, *,
                     lpips_metric=None, batch_size: int = 16, exclusive: bool = False) -> tuple[dict, torch.Tensor]:
    """Translate ``sources`` so that they show ``attribute`` and measure the result.

    ``generator``: a :class:`latentedit.baselines.stargan.StarGANGenerator` whose labels are ``model_names``
    (which must include ``attribute``). Returns the record (:func:`edit_record` keys plus
    ``seconds_per_image``, ``target_label_changes``: how many sources' labels the edit changed, and
    ``reconstruction``: :func:`reconstruction_record`) and the translations ``[N, 3, S, S]``.
    """
    from latentedit.baselines import stargan
    from latentedit.baselines.stargan_transfer import source_labels, translate
    from latentedit.evaluate.classifier import predict_attributes

    names = list(classifier.attribute_names)
    if attribute not in model_names:
        raise InputError(f"this StarGAN was trained on {', '.join(model_names)}; it cannot set {attribute}")
    source = source_labels(sources.images, model_names, classifier=classifier)
    labels = source.labels
    if exclusive:  # one category per image: the most probable one
        labels = torch.zeros_like(labels).scatter_(1, source.probabilities.nan_to_num(0.0).argmax(dim=1, keepdim=True),
                                                   1.0)
        targets = torch.zeros_like(labels)
        targets[:, list(model_names).index(attribute)] = 1.0
    else:
        targets = stargan.apply_changes(labels, model_names, {attribute: 1})
    started = time.perf_counter()
    outputs = translate(generator, sources.images, targets, batch_size=batch_size).clamp(-1, 1)
    seconds = time.perf_counter() - started
    probs = predict_attributes(classifier, outputs).numpy()
    lpips_value = mean_lpips(lpips_metric, outputs, sources.images, batch_size)
    record = edit_record(outputs, probs, sources.images, sources.probs, names, attribute, truths=sources.truths,
                         lpips=lpips_value)
    groups = source_groups(sources.probs, names)
    if groups is not None:  # the same per-group view as latent edits (evaluate edit)
        record["by_group"] = group_records(probs, sources.probs, names, attribute, groups,
                                           [w for w in DEFAULT_WATCH if w in names and w != attribute])
    record["seconds_per_image"] = seconds / outputs.shape[0]
    record["target_label_changes"] = int((targets != labels).any(dim=1).sum())
    record["reconstruction"] = reconstruction_record(generator, classifier, sources, labels, attribute,
                                                     batch_size=batch_size)
    return record, outputs


@torch.no_grad()
def reconstruction_record(generator, classifier, sources: HeldoutSources, labels: torch.Tensor, attribute: str, *,
                          batch_size: int = 16) -> dict:
    """What the generator changes when asked to change nothing: ``G(x, c_src)`` for the ``labels [N, c_dim]`` of
    ``sources``, measured like an edit of ``attribute`` (the same counted side-effect attributes).

    The part of an edit's side effects that comes from redrawing the face, not from the requested change; a
    perfect generator scores 0. Returns ``side_effect_mean``, ``flips`` and ``psnr_to_source_db``.
    """
    from latentedit.baselines.stargan_transfer import translate
    from latentedit.evaluate.classifier import predict_attributes

    outputs = translate(generator, sources.images, labels, batch_size=batch_size).clamp(-1, 1)
    record = edit_record(outputs, predict_attributes(classifier, outputs).numpy(), sources.images, sources.probs,
                         list(classifier.attribute_names), attribute)
    return {"side_effect_mean": record["side_effect_mean"], "flips": record["flips"],
            "psnr_to_source_db": float(psnr_per_image(outputs, sources.images).mean())}


def format_markdown(result: dict) -> str:
    """One row per attribute: success, side effects, Male flips, pixel change, LPIPS, PSNR to the truth, time."""
    lines = [f"# StarGAN evaluation ({result['stargan']['path']})", "",
             f"Held-out toyfaces renders lacking each attribute (seed {toyfaces.HELDOUT_SEED}), translated with the "
             "attribute set to 1 and every other label kept; side effects = flip rate of the other attributes "
             "(other hair colours excluded for a hair-colour target) against the classifier's labels of the source "
             "render.", "",
             "| attribute | sources | success | mean side effect | worst side effect | Male flips | pixel change | "
             "LPIPS | PSNR to truth | source PSNR to truth | ms/image | reconstruction side effect |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for attribute, entry in result["attributes"].items():
        record = entry["record"]
        worst = record["side_effect_max"]
        male = record["flips"].get("Male")
        lines.append(
            f"| {attribute} | {entry['sources']['count']} | {100 * record['success_rate']:.1f} % | "
            f"{100 * record['side_effect_mean']:.1f} % | "
            + (f"{worst['attribute']} {100 * worst['rate']:.1f} %" if worst["rate"] > 0 else "none")
            + f" | {'–' if male is None else f'{100 * male:.1f} %'} | {record['pixel_change']:.3f} | "
            + ("–" if record["lpips"] is None else f"{record['lpips']:.3f}")
            + f" | {record['psnr_to_truth_db']:.2f} dB | {entry['sources']['source_psnr_to_truth_db']:.2f} dB | "
              f"{1e3 * record['seconds_per_image']:.1f} | "
            # Reports written before the reconstruction was measured lack it.
            + (f"{100 * record['reconstruction']['side_effect_mean']:.1f} % |" if "reconstruction" in record
               else "– |"))
    lines += ["", "Reconstruction side effect: the same flip rate for `G(x, c_src)`, the translation to the source's "
              "own labels; the part of the side effects that comes from redrawing the face rather than from the edit."]
    grouped = {a: e["record"]["by_group"] for a, e in result["attributes"].items() if "by_group" in e["record"]}
    if grouped:
        groups = [g for g in SOURCE_GROUPS if any(g in by_group for by_group in grouped.values())]
        lines += ["", "By source group (success / mean side effect / Male flips; n in brackets):", "",
                  "| attribute | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
        for attribute, by_group in grouped.items():
            cells = []
            for group in groups:
                entry = by_group.get(group)
                male = None if entry is None else entry["watched"].get("Male")
                cells.append("–" if entry is None else
                             f"{100 * entry['success_rate']:.1f} % / {100 * entry['side_effect_mean']:.1f} % / "
                             + ("–" if male is None else f"{100 * male:.1f} %") + f" ({entry['n']})")
            lines.append(f"| {attribute} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evaluate_stargan_to_folder(ckpt: str | os.PathLike, attributes: Sequence[str], out_dir: str | os.PathLike, *,
                               n: int = 100, start: int = 0, classifier_path: str | os.PathLike | None = None,
                               device: str | torch.device = "cpu", batch_size: int = 16, keep: int = 8,
                               log: Callable[[str], None] | None = None, size: int | None = None,
                               progress: bool = False) -> dict:
    """What ``latentedit evaluate stargan`` runs: per attribute, sources, translation, metrics; writes
    ``stargan_eval.json``, ``stargan_eval.md`` and ``<attribute>_samples.png`` (rows = sources; columns =
    render, translation, counterfactual). Returns the JSON-ready result."""
    from latentedit.baselines.stargan import load_stargan_generator
    from latentedit.evaluate.classifier import load_attribute_classifier
    from latentedit.invert.perceptual import build_perceptual, find_vgg16_weights

    log = log or (lambda message: None)
    if not attributes:
        raise InputError("give at least one attribute (--attr)")
    generator, info = load_stargan_generator(ckpt, device=device)
    classifier, classifier_info = load_attribute_classifier(classifier_path, device=device)
    missing = [name for name in attributes if name not in info.attribute_names]
    if missing:
        raise InputError(f"this StarGAN was trained on {', '.join(info.attribute_names)}; it cannot set "
                         f"{', '.join(missing)}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 16 or size % 4):
        raise InputError(f"--size must be a multiple of 4 and at least 16, got {size}")
    side = info.image_size if size is None else size
    weights = find_vgg16_weights()
    lpips_metric = (build_perceptual("lpips", weights, image_size=side, device=device)
                    if weights else None)
    if lpips_metric is None:
        log("note: LPIPS not measured: the VGG16 weights are not available locally (reported as null)")
    out_dir = Path(out_dir)
    result = {"command": "evaluate stargan",
              "stargan": {"path": str(info.path), "sha256": lio.sha256_file(info.path),
                          "attribute_names": list(info.attribute_names), "image_size": info.image_size,
                          "architecture": info.architecture, "exclusive": info.exclusive, "eval_size": side},
              "classifier": classifier_info, "lpips": "LPIPS-VGG v0.1" if lpips_metric is not None else None,
              "attributes": {}, "files": []}
    for attribute in attributes:
        sources = heldout_sources(classifier, attribute, n, side, start=start, progress=progress)
        record, outputs = evaluate_stargan(generator, info.attribute_names, classifier, sources, attribute,
                                           lpips_metric=lpips_metric, batch_size=batch_size,
                                           exclusive=info.exclusive)
        result["attributes"][attribute] = {
            "record": record,
            "sources": {"count": len(sources.ids), "details": sources.details,
                        "source_psnr_to_truth_db": float(psnr_per_image(sources.images, sources.truths).mean())}}
        rows = min(keep, len(sources.ids))
        tiles = torch.stack([sources.images[:rows], outputs[:rows], sources.truths[:rows]], dim=1)
        file_name = f"{attribute}_samples.png"
        lio.save_png(out_dir / file_name, lio.make_grid(lio.to_uint8(tiles.reshape(-1, *tiles.shape[2:])), columns=3))
        result["files"].append(file_name)
    result["versions"] = lio.versions()
    with lio.atomic_write(out_dir / REPORT_MARKDOWN, "w") as handle:
        handle.write(format_markdown(result))
    result["files"] = [REPORT_JSON, REPORT_MARKDOWN] + result["files"]
    lio.write_json(out_dir / REPORT_JSON, result)
    return result
