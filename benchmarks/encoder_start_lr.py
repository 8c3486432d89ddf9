"""Which learning rate ``invert --method encoder+optimize`` should use from the shipped encoder's start.

For each ``--lrs`` value: the 16 held-out renders (as ``benchmarks/invert.py``), each inverted one at a time by
``encoder+optimize`` for ``--steps`` steps (image2stylegan preset, MSE only unless the VGG16 weights are local),
then the median PSNR at step 100 and at the end, and how many images reach ``--goal-psnr`` (the 1000-step
optimisation's median, 27.65 dB in ``benchmarks/results/invert_methods.json``). Nothing is timed.

    python benchmarks/encoder_start_lr.py --lrs 0.03 0.05 0.1 0.2
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _invert_benchmark():
    """benchmarks/invert.py as a module: its held-out faces and its PSNR-at-step, not copies of them."""
    spec = importlib.util.spec_from_file_location("invert_benchmark", Path(__file__).with_name("invert.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.03, 0.05, 0.1, 0.2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--encoder", default="toyfaces64_encoder")
    parser.add_argument("--goal-psnr", type=float, default=27.65)
    parser.add_argument("--json", default="benchmarks/results/encoder_start_lr.json")
    args = parser.parse_args(argv)

    import torch

    from latentedit.checkpoints import load_generator
    from latentedit.invert.encoder import load_encoder
    from latentedit.invert.optimize import InversionSettings, prepare_perceptual
    from latentedit.invert.pti import invert_with_method
    from latentedit.io import portable_paths, write_json

    generator, info = load_generator("toyfaces64")
    encoder, encoder_info = load_encoder(args.encoder, generator_sha256=info.sha256, generator=generator)
    bench = _invert_benchmark()
    targets = bench.heldout_targets(args.count, generator.size)
    setup = prepare_perceptual(InversionSettings(), generator.size, "cpu")
    rows = []
    for lr in args.lrs:
        settings = InversionSettings(method="encoder+optimize", steps=args.steps, lr=lr)
        results = []
        for i in range(args.count):  # one image at a time, as a user inverts a photo
            results += invert_with_method(generator, targets[i:i + 1], settings, names=[f"heldout{i:03d}"],
                                          encoder=encoder, perceptual=setup)
        row = {"lr": lr, "steps": args.steps,
               "median_psnr_db_at_100": round(statistics.median(bench.psnr_at(r.loss_curve, 100) for r in results), 3),
               "median_psnr_db": round(statistics.median(r.psnr_db for r in results), 3),
               "images_reaching_goal": sum(any(e["psnr_db"] >= args.goal_psnr for e in r.loss_curve)
                                           for r in results)}
        rows.append(row)
        print(f"  lr {lr:g}: median {row['median_psnr_db_at_100']:.2f} dB at step 100, {row['median_psnr_db']:.2f} "
              f"at {args.steps}; {row['images_reaching_goal']}/{args.count} reach {args.goal_psnr} dB", flush=True)
    report = {"torch": torch.__version__, "encoder": args.encoder, "encoder_sha256": encoder_info["sha256"],
              "goal_psnr_db": args.goal_psnr, "count": args.count,
              "command": "python benchmarks/encoder_start_lr.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "rows": rows}
    write_json(args.json, portable_paths(report, REPO_ROOT))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
