"""StyleGAN2 trainer throughput: is a training run limited by the networks or by its data?

For each batch size, two measurements with the trainer's own code (``latentedit.train.stylegan2``):

- compute: discriminator step (with lazy R1 on its schedule) + generator step + EMA update, on one fixed
  batch of reals already on the device, so no data loading at all; images per second.
- data: the trainer's DataLoader over ``--data`` (default: toyfaces rendered on the fly) with
  ``--workers`` processes, images per second delivered to the device, with no training.

A run goes at most as fast as the slower of the two. The shipped ``toyfaces64_gpu`` run reached about
440 img/s on an H100 at batch 32 with the GPU 21-26 % busy; this script says which side held it back and
how the compute side scales with the batch. Prints a markdown table and writes JSON.

    python benchmarks/train_speed.py --device cuda --batches 32 64 128 --workers 13 --json out.json
    python benchmarks/train_speed.py --batches 16 32 --steps 4 --data-batches 8    # a 2-core CPU
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N].")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--steps", type=int, default=32,
                        help="Timed training steps per batch size (the lazy R1 runs every 16 D steps).")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps first (kernel builds, autotuning).")
    parser.add_argument("--data", default="toyfaces:0:1000000")
    parser.add_argument("--data-batches", type=int, default=40, help="Timed loader batches per batch size.")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader processes (the trainer's --workers).")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace, batch: int, run_dir: Path) -> dict:
    """Both throughputs at one batch size (a fresh trainer, so every batch size starts from the same weights)."""
    import torch

    from latentedit.data.datasets import open_image_dataset
    from latentedit.train import common
    from latentedit.train.stylegan2 import StyleGAN2TrainConfig, _Trainer

    config = StyleGAN2TrainConfig(data=args.data, size=args.size, batch=batch, workers=args.workers,
                                  device=args.device)
    context = common.init_distributed(config.device)
    try:
        config.validate(context.world_size)
        common.configure_device(context)
        trainer = _Trainer(config, run_dir, context, None, None, 0.0, False)
        device = trainer.device
        real = torch.randn(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
        real = trainer._format(real.clamp(-1, 1))
        stats = {name: torch.zeros((), device=device) for name in
                 ("loss_d", "loss_g", "score_real", "score_fake", "r1_penalty", "r1_count", "pl_penalty",
                  "pl_count", "steps")}

        def train_step() -> None:
            trainer.discriminator_step(real, stats)
            trainer.generator_step(stats)
            trainer.step += 1
            common.update_ema(trainer.g_ema, trainer.generator, 0.999)

        for _ in range(args.warmup):
            train_step()
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(args.steps):
            train_step()
        _synchronize(device)
        compute_s = time.perf_counter() - started

        dataset = open_image_dataset(config.data, config.size, config.data_format)
        batches = iter(trainer.make_loader(dataset))
        next(batches)  # workers start and render their first batches
        started = time.perf_counter()
        for _ in range(args.data_batches):
            images = next(batches)
            images = images[0] if isinstance(images, (list, tuple)) else images
            images.to(device, non_blocking=True)
        _synchronize(device)
        data_s = time.perf_counter() - started
        del batches
    finally:
        context.shutdown()
    compute_rate = batch * args.steps / compute_s
    data_rate = batch * args.data_batches / data_s
    return {"batch": batch, "device": str(device), "workers": args.workers,
            "compute_ms_per_step": 1000 * compute_s / args.steps, "compute_img_per_s": compute_rate,
            "data_img_per_s": data_rate, "bound_img_per_s": min(compute_rate, data_rate),
            "limited_by": "compute" if compute_rate < data_rate else "data"}


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    rows = []
    for batch in args.batches:
        with tempfile.TemporaryDirectory() as run_dir:
            rows.append(measure(args, batch, Path(run_dir)))
    header = "| batch | device | ms per step | compute img/s | data img/s (workers) | bound img/s | limited by |"
    print(header + "\n|---:|---|---:|---:|---:|---:|---|")
    for row in rows:
        print(f"| {row['batch']} | {row['device']} | {row['compute_ms_per_step']:.1f} | {row['compute_img_per_s']:.0f} | "
              f"{row['data_img_per_s']:.0f} ({row['workers']}) | {row['bound_img_per_s']:.0f} | {row['limited_by']} |")
    if args.json is not None:
        from latentedit.io import write_json

        write_json(args.json, {"torch": torch.__version__, "python": platform.python_version(),
                               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                               "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
