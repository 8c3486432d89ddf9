"""CycleGAN and pix2pix scored exactly as StarGAN and latent edits are (``latentedit evaluate cyclegan|pix2pix``).

A two-domain model trained on toyfaces domains (``toyfaces:Black_Hair:Blond_Hair``) translates direction ``a2b``
from domain A to domain B. The target domain must be one attribute set to 1 (``Blond_Hair``): that is the
attribute whose success is measured. Sources are :func:`latentedit.evaluate.translators.heldout_sources` of that
attribute restricted to faces of the source domain (``where``: the model never saw other faces, e.g. brown hair
for a black -> blond model), with their exact counterfactuals as truths; so the numbers sit in the same table as
``evaluate stargan`` and ``evaluate edit --source inverted`` (whose sources are all faces lacking the attribute:
compare like with like). The metrics are :func:`latentedit.evaluate.edit.edit_record`'s (success, flips of every
other attribute against the classifier's labels of the source render, pixel / LPIPS change, PSNR to the
counterfactual), per source group, the translation time per image, and for CycleGAN the *cycle*
``G_BA(G_AB(x))`` measured like StarGAN's reconstruction (side effects and PSNR to the source).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from latentedit import io as lio
from latentedit.data import toyfaces
from latentedit.errors import InputError
from latentedit.evaluate.edit import DEFAULT_WATCH, edit_record, group_records, psnr_per_image, source_groups
from latentedit.evaluate.translators import HeldoutSources, heldout_sources, mean_lpips

REPORT_NAMES = {"cyclegan": ("cyclegan_eval.json", "cyclegan_eval.md"), "pix2pix": ("pix2pix_eval.json",
                                                                                    "pix2pix_eval.md")}


def domain_condition(name: str) -> dict:
    """A domain name written by the toyfaces data (``Black_Hair``, ``Eyeglasses=0``, ``Male,Smiling``) as
    ``{attribute: 0|1}``; InputError for a name that is not such a condition (a model trained on folders)."""
    condition = {}
    for item in str(name).split(","):
        attribute, sep, value = item.strip().partition("=")
        if attribute not in toyfaces.ATTRIBUTE_NAMES or (sep and value not in ("0", "1")):
            raise InputError(f"domain {name!r} is not a toyfaces attribute condition; only models trained on "
                             "--data toyfaces:A:B can be scored against true counterfactuals")
        condition[attribute] = int(value) if sep else 1
    return condition


def direction_attribute(domains: dict, direction: str) -> tuple[dict, str]:
    """``(source condition, target attribute)`` of translating ``direction`` between ``domains``."""
    if direction not in ("a2b", "b2a"):
        raise InputError(f"direction must be a2b or b2a, got {direction!r}")
    source_key, target_key = ("a", "b") if direction == "a2b" else ("b", "a")
    source, target = domain_condition(domains[source_key]), domain_condition(domains[target_key])
    if len(target) != 1 or next(iter(target.values())) != 1:
        raise InputError(f"the target domain {domains[target_key]!r} is not one attribute set to 1; success is measured "
                         "for one attribute the translation should add")
    return source, next(iter(target))


@torch.no_grad()
def evaluate_two_domain(translate_fn: Callable[[torch.Tensor], torch.Tensor], classifier, sources: HeldoutSources,
                        attribute: str, *, back_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        lpips_metric=None, batch_size: int = 16) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
    """Translate ``sources`` with ``translate_fn`` (``[N, 3, S, S] -> [N, 3, S, S]``) and measure the result as an
    edit adding ``attribute``. ``back_fn`` (CycleGAN's reverse generator) adds ``cycle``: the side effects and PSNR
    to the source of ``back_fn(translate_fn(x))``. Returns ``(record, translations, cycled or None)``."""
    from latentedit.evaluate.classifier import predict_attributes

    names = list(classifier.attribute_names)
    started = time.perf_counter()
    outputs = translate_fn(sources.images).clamp(-1, 1)
    seconds = time.perf_counter() - started
    probs = predict_attributes(classifier, outputs).numpy()
    record = edit_record(outputs, probs, sources.images, sources.probs, names, attribute, truths=sources.truths,
                         lpips=mean_lpips(lpips_metric, outputs, sources.images, batch_size))
    groups = source_groups(sources.probs, names)
    if groups is not None:
        record["by_group"] = group_records(probs, sources.probs, names, attribute, groups,
                                           [w for w in DEFAULT_WATCH if w in names and w != attribute])
    record["seconds_per_image"] = seconds / outputs.shape[0]
    cycled = None
    if back_fn is not None:
        cycled = back_fn(outputs).clamp(-1, 1)
        cycle = edit_record(cycled, predict_attributes(classifier, cycled).numpy(), sources.images, sources.probs,
                            names, attribute)
        record["cycle"] = {"side_effect_mean": cycle["side_effect_mean"], "flips": cycle["flips"],
                           "success_rate": cycle["success_rate"],
                           "psnr_to_source_db": float(psnr_per_image(cycled, sources.images).mean())}
    record["psnr_to_source_db"] = float(psnr_per_image(outputs, sources.images).mean())
    record["identity_collapse_rate"] = identity_collapse_rate(outputs, sources)
    return record, outputs, cycled


def identity_collapse_rate(outputs: torch.Tensor, sources: HeldoutSources, margin_db: float = 1.0) -> float:
    """Fraction of translations "within 1 dB of their inputs" (seed 003's failure, a generator that returns its
    input): outputs whose PSNR to the true counterfactual is within ``margin_db`` of the untranslated source's PSNR
    to it, i.e. the translation moved the image no measurable step towards the truth nor away from it."""
    gained = psnr_per_image(outputs, sources.truths) - psnr_per_image(sources.images, sources.truths)
    return float((gained.abs() <= margin_db).float().mean())


def format_markdown(result: dict) -> str:
    """One row per direction: success, side effects, Male flips, pixel change, LPIPS, PSNR to truth, time, cycle."""
    kind = result["kind"]
    lines = [f"# {'CycleGAN' if kind == 'cyclegan' else 'pix2pix'} evaluation ({result['model']['path']})", "",
             f"Held-out toyfaces renders (seed {toyfaces.HELDOUT_SEED}) of the source domain lacking the target "
             "attribute, translated; side effects = flip rate of the other attributes (other hair colours excluded for "
             "a hair-colour target) against the classifier's labels of the source render.", "",
             "| direction | attribute | sources | success | mean side effect | worst side effect | Male flips | "
             "pixel change | LPIPS | PSNR to truth | source PSNR to truth | identity collapse | ms/image | "
             "cycle side effect | cycle PSNR |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for direction, entry in result["directions"].items():
        record = entry["record"]
        worst, male, cycle = record["side_effect_max"], record["flips"].get("Male"), record.get("cycle")
        lines.append(
            f"| {direction} | {entry['attribute']} | {entry['sources']['count']} | {100 * record['success_rate']:.1f} % | "
            f"{100 * record['side_effect_mean']:.1f} % | "
            + (f"{worst['attribute']} {100 * worst['rate']:.1f} %" if worst["rate"] > 0 else "none")
            + f" | {'–' if male is None else f'{100 * male:.1f} %'} | {record['pixel_change']:.3f} | "
            + ("–" if record["lpips"] is None else f"{record['lpips']:.3f}")
            + f" | {record['psnr_to_truth_db']:.2f} dB | {entry['sources']['source_psnr_to_truth_db']:.2f} dB | "
              f"{100 * record['identity_collapse_rate']:.1f} % | {1e3 * record['seconds_per_image']:.1f} | "
            + ("– | – |" if cycle is None else
               f"{100 * cycle['side_effect_mean']:.1f} % | {cycle['psnr_to_source_db']:.2f} dB |"))
    lines += ["", "Identity collapse: outputs whose PSNR to the true counterfactual is within 1 dB of the untranslated "
              "source's (the translation did next to nothing). Cycle: the translation translated back (CycleGAN), "
              "measured like an edit of the source."]
    return "\n".join(lines) + "\n"


def evaluate_translator_to_folder(kind: str, ckpt: str | os.PathLike, out_dir: str | os.PathLike,
                                  directions: Sequence[str] = ("a2b",), *, n: int = 100, start: int = 0,
                                  classifier_path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                                  batch_size: int = 16, keep: int = 8, norm_stats: str = "image",
                                  log: Callable[[str], None] | None = None, progress: bool = False) -> dict:
    """What ``latentedit evaluate cyclegan|pix2pix`` runs: per direction, sources, translation, metrics; writes
    ``<kind>_eval.json``, ``<kind>_eval.md`` and ``<direction>_samples.png`` (rows = sources; columns = render,
    translation, counterfactual, and the cycle for CycleGAN). Returns the JSON-ready result."""
    from latentedit.baselines import cyclegan
    from latentedit.evaluate.classifier import load_attribute_classifier
    from latentedit.invert.perceptual import build_perceptual, find_vgg16_weights

    log = log or (lambda message: None)
    if not directions:
        raise InputError("give at least one direction")
    translator = cyclegan.load_translator(ckpt, kind, device=device)
    plans = {direction: (translator.generator(direction), *direction_attribute(translator.domains, direction))
             for direction in directions}
    out_dir = lio.prepare_output_dir(out_dir)
    classifier, classifier_info = load_attribute_classifier(classifier_path, device=device)
    weights = find_vgg16_weights()
    lpips_metric = (build_perceptual("lpips", weights, image_size=translator.image_size, device=device)
                    if weights else None)
    if lpips_metric is None:
        log("note: LPIPS not measured: the VGG16 weights are not available locally (reported as null)")
    json_name, markdown_name = REPORT_NAMES[kind]
    result = {"command": f"evaluate {kind}", "kind": kind,
              "model": {"path": str(translator.path), "sha256": lio.sha256_file(translator.path),
                        "domains": translator.domains, "image_size": translator.image_size,
                        "generator": translator.config.name, "norm_stats": norm_stats},
              "classifier": classifier_info, "lpips": "LPIPS-VGG v0.1" if lpips_metric is not None else None,
              "directions": {}, "files": []}
    for direction, (generator, source_condition, attribute) in plans.items():
        sources = heldout_sources(classifier, attribute, n, translator.image_size, start=start, where=source_condition,
                                  progress=progress)
        forward = lambda images, g=generator: cyclegan.translate(g, images, batch_size, norm_stats)  # noqa: E731
        back_fn = None
        if kind == "cyclegan":
            reverse = translator.generator("b2a" if direction == "a2b" else "a2b")
            back_fn = lambda images, g=reverse: cyclegan.translate(g, images, batch_size, norm_stats)  # noqa: E731
        record, outputs, cycled = evaluate_two_domain(forward, classifier, sources, attribute, back_fn=back_fn,
                                                      lpips_metric=lpips_metric, batch_size=batch_size)
        result["directions"][direction] = {
            "attribute": attribute, "source_domain": source_condition, "record": record,
            "sources": {"count": len(sources.ids), "details": sources.details,
                        "source_psnr_to_truth_db": float(psnr_per_image(sources.images, sources.truths).mean())}}
        rows = min(keep, len(sources.ids))
        columns = [sources.images[:rows], outputs[:rows], sources.truths[:rows]]
        if cycled is not None:
            columns.append(cycled[:rows])
        tiles = torch.stack(columns, dim=1)
        file_name = f"{direction}_samples.png"
        lio.save_png(Path(out_dir) / file_name, lio.make_grid(lio.to_uint8(tiles.reshape(-1, *tiles.shape[2:])),
                                                              columns=len(columns)))
        result["files"].append(file_name)
    result["versions"] = lio.versions()
    with lio.atomic_write(Path(out_dir) / markdown_name, "w") as handle:
        handle.write(format_markdown(result))
    result["files"] = [json_name, markdown_name] + result["files"]
    lio.write_json(Path(out_dir) / json_name, result)
    return result
