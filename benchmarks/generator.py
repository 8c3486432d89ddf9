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
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import sys
import time


def _measure(task: dict) -> dict:
    """Runs in a child process: build the generator, time forward and forward+backward."""
    os.environ["LATENTEDIT_OPS"] = task["backend"]
    import torch

    from latentedit.model import Generator, GeneratorConfig

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
        with torch.no_grad():
            return generator.synthesis(w_plus, "const", modulation=task["modulation"])

    def forward_backward():
        latent = w_plus.clone().requires_grad_(True)
        image = generator.synthesis(latent, "const", modulation=task["modulation"])
        image.square().mean().backward()
        return latent.grad

    results = {}
    reference = forward()
    for name, fn in (("forward", forward), ("forward_backward", forward_backward)):
        fn()  # warm-up (also builds compiled ops once)
        times = []
        for _ in range(task["repeats"]):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        results[name + "_s"] = min(times)
    results["peak_extra_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) / 1024
    results["output_checksum"] = float(reference.double().abs().mean())
    results["output"] = reference[:1, :, :8, :8].flatten().tolist()
    results["architecture"] = generator.config.kind if hasattr(generator.config, "kind") else "stylegan2"
    results["size"] = generator.size
    return {**task, **results}


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


def run(sizes, batches, backends, modulations, repeats, sg3=None, sg3_only=False) -> list[dict]:
    tasks = [] if sg3_only else [dict(size=s, batch=b, backend=be, modulation=m, repeats=repeats)
                                 for s in sizes for b in batches for be in backends for m in modulations]
    if sg3:
        tasks += [dict(size=0, batch=b, backend=be, modulation=m, repeats=repeats, **_sg3_source(sg3))
                  for b in batches for be in backends for m in modulations]
    context = multiprocessing.get_context("spawn")
    rows = []
    for task in tasks:
        with context.Pool(1) as pool:
            row = pool.apply(_measure, (task,))
        rows.append(row)
        print(f"  {row['architecture']:<9} {row['size']:>4} px  batch {row['batch']}  {row['backend']:<8} "
              f"{row['modulation']:<8} "
              f"fwd {row['forward_s'] * 1e3 / row['batch']:8.1f} ms/img  "
              f"fwd+bwd {row['forward_backward_s'] * 1e3 / row['batch']:8.1f} ms/img", flush=True)
    # Ratios against the native path with the same size, batch and modulation, measured in this run.
    for row in rows:
        base = next((r for r in rows if r["size"] == row["size"] and r["batch"] == row["batch"]
                     and r["architecture"] == row["architecture"]
                     and r["backend"] == "native" and r["modulation"] == row["modulation"]), None)
        row["fwd_bwd_speedup_vs_native"] = (base["forward_backward_s"] / row["forward_backward_s"]
                                            if base else float("nan"))
        single = [r for r in rows if r["size"] == row["size"] and r["batch"] == 1
                  and r["architecture"] == row["architecture"]
                  and r["backend"] == row["backend"] and r["modulation"] == row["modulation"]]
        if single:
            row["batch_cost_vs_batch1"] = row["forward_backward_s"] / single[0]["forward_backward_s"]
        same = [r for r in rows if r["size"] == row["size"] and r["batch"] == row["batch"]
                and r["architecture"] == row["architecture"]]
        row["max_output_diff_vs_others"] = max(
            max(abs(a - b) for a, b in zip(row["output"], r["output"])) for r in same)
    if rows:
        print(f"max output difference between backends/strategies: "
              f"{max(r['max_output_diff_vs_others'] for r in rows):.2e}")
    return rows


def table(rows) -> str:
    header = ("| generator | size | batch | ops | modulation | fwd ms/img | fwd+bwd ms/img | vs native | batch cost (×b1) "
              "| peak extra MB |")
    lines = [header, "|---|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['architecture']} | {r['size']} | {r['batch']} | {r['backend']} | {r['modulation']} | "
                     f"{r['forward_s'] * 1e3 / r['batch']:.1f} | {r['forward_backward_s'] * 1e3 / r['batch']:.1f} | "
                     f"{r['fwd_bwd_speedup_vs_native']:.2f}× | {r.get('batch_cost_vs_batch1', float('nan')):.2f} | "
                     f"{r['peak_extra_mb']:.0f} |")
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
    args = parser.parse_args(argv)
    # "auto" is the default path: per op, whichever of native and compiled measured faster at first use.
    backends = args.backends or (["native", "compiled", "auto"] if _compiled_available() else ["native"])
    import torch

    from latentedit.io import write_json

    print(f"generator benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor()}")
    rows = run(args.sizes, args.batches, backends, args.modulations, args.repeats, sg3=args.sg3,
               sg3_only=args.sg3_only)
    print()
    print(table(rows))
    for r in rows:
        r.pop("output", None)
    write_json(args.json, {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": sys.version,
                           "rows": rows})
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
