"""Inversion quality and speed (issue 4).

(a) Quality on the default model: ``--count`` held-out toyfaces (``HELDOUT_SEED``, faces 0..count-1, never
    seen in training) rendered at the generator's size and quantised to 8 bit (what a user's PNG holds),
    inverted one at a time with each preset (``image2stylegan``, ``projector``) in W+ and in W. Reported:
    median PSNR (and LPIPS-VGG when the VGG16 weights are local) at several step counts, the median wall
    time to reach them, and the median time to reach ``--goal-psnr``. Goals: W+ reaches a median PSNR
    >= 25 dB within 30 s per image on the 2-core CPU, and W+ beats W (Image2StyleGAN's finding).
    Wall time at step k is measured as ``k * (total wall / total steps)`` of that image's run (the cost
    of a step is constant), so one run per image gives the whole curve. Intermediate PSNRs are those of
    the image rendered at that step (for the projector, from the latent with its added noise).

(b) Speed on a config-f 1024 px generator (random weights, style_dim 512, n_mlp 8): seconds per
    inversion step and peak memory at batch 1 and 4, for the pixel loss alone and with each perceptual
    loss (a randomly initialised VGG16 backbone costs exactly what the real one does). Each measurement
    runs in a fresh process; peak memory is the peak RSS during the inversion steps above the RSS after
    building the networks (CPU; Linux resets the peak mark, elsewhere the peak so far is the baseline) or
    ``torch.cuda.max_memory_allocated`` (CUDA, which includes the weights).

    python benchmarks/invert.py --json benchmarks/results/invert.json          # the real run
    python benchmarks/invert.py --ckpt G.safetensors --count 2 --steps 20 --speed-sizes 64   # a smoke run
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

CONFIGS = (("image2stylegan", "w+"), ("image2stylegan", "w"), ("projector", "w+"), ("projector", "w"))


def heldout_targets(count: int, size: int):
    """Held-out toyfaces ``[count, 3, size, size]`` in [-1, 1], exactly as an 8-bit PNG would give them."""
    import torch

    from latentedit.data.toyfaces import HELDOUT_SEED, render_face

    faces = np.stack([render_face(HELDOUT_SEED, i, size) for i in range(count)])
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1


def psnr_at(curve: list[dict], step: int) -> float:
    """PSNR of the last curve entry at or before ``step``."""
    return [entry for entry in curve if entry["step"] <= step][-1]["psnr_db"]


def quality(ckpt: str, count: int, steps: int, checkpoints: list[int], goal_psnr: float, configs, device: str,
            batch_size: int, figure: str | None = None, figure_count: int = 8) -> list[dict]:
    import torch

    from latentedit.checkpoints import load_generator
    from latentedit.invert.optimize import InversionSettings, invert, prepare_perceptual

    generator, info = load_generator(ckpt, device=device)
    targets = heldout_targets(count, generator.size)
    rows = []
    figure_rows = [("target", targets[:figure_count])]
    for preset, space in configs:
        settings = InversionSettings(preset=preset, space=space, steps=steps, batch_size=batch_size)
        setup = prepare_perceptual(settings, generator.size, device)
        if setup.notice:
            print(f"  {setup.notice}")
        results = []
        for start in range(0, count, batch_size):
            chunk = targets[start:start + batch_size]
            names = [f"heldout{i:03d}" for i in range(start, start + chunk.shape[0])]
            results += invert(generator, chunk, settings, names=names, perceptual=setup.loss,
                              lpips_metric=setup.lpips_metric)
        per_step = [r.wall_time_s / r.batch_size / max(r.steps, 1) for r in results]
        figure_rows.append((f"{preset} {space}", torch.stack([r.reconstruction for r in results[:figure_count]])))
        row = {"preset": preset, "space": space, "perceptual": setup.kind, "steps": steps, "images": count,
               "batch_size": batch_size, "checkpoint_sha256": info.sha256,
               "median_ms_per_step_per_image": 1e3 * statistics.median(per_step),
               "final_median_psnr_db": statistics.median(r.psnr_db for r in results),
               "final_median_lpips": (statistics.median(r.lpips for r in results)
                                      if results[0].lpips is not None else None),
               "curve": []}
        for step in [s for s in checkpoints if s <= steps]:
            row["curve"].append({"step": step,
                                 "median_psnr_db": statistics.median(psnr_at(r.loss_curve, step) for r in results),
                                 "median_wall_s": statistics.median(step * t for t in per_step)})
        reach = []
        for r, t in zip(results, per_step):
            hit = next((entry["step"] for entry in r.loss_curve if entry["psnr_db"] >= goal_psnr), None)
            reach.append(None if hit is None else hit * t)
        reached = [t for t in reach if t is not None]
        row["goal_psnr_db"] = goal_psnr
        row["fraction_reaching_goal"] = len(reached) / count
        # The median over all images, counting the ones that never reached the goal as infinitely slow.
        ordered = sorted(t if t is not None else float("inf") for t in reach)
        median_to_goal = ordered[(count - 1) // 2] if count else float("inf")
        row["median_seconds_to_goal"] = None if math.isinf(median_to_goal) else round(median_to_goal, 2)
        rows.append(row)
        print(f"  {preset:<15} {space:<3} final median PSNR {row['final_median_psnr_db']:6.2f} dB, "
              f"{row['median_ms_per_step_per_image']:6.1f} ms/step, median s to {goal_psnr:g} dB: "
              f"{_goal_text(row)}", flush=True)
    if figure:
        save_figure(figure, figure_rows)
    return rows


def save_figure(path: str, rows) -> None:
    """One row per (label, images ``[K, 3, S, S]`` in [-1, 1]): the targets, then each configuration's
    reconstructions; the row order is printed, since the PNG holds no text."""
    from latentedit.io import make_grid, save_png, to_uint8

    pixels = np.concatenate([to_uint8(images) for _, images in rows])
    save_png(path, make_grid(pixels, columns=rows[0][1].shape[0]))
    print(f"  figure {path}: rows = " + ", ".join(label for label, _ in rows))


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss_mb() -> float:
    """Reset the peak-RSS mark where the OS allows it (Linux ``clear_refs``) and return the baseline in MB:
    the current RSS after a reset, else the peak so far (so building the networks is not counted)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        current = _status_mb("VmRSS")
        if current is not None:
            return current
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss_mb() -> float:
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _speed_task(task: dict) -> dict:
    """Runs in a child process: seconds per inversion step and peak memory for one configuration."""
    import torch

    from latentedit.invert.optimize import InversionSettings, invert
    from latentedit.model import Generator, GeneratorConfig
    from latentedit.invert.perceptual import build_perceptual

    device = torch.device(task["device"])
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(size=task["size"], style_dim=512, n_mlp=8)).to(device)
    generator.eval().requires_grad_(False)
    generator.set_w_avg(generator.compute_w_avg(num_samples=2000))
    targets = (torch.rand(task["batch"], 3, task["size"], task["size"], device=device) * 2 - 1)
    perceptual = None
    if task["loss"] != "mse":
        perceptual = build_perceptual(task["loss"], image_size=task["size"], random_backbone=True, device=device)
    settings = InversionSettings(preset=task["preset"], steps=1, mse_weight=1.0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    baseline_mb = _reset_peak_rss_mb()

    def timed(steps: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        invert(generator, targets, InversionSettings(**{**settings.to_dict(), "steps": steps}), perceptual=perceptual)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    timed(1)  # warm-up: kernels, allocator, the projector's w statistics
    extra = task["steps"]
    per_step = (timed(1 + extra) - timed(1)) / extra
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:
        peak_mb = _peak_rss_mb() - baseline_mb
    return {**task, "seconds_per_step": per_step, "seconds_per_image_step": per_step / task["batch"],
            "peak_memory_mb": peak_mb, "threads": torch.get_num_threads()}


def speed(sizes, batches, losses, steps: int, device: str, on_row=None) -> list[dict]:
    """One fresh process per configuration; ``on_row(rows)`` is called after each one (to save partial
    results of a long run)."""
    tasks = []
    for size in sizes:
        for loss in losses:
            preset = "projector" if loss == "lpips" else "image2stylegan"
            for batch in batches:
                tasks.append(dict(size=size, batch=batch, loss=loss, preset=preset, steps=steps, device=device))
    context = multiprocessing.get_context("spawn")
    rows = []
    for task in tasks:
        with context.Pool(1) as pool:
            row = pool.apply(_speed_task, (task,))
        rows.append(row)
        if on_row is not None:
            on_row(rows)
        print(f"  {row['size']:>4} px  batch {row['batch']}  {row['preset']:<15} {row['loss']:<5} "
              f"{row['seconds_per_step']:8.3f} s/step  peak {row['peak_memory_mb']:8.0f} MB", flush=True)
    return rows


def _goal_text(row: dict) -> str:
    seconds = row["median_seconds_to_goal"]
    return "not reached" if seconds is None else f"{seconds:.1f}"


def quality_table(rows) -> str:
    checkpoints = [entry["step"] for entry in rows[0]["curve"]] if rows else []
    head = "| preset | space | loss | " + " | ".join(f"PSNR @{s} (s)" for s in checkpoints) + \
           " | final PSNR | final LPIPS | ms/step | s to goal |"
    lines = [head, "|" + "---|" * (4 + len(checkpoints) + 3)]
    for r in rows:
        cells = [f"{e['median_psnr_db']:.2f} ({e['median_wall_s']:.1f})" for e in r["curve"]]
        lpips = f"{r['final_median_lpips']:.4f}" if r["final_median_lpips"] is not None else "n/a"
        lines.append(f"| {r['preset']} | {r['space']} | {r['perceptual']} | " + " | ".join(cells) +
                     f" | {r['final_median_psnr_db']:.2f} | {lpips} | {r['median_ms_per_step_per_image']:.1f} | "
                     f"{_goal_text(r)} |")
    return "\n".join(lines)


def speed_table(rows) -> str:
    lines = ["| size | batch | preset | loss | s/step | s/step/image | peak MB | device | threads |",
             "|---:|---:|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['batch']} | {r['preset']} | {r['loss']} | {r['seconds_per_step']:.3f} | "
                     f"{r['seconds_per_image_step']:.3f} | {r['peak_memory_mb']:.0f} | {r['device']} | "
                     f"{r['threads']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default="toyfaces64", help="Generator for (a) (default: the shipped toyfaces64).")
    parser.add_argument("--count", type=int, default=16, help="Held-out faces in (a).")
    parser.add_argument("--steps", type=int, default=1000, help="Steps per inversion in (a).")
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[50, 100, 200, 300, 500, 1000],
                        help="Steps at which (a) reports the median PSNR.")
    parser.add_argument("--goal-psnr", type=float, default=25.0)
    parser.add_argument("--configs", nargs="+", default=[f"{p}:{s}" for p, s in CONFIGS],
                        help="preset:space pairs for (a).")
    parser.add_argument("--batch-size", type=int, default=1, help="Images inverted together in (a).")
    parser.add_argument("--speed-sizes", type=int, nargs="*", default=[1024], help="Generator sizes for (b).")
    parser.add_argument("--speed-batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--speed-losses", nargs="+", default=["mse", "vgg", "lpips"])
    parser.add_argument("--speed-steps", type=int, default=2, help="Timed steps per measurement in (b).")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--figure", default=None,
                        help="Write a PNG of the first 8 targets and each configuration's reconstructions here.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default="benchmarks/results/invert.json")
    args = parser.parse_args(argv)

    import torch

    from latentedit.device import resolve_device
    from latentedit.io import portable_paths, write_json

    device = str(resolve_device(args.device))
    print(f"invert benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, device {device}")
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": sys.version,
              "platform": platform.platform(), "device": device}
    def save() -> None:
        # Written after every stage, so an interrupted run keeps what it measured.
        write_json(args.json, portable_paths(report, Path(__file__).resolve().parents[1]))

    if not args.skip_quality:
        configs = [tuple(c.split(":")) for c in args.configs]
        print(f"(a) quality: {args.count} held-out faces, {args.steps} steps, {args.ckpt}")
        report["quality"] = quality(args.ckpt, args.count, args.steps, args.checkpoints, args.goal_psnr, configs,
                                    device, args.batch_size, args.figure)
        save()
        print()
        print(quality_table(report["quality"]))
    if args.speed_sizes:
        print(f"\n(b) speed: config-f generators {args.speed_sizes} px, random weights")
        def save_rows(rows: list[dict]) -> None:
            report["speed"] = rows
            save()

        report["speed"] = speed(args.speed_sizes, args.speed_batches, args.speed_losses, args.speed_steps, device,
                                on_row=save_rows)
        print()
        print(speed_table(report["speed"]))
    save()
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
