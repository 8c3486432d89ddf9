"""Compare editing directions on one generator: single PULSE pair vs PULSE mean vs SVM vs SVM conditioned on Male.

For each attribute (default Blond_Hair, Eyeglasses, Smiling):

1. PULSE pairs over ``--pulse-seeds`` (``latentedit direction from-pulse``). Blond_Hair uses the shipped hair
   references ``examples/blond_hair.rgba.png`` / ``black_hair.rgba.png``; other attributes use a held-out
   face rendered with and without the attribute, PULSE-downscaled to ``--ref-size``, with alpha 1 only on the
   pixels that differ (dilated by one pixel), written to ``OUT/references/``. The mean over all seeds is
   ``pulse_mean``; the first seed's pair alone is ``pulse_single`` (the seed post's single pair).
2. InterFaceGAN on ``--svm-n`` labelled samples (one shared, cached set): ``svm`` and ``svm_male``
   (conditioned on Male).
3. ``latentedit evaluate edit`` of the four directions, each normalised to magnitude 1 so that a strength is
   the same W distance for all of them; strengths ``0 .. --max-strength`` (default: 4 standard deviations of
   mapped w along the attribute's SVM normal, rounded up).

Writes ``OUT/<attribute>/`` (directions, pair grids, evaluation report) and ``OUT/summary.md`` /
``summary.json`` (the best strength of every direction, with success, mean and worst side effects, Male
flips; and for inverted sources the PSNR to the ground-truth counterfactual). Goals on the default model:
the best blond direction reaches >= 80 % success at some strength with <= 5 % Male flips.

    python benchmarks/directions.py -o runs/directions                        # the real run (default model)
    python benchmarks/directions.py --ckpt G.safetensors --attributes Blond_Hair --pulse-seeds 0-1 \\
        --pulse-steps 3 --fit-samples 2000 --svm-n 200 --eval-n 8 -o /tmp/smoke    # a smoke run
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out-dir", type=Path, required=True)
    parser.add_argument("--ckpt", default="toyfaces64")
    parser.add_argument("--attributes", default="Blond_Hair,Eyeglasses,Smiling")
    parser.add_argument("--pulse-seeds", default="0-31")
    parser.add_argument("--pulse-steps", type=int, default=100)
    parser.add_argument("--pulse-batch", type=int, default=8)
    parser.add_argument("--fit-samples", type=int, default=1_000_000)
    parser.add_argument("--ref-size", type=int, default=None,
                        help="Side of the generated references (default: generator size / 2).")
    parser.add_argument("--svm-n", type=int, default=20000)
    parser.add_argument("--eval-n", type=int, default=200)
    parser.add_argument("--source", choices=["generated", "inverted"], default="generated")
    parser.add_argument("--invert-steps", type=int, default=200)
    parser.add_argument("--max-strength", type=float, default=None)
    parser.add_argument("--strength-count", type=int, default=9)
    parser.add_argument("--classifier", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args(argv)


def attribute_references(generator, attribute: str, out_dir: Path, ref_size: int) -> tuple[Path, Path]:
    """Write the RGBA pair for ``attribute`` (see the module docstring) and return their paths."""
    import torch.nn.functional as F

    from latentedit.data import toyfaces
    from latentedit.io import save_png
    from latentedit.pulse.search import pulse_downsample

    if attribute == "Blond_Hair":
        return REPO_ROOT / "examples" / "blond_hair.rgba.png", REPO_ROOT / "examples" / "black_hair.rgba.png"
    index = next(i for i in range(100000)
                 if (p := toyfaces.sample_params(toyfaces.HELDOUT_SEED, i)).attributes[attribute] == 0
                 and not p.attributes["Wearing_Hat"] and not p.attributes["Eyeglasses"])
    params = toyfaces.sample_params(toyfaces.HELDOUT_SEED, index)
    pixels = [toyfaces.render(params.with_attributes(**{attribute: value}), generator.size) for value in (1, 0)]
    lowres = [pulse_downsample(torch.from_numpy(p).permute(2, 0, 1)[None].double() / 255.0,
                               generator.size // ref_size)[0].clamp(0, 1) for p in pixels]
    changed = ((lowres[0] - lowres[1]).abs().amax(0) > 0.02).double()
    alpha = F.max_pool2d(changed[None, None], 3, stride=1, padding=1)[0]
    paths = []
    for name, image in zip(("with", "without"), lowres):
        rgba = torch.cat([image, alpha]).permute(1, 2, 0).numpy()
        path = out_dir / "references" / f"{attribute}_{name}_face{index}.rgba.png"
        save_png(path, np.round(rgba * 255).astype(np.uint8))
        paths.append(path)
    return paths[0], paths[1]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from latentedit import directions as dirs
    from latentedit.checkpoints import load_generator
    from latentedit.device import resolve_device
    from latentedit.evaluate.edit import evaluate_edit_to_folder
    from latentedit.invert.optimize import InversionSettings
    from latentedit.io import portable_paths, versions, write_bytes, write_json
    from latentedit.latents import parse_seeds
    from latentedit.evaluate.classifier import load_attribute_classifier
    from latentedit.pulse.search import PulseSettings

    started = time.perf_counter()
    device = resolve_device(args.device)
    generator, info = load_generator(args.ckpt, device=device)
    checkpoint = info.to_dict()
    classifier, classifier_info = load_attribute_classifier(args.classifier, device=device)
    out = args.out_dir
    seeds = parse_seeds(args.pulse_seeds)
    settings = PulseSettings(steps=args.pulse_steps, fit_samples=args.fit_samples)
    ref_size = args.ref_size or generator.size // 2
    samples_path = out / "svm_samples.npz"
    report = {"checkpoint": checkpoint, "classifier": classifier_info,
              "args": {k: str(v) for k, v in vars(args).items()}, "attributes": {}}
    lines = ["# Direction comparison", "",
             f"Checkpoint {checkpoint['sha256'][:12]}; {args.source} sources (n={args.eval_n}); PULSE seeds "
             f"{args.pulse_seeds}, {args.pulse_steps} steps; SVM on {args.svm_n} samples; directions normalised to "
             f"magnitude 1.", ""]
    for attribute in [a.strip() for a in args.attributes.split(",") if a.strip()]:
        folder = out / attribute
        timings = {}
        t = time.perf_counter()
        ref_a, ref_b = attribute_references(generator, attribute, out, ref_size)
        pulse_meta = dirs.direction_from_pulse(generator, ref_a, ref_b, seeds, folder / "pulse_mean.npy", settings,
                                               checkpoint_info=checkpoint, batch_size=args.pulse_batch, progress=False)
        pairs = np.load(folder / "pulse_mean_pairs.npz")
        dirs.save_direction(folder / "pulse_single.npy", pairs["w_a"][0] - pairs["w_b"][0], method="pulse-pairs",
                            seeds=[int(pairs["seeds"][0])], generator=generator, generator_sha256=checkpoint["sha256"],
                            params={"note": "the first seed's pair of pulse_mean (one PULSE pair)",
                                    "pulse": settings.to_dict()},
                            sources=pulse_meta["sources"])
        timings["pulse_s"] = time.perf_counter() - t
        t = time.perf_counter()
        svm_meta = {}
        for name, conditions in (("svm", []), ("svm_male", ["Male"])):
            svm_meta[name] = dirs.svm_to_file(generator, classifier, attribute, folder / f"{name}.npy", n=args.svm_n,
                                              conditions=conditions, samples_path=samples_path,
                                              checkpoint_info=checkpoint, classifier_info=classifier_info,
                                              progress=False)
        timings["svm_s"] = time.perf_counter() - t
        max_strength = args.max_strength
        if max_strength is None:
            samples = np.load(samples_path)["w"].astype(np.float64)
            spread = float(np.std(samples @ np.load(folder / "svm.npy").astype(np.float64)))
            max_strength = math.ceil(4 * spread)
        strengths = np.linspace(0, max_strength, args.strength_count).tolist()
        t = time.perf_counter()
        result = evaluate_edit_to_folder(
            generator, classifier, [str(folder / f"{name}.npy") for name in ("pulse_single", "pulse_mean", "svm",
                                                                            "svm_male")],
            attribute, strengths, folder / "eval", source=args.source, n=args.eval_n, normalize=True,
            invert_settings=InversionSettings(steps=args.invert_steps), checkpoint_info=checkpoint,
            classifier_info=classifier_info, watch=["Male"], cache_dir=out / "inversions",
            log=lambda message: print(message, file=sys.stderr), progress=False)
        timings["evaluate_s"] = time.perf_counter() - t
        report["attributes"][attribute] = {
            "references": [str(ref_a), str(ref_b)], "pulse_both_reached_eps": pulse_meta["params"]["both_reached_eps"],
            "svm_validation_accuracy": svm_meta["svm"]["report"]["fit"]["validation_accuracy"],
            "strengths": strengths, "timings": {k: round(v, 1) for k, v in timings.items()},
            "summary": {name: entry["summary"] for name, entry in result["directions"].items()}}
        lines += [f"## {attribute}", "",
                  f"PULSE: {pulse_meta['params']['both_reached_eps']} of {len(seeds)} seeds reached eps with both "
                  f"references; SVM validation accuracy "
                  f"{svm_meta['svm']['report']['fit']['validation_accuracy']}; strengths 0..{max_strength:g}.", "",
                  "| direction | best strength | success | mean side effect | worst side effect | Male flips |"
                  " first strength with ≥ 80 % success | its Male flips | its mean side effect |"
                  + (" best PSNR to truth |" if args.source == "inverted" else ""),
                  "|---|---|---|---|---|---|---|---|---|" + ("---|" if args.source == "inverted" else "")]
        for name, entry in result["directions"].items():
            best = entry["summary"]["best"]
            worst = best["side_effect_max"]
            worst_text = f"{worst['attribute']} {100 * worst['rate']:.1f} %" if worst["rate"] > 0 else "none"
            row = (f"| {name} | {best['strength']:g} | {100 * best['success_rate']:.1f} % | "
                   f"{100 * best['side_effect_mean']:.1f} % | {worst_text} | "
                   f"{100 * best['watched']['Male']:.1f} % |")
            first = entry["summary"]["first_at_target"]
            row += (f" {first['strength']:g} | {100 * first['watched']['Male']:.1f} % | "
                    f"{100 * first['side_effect_mean']:.1f} % |" if first else " not reached | - | - |")
            if args.source == "inverted":
                top = entry["summary"]["best_psnr"]
                row += f" {top['psnr_to_truth_db']:.2f} dB at {top['strength']:g} |"
            lines.append(row)
        lines.append("")
        print("\n".join(lines[-(len(result["directions"]) + 6):]), flush=True)
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    report["versions"] = versions()
    write_json(out / "summary.json", portable_paths(report, REPO_ROOT))
    write_bytes(out / "summary.md", ("\n".join(lines) + "\n").encode())
    return report


if __name__ == "__main__":
    main()
