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

(c) The inversion methods of issue #23 on the same ``--count`` held-out faces (``--methods``): ``optimize``
    (``--steps``, one image at a time; the W+ image2stylegan row of (a) when (a) runs it), ``encoder`` (one
    batched encoding by ``--encoder``: its first pass and its refinement passes, each with a render; ms per image at ``--encoder-batch`` from the median of 5 timed
    passes after a warm-up), ``encoder+optimize`` (``--eo-steps`` steps from the encoder's W+; the time to
    reach the optimisation's final median PSNR counts the encoder) and ``pti`` (pivot ``--pti-pivot`` with
    ``--pti-pivot-steps`` steps for an optimised pivot, then ``--pti-steps`` tuning steps; the wall time counts
    both).
    The config-f 1024 px speed part adds, per method, one encoding and one PTI tuning step (fresh processes,
    random weights; an encoder of the shipped architecture sized for that generator, with
    ``--speed-refine-steps`` refinement passes, each of which renders the 1024 px generator).
    Editability (``--edit-n`` > 0): the first ``--edit-n`` held-out faces lacking Blond_Hair are inverted by
    each method and edited with ``--edit-vec`` at ``--edit-strength`` (normalised, layers ``--edit-layers``,
    the README's operating point), scored by ``evaluate edit`` (success, Male flips, PSNR to the true
    counterfactual); PTI edits each face with its own tuned generator. Each method's report goes to
    ``--edit-out/<method>/``.

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
METHODS = ("optimize", "encoder", "encoder+optimize", "pti")


def _median_goal_seconds(seconds: list[float | None]) -> float | None:
    """The median over all images, counting the ones that never reached the goal as infinitely slow."""
    ordered = sorted(t if t is not None else float("inf") for t in seconds)
    median = ordered[(len(ordered) - 1) // 2] if ordered else float("inf")
    return None if math.isinf(median) else round(median, 3)


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
            batch_size: int, figure: str | None = None, figure_count: int = 8, precisions=("fp32",)) -> list[dict]:
    import torch

    from latentedit.checkpoints import load_generator
    from latentedit.invert.optimize import InversionSettings, invert, prepare_perceptual

    generator, info = load_generator(ckpt, device=device)
    targets = heldout_targets(count, generator.size)
    rows = []
    figure_rows = [("target", targets[:figure_count])]
    for (preset, space), precision in [(c, p) for c in configs for p in precisions]:
        settings = InversionSettings(preset=preset, space=space, steps=steps, batch_size=batch_size,
                                     precision=precision)
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
        label = f"{preset} {space}" + ("" if precision == "fp32" else f" {precision}")
        figure_rows.append((label, torch.stack([r.reconstruction for r in results[:figure_count]])))
        row = {"preset": preset, "space": space, "perceptual": setup.kind, "steps": steps, "images": count,
               "precision": precision, "per_image_psnr_db": [round(r.psnr_db, 4) for r in results],
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
        median_to_goal = _median_goal_seconds(reach)
        row["median_seconds_to_goal"] = None if median_to_goal is None else round(median_to_goal, 2)
        rows.append(row)
        print(f"  {preset:<15} {space:<3} {precision:<4} final median PSNR {row['final_median_psnr_db']:6.2f} dB, "
              f"{row['median_ms_per_step_per_image']:6.1f} ms/step, median s to {goal_psnr:g} dB: "
              f"{_goal_text(row)}", flush=True)
    if figure:
        save_figure(figure, figure_rows)
    return rows


def methods_quality(ckpt: str, count: int, methods, *, encoder_name: str, steps: int, eo_steps: int,
                    pti_steps: int, pti_lr: float, pti_pivot: str, pti_pivot_steps: int, encoder_batch: int,
                    pti_space: str = "w+",
                    goal_psnr: float | None, device: str,
                    checkpoints: list[int], optimize_row: dict | None = None, figure: str | None = None,
                    figure_count: int = 8) -> list[dict]:
    """Section (c): one row per inversion method on the held-out faces (see the module docstring)."""
    import torch

    from latentedit.checkpoints import load_generator
    from latentedit.invert.encoder import encode, load_encoder
    from latentedit.invert.optimize import InversionSettings, prepare_perceptual
    from latentedit.invert.pti import invert_with_method

    generator, info = load_generator(ckpt, device=device)
    targets = heldout_targets(count, generator.size)
    encoder = None
    if any(m != "optimize" for m in methods):
        encoder, encoder_info = load_encoder(encoder_name, generator_sha256=info.sha256, generator=generator,
                                             device=device)
    setup = prepare_perceptual(InversionSettings(), generator.size, device)
    names = [f"heldout{i:03d}" for i in range(count)]
    rows, figure_rows = [], [("target", targets[:figure_count])]
    goal = goal_psnr if goal_psnr is not None else (optimize_row or {}).get("final_median_psnr_db")
    for method in methods:
        if method == "optimize" and optimize_row is not None:
            row = {"method": "optimize", "steps": optimize_row["steps"], "from_section": "a",
                   "median_psnr_db": optimize_row["final_median_psnr_db"],
                   "median_wall_s_per_image": optimize_row["steps"] * optimize_row["median_ms_per_step_per_image"] / 1e3,
                   "curve": optimize_row["curve"]}
            rows.append(row)
            print(f"  optimize          (from (a)) median PSNR {row['median_psnr_db']:6.2f} dB, "
                  f"{row['median_wall_s_per_image']:7.2f} s/image", flush=True)
            continue
        row = {"method": method, "images": count, "checkpoint_sha256": info.sha256}
        if method == "encoder":
            encode(encoder, targets[:encoder_batch], generator=generator)  # warm-up
            timings = []
            for _ in range(5):
                batch = targets[:encoder_batch]
                started = time.perf_counter()
                encode(encoder, batch, batch_size=encoder_batch, generator=generator)
                timings.append((time.perf_counter() - started) / batch.shape[0])
            results = invert_with_method(generator, targets, InversionSettings(method="encoder"), names=names,
                                         encoder=encoder, perceptual=setup)
            row.update(steps=0, refine_steps=encoder.refine_steps, encoder_batch=encoder_batch,
                       median_ms_per_image=1e3 * statistics.median(timings),
                       median_wall_s_per_image=statistics.median(timings))
        else:
            method_steps = {"optimize": steps, "encoder+optimize": eo_steps}.get(method, pti_pivot_steps)
            settings = InversionSettings(method=method, steps=method_steps,
                                         pti_steps=pti_steps, pti_lr=pti_lr, pti_pivot=pti_pivot,
                                         space=pti_space if method == "pti" else "w+")
            results = []
            for i in range(count):  # one image at a time, as a user inverts a photo
                results += invert_with_method(generator, targets[i:i + 1], settings, names=names[i:i + 1],
                                              encoder=encoder, perceptual=setup)
            # the optimisation steps this method ran (an encoder pivot runs none)
            ran = 0 if method == "pti" and pti_pivot == "encoder" else settings.steps
            row.update(steps=ran, median_wall_s_per_image=statistics.median(r.wall_time_s for r in results))
            if method == "pti":
                row.update(pti_steps=pti_steps, pti_lr=pti_lr, pti_pivot=pti_pivot, pti_space=pti_space,
                           median_pivot_psnr_db=statistics.median(r.extra["pti"]["pivot_psnr_db"] for r in results),
                           median_tuning_s=statistics.median(r.extra["pti"]["wall_time_s"] for r in results),
                           curve=[{"step": entry["step"],
                                   "median_psnr_db": statistics.median(
                                       [e for e in r.extra["pti"]["loss_curve"] if e["step"] <= entry["step"]][-1]
                                       ["psnr_db"] for r in results)}
                                  for entry in results[0].extra["pti"]["loss_curve"]])
            else:
                per_step = [r.wall_time_s / max(r.steps, 1) for r in results]
                offset = [(r.extra or {}).get("encoder_init", {}).get("wall_time_s", 0.0) for r in results]
                row["curve"] = [{"step": step,
                                 "median_psnr_db": statistics.median(psnr_at(r.loss_curve, step) for r in results),
                                 "median_wall_s": statistics.median(o + step * t for o, t in zip(offset, per_step))}
                                for step in [0] + [s for s in checkpoints if s <= settings.steps]
                                if method != "optimize" or step > 0]
                if method == "encoder+optimize":
                    row["median_encoder_init_psnr_db"] = statistics.median(
                        r.extra["encoder_init"]["psnr_db"] for r in results)
                if goal is not None:
                    reach = []
                    for r, o, t in zip(results, offset, per_step):
                        hit = next((e["step"] for e in r.loss_curve if e["psnr_db"] >= goal), None)
                        reach.append(None if hit is None else o + hit * t)
                    row.update(goal_psnr_db=goal, fraction_reaching_goal=sum(t is not None for t in reach) / count,
                               median_seconds_to_goal=_median_goal_seconds(reach))
        row["median_psnr_db"] = statistics.median(r.psnr_db for r in results)
        row["psnr_db"] = [round(r.psnr_db, 4) for r in results]
        figure_rows.append((method, torch.stack([r.reconstruction for r in results[:figure_count]])))
        rows.append(row)
        extra = (f", {row['median_ms_per_image']:.2f} ms/image at batch {encoder_batch}" if method == "encoder" else
                 f", median s to {goal:.2f} dB: {row.get('median_seconds_to_goal')}" if "goal_psnr_db" in row else "")
        print(f"  {method:<17} median PSNR {row['median_psnr_db']:6.2f} dB, {row['median_wall_s_per_image']:7.3f} "
              f"s/image{extra}", flush=True)
    if figure and len(figure_rows) > 1:
        save_figure(figure, figure_rows)
    return rows


def editability(ckpt: str, methods, *, encoder_name: str, n: int, vec: str, strength: float, layers: str,
                invert_steps: int, pti_steps: int, pti_lr: float, pti_pivot: str, out_dir: str,
                device: str, pti_space: str = "w+") -> list[dict]:
    """Editability per method: ``evaluate edit`` of the blond direction on held-out faces each method inverted."""
    from latentedit.checkpoints import load_generator
    from latentedit.evaluate import evaluate_edit_to_folder, load_attribute_classifier
    from latentedit.invert.optimize import InversionSettings

    generator, info = load_generator(ckpt, device=device)
    classifier, classifier_info = load_attribute_classifier(None, device=device)
    rows = []
    for method in methods:
        settings = InversionSettings(steps=invert_steps, method=method, pti_steps=pti_steps, pti_lr=pti_lr,
                                     pti_pivot=pti_pivot, space=pti_space if method == "pti" else "w+",
                                     encoder=encoder_name if method != "optimize" else None)
        started = time.perf_counter()
        result = evaluate_edit_to_folder(
            generator, classifier, [f"learned={vec}"], "Blond_Hair", [strength], Path(out_dir) / method.replace("+", "_"),
            source="inverted", n=n, layers=layers, normalize=True, invert_settings=settings,
            checkpoint_info=info.to_dict(), classifier_info=classifier_info, log=lambda m: print(f"  {m}"),
            progress=False)
        record = result["directions"]["learned"]["per_strength"][0]
        base = result["sources"]["details"]["baseline"]
        row = {"method": method, "n": result["sources"]["count"], "strength": strength, "layers": layers,
               "invert_steps": invert_steps if method != "encoder" else 0,
               "pti_steps": pti_steps if method == "pti" else None, "pti_lr": pti_lr if method == "pti" else None,
               "pti_pivot": pti_pivot if method == "pti" else None,
               "pti_space": pti_space if method == "pti" else None,
               "inversion_psnr_db": base["inversion_psnr_db"],
               "reconstruction_psnr_to_truth_db": base["reconstruction_psnr_to_truth_db"],
               "success_rate": record["success_rate"], "male_flips": record["flips"].get("Male"),
               "side_effect_mean": record["side_effect_mean"], "psnr_to_truth_db": record.get("psnr_to_truth_db"),
               "dropped": len(result["sources"]["details"]["dropped_reconstructions_labelled_present"]),
               "wall_s": round(time.perf_counter() - started, 1)}
        rows.append(row)
        print(f"  {method:<17} n {row['n']}: blond success {100 * row['success_rate']:5.1f} %, Male flips "
              f"{100 * (row['male_flips'] or 0):4.1f} %, side effects {100 * row['side_effect_mean']:4.1f} %, PSNR to "
              f"truth {row['psnr_to_truth_db']:.2f} dB (inversion {row['inversion_psnr_db']:.2f} dB)", flush=True)
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


def _config_f_setup(task: dict):
    """(device, a frozen random config-f generator of ``task['size']`` with its mean w, random targets
    ``[task['batch'], 3, size, size]``) for a speed measurement."""
    import torch

    from latentedit.model import Generator, GeneratorConfig

    device = torch.device(task["device"])
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(size=task["size"], style_dim=512, n_mlp=8)).to(device)
    generator.eval().requires_grad_(False)
    generator.set_w_avg(generator.compute_w_avg(num_samples=2000))
    targets = torch.rand(task["batch"], 3, task["size"], task["size"], device=device) * 2 - 1
    return device, generator, targets


def _speed_task(task: dict) -> dict:
    """Runs in a child process: seconds per inversion step and peak memory for one configuration."""
    import torch

    from latentedit.device import tune_cpu_allocator

    tune_cpu_allocator()  # as the CLI runs

    from latentedit.invert.optimize import InversionSettings, invert
    from latentedit.invert.perceptual import build_perceptual

    device, generator, targets = _config_f_setup(task)
    perceptual = None
    if task["loss"] != "mse":
        perceptual = build_perceptual(task["loss"], image_size=task["size"], random_backbone=True, device=device)
    settings = InversionSettings(preset=task["preset"], steps=1, mse_weight=1.0,
                                 precision=task.get("precision", "fp32"))
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


def _method_speed_task(task: dict) -> dict:
    """Runs in a child process: one encoding (first pass + refinement passes), or one PTI tuning step, on a
    config-f generator."""
    from latentedit.device import tune_cpu_allocator

    tune_cpu_allocator()  # as the CLI runs
    import torch

    from latentedit.invert.encoder import build_encoder, encode
    from latentedit.invert.pti import tune_generator

    device, generator, targets = _config_f_setup(task)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if task["method"] == "encoder":
        # The shipped encoder's shape: a first pass and refine_steps corrections, each rendering the generator.
        encoder = build_encoder(generator, w_std_samples=2000, refine_steps=task["refine_steps"]).eval()
        baseline_mb = _reset_peak_rss_mb()
        encode(encoder, targets, generator=generator)
        timings = []
        for _ in range(3):
            sync()
            started = time.perf_counter()
            encode(encoder, targets, batch_size=task["batch"], generator=generator)
            sync()
            timings.append(time.perf_counter() - started)
        seconds = statistics.median(timings)
        extra = {"encoder_parameters": sum(p.numel() for p in encoder.parameters())}
    else:
        pivot = generator.mean_w().detach()
        baseline_mb = _reset_peak_rss_mb()

        def timed(steps: int) -> float:
            sync()
            started = time.perf_counter()
            tune_generator(generator, targets[0], pivot, steps=steps)
            sync()
            return time.perf_counter() - started

        timed(1)
        seconds = (timed(1 + task["steps"]) - timed(1)) / task["steps"]
        extra = {}
    peak_mb = (torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda"
               else _peak_rss_mb() - baseline_mb)
    return {**task, **extra, "seconds": seconds, "seconds_per_image": seconds / task["batch"],
            "peak_memory_mb": peak_mb, "threads": torch.get_num_threads()}


def method_speed(sizes, methods, steps: int, device: str, on_row=None, refine_steps: int = 2) -> list[dict]:
    """(c) at 1024 px: one fresh process per (size, method): ``encoder`` s per encoding at batch 1 (the first
    pass and ``refine_steps`` refinement passes, each with a render), ``pti`` s per tuning step (optimize and
    encoder+optimize cost (b)'s s/step per step)."""
    context = multiprocessing.get_context("spawn")
    rows = []
    for size in sizes:
        for method in [m for m in methods if m in ("encoder", "pti")]:
            task = dict(size=size, method=method, batch=1, steps=steps, device=device, refine_steps=refine_steps)
            with context.Pool(1) as pool:
                row = pool.apply(_method_speed_task, (task,))
            rows.append(row)
            if on_row is not None:
                on_row(rows)
            what = (f"s per encoding (1 + {refine_steps} passes)" if method == "encoder" else "s per tuning step")
            print(f"  {size:>4} px  {method:<8} {row['seconds']:8.3f} {what}  peak {row['peak_memory_mb']:8.0f} MB",
                  flush=True)
    return rows


def speed(sizes, batches, losses, steps: int, device: str, on_row=None, precisions=("fp32",)) -> list[dict]:
    """One fresh process per configuration; ``on_row(rows)`` is called after each one (to save partial
    results of a long run)."""
    tasks = []
    for size in sizes:
        for loss in losses:
            preset = "projector" if loss == "lpips" else "image2stylegan"
            for batch in batches:
                for precision in precisions:
                    tasks.append(dict(size=size, batch=batch, loss=loss, preset=preset, steps=steps, device=device,
                                      precision=precision))
    context = multiprocessing.get_context("spawn")
    rows = []
    for task in tasks:
        with context.Pool(1) as pool:
            row = pool.apply(_speed_task, (task,))
        rows.append(row)
        if on_row is not None:
            on_row(rows)
        print(f"  {row['size']:>4} px  batch {row['batch']}  {row['preset']:<15} {row['loss']:<5} {row['precision']:<4} "
              f"{row['seconds_per_step']:8.3f} s/step  peak {row['peak_memory_mb']:8.0f} MB", flush=True)
    return rows


def _goal_text(row: dict) -> str:
    seconds = row["median_seconds_to_goal"]
    return "not reached" if seconds is None else f"{seconds:.1f}"


def quality_table(rows) -> str:
    checkpoints = [entry["step"] for entry in rows[0]["curve"]] if rows else []
    head = "| preset | space | loss | precision | " + " | ".join(f"PSNR @{s} (s)" for s in checkpoints) + \
           " | final PSNR | final LPIPS | ms/step | s to goal |"
    lines = [head, "|" + "---|" * (5 + len(checkpoints) + 3)]
    for r in rows:
        cells = [f"{e['median_psnr_db']:.2f} ({e['median_wall_s']:.1f})" for e in r["curve"]]
        lpips = f"{r['final_median_lpips']:.4f}" if r["final_median_lpips"] is not None else "n/a"
        lines.append(f"| {r['preset']} | {r['space']} | {r['perceptual']} | {r.get('precision', 'fp32')} | "
                     + " | ".join(cells) +
                     f" | {r['final_median_psnr_db']:.2f} | {lpips} | {r['median_ms_per_step_per_image']:.1f} | "
                     f"{_goal_text(r)} |")
    return "\n".join(lines)


def methods_table(section: dict) -> str:
    """The README's reconstruction / editability table: one row per method."""
    edits = {r["method"]: r for r in section.get("editability", [])}
    lines = ["| method | steps | median PSNR (dB) | s per image | editability: blond success | Male flips | "
             "PSNR to truth (dB) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in section["quality"]:
        passes = f"1 + {r['refine_steps']} refinement passes" if r.get("refine_steps") else "1 pass"
        steps = {"encoder": passes, "pti": f"{r.get('steps')} + {r.get('pti_steps')} tuning"}.get(
            r["method"], str(r["steps"]))
        seconds = (f"{r['median_ms_per_image'] / 1e3:.4f}" if r["method"] == "encoder"
                   else f"{r['median_wall_s_per_image']:.1f}")
        e = edits.get(r["method"])
        cells = (["–"] * 3 if e is None else
                 [f"{100 * e['success_rate']:.1f} %", f"{100 * (e['male_flips'] or 0):.1f} %",
                  f"{e['psnr_to_truth_db']:.2f}"])
        lines.append(f"| {r['method']} | {steps} | {r['median_psnr_db']:.2f} | {seconds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_table(rows) -> str:
    lines = ["| size | batch | preset | loss | precision | s/step | s/step/image | peak MB | device | threads |",
             "|---:|---:|---|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['batch']} | {r['preset']} | {r['loss']} | {r.get('precision', 'fp32')} | "
                     f"{r['seconds_per_step']:.3f} | "
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
    parser.add_argument("--speed-losses", nargs="*", default=["mse", "vgg", "lpips"])
    parser.add_argument("--speed-steps", type=int, default=2, help="Timed steps per measurement in (b).")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--methods", nargs="*", default=[], choices=METHODS,
                        help="Section (c): inversion methods compared on the held-out faces (default: none).")
    parser.add_argument("--encoder", default="toyfaces64_encoder", help="Encoder of (c).")
    parser.add_argument("--encoder-batch", type=int, default=16, help="Batch of (c)'s encoder timing.")
    parser.add_argument("--eo-steps", type=int, default=200,
                        help="Steps of encoder+optimize in (c).")
    parser.add_argument("--pti-steps", type=int, default=200, help="PTI tuning steps in (c).")
    parser.add_argument("--pti-lr", type=float, default=None,
                        help="PTI learning rate in (c) [default: invert's --pti-lr default].")
    parser.add_argument("--pti-pivot", default="encoder+optimize", choices=["optimize", "encoder", "encoder+optimize"])
    parser.add_argument("--pti-space", default="w+", choices=["w+", "w"],
                        help="Latent space of the PTI pivot in (c) (w: one w for every layer, as the PTI paper).")
    parser.add_argument("--pti-pivot-steps", type=int, default=200, help="Steps of an optimised PTI pivot in (c).")
    parser.add_argument("--methods-figure", default=None, help="PNG: targets, then each method's reconstructions.")
    parser.add_argument("--edit-n", type=int, default=0, help="Editability sources per method in (c) (0: skip).")
    parser.add_argument("--edit-vec", default="examples/blond_learned.npy")
    parser.add_argument("--edit-strength", type=float, default=12.0)
    parser.add_argument("--edit-layers", default="3-5")
    parser.add_argument("--edit-invert-steps", type=int, default=200,
                        help="Optimisation steps of optimize / encoder+optimize / the PTI pivot for editability.")
    parser.add_argument("--edit-out", default="benchmarks/results/invert_methods",
                        help="Folder of each method's evaluate-edit report.")
    parser.add_argument("--speed-refine-steps", type=int, default=2,
                        help="Refinement passes of the encoder timed at --speed-sizes (the shipped encoder's 2).")
    parser.add_argument("--speed-methods", nargs="*", default=None, choices=METHODS,
                        help="Methods timed at --speed-sizes (default: --methods).")
    parser.add_argument("--figure", default=None,
                        help="Write a PNG of the first 8 targets and each configuration's reconstructions here.")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16", "auto"],
                        help="Precisions of (a) and (b) (latentedit.precision), e.g. fp32 bf16: same faces, same seeds.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default="benchmarks/results/invert.json")
    args = parser.parse_args(argv)

    import torch

    from latentedit.device import resolve_device
    from latentedit.io import portable_paths, write_json

    from latentedit.device import tune_cpu_allocator

    allocator_tuned = tune_cpu_allocator()  # as the CLI runs
    device = str(resolve_device(args.device))
    print(f"invert benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, device {device}")
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": sys.version,
              "platform": platform.platform(), "device": device, "allocator_tuned": allocator_tuned,
              "command": "python benchmarks/invert.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    def save() -> None:
        # Written after every stage, so an interrupted run keeps what it measured.
        write_json(args.json, portable_paths(report, Path(__file__).resolve().parents[1]))

    if not args.skip_quality:
        configs = [tuple(c.split(":")) for c in args.configs]
        print(f"(a) quality: {args.count} held-out faces, {args.steps} steps, {args.ckpt}")
        report["quality"] = quality(args.ckpt, args.count, args.steps, args.checkpoints, args.goal_psnr, configs,
                                    device, args.batch_size, args.figure, precisions=args.precisions)
        save()
        print()
        print(quality_table(report["quality"]))
    if args.methods:
        from latentedit.invert.optimize import InversionSettings

        pti_lr = InversionSettings().pti_lr if args.pti_lr is None else args.pti_lr
        optimize_row = next((r for r in report.get("quality", [])
                             if (r["preset"], r["space"]) == ("image2stylegan", "w+") and r["steps"] == args.steps),
                            None)
        print(f"\n(c) inversion methods: {args.count} held-out faces, {args.ckpt}, encoder {args.encoder}")
        report["methods"] = {
            "settings": {"steps": args.steps, "eo_steps": args.eo_steps, "pti_steps": args.pti_steps,
                         "pti_lr": pti_lr,
                         "pti_pivot": args.pti_pivot, "pti_pivot_steps": args.pti_pivot_steps,
                         "pti_space": args.pti_space,
                         "encoder": args.encoder, "encoder_batch": args.encoder_batch},
            "quality": methods_quality(args.ckpt, args.count, args.methods, encoder_name=args.encoder,
                                       steps=args.steps, eo_steps=args.eo_steps, pti_steps=args.pti_steps,
                                       pti_lr=pti_lr,
                                       pti_pivot=args.pti_pivot, pti_pivot_steps=args.pti_pivot_steps,
                                       pti_space=args.pti_space,
                                       encoder_batch=args.encoder_batch,
                                       goal_psnr=None, device=device,
                                       checkpoints=[s for s in args.checkpoints if s <= max(args.steps, args.eo_steps)],
                                       optimize_row=optimize_row, figure=args.methods_figure)}
        save()
        if args.edit_n:
            print(f"\n(c) editability: {args.edit_n} held-out faces lacking Blond_Hair per method, {args.edit_vec} "
                  f"at strength {args.edit_strength:g}, layers {args.edit_layers}")
            report["methods"]["editability"] = editability(
                args.ckpt, args.methods, encoder_name=args.encoder, n=args.edit_n, vec=args.edit_vec,
                strength=args.edit_strength, layers=args.edit_layers, invert_steps=args.edit_invert_steps,
                pti_steps=args.pti_steps, pti_lr=pti_lr, pti_pivot=args.pti_pivot, pti_space=args.pti_space,
                out_dir=args.edit_out,
                device=device)
            save()
        print()
        print(methods_table(report["methods"]))
    speed_methods = args.methods if args.speed_methods is None else args.speed_methods
    if args.speed_sizes and speed_methods:
        print(f"\n(c) method speed: config-f generators {args.speed_sizes} px, random weights")

        def save_method_rows(rows: list[dict]) -> None:
            report["method_speed"] = rows
            save()

        report["method_speed"] = method_speed(args.speed_sizes, speed_methods, args.speed_steps, device,
                                              on_row=save_method_rows, refine_steps=args.speed_refine_steps)
    if args.speed_sizes and args.speed_losses:
        print(f"\n(b) speed: config-f generators {args.speed_sizes} px, random weights")
        def save_rows(rows: list[dict]) -> None:
            report["speed"] = rows
            save()

        report["speed"] = speed(args.speed_sizes, args.speed_batches, args.speed_losses, args.speed_steps, device,
                                on_row=save_rows, precisions=args.precisions)
        print()
        print(speed_table(report["speed"]))
    save()
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
