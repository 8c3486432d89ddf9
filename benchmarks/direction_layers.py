"""Which W+ rows carry an attribute, and what restricting an edit to them does to its side effects.

For one direction (default: the InterFaceGAN SVM normal of ``--attr``, fitted on ``--svm-n`` labelled
samples, cached in ``OUT/svm_samples.npz`` or read from ``--samples``) and ``--n`` generated sources lacking
the attribute (psi 1, as ``latentedit evaluate edit --source generated``):

1. **Row scan**: the direction (magnitude 1) applied to one W+ row at a time at ``--scan-strength``:
   success and side effects per row.
2. **Row sets** (``--row-sets``, e.g. ``4;3-5;all``): a strength sweep of the direction restricted to each
   set; the smallest strength reaching ``--target-success`` with its Male flips (the goal's operating point).
3. **Per-image strength** (an analysis, not a direction): each source is edited at the smallest swept
   strength at which the classifier calls it edited, and left unedited when none does. This uses the
   evaluating classifier to choose the strength, so it is optimistic; it is reported to show how much of
   the side effect comes from over-editing sources that were already close.
4. **Random floor**: ``--random`` random unit directions (seeded), restricted to the same rows, at each row set's
   operating-point strength: the Male flips any edit of that size causes on this generator. The direction's
   flips above this floor are its entanglement with gender; the floor itself is how fragile gender is here.

Every number comes from :func:`latentedit.evaluate.edit.edit_record` (success, flip rate of every other
attribute, pixel change). Writes ``OUT/layers.json`` and ``OUT/layers.md``.

    python benchmarks/direction_layers.py --samples runs/directions/svm_samples.npz -o runs/direction_layers
    python benchmarks/direction_layers.py --ckpt G.safetensors --svm-n 300 --n 8 -o /tmp/smoke    # a smoke run
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out-dir", type=Path, required=True)
    parser.add_argument("--ckpt", default="toyfaces64")
    parser.add_argument("--attr", default="Blond_Hair")
    parser.add_argument("--vec", type=Path, default=None, help="Direction .npy (default: fit the SVM normal).")
    parser.add_argument("--samples", type=Path, default=None, help="Labelled-sample cache for the SVM fit.")
    parser.add_argument("--svm-n", type=int, default=20000)
    parser.add_argument("--n", type=int, default=200, help="Generated sources lacking the attribute.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the generated sources.")
    parser.add_argument("--scan-strength", type=float, default=20.0)
    parser.add_argument("--row-sets", default="4;3-5;4-5;4-7;all")
    parser.add_argument("--strengths", default="2:16:8")
    parser.add_argument("--target-success", type=float, default=0.8)
    parser.add_argument("--random", type=int, default=5, help="Random directions in the floor (section 4).")
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def sweep(generator, classifier, sources, vector, attribute, strengths, rows):
    """Per strength the edit record, plus the renders ``[S, N, 3, H, W]`` and probabilities ``[S, N, A]``."""
    from latentedit.evaluate.classifier import predict_attributes
    from latentedit.directions.apply import apply_direction, render_latents
    from latentedit.evaluate.edit import edit_record

    names = list(classifier.attribute_names)
    records, images, probs = [], [], []
    for strength in strengths:
        edited = render_latents(generator, apply_direction(sources.w_plus, vector, float(strength), rows))
        edited_probs = predict_attributes(classifier, edited).numpy()
        records.append({"strength": float(strength),
                        **edit_record(edited, edited_probs, sources.originals, sources.probs, names, attribute)})
        images.append(edited)
        probs.append(edited_probs)
    return records, torch.stack(images), np.stack(probs)


def per_image_strength(classifier, sources, attribute, strengths, images, probs) -> dict:
    """Section 3 of the module docstring, from one sweep's renders and probabilities."""
    from latentedit.evaluate.edit import edit_record

    names = list(classifier.attribute_names)
    reached = probs[:, :, names.index(attribute)] >= 0.5            # [S, N]
    first = reached.argmax(0)
    edited = sources.originals.clone()
    edited_probs = sources.probs.copy()
    chosen = []
    for i in np.flatnonzero(reached.any(0)):
        edited[i], edited_probs[i] = images[first[i], i], probs[first[i], i]
        chosen.append(float(strengths[first[i]]))
    record = edit_record(edited, edited_probs, sources.originals, sources.probs, names, attribute)
    record["median_strength"] = float(np.median(chosen)) if chosen else None
    return record


def random_floor(generator, classifier, sources, attribute, strength, rows, count: int, seed: int = 0) -> dict:
    """Section 4 of the module docstring: mean and spread of the Male flips of ``count`` random unit directions."""
    rng = np.random.default_rng(seed)
    flips = []
    for _ in range(count):
        vector = rng.standard_normal(generator.w_dim)
        records, _, _ = sweep(generator, classifier, sources, vector / np.linalg.norm(vector), attribute, [strength],
                              rows)
        flips.append(records[0]["flips"]["Male"])
    return {"directions": count, "seed": seed, "strength": float(strength), "male_flips": flips,
            "male_flips_mean": float(np.mean(flips)), "male_flips_max": float(np.max(flips))}


def row_label(rows, num_ws: int) -> str:
    from latentedit.directions.arrays import format_layers

    return "all" if rows is None or len(rows) == num_ws else format_layers(rows)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from latentedit import directions as dirs
    from latentedit.checkpoints import load_generator
    from latentedit.device import resolve_device
    from latentedit.evaluate.edit import generated_sources
    from latentedit.evaluate.classifier import load_attribute_classifier
    from latentedit.io import portable_paths, versions, write_bytes, write_json

    started = time.perf_counter()
    device = resolve_device(args.device)
    generator, info = load_generator(args.ckpt, device=device)
    classifier, classifier_info = load_attribute_classifier(None, device=device)
    out = args.out_dir
    vec_path = args.vec
    if vec_path is None:
        vec_path = out / "svm.npy"
        dirs.svm_to_file(generator, classifier, args.attr, vec_path, n=args.svm_n,
                         samples_path=args.samples or out / "svm_samples.npz", checkpoint_info=info.to_dict(),
                         classifier_info=classifier_info, progress=False)
    vector = dirs.as_direction_array(np.load(vec_path))
    vector = vector / dirs.direction_magnitude(vector)
    sources = generated_sources(generator, classifier, args.attr, args.n, seed=args.seed)
    num_ws = generator.num_ws
    report = {"checkpoint": info.to_dict(), "classifier": classifier_info, "direction": str(vec_path),
              "args": {k: str(v) for k, v in vars(args).items()}, "scan": [], "row_sets": {}}

    for row in range(num_ws):
        record, _, _ = sweep(generator, classifier, sources, vector, args.attr, [args.scan_strength], [row])
        report["scan"].append({"row": row, **record[0]})
    strengths = dirs.parse_strengths(args.strengths)
    for text in args.row_sets.split(";"):
        rows = None if text.strip() == "all" else dirs.parse_layers(text.strip(), num_ws)
        records, images, probs = sweep(generator, classifier, sources, vector, args.attr, strengths, rows)
        reaching = [r for r in records if r["success_rate"] >= args.target_success]
        report["row_sets"][row_label(rows, num_ws)] = {
            "per_strength": records, "first_at_target": reaching[0] if reaching else None,
            "per_image_strength": per_image_strength(classifier, sources, args.attr, strengths, images, probs),
            "random_floor": (random_floor(generator, classifier, sources, args.attr, reaching[0]["strength"], rows,
                                          args.random) if reaching and args.random > 0 else None)}

    def cells(record: dict) -> str:
        worst = record["side_effect_max"]
        return (f"{100 * record['success_rate']:.1f} % | {100 * record['flips']['Male']:.1f} % | "
                f"{100 * record['side_effect_mean']:.1f} % | {worst['attribute']} {100 * worst['rate']:.1f} %")

    lines = [f"# {args.attr}: the direction by W+ row", "",
             f"{args.n} generated sources lacking {args.attr} (seed {args.seed}); direction `{vec_path.name}` "
             f"normalised to magnitude 1; checkpoint {info.sha256[:12]}.", "",
             f"## One row at a time, strength {args.scan_strength:g}", "",
             "| row | success | Male flips | mean side effect | worst side effect |", "|---:|---:|---:|---:|---|"]
    lines += [f"| {entry['row']} | {cells(entry)} |" for entry in report["scan"]]
    lines += ["", f"## Row sets, strengths {args.strengths}", "",
              f"| rows | first strength ≥ {100 * args.target_success:.0f} % | success | Male flips | mean side effect "
              "| worst side effect | random directions there: Male flips (max) | per-image strength: success "
              "| its Male flips | its median strength |",
              "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for label, entry in report["row_sets"].items():
        first, adaptive, floor = entry["first_at_target"], entry["per_image_strength"], entry["random_floor"]
        head = (f"{first['strength']:g} | {cells(first)}" if first else "not reached | – | – | – | –")
        floor_cell = (f"{100 * floor['male_flips_mean']:.1f} % ({100 * floor['male_flips_max']:.1f} %)"
                      if floor else "–")
        lines.append(f"| {label} | {head} | {floor_cell} | {100 * adaptive['success_rate']:.1f} % | "
                     f"{100 * adaptive['flips']['Male']:.1f} % | {adaptive['median_strength']} |")
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    report["versions"] = versions()
    write_json(out / "layers.json", portable_paths(report, REPO_ROOT))
    write_bytes(out / "layers.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
