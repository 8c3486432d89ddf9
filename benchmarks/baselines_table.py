"""Latent edits against the image-to-image baselines: the README's table, built from committed evaluations.

Reads (paths relative to ``RESULTS``, default ``benchmarks/results``):

- ``directions/inverted_blond_learned/edit_eval.json``: ``latentedit evaluate edit --vec
  learned=examples/blond_learned.npy --attr Blond_Hair --strength 8,12,16 --layers 3-5 --normalize --source
  inverted --n 100``; the row is strength 12, the operating point docs/directions.md fixed on generated sources.
- ``stargan_vs_latent.json`` (``python benchmarks/stargan_vs_latent.py``): the InterFaceGAN SVM edit of the same
  100 inverted held-out faces, and the per-image time of inversion (200 steps) plus edit, which the learned row
  shares (the edit itself costs one render).
- ``stargan/stargan_eval.json``: ``latentedit evaluate stargan --attr Blond_Hair,Black_Hair --n 1000``.
- ``cyclegan/cyclegan_eval.json`` and ``pix2pix/pix2pix_eval.json``: ``latentedit evaluate cyclegan|pix2pix``
  of the shipped translators (a2b adds blond hair to black-haired faces; CycleGAN's b2a adds black hair to
  blond ones).

The source sets differ, and the table says so: the latent rows edit inversions of the first 100 held-out faces
lacking the attribute, StarGAN translates 1,000 of them, CycleGAN and pix2pix translate 1,000 held-out faces of
their source domain (black hair for Blond_Hair). "Source PSNR" is the untouched source's PSNR to the true
counterfactual, the level each method starts from. Writes ``--json`` and ``--markdown``; exit 2 naming the
first missing input.

    python benchmarks/baselines_table.py --json benchmarks/results/baselines_table.json \\
        --markdown benchmarks/results/baselines_table.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
ATTRIBUTES = ("Blond_Hair", "Black_Hair")
LEARNED_STRENGTH = 12.0
INPUTS = {"learned": "directions/inverted_blond_learned/edit_eval.json", "svm": "stargan_vs_latent.json",
          "stargan": "stargan/stargan_eval.json", "cyclegan": "cyclegan/cyclegan_eval.json",
          "pix2pix": "pix2pix/pix2pix_eval.json"}


def _row(method: str, sources: str, record: dict, seconds: float | None, source_psnr: float | None) -> dict:
    return {"method": method, "sources": sources, "success_rate": record["success_rate"],
            "side_effect_mean": record["side_effect_mean"], "male_flips": record["flips"].get("Male"),
            "psnr_to_truth_db": record.get("psnr_to_truth_db"), "source_psnr_to_truth_db": source_psnr,
            "ms_per_image": None if seconds is None else 1000.0 * seconds}


def summarize(results: Path) -> tuple[dict, str]:
    """The rows per attribute (``dict``) and the markdown table; ``FileNotFoundError`` names a missing input."""
    loaded = {}
    for key, relative in INPUTS.items():
        path = results / relative
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run the command for '{key}' in the docstring of "
                                    f"benchmarks/baselines_table.py")
        loaded[key] = json.loads(path.read_text())
    latent_seconds = loaded["svm"]["latent_seconds_per_image"]
    rows: dict[str, list[dict]] = {attribute: [] for attribute in ATTRIBUTES}

    learned = loaded["learned"]
    entry = learned["directions"]["learned"]
    record = next(r for r in entry["per_strength"] if r["strength"] == LEARNED_STRENGTH)
    baseline = learned["sources"]["details"].get("baseline", {})
    rows["Blond_Hair"].append(_row(f"learned direction (rows {learned['layers']}, strength {LEARNED_STRENGTH:g})",
                                   f"{learned['sources']['count']} inverted, lacking it", record, latent_seconds,
                                   baseline.get("target_psnr_to_truth_db")))
    for attribute in ATTRIBUTES:
        latent = loaded["svm"]["attributes"][attribute]["latent"]
        rows[attribute].append(_row(f"SVM direction ({latent['direction']}, strength {latent['strength']:g})",
                                    f"{loaded['svm']['args']['n']} inverted, lacking it", latent["record"],
                                    latent_seconds, None))
        star = loaded["stargan"]["attributes"][attribute]["record"]
        star_sources = loaded["stargan"]["attributes"][attribute]["sources"]
        rows[attribute].append(_row("StarGAN", f"{star_sources['count']} held-out, lacking it", star,
                                    star["seconds_per_image"], star_sources.get("source_psnr_to_truth_db")))
    for kind, label in (("cyclegan", "CycleGAN"), ("pix2pix", "pix2pix")):
        for direction, entry in loaded[kind]["directions"].items():
            attribute = entry["attribute"]
            if attribute not in rows:
                continue
            source = ", ".join(entry["source_domain"]).replace("_", " ").lower()
            record = entry["record"]
            rows[attribute].append(_row(label, f"{entry['sources']['count']} held-out, {source}",
                                        record, record["seconds_per_image"],
                                        entry["sources"].get("source_psnr_to_truth_db")))

    def pct(value):
        return "–" if value is None else f"{100 * value:.1f} %"

    def db(value):
        return "–" if value is None else f"{value:.2f} dB"

    lines = ["| attribute | method | sources | success | mean side effect | Male flips | PSNR to truth "
             "| source PSNR | ms/image |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for attribute, entries in rows.items():
        for row in entries:
            ms = "–" if row["ms_per_image"] is None else f"{row['ms_per_image']:,.1f}"
            lines.append(f"| {attribute} | {row['method']} | {row['sources']} | {pct(row['success_rate'])} | "
                         f"{pct(row['side_effect_mean'])} | {pct(row['male_flips'])} | {db(row['psnr_to_truth_db'])} | "
                         f"{db(row['source_psnr_to_truth_db'])} | {ms} |")
    summary = {"attributes": rows, "inputs": dict(INPUTS), "learned_strength": LEARNED_STRENGTH,
               "latent_seconds_per_image": latent_seconds}
    return summary, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        summary, markdown = summarize(args.results)
    except (FileNotFoundError, KeyError, StopIteration) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from latentedit.io import atomic_write, write_json

    if args.json is not None:
        write_json(args.json, summary)
    if args.markdown is not None:
        with atomic_write(args.markdown, "w") as handle:
            handle.write(markdown)
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
