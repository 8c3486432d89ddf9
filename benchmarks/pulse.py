"""PULSE on the default model: RGB super-resolution of held-out faces, and RGBA hair-colour references.

(a) ``--count`` held-out toyfaces (``HELDOUT_SEED``, faces 0..count-1) rendered at the generator's size,
    downscaled by 4 with the PULSE downsampler and quantised to 8 bit (what a user's PNG would hold),
    used as RGB references; face ``i`` runs from seed ``i``.
(b) ``--count`` seeds (0..count-1) with each RGBA reference (default: ``examples/*.rgba.png``).

Reported per part and reference: success rate (best L2 <= eps), median steps to reach eps (the first step
with L2 <= eps, over the runs that reached it), ms per optimisation step (of a whole batch) and wall time
per result. With an attribute classifier (the shipped one, or ``--classifier``), the hair colour it
assigns to each result (the most probable of the four hair colours): for (b) the fraction with the
requested colour (``blond``/``black``/``brown``/``gray`` in the file name), for (a) the fraction that keeps
the held-out face's true colour. Goals: >= 90 % success on (a), >= 90 % of (b) with the requested colour.

    python benchmarks/pulse.py --json pulse.json --out-dir pulse_grids          # the real run
    python benchmarks/pulse.py --ckpt G.pt --count 2 --steps 5 --fit-samples 2000   # a smoke run
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
COLOUR_WORDS = {"blond": "Blond_Hair", "black": "Black_Hair", "brown": "Brown_Hair", "gray": "Gray_Hair",
                "grey": "Gray_Hair"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", default="toyfaces64", help="Generator (default: the shipped toyfaces64).")
    parser.add_argument("--count", type=int, default=32, help="Faces in (a) and seeds per reference in (b).")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--eps", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=8, help="Results optimised together.")
    parser.add_argument("--fit-samples", type=int, default=1_000_000)
    parser.add_argument("--factor", type=int, default=4, help="Downscale factor of the (a) references.")
    parser.add_argument("--references", nargs="*", type=Path, default=None,
                        help="RGBA references for (b) (default: examples/*.rgba.png).")
    parser.add_argument("--classifier", default=None,
                        help="Attribute classifier .safetensors (default: the shipped one; skipped if absent).")
    parser.add_argument("--parts", default="ab", help="Which parts to run: a, b or ab.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU).")
    parser.add_argument("--json", type=Path, default=None, help="Write every number (and per-result rows) here.")
    parser.add_argument("--out-dir", type=Path, default=None, help="Write grids of references and results here.")
    return parser.parse_args(argv)


def requested_colour(path: Path) -> str | None:
    """The hair attribute a reference asks for, from the first colour word in its file name."""
    for word, attribute in COLOUR_WORDS.items():
        if word in path.name.lower():
            return attribute
    return None


def heldout_references(size: int, factor: int, count: int) -> tuple[torch.Tensor, list[str]]:
    """``[count, 3, size/factor, size/factor]`` in [0, 1] (8-bit values) and each face's true hair colour."""
    from latentedit.data import toyfaces
    from latentedit.pulse.search import pulse_downsample

    renders, colours = [], []
    for index in range(count):
        params = toyfaces.sample_params(toyfaces.HELDOUT_SEED, index)
        renders.append(torch.from_numpy(toyfaces.render(params, size)).permute(2, 0, 1).double() / 255.0)
        colours.append(next(name for name in toyfaces.HAIR_COLOURS if params.attributes[name]))
    small = pulse_downsample(torch.stack(renders), factor).clamp(0, 1)
    return (small * 255.0).round().float() / 255.0, colours


def run_part(generator, references: torch.Tensor, seeds: list[int], settings, fit, batch_size: int) -> list:
    """PULSE over ``references [N, 3|4, h, w]`` in batches; one PulseResult per reference."""
    from latentedit.pulse.search import run_pulse

    results = []
    for start in range(0, len(seeds), batch_size):
        results += run_pulse(generator, references[start:start + batch_size], seeds[start:start + batch_size],
                             settings, fit=fit)
        done = len(results)
        print(f"  {done}/{len(seeds)} results, {sum(r.success for r in results)} reached eps", file=sys.stderr)
    return results


def summarise(results: list) -> dict:
    """Success rate, median steps to eps, ms per step and wall time per result of a list of PulseResults."""
    reached = [r.first_eps_step for r in results if r.first_eps_step is not None]
    return {
        "results": len(results),
        "success_rate": sum(r.success for r in results) / len(results),
        "reached_eps_rate": len(reached) / len(results),
        "median_steps_to_eps": statistics.median(reached) if reached else None,
        "median_l2": statistics.median(r.l2 for r in results),
        "ms_per_step_batch": statistics.median(r.ms_per_step for r in results),
        "batch_size": max(r.batch_size for r in results),
        "wall_time_per_result_s": sum(r.wall_time_s for r in results) / len(results),
    }


def hair_predictions(classifier, images: torch.Tensor) -> list[str]:
    """The most probable of the four hair colours for each image ``[N, 3, H, W]`` in [-1, 1]."""
    from latentedit.evaluate.classifier import predict_attributes
    from latentedit.data.toyfaces import HAIR_COLOURS

    probabilities = predict_attributes(classifier, images)
    columns = [classifier.attribute_names.index(name) for name in HAIR_COLOURS]
    return [HAIR_COLOURS[i] for i in probabilities[:, columns].argmax(dim=1).tolist()]


def save_grid(path: Path, references: torch.Tensor, results: list, size: int) -> None:
    """Two rows per block of 8: the references (alpha shown as magenta) upscaled, and the results."""
    from latentedit.io import make_grid, save_png, to_uint8

    refs = references.float()
    if refs.shape[1] == 4:
        magenta = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)
        refs = refs[:, :3] * refs[:, 3:] + magenta * (1 - refs[:, 3:])
    upscaled = torch.nn.functional.interpolate(refs, size=(size, size), mode="nearest")
    top = to_uint8(upscaled * 2 - 1)
    bottom = to_uint8(torch.stack([r.image for r in results]))
    rows = []
    for start in range(0, len(results), 8):
        rows += [top[start:start + 8], bottom[start:start + 8]]
    pad = [np.concatenate([row, np.full((8 - len(row),) + row.shape[1:], 255, np.uint8)]) for row in rows]
    save_png(path, make_grid(np.concatenate(pad), columns=8))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from latentedit.checkpoints import load_generator
    from latentedit.device import resolve_device
    from latentedit.errors import CheckpointError
    from latentedit.io import versions
    from latentedit.pulse.search import PulseSettings, load_reference
    from latentedit.pulse.fit import gaussian_fit

    device = resolve_device(args.device)
    generator, info = load_generator(args.ckpt, device=device)
    started = time.perf_counter()
    fit = gaussian_fit(generator, args.fit_samples, progress=True)
    fit_seconds = time.perf_counter() - started
    settings = PulseSettings(steps=args.steps, eps=args.eps, fit_samples=args.fit_samples)
    classifier, classifier_note = None, None
    try:
        from latentedit.evaluate.classifier import load_classifier

        classifier = load_classifier(args.classifier, device=device)
    except (CheckpointError, ImportError) as error:
        classifier_note = f"no attribute classifier ({error}); hair colours not measured"
        print(classifier_note, file=sys.stderr)

    report: dict = {"checkpoint": {"path": info.path, "sha256": info.sha256}, "device": str(device),
                    "threads": torch.get_num_threads(), "settings": settings.to_dict(),
                    "batch_size": args.batch_size, "count": args.count,
                    "gaussian_fit": {**fit.to_dict(), "seconds": fit_seconds}, "classifier_note": classifier_note,
                    "versions": versions(), "machine": platform.processor() or platform.machine()}
    if args.out_dir:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.count))
    # Warm-up, not timed: the first calls pick (and may build) the op backends.
    from latentedit.pulse.search import run_pulse

    warm_size = generator.size // args.factor
    run_pulse(generator, torch.full((min(args.batch_size, args.count), 3, warm_size, warm_size), 0.5), 0,
              PulseSettings(steps=2, fit_samples=args.fit_samples), fit=fit)

    if "a" in args.parts:
        print(f"(a) {args.count} held-out faces at {generator.size // args.factor} px", file=sys.stderr)
        references, true_colours = heldout_references(generator.size, args.factor, args.count)
        results = run_part(generator, references, seeds, settings, fit, args.batch_size)
        part = summarise(results)
        if classifier is not None:
            predicted = hair_predictions(classifier, torch.stack([r.image for r in results]))
            part["hair_colour_kept_rate"] = float(np.mean([p == t for p, t in zip(predicted, true_colours)]))
        part["rows"] = [{"face": i, "seed": r.seed, "l2": r.l2, "success": r.success,
                         "first_eps_step": r.first_eps_step, "best_step": r.best_step} for i, r in enumerate(results)]
        report["a_rgb_superresolution"] = part
        if args.out_dir:
            save_grid(args.out_dir / "a_rgb.png", references, results, generator.size)

    if "b" in args.parts:
        paths = args.references or sorted((REPO_ROOT / "examples").glob("*.rgba.png"))
        report["b_rgba_hair"] = {}
        for path in paths:
            reference, _ = load_reference(path, generator.size)
            print(f"(b) {path.name} x {args.count} seeds", file=sys.stderr)
            results = run_part(generator, reference[None].expand(args.count, -1, -1, -1), seeds, settings, fit,
                               args.batch_size)
            part = summarise(results)
            wanted = requested_colour(path)
            part["requested_colour"] = wanted
            if classifier is not None:
                predicted = hair_predictions(classifier, torch.stack([r.image for r in results]))
                part["predicted_colours"] = {name: predicted.count(name) for name in sorted(set(predicted))}
                if wanted is not None:
                    part["requested_colour_rate"] = predicted.count(wanted) / len(predicted)
            part["rows"] = [{"seed": r.seed, "l2": r.l2, "success": r.success, "first_eps_step": r.first_eps_step}
                            for r in results]
            report["b_rgba_hair"][path.name] = part
            if args.out_dir:
                save_grid(args.out_dir / f"b_{path.name.split('.')[0]}.png",
                          reference[None].expand(args.count, -1, -1, -1), results, generator.size)

    print(markdown(report))
    if args.json:
        from latentedit.io import portable_paths, write_json

        write_json(args.json, portable_paths(report, REPO_ROOT))
    return report


def _fmt(value, pattern: str = "{:.1f}") -> str:
    return "-" if value is None else pattern.format(value)


def markdown(report: dict) -> str:
    """The summary table of a report from :func:`main`."""
    lines = [f"PULSE benchmark: {report['count']} per part, batch {report['batch_size']}, device {report['device']} "
             f"({report['threads']} threads), Gaussian fit {report['gaussian_fit']['num_samples']} samples in "
             f"{report['gaussian_fit']['seconds']:.1f} s (cached: {report['gaussian_fit']['from_cache']})", "",
             "| part | reference | success (L2 <= eps) | median steps to eps | median L2 | ms/step (batch) "
             "| s/result | hair colour |", "|---|---|---|---|---|---|---|---|"]
    rows = []
    if "a_rgb_superresolution" in report:
        part = report["a_rgb_superresolution"]
        hair = _fmt(part.get("hair_colour_kept_rate"), "{:.0%} kept")
        rows.append(("a", "held-out faces (RGB)", part, hair))
    for name, part in report.get("b_rgba_hair", {}).items():
        rate = part.get("requested_colour_rate")
        hair = _fmt(rate, "{:.0%} " + (part["requested_colour"] or "?")) if rate is not None else "-"
        rows.append(("b", name, part, hair))
    for label, name, part, hair in rows:
        lines.append(f"| {label} | {name} | {part['success_rate']:.0%} | {_fmt(part['median_steps_to_eps'], '{:.0f}')} "
                     f"| {part['median_l2']:.2e} | {part['ms_per_step_batch']:.0f} | "
                     f"{part['wall_time_per_result_s']:.2f} | {hair} |")
    if report.get("classifier_note"):
        lines += ["", report["classifier_note"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
