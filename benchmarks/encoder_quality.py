"""How well an encoder reconstructs toyfaces renders, pass by pass (the model card's quality table).

For each ``--encoder`` (a file, run folder or shipped name) and each number of passes from 0 (the first pass
alone) to ``refine_steps + --extra-passes``: the median PSNR (clamped render vs target, both in [0, 1]) of the
generator's reconstruction of

- the first 16 and all ``--count`` held-out renders (seed ``HELDOUT_SEED``, 8-bit, what ``benchmarks/invert.py``
  uses), and
- the first 16 and all ``--count`` training renders (seed 0, faces 0 … count − 1; the encoders' ``--real`` folders
  hold these faces).

Renders use the generator's stored noise, as ``invert`` does. Nothing is timed (``benchmarks/invert.py`` times the
encoder). Writes ``--json`` and prints a Markdown table.

    python benchmarks/encoder_quality.py --encoder toyfaces64_encoder
    python benchmarks/encoder_quality.py --encoder runs/refine1 runs/refine2 --json /tmp/q.json
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAINING_SEED = 0


def renders(seed: int, count: int, size: int) -> torch.Tensor:
    """Toyfaces ``[count, 3, size, size]`` in [-1, 1], exactly as their 8-bit PNGs hold them."""
    from latentedit.data.toyfaces import render_face

    faces = np.stack([render_face(seed, i, size) for i in range(count)])
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def psnr_per_image(generator, encoder, targets: torch.Tensor, passes: int, batch_size: int = 16) -> list[float]:
    """PSNR (dB) of each target's reconstruction after the first pass and ``passes`` refinement passes."""
    from latentedit.invert.optimize import image_mse01, psnr_from_mse

    values = []
    for start in range(0, targets.shape[0], batch_size):
        batch = targets[start:start + batch_size]
        w_plus = encoder.invert(batch, generator, steps=passes)
        rendered = generator.synthesis(w_plus).clamp(-1, 1)
        values += psnr_from_mse(image_mse01(rendered, batch)).tolist()
    return values


def measure(encoder_name: str, count: int, extra_passes: int) -> dict:
    from latentedit.checkpoints import load_generator
    from latentedit.data.toyfaces import HELDOUT_SEED
    from latentedit.invert.encoder import load_encoder

    generator, info = load_generator("toyfaces64")
    encoder, encoder_info = load_encoder(encoder_name, generator_sha256=info.sha256, generator=generator)

    sets = {"heldout": renders(HELDOUT_SEED, count, generator.size),
            "training": renders(TRAINING_SEED, count, generator.size)}
    rows = []
    # An encoder without a refiner has its first pass only; one with a refiner can run more passes than its own.
    last = encoder.refine_steps + (extra_passes if encoder.refiner is not None else 0)
    for passes in range(last + 1):
        row = {"passes": passes, "shipped_setting": passes == encoder.refine_steps}
        for name, targets in sets.items():
            values = psnr_per_image(generator, encoder, targets, passes)
            row[f"{name}_median16_psnr_db"] = round(statistics.median(values[:16]), 3)
            row[f"{name}_median_psnr_db"] = round(statistics.median(values), 3)
        rows.append(row)
        print(f"  {encoder_name}: {passes} refinement passes: held-out median16 {row['heldout_median16_psnr_db']:.2f}"
              f" dB, median{count} {row['heldout_median_psnr_db']:.2f}; training median16 "
              f"{row['training_median16_psnr_db']:.2f}, median{count} {row['training_median_psnr_db']:.2f}",
              flush=True)
    return {"encoder": encoder_name, "encoder_sha256": encoder_info["sha256"], "refine_steps": encoder.refine_steps,
            "count": count, "rows": rows}


def table(results: list[dict]) -> str:
    count = results[0]["count"] if results else 0
    lines = [f"| encoder | passes | held-out median16 (dB) | held-out median{count} | training median16 | "
             f"training median{count} |", "|---|---:|---:|---:|---:|---:|"]
    for result in results:
        for row in result["rows"]:
            mark = " (its setting)" if row["shipped_setting"] else ""
            lines.append(f"| {result['encoder']} | {row['passes']}{mark} | {row['heldout_median16_psnr_db']:.2f} | "
                         f"{row['heldout_median_psnr_db']:.2f} | {row['training_median16_psnr_db']:.2f} | "
                         f"{row['training_median_psnr_db']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", nargs="+", default=["toyfaces64_encoder"])
    parser.add_argument("--count", type=int, default=64, help="Renders per set (the medians of the first 16 too).")
    parser.add_argument("--extra-passes", type=int, default=1,
                        help="Refinement passes beyond the encoder's own setting to report.")
    parser.add_argument("--json", default="benchmarks/results/encoder_quality.json")
    args = parser.parse_args(argv)
    if args.count < 16:
        parser.error("--count must be at least 16")

    from latentedit.io import portable_paths, write_json

    torch.manual_seed(0)
    results = [measure(name, args.count, args.extra_passes) for name in args.encoder]
    report = {"torch": torch.__version__, "command": "python benchmarks/encoder_quality.py "
              + " ".join(argv if argv is not None else sys.argv[1:]), "results": results}
    write_json(args.json, portable_paths(report, REPO_ROOT))
    print()
    print(table(results))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
