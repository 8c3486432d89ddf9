"""Seed 004's comparison table: FastStyleNet + PatchGAN against StarGAN's networks at one iteration budget.

Reads the ``stargan_eval.json`` files that ``latentedit evaluate stargan`` wrote for each model at the training
size and at 2x, and writes the summary table (means over the attributes, then success per attribute):

    latentedit stargan train ... -o runs/cmp_stargan64          (commands in docs/faststyle.md)
    latentedit stargan train ... --generator faststyle --discriminator patch -o runs/cmp_faststyle64
    for ckpt in stargan_toyfaces64 runs/cmp_stargan64 runs/cmp_faststyle64; do
      latentedit evaluate stargan --ckpt $ckpt --attr Black_Hair,Blond_Hair,Brown_Hair,Male,Young --n 200 \\
          -o runs/cmp_eval/$(basename $ckpt)/64
      latentedit evaluate stargan --ckpt $ckpt --attr Black_Hair,Blond_Hair,Brown_Hair,Male,Young --n 200 \\
          --size 128 -o runs/cmp_eval/$(basename $ckpt)/128
    done
    python benchmarks/faststyle_vs_stargan.py runs/cmp_eval --iterations 3000
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

MODELS = (("stargan_toyfaces64", "shipped StarGAN (18000 iters)"),
          ("cmp_stargan64", "StarGAN nets, {iterations} iters"),
          ("cmp_faststyle64", "FastStyleNet + PatchGAN, {iterations} iters"))
SIZES = ("64", "128")


def summarize(eval_root: Path, iterations: int) -> tuple[dict, str]:
    """(JSON-ready summary, markdown) from ``eval_root/<model>/<size>/stargan_eval.json``."""
    summary = {"iterations": iterations, "runs": {}}
    attributes: list[str] = []
    rows, per_attribute = [], []
    for key, label in MODELS:
        label = label.format(iterations=iterations)
        for size in SIZES:
            path = eval_root / key / size / "stargan_eval.json"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run `latentedit evaluate stargan` for it first")
            records = {name: entry["record"] for name, entry in json.loads(path.read_text())["attributes"].items()}
            attributes = attributes or list(records)
            means = {field: statistics.mean(r[field] for r in records.values())
                     for field in ("success_rate", "side_effect_mean", "psnr_to_truth_db", "seconds_per_image")}
            summary["runs"].setdefault(key, {})[size] = {
                "label": label, "success_mean": means["success_rate"], "side_effect_mean": means["side_effect_mean"],
                "psnr_to_truth_db_mean": means["psnr_to_truth_db"],
                "ms_per_image_mean": 1e3 * means["seconds_per_image"],
                "per_attribute": {name: {"success": r["success_rate"], "side_effect_mean": r["side_effect_mean"],
                                         "psnr_to_truth_db": r["psnr_to_truth_db"],
                                         "ms_per_image": 1e3 * r["seconds_per_image"]}
                                  for name, r in records.items()}}
            rows.append(f"| {label} | {size} px | {100 * means['success_rate']:.1f} % | "
                        f"{100 * means['side_effect_mean']:.1f} % | {means['psnr_to_truth_db']:.2f} dB | "
                        f"{1e3 * means['seconds_per_image']:.1f} |")
            per_attribute.append(f"| {label} | {size} px | "
                                 + " | ".join(f"{100 * records[name]['success_rate']:.1f} %" for name in attributes)
                                 + " |")
    lines = ["# FastStyleNet + PatchGAN against StarGAN's networks, same recipe and iterations (toyfaces 64 px)", "",
             ("`latentedit evaluate stargan --attr " + ",".join(attributes) + " --n 200 [--size 128]` on each model, "
              "then `python benchmarks/faststyle_vs_stargan.py`; means over the attributes, then success per "
              "attribute. ms/image on the 2-core CPU, the models evaluated one after another in one script."), "",
             "| model | size | success | mean side effect | PSNR to truth | ms/image |", "|---|---|---:|---:|---:|---:|",
             *rows, "", "Success per attribute:", "",
             "| model | size | " + " | ".join(attributes) + " |", "|---|---|" + "---:|" * len(attributes),
             *per_attribute]
    return summary, "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_root", type=Path, help="folder holding <model>/<size>/stargan_eval.json")
    parser.add_argument("--iterations", type=int, required=True, help="the two comparison runs' --iters")
    parser.add_argument("--json", default="benchmarks/results/faststyle_vs_stargan.json")
    parser.add_argument("--markdown", default="benchmarks/results/faststyle_vs_stargan.md")
    args = parser.parse_args(argv)
    from latentedit.io import write_json

    try:
        summary, markdown = summarize(args.eval_root, args.iterations)
    except (FileNotFoundError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_json(args.json, summary)
    Path(args.markdown).write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
