"""StarGAN against the best latent direction (invert -> apply) on held-out toyfaces, per attribute.

For each attribute (default Blond_Hair, Black_Hair, Male, Young):

- **StarGAN** (``latentedit evaluate stargan``): held-out renders lacking the attribute, translated with
  the attribute set to 1.
- **Latent**: two InterFaceGAN directions (``svm``, and ``svm`` conditioned on Male — on Young for Male
  itself) evaluated by ``latentedit evaluate edit --source inverted`` on held-out renders lacking the
  attribute, normalised to magnitude 1, at ``--strength-count`` strengths from 0 to ``--max-strength``. Its
  operating point is, per direction, the smallest strength reaching 80 % success (else the strength with
  the highest success); the better direction (higher success, then fewer side effects) is reported.

Both use the same measurements (:func:`latentedit.evaluate.edit.edit_record`): success rate, mean and worst
side-effect flip rate, Male flips, pixel change, PSNR to the ground-truth counterfactual render; plus the
wall time per image: StarGAN's translation, and for latent editing the inversion (``--invert-steps``) plus
the edit and render. Writes ``OUT/summary.md``, ``OUT/summary.json`` and the two evaluations' folders.

    python benchmarks/stargan_vs_latent.py -o runs/stargan_vs_latent                 # the real run
    python benchmarks/stargan_vs_latent.py --stargan RUN --ckpt G.safetensors --attributes Blond_Hair \\
        --n 4 --svm-n 300 --invert-steps 5 -o /tmp/smoke                              # a smoke run
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out-dir", type=Path, required=True)
    parser.add_argument("--ckpt", default="toyfaces64", help="StyleGAN2 generator for the latent edits.")
    parser.add_argument("--stargan", default="stargan_toyfaces64", help="StarGAN generator (name, file or run).")
    parser.add_argument("--attributes", default="Blond_Hair,Black_Hair,Male,Young")
    parser.add_argument("--n", type=int, default=100, help="Held-out faces per attribute and method.")
    parser.add_argument("--svm-n", type=int, default=20000)
    parser.add_argument("--invert-steps", type=int, default=200)
    parser.add_argument("--max-strength", type=float, default=6.0)
    parser.add_argument("--strength-count", type=int, default=13)
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def operating_point(summary: dict) -> dict:
    """The smallest strength reaching the target success, else the most successful one."""
    return summary["first_at_target"] or summary["best"]


def latent_seconds_per_image(generator, steps: int, count: int = 4) -> float:
    """Wall time of inverting ``count`` held-out renders one at a time plus one edit and render, per image."""
    from latentedit.data.toyfaces import HELDOUT_SEED, render_face
    from latentedit.directions.apply import apply_direction, render_latents
    from latentedit.invert.optimize import InversionSettings, invert

    faces = np.stack([render_face(HELDOUT_SEED, i, generator.size) for i in range(count)])
    targets = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1
    settings = InversionSettings(steps=steps, perceptual="none")
    started = time.perf_counter()
    for k in range(count):
        latent = invert(generator, targets[k:k + 1], settings)[0].latent
        direction = np.zeros_like(latent)  # the cost of an edit does not depend on the direction's values
        render_latents(generator, apply_direction(torch.from_numpy(latent)[None], direction, 1.0))
    return (time.perf_counter() - started) / count


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from latentedit import directions as dirs
    from latentedit.checkpoints import load_generator
    from latentedit.device import resolve_device
    from latentedit.evaluate.edit import evaluate_edit_to_folder
    from latentedit.evaluate.translators import evaluate_stargan_to_folder
    from latentedit.invert.optimize import InversionSettings
    from latentedit.evaluate.classifier import load_attribute_classifier
    from latentedit.io import portable_paths, versions, write_bytes, write_json

    started = time.perf_counter()
    device = resolve_device(args.device)
    generator, info = load_generator(args.ckpt, device=device)
    checkpoint = info.to_dict()
    classifier, classifier_info = load_attribute_classifier(None, device=device)
    attributes = [a.strip() for a in args.attributes.split(",") if a.strip()]
    out = args.out_dir
    log = (lambda message: print(message, file=sys.stderr))
    stargan = evaluate_stargan_to_folder(args.stargan, attributes, out / "stargan", n=args.n, device=device, log=log)
    latent_time = latent_seconds_per_image(generator, args.invert_steps)
    strengths = np.linspace(0, args.max_strength, args.strength_count).tolist()
    report = {"checkpoint": checkpoint, "stargan": stargan["stargan"], "classifier": classifier_info,
              "args": {k: str(v) for k, v in vars(args).items()}, "latent_seconds_per_image": latent_time,
              "attributes": {}}
    lines = ["# StarGAN vs latent editing", "",
             f"Held-out toyfaces lacking each attribute (n = {args.n} per method). Latent: inversion "
             f"({args.invert_steps} steps, W+, MSE) then the better of two InterFaceGAN directions at its smallest "
             "strength reaching 80 % success (else its most successful strength). StarGAN: one translation.", "",
             "| attribute | method | success | mean side effect | worst side effect | Male flips | pixel change | "
             "PSNR to truth | s/image |", "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for attribute in attributes:
        folder = out / "latent" / attribute
        conditions = ["Young"] if attribute == "Male" else ["Male"]
        paths = {}
        for name, condition in (("svm", []), (f"svm_{conditions[0].lower()}", conditions)):
            paths[name] = folder / f"{name}.npy"
            dirs.svm_to_file(generator, classifier, attribute, paths[name], n=args.svm_n, conditions=condition,
                             samples_path=out / "svm_samples.npz", checkpoint_info=checkpoint,
                             classifier_info=classifier_info, progress=False)
        result = evaluate_edit_to_folder(
            generator, classifier, [f"{name}={path}" for name, path in paths.items()], attribute, strengths,
            folder / "eval", source="inverted", n=args.n, normalize=True,
            invert_settings=InversionSettings(steps=args.invert_steps), checkpoint_info=checkpoint,
            classifier_info=classifier_info, cache_dir=out / "inversions", log=log, progress=False)
        candidates = {name: operating_point(entry["summary"]) for name, entry in result["directions"].items()}
        chosen = max(candidates, key=lambda name: (candidates[name]["success_rate"],
                                                   -candidates[name]["side_effect_mean"]))
        latent = candidates[chosen]
        record = next(r for r in result["directions"][chosen]["per_strength"] if r["strength"] == latent["strength"])
        star = stargan["attributes"][attribute]["record"]
        rows = {f"latent ({chosen}, strength {latent['strength']:g})": (record, latent_time),
                "StarGAN": (star, star["seconds_per_image"])}
        report["attributes"][attribute] = {"latent": {"direction": chosen, "strength": latent["strength"],
                                                      "record": record},
                                           "stargan": star}
        for method, (entry, seconds) in rows.items():
            worst = entry["side_effect_max"]
            male = entry["flips"].get("Male")
            lines.append(f"| {attribute} | {method} | {100 * entry['success_rate']:.1f} % | "
                         f"{100 * entry['side_effect_mean']:.1f} % | "
                         + (f"{worst['attribute']} {100 * worst['rate']:.1f} %" if worst["rate"] > 0 else "none")
                         + f" | {'–' if male is None else f'{100 * male:.1f} %'} | {entry['pixel_change']:.3f} | "
                           f"{entry['psnr_to_truth_db']:.2f} dB | {seconds:.3f} |")
        print("\n".join(lines[-2:]), flush=True)
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    report["versions"] = versions()
    write_json(out / "summary.json", portable_paths(report, REPO_ROOT))
    write_bytes(out / "summary.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
