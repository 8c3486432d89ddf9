"""Generator speed and memory: forward and forward+backward (loss on the image, gradient to W+).

Config-f channels, random weights, for each size, batch, ops backend and modulation strategy. Each
measurement runs in a fresh process so that its peak memory (max RSS above the process's baseline
after building the model) is its own. Prints a markdown table and writes JSON.

    python benchmarks/generator.py                       # 64, 256, 1024 px; batch 1 and 4
    python benchmarks/generator.py --sizes 256 --batches 1 --repeats 2 --json out.json
    python benchmarks/generator.py --sizes 64 --sg3 ../shared/refdata/sg3t64_small.pkl   # + StyleGAN3 rows

``--sg3 PKL`` adds rows for a StyleGAN3 snapshot (its own size and weights); ``--sg3 t256`` (or ``r1024``, any
``t|r`` + power of two) for NVIDIA's stylegan3-t / -r architecture at that size with random weights and designed
filters (:mod:`latentedit.model.sg3_design`). StyleGAN3 rows run under each backend: ``compiled`` and ``auto`` use
the C++ ``filtered_lrelu`` (auto: for separable filters only, so an R network's radial layers stay native).

    python benchmarks/generator.py --sizes 64 --batches 1 --sg3 t256 --sg3-only --json benchmarks/results/generator_sg3_t256.json

Precision, allocator and the hardware floor (issue #21): ``--precisions fp32 bf16`` times each case under
:mod:`latentedit.precision` (default: fp32, plus bf16 where the CPU has it natively); ``--allocators tuned system``
with and without :func:`latentedit.device.tune_cpu_allocator` (default: tuned, as the CLI runs);
``--processes P`` repeats every case in P fresh processes and reports the median and the spread across them.
The same run first measures this machine's convolution peak (a 3x3 512->512 convolution at 64x64, forward, in
float32 and bf16) and counts each case's floating-point operations (``torch.utils.flop_counter``), so every row
also prints ``x floor``: its forward+backward time over the time those operations take at that peak.

    python benchmarks/generator.py --sizes 256 1024 --batches 1 4 --backends auto --modulations scaled \\
        --precisions fp32 bf16 --allocators tuned system --processes 3 --json benchmarks/results/generator_precision.json

Peers side by side: ``--peer-nvidia DIR`` (a checkout of https://github.com/NVlabs/stylegan2-ada-pytorch) and
``--peer-rosinality DIR`` (https://github.com/rosinality/stylegan2-pytorch) time their generators, config-f with
random weights, the same W+ and the same loss, in float32 under each ``--allocators`` setting, as rows
``nvidia`` / ``rosinality`` whose ``vs latentedit`` is their time over latentedit's in the same run. Nothing of
theirs is vendored. NVIDIA's custom ops fall back to their reference implementations on CPU by themselves;
rosinality's ``op`` package compiles its CUDA kernels when imported, so the harness replaces
``torch.utils.cpp_extension.load`` with a stub before importing it; its CPU paths never call the kernels.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import sys
import time


def _time_calls(forward, forward_backward, repeats: int) -> dict:
    """``forward_s`` / ``forward_backward_s`` (best of ``repeats`` after one warm-up call, which also builds
    compiled ops) and every time, ``*_times_s``."""
    results = {}
    for name, fn in (("forward", forward), ("forward_backward", forward_backward)):
        fn()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        results[name + "_s"] = min(times)
        results[name + "_times_s"] = times
    return results


def _measure(task: dict) -> dict:
    """Runs in a child process: build the generator, time forward and forward+backward."""
    os.environ["LATENTEDIT_OPS"] = task["backend"]
    os.environ["LATENTEDIT_MALLOC"] = "system" if task.get("allocator") == "system" else "tuned"
    import torch

    from latentedit.device import tune_cpu_allocator
    from latentedit.model import Generator, GeneratorConfig
    from latentedit.precision import compute

    tune_cpu_allocator()
    precision = task.get("precision", "fp32")

    torch.manual_seed(0)
    if task.get("design"):  # NVIDIA's stylegan3-t / -r architecture at a size, random weights
        from latentedit.model.sg3_design import design_sg3_config, random_sg3_generator

        kind, size = task["design"][0], int(task["design"][1:])
        generator = random_sg3_generator(design_sg3_config(size, kind)).requires_grad_(False)
    elif task.get("ckpt"):  # a StyleGAN3 (or any) checkpoint, as loaded by every command
        from latentedit.checkpoints import load_generator

        generator = load_generator(task["ckpt"])[0].eval().requires_grad_(False)
    else:
        generator = Generator(GeneratorConfig(size=task["size"], style_dim=512, n_mlp=8)).eval().requires_grad_(False)
    w_plus = torch.randn(task["batch"], generator.num_ws, generator.w_dim)
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def forward():
        with torch.no_grad(), compute(precision, "cpu"):
            return generator.synthesis(w_plus, "const", modulation=task["modulation"]).float()

    def forward_backward():
        latent = w_plus.clone().requires_grad_(True)
        with compute(precision, "cpu"):
            image = generator.synthesis(latent, "const", modulation=task["modulation"])
        image.float().square().mean().backward()
        return latent.grad

    results = {}
    reference = forward()
    if precision != "fp32":  # the whole image against float32 in the same process
        with torch.no_grad():
            full = generator.synthesis(w_plus, "const", modulation=task["modulation"])
        results["max_image_diff_vs_fp32"] = float((reference - full).abs().max())
    results.update(_time_calls(forward, forward_backward, task["repeats"]))
    if task.get("count_flops"):
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            forward_backward()
        results["forward_backward_gflop"] = counter.get_total_flops() / 1e9
    results["peak_extra_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) / 1024
    results["output_checksum"] = float(reference.double().abs().mean())
    results["output"] = reference[:1, :, :8, :8].flatten().tolist()
    results["architecture"] = generator.config.kind if hasattr(generator.config, "kind") else "stylegan2"
    results["size"] = generator.size
    return {**task, **results}


def _conv_peak(task: dict) -> dict:
    """Runs in a child process: GFLOP/s of a 3x3 512->512 convolution at 64x64 (batch 1, forward), the
    densest layer of config-f, in ``task["precision"]`` -- the machine's own convolution peak for the floor."""
    import torch
    import torch.nn.functional as F

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[task["precision"]]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 512, 64, 64, generator=generator).to(dtype)
    weight = torch.randn(512, 512, 3, 3, generator=generator).to(dtype)
    flop = 2 * 512 * 512 * 9 * 64 * 64
    with torch.no_grad():
        for _ in range(3):
            F.conv2d(x, weight, padding=1)
        times = []
        for _ in range(task["repeats"]):
            started = time.perf_counter()
            F.conv2d(x, weight, padding=1)
            times.append(time.perf_counter() - started)
    return {"precision": task["precision"], "gflop_per_s": flop / min(times) / 1e9, "times_s": times}


def _peer_generator(task: dict):
    """``(synthesis(w_plus) -> image, num_ws)`` for a peer's config-f generator of ``task["size"]``."""
    import torch

    sys.path.insert(0, os.path.abspath(task["checkout"]))
    torch.manual_seed(0)
    if task["peer"] == "nvidia":
        from training.networks import Generator as NvidiaGenerator

        generator = NvidiaGenerator(z_dim=512, c_dim=0, w_dim=512, img_resolution=task["size"], img_channels=3,
                                    synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0,
                                                          conv_clamp=None)).eval().requires_grad_(False)
        return (lambda w_plus: generator.synthesis(w_plus, noise_mode="const")), generator.num_ws
    import torch.utils.cpp_extension

    torch.utils.cpp_extension.load = lambda *args, **kwargs: None  # its op package compiles CUDA at import
    from model import Generator as RosinalityGenerator

    generator = RosinalityGenerator(task["size"], 512, 8, channel_multiplier=2).eval().requires_grad_(False)
    return ((lambda w_plus: generator([w_plus], input_is_latent=True, randomize_noise=False)[0]),
            generator.n_latent)


def _measure_peer(task: dict) -> dict:
    """Runs in a child process: a peer's forward and forward+backward, timed as :func:`_measure` times ours."""
    os.environ["LATENTEDIT_MALLOC"] = "system" if task.get("allocator") == "system" else "tuned"
    import torch

    from latentedit.device import tune_cpu_allocator

    tune_cpu_allocator()
    synthesis, num_ws = _peer_generator(task)
    w_plus = torch.randn(task["batch"], num_ws, 512)
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def forward():
        with torch.no_grad():
            return synthesis(w_plus)

    def forward_backward():
        latent = w_plus.clone().requires_grad_(True)
        synthesis(latent).square().mean().backward()

    results = _time_calls(forward, forward_backward, task["repeats"])
    results["peak_extra_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) / 1024
    return {**task, **results, "architecture": task["peer"], "backend": "peer", "modulation": "peer",
            "precision": "fp32"}


def _compiled_available() -> bool:
    from latentedit.errors import OpsBuildError
    from latentedit.ops import _build

    try:
        _build.load_extension(_build.CPU_SPEC)
        return True
    except OpsBuildError as error:
        print(f"compiled CPU ops unavailable: {error}")
        return False


def _sg3_source(sg3: str) -> dict:
    """``{"design": "t256"}`` for a designed architecture, else ``{"ckpt": path}``."""
    text = str(sg3).lower()
    if len(text) > 1 and text[0] in "tr" and text[1:].isdigit():
        return {"design": text}
    return {"ckpt": str(sg3)}


def _same(a: dict, b: dict, *keys: str) -> bool:
    return all(a.get(k) == b.get(k) for k in keys)


def conv_peaks(precisions, repeats: int = 5) -> dict:
    """``{precision: GFLOP/s}`` of the floor convolution, each measured in a fresh process."""
    context = multiprocessing.get_context("spawn")
    peaks = {}
    for precision in precisions:
        with context.Pool(1) as pool:
            peak = pool.apply(_conv_peak, ({"precision": precision, "repeats": repeats},))
        peaks[precision] = peak["gflop_per_s"]
        print(f"  convolution peak {precision}: {peak['gflop_per_s']:.0f} GFLOP/s (3x3 512->512 at 64x64)", flush=True)
    return peaks


def _merge_processes(runs: list[dict]) -> dict:
    """One row from the same case measured in several processes: median of the per-process best times, and the
    spread (max - min) / median across processes."""
    import statistics

    row = dict(runs[0])
    for name in ("forward_s", "forward_backward_s"):
        values = [r[name] for r in runs]
        row[name] = statistics.median(values)
        row[name.replace("_s", "_per_process_s")] = values
        row[name.replace("_s", "_spread")] = (max(values) - min(values)) / row[name] if len(values) > 1 else 0.0
    row["peak_extra_mb"] = max(r["peak_extra_mb"] for r in runs)
    row["processes"] = len(runs)
    return row


def run(sizes, batches, backends, modulations, repeats, sg3=None, sg3_only=False, precisions=("fp32",),
        allocators=("tuned",), processes: int = 1, peaks: dict | None = None, peers: dict | None = None) -> list[dict]:
    variants = [dict(precision=p, allocator=a, repeats=repeats, count_flops=peaks is not None)
                for p in precisions for a in allocators
                if not (a == "system" and p != "fp32")]  # the allocator comparison is made in float32
    tasks = [] if sg3_only else [dict(size=s, batch=b, backend=be, modulation=m, **v)
                                 for s in sizes for b in batches for be in backends for m in modulations
                                 for v in variants]
    if sg3:
        tasks += [dict(size=0, batch=b, backend=be, modulation=m, repeats=repeats, precision="fp32", allocator="tuned",
                       **_sg3_source(sg3))
                  for b in batches for be in backends for m in modulations]
    for peer, checkout in (peers or {}).items():
        tasks += [dict(size=s, batch=b, peer=peer, checkout=str(checkout), allocator=a, repeats=repeats)
                  for s in sizes for b in batches for a in allocators]
    context = multiprocessing.get_context("spawn")
    rows = []
    for task in tasks:
        runs = []
        for _ in range(processes):
            with context.Pool(1) as pool:
                runs.append(pool.apply(_measure_peer if "peer" in task else _measure, (task,)))
        row = _merge_processes(runs)
        rows.append(row)
        print(f"  {row['architecture']:<9} {row['size']:>4} px  batch {row['batch']}  {row['backend']:<8} "
              f"{row['modulation']:<8} {row.get('precision', 'fp32'):<5} {row.get('allocator', 'tuned'):<6} "
              f"fwd {row['forward_s'] * 1e3 / row['batch']:8.1f} ms/img  "
              f"fwd+bwd {row['forward_backward_s'] * 1e3 / row['batch']:8.1f} ms/img"
              + (f"  spread {row['forward_backward_spread']:.0%}" if processes > 1 else ""), flush=True)
    # Ratios against the native path with the same size, batch and modulation, measured in this run.
    ours = [r for r in rows if "peer" not in r]
    for row in rows:
        if "peer" in row:  # the peer's time over latentedit's default path (auto ops, fp32) in the same run
            mine = next((r for r in ours if _same(r, row, "size", "batch", "allocator")
                         and r.get("precision") == "fp32" and r["backend"] in ("auto", "native")), None)
            row["peer_time_vs_latentedit"] = (row["forward_backward_s"] / mine["forward_backward_s"]
                                              if mine else float("nan"))
            single = next((r for r in rows if _same(r, row, "size", "peer", "allocator") and r["batch"] == 1), None)
            if single is not None:
                row["batch_cost_vs_batch1"] = row["forward_backward_s"] / single["forward_backward_s"]
            row["fwd_bwd_speedup_vs_native"] = float("nan")
            continue
        if peaks is not None and "forward_backward_gflop" in row:
            floor = row["forward_backward_gflop"] / peaks[row.get("precision", "fp32")]
            row["floor_s"] = floor
            row["vs_floor"] = row["forward_backward_s"] / floor
        twin = next((r for r in rows if _same(r, row, "size", "batch", "architecture", "backend", "modulation")
                     and r.get("precision") == "fp32" and r.get("allocator", "tuned") == row.get("allocator", "tuned")),
                    None)
        if twin is not None:
            row["fwd_bwd_speedup_vs_fp32"] = twin["forward_backward_s"] / row["forward_backward_s"]
        system = next((r for r in rows if _same(r, row, "size", "batch", "architecture", "backend", "modulation",
                                                "precision") and r.get("allocator") == "system"), None)
        if system is not None:
            row["fwd_bwd_speedup_vs_system_allocator"] = system["forward_backward_s"] / row["forward_backward_s"]
        base = next((r for r in rows if r["size"] == row["size"] and r["batch"] == row["batch"]
                     and r["architecture"] == row["architecture"]
                     and _same(r, row, "precision", "allocator")
                     and r["backend"] == "native" and r["modulation"] == row["modulation"]), None)
        row["fwd_bwd_speedup_vs_native"] = (base["forward_backward_s"] / row["forward_backward_s"]
                                            if base else float("nan"))
        single = [r for r in rows if r["size"] == row["size"] and r["batch"] == 1
                  and r["architecture"] == row["architecture"] and _same(r, row, "precision", "allocator")
                  and r["backend"] == row["backend"] and r["modulation"] == row["modulation"]]
        if single:
            row["batch_cost_vs_batch1"] = row["forward_backward_s"] / single[0]["forward_backward_s"]
        same = [r for r in rows if r["size"] == row["size"] and r["batch"] == row["batch"]
                and r["architecture"] == row["architecture"] and r.get("precision", "fp32") == "fp32"]
        if row.get("precision", "fp32") != "fp32":  # against the float32 rows: the quality cost of the precision
            row["max_output_diff_vs_fp32"] = max(
                max(abs(a - b) for a, b in zip(row["output"], r["output"])) for r in same) if same else float("nan")
            continue
        row["max_output_diff_vs_others"] = max(
            max(abs(a - b) for a, b in zip(row["output"], r["output"])) for r in same)
    exact = [r["max_output_diff_vs_others"] for r in rows if "max_output_diff_vs_others" in r]
    if exact:
        print(f"max output difference between float32 backends/strategies/allocators: {max(exact):.2e}")
    reduced = [r["max_output_diff_vs_fp32"] for r in rows if "max_output_diff_vs_fp32" in r]
    if reduced:
        print(f"max output difference of reduced precision against float32: {max(reduced):.2e}")
    return rows


def table(rows) -> str:
    nan = float("nan")
    header = ("| generator | size | batch | ops | modulation | precision | allocator | fwd ms/img | fwd+bwd ms/img "
              "| spread | vs native | vs fp32 | vs system alloc | × floor | peer ÷ latentedit | batch cost (×b1) "
              "| peak extra MB |")
    lines = [header, "|---|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['architecture']} | {r['size']} | {r['batch']} | {r['backend']} | {r['modulation']} | "
                     f"{r.get('precision', 'fp32')} | {r.get('allocator', 'tuned')} | "
                     f"{r['forward_s'] * 1e3 / r['batch']:.1f} | {r['forward_backward_s'] * 1e3 / r['batch']:.1f} | "
                     f"{r.get('forward_backward_spread', 0.0):.0%} | "
                     f"{r['fwd_bwd_speedup_vs_native']:.2f}× | {r.get('fwd_bwd_speedup_vs_fp32', nan):.2f}× | "
                     f"{r.get('fwd_bwd_speedup_vs_system_allocator', nan):.2f}× | {r.get('vs_floor', nan):.2f} | "
                     f"{r.get('peer_time_vs_latentedit', nan):.2f} | "
                     f"{r.get('batch_cost_vs_batch1', nan):.2f} | {r['peak_extra_mb']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--backends", nargs="+", default=None, help="default: native, plus compiled if it builds")
    parser.add_argument("--modulations", nargs="+", default=["grouped", "scaled"],
                        help="'auto' is 'scaled' on CPU (see latentedit.model.layers.auto_strategy)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/generator.json")
    parser.add_argument("--sg3", default=None, help="a StyleGAN3 snapshot (.pkl or converted .safetensors) to add rows "
                        "for, or t256 / r1024 ...: NVIDIA's stylegan3-t / -r architecture with random weights")
    parser.add_argument("--sg3-only", action="store_true", help="only the StyleGAN3 rows")
    parser.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16", "fp16"],
                        help="default: fp32, plus bf16 where the CPU computes it natively")
    parser.add_argument("--allocators", nargs="+", default=["tuned"], choices=["tuned", "system"],
                        help="tuned: latentedit.device.tune_cpu_allocator (what the CLI does); system: glibc's "
                             "defaults (float32 rows only)")
    parser.add_argument("--processes", type=int, default=1, help="fresh processes per case (median, spread)")
    parser.add_argument("--no-floor", action="store_true", help="skip the convolution peak and FLOP counts")
    parser.add_argument("--peer-nvidia", default=None, metavar="DIR", help="a stylegan2-ada-pytorch checkout to time")
    parser.add_argument("--peer-rosinality", default=None, metavar="DIR", help="a stylegan2-pytorch checkout to time")
    args = parser.parse_args(argv)
    # "auto" is the default path: per op, whichever of native and compiled measured faster at first use.
    backends = args.backends or (["native", "compiled", "auto"] if _compiled_available() else ["native"])
    import torch

    from latentedit.io import write_json

    from latentedit.precision import cpu_has_native_bf16

    precisions = args.precisions or (["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"])
    print(f"generator benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor()}, "
          f"native bf16: {cpu_has_native_bf16()}")
    peaks = None if args.no_floor or args.sg3_only else conv_peaks(precisions)
    rows = run(args.sizes, args.batches, backends, args.modulations, args.repeats, sg3=args.sg3,
               sg3_only=args.sg3_only, precisions=precisions, allocators=args.allocators,
               processes=args.processes, peaks=peaks,
               peers={k: v for k, v in (("nvidia", args.peer_nvidia), ("rosinality", args.peer_rosinality)) if v})
    print()
    print(table(rows))
    for r in rows:
        r.pop("output", None)
    write_json(args.json, {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": sys.version,
                           "processor": platform.processor(), "native_bf16": cpu_has_native_bf16(),
                           "conv_peak_gflop_per_s": peaks, "command": "python benchmarks/generator.py "
                           + " ".join(argv if argv is not None else sys.argv[1:]), "rows": rows})
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
