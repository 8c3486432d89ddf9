"""Write the model card of a shipped toyfaces generator from its training run and its evaluation.

Inputs (all produced by committed commands):

- the run folder of ``latentedit train stylegan2`` (``metrics.jsonl``: kimg, wall time, img/s, resumes,
  attribute-balance evaluations during training),
- the shipped weights (``pretrained/MODEL.safetensors``: sha256, size, architecture),
- the folder of ``latentedit evaluate model --ckpt MODEL --n 5000 -o EVAL`` (``model_eval.json``,
  ``model_eval.md``).

    python benchmarks/model_card.py                          # toyfaces64, the default
    python benchmarks/model_card.py --model toyfaces64_gpu   # the GPU-trained alternative
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Both models' `evaluate model` reports and `benchmarks/results/directions{,_gpu}/summary.md`: the comparison
# spans two models' runs, so it is stated here rather than read from one run folder.
GPU_MEASURES = ("`toyfaces64_gpu` is closer to the data than `toyfaces64` (FD-toy 210.4 against 318.9; attributes "
                "3.1 points from the data's on average against 5.6) but edits worse: its blond SVM direction peaks "
                "at 67 % success at strength 6 and then breaks hair into red and purple blobs, where `toyfaces64`'s "
                "reaches 88 % at 12 (`benchmarks/directions.py`, same settings).")

#: Per shipped model: where its run and evaluation are, how it was trained, and what its card says about it.
MODELS = {
    "toyfaces64": {
        "run": "runs/toyfaces64", "eval": "runs/toyfaces64_eval",
        "command": "latentedit train stylegan2 --data toyfaces:0:100000 --size 64 --kimg 200 --batch-size 16 -o runs/toyfaces64\n"
                   "# resumed after each session end (the run folder keeps every option), with the balance check on:\n"
                   "latentedit train stylegan2 -o runs/toyfaces64 --attribute-eval-kimg 10",
        "planned_kimg": 200.0,
        "role": "The embedded default generator of latentedit",
        "default_note": " (the default of every command)",
        "stop": "to leave the machine to the benchmarks that measure inversion, PULSE and directions on this model",
        "gpu": False,
        "limitations": [
            "- Trained for a few CPU hours: textures are smoother and simpler than the renders, and rare "
            "combinations (hats, glasses on gray hair) are less sharp.",
            "- Thin features are under-represented, as SPEC §9 predicts for this budget: wavy hair, rosy cheeks "
            "and lipstick appear less often than in the data. The hair-colour balance was far off until about "
            "110 kimg (black hair nearly absent) and then settled; see the table above.",
            "- Only the toyfaces world: it is the default so that every command runs offline; use an FFHQ "
            "checkpoint (`--ckpt ffhq.pkl`) for photographs.",
        ],
        "see_also": "A GPU-trained alternative of the same architecture is shipped as `toyfaces64_gpu` "
                    "([`toyfaces64_gpu.md`](toyfaces64_gpu.md)). " + GPU_MEASURES,
    },
    "toyfaces64_gpu": {
        "run": "runs/gpu64", "eval": "runs/toyfaces64_gpu_eval",
        "command": "latentedit train stylegan2 --data toyfaces:0:1000000 --size 64 --kimg 6000 --batch-size 32 --ema-kimg 10 \\\n"
                   "    --workers 13 --device cuda --snapshot-kimg 40 --sample-kimg 100 --log-kimg 5 \\\n"
                   "    --attribute-eval-kimg 100 --no-progress -o runs/gpu64",
        "planned_kimg": 6000.0,
        "role": "A GPU-trained alternative to the default `toyfaces64`, with the same architecture",
        "default_note": "",
        "stop": "when the session's 30 minutes of GPU time ran out (`--kimg 6000` was an upper bound, not a plan)",
        "gpu": True,
        "machine": "one NVIDIA H100 80GB HBM3 GPU with a 16-core x86-64 host, torch 2.11 (CUDA 13.0), 13 DataLoader "
                   "workers rendering the faces",
        "limitations": [
            "- Trained for 17 GPU minutes (384 kimg): textures are simpler than the renders, some faces come out "
            "pale and smeared, and rare combinations (hats, glasses on gray hair) are less sharp.",
            "- The attribute balance moves by several points between snapshots (table above); the shipped "
            "snapshot is the last one, not one picked by its balance.",
            "- Large latent edits leave the face space: the blond SVM direction turns hair into red and purple "
            "blobs beyond strength 6 (normalised W units). Use small strengths, or the default model for edits.",
            "- Only the toyfaces world: use an FFHQ checkpoint (`--ckpt ffhq.pkl`) for photographs.",
        ],
        "see_also": "Why it is not the default: " + GPU_MEASURES,
    },
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="toyfaces64")
    parser.add_argument("--run", type=Path, default=None, help="Training run folder (default: the model's).")
    parser.add_argument("--eval", type=Path, default=None, help="`evaluate model` folder (default: the model's).")
    parser.add_argument("--out", type=Path, default=None, help="Card path (default: pretrained/MODEL.md).")
    args = parser.parse_args(argv)
    model = MODELS[args.model]
    args.run = args.run or REPO_ROOT / model["run"]
    args.eval = args.eval or REPO_ROOT / model["eval"]
    args.weights = REPO_ROOT / "pretrained" / f"{args.model}.safetensors"
    args.out = args.out or REPO_ROOT / "pretrained" / f"{args.model}.md"
    return args


def read_metrics(path: Path) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def training_summary(records: list[dict]) -> dict:
    steps = [r for r in records if "img_per_s" in r]
    sessions = [r for r in records if r.get("event") in ("start", "resume")]
    evals = [r for r in records if r.get("event") == "eval"]
    last = max((r for r in records if "kimg" in r and "wall_s" in r), key=lambda r: r["kimg"])
    return {"kimg": last["kimg"], "steps": last["step"], "wall_s": last["wall_s"], "sessions": len(sessions),
            "median_img_per_s": statistics.median(r["img_per_s"] for r in steps),
            "max_img_per_s": max(r["img_per_s"] for r in steps),
            "min_img_per_s": min(r["img_per_s"] for r in steps),
            "done": any(r.get("event") == "done" for r in records),
            "args": sessions[0]["args"] if sessions else {}, "evals": evals}


def evaluation_table(evals: list[dict]) -> list[str]:
    names = sorted({key[len("diff_points_"):] for record in evals for key in record if key.startswith("diff_points_")})
    if not names:
        return []
    lines = ["| kimg | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for record in evals:
        cells = [f"{record.get('diff_points_' + name, float('nan')):+.1f}" for name in names]
        lines.append(f"| {record['kimg']:.1f} | " + " | ".join(cells) + " |")
    return lines


def timing_lines(model: dict, run: dict) -> list[str]:
    """Wall time, machine and throughput: a CPU run resumed across sessions, or one uninterrupted GPU run."""
    hours = run["wall_s"] / 3600
    if model["gpu"]:
        return [f"- Wall time: **{hours * 60:.0f} min** in one uninterrupted run on {model['machine']}. Throughput: "
                f"median {run['median_img_per_s']:.0f} img/s (range {run['min_img_per_s']:.0f}–"
                f"{run['max_img_per_s']:.0f}; the GPU was 21–26 % busy when sampled, so something else limits it)."]
    return [f"- Wall time: **{hours:.2f} h** over {run['sessions']} sessions (the run was killed at session ends "
            "and resumed from its checkpoint; this includes stretches where the machine was shared with tests and "
            f"benchmarks). At the median throughput the run is {run['kimg'] * 1000 / run['median_img_per_s'] / 3600:.1f} h "
            "of machine time.",
            f"- Machine: 2-core x86-64 CPU, no GPU, torch 2.14, 2 CPU threads. Throughput: median "
            f"{run['median_img_per_s']:.1f} img/s (range {run['min_img_per_s']:.1f}–{run['max_img_per_s']:.1f}; the low "
            "end is when other work shared the 2 cores)."]


def data_line(spec: str) -> str:
    """``toyfaces[:SEED[:COUNT]]`` in words."""
    parts = spec.split(":")
    seed = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    count = int(parts[2]) if len(parts) > 2 else 30000
    return f"- Data: toyfaces seed {seed}, faces [0, {count}), rendered on the fly (`--data {spec}`)."


def write_card(args: argparse.Namespace) -> str:
    sys.path.insert(0, str(REPO_ROOT))
    from latentedit.checkpoints import load_generator
    from latentedit.io import sha256_file, write_bytes

    model = MODELS[args.model]
    name = args.model
    generator, _ = load_generator(str(args.weights), "cpu")
    config = generator.config
    params = sum(p.numel() for p in generator.parameters())
    channels = " ".join(f"{res}:{ch}" for res, ch in sorted(config.channels.items()))
    run = training_summary(read_metrics(args.run / "metrics.jsonl"))
    result = json.loads((args.eval / "model_eval.json").read_text())
    report = (args.eval / "model_eval.md").read_text().strip()
    final = run["done"] or run["kimg"] >= model["planned_kimg"]
    hyper = run["args"]
    status = ("Training finished." if final else
              f"**Status:** final. The EMA generator at {run['kimg']:.1f} kimg of a planned "
              f"{model['planned_kimg']:.0f} kimg run, stopped there (SIGTERM, which writes a checkpoint) "
              f"{model['stop']}.")
    goals = result["goals"]
    lines = [
        f"# Model card: {name} (`{name}.safetensors`)", "",
        f"{model['role']}: a StyleGAN2 (rosinality layout) trained by latentedit's "
        f"own trainer on the procedural toyfaces data set at 64×64. `--ckpt {name}`{model['default_note']} "
        f"resolves to this file; `latentedit info {name}` describes it.", "",
        status, "",
        model["see_also"], "",
        f"- File: safetensors, float32, architecture and `w_avg` in the metadata, "
        f"{args.weights.stat().st_size / 2**20:.1f} MB, sha256 `{sha256_file(args.weights)}`.",
        f"- Architecture: {config.size} px, style_dim {config.style_dim}, {config.n_mlp} mapping layers, "
        f"channels {channels} ({params:,} parameters; num_ws {generator.num_ws}).",
        data_line(hyper.get("data", "toyfaces")), "",
        "## Training", "", "```", model["command"], "```", "",
        f"Non-saturating logistic loss, lazy R1 γ {hyper.get('r1_gamma')} every {hyper.get('r1_every')} D steps, "
        f"style mixing {hyper.get('mixing_prob')}, EMA half-life {hyper.get('ema_kimg')} kimg with ramp-up "
        f"{hyper.get('ema_rampup')}, Adam lr {hyper.get('lr')} β (0, 0.99) (D with the lazy-regularisation "
        f"correction), path-length weight {hyper.get('pl_weight')}, batch {hyper.get('batch')}, seed "
        f"{hyper.get('seed')}.", "",
        f"- Length: **{run['kimg']:.1f} kimg** ({run['steps']} steps).",
        *timing_lines(model, run), "",
        "## Quality", "",
        f"`latentedit evaluate model --ckpt {name} --n 5000 -o {model['eval']}` — goals: FD-toy within "
        "3× of the floor; classifier frequencies of the hair colours, Eyeglasses, Smiling and Male within ±5 "
        "points of the training data's.", "",
        report, "",
        f"Goals: FD-toy within 3× of the floor — **{'met' if goals['fd_within_3x_floor'] else 'not met'}** "
        f"({result['fd_toy']['ratio_to_floor']:.0f}×); goal attributes within ±5 points — "
        f"**{'met' if goals['frequencies_within_5_points'] else 'not met'}** (worst "
        f"{result['max_goal_difference_points']:.1f} points).", "",
    ]
    trajectory = evaluation_table(run["evals"])
    if trajectory:
        lines += ["### Attribute balance during training", "",
                  "Differences in points between the classifier's frequencies on 512 samples of the EMA "
                  "generator and the data set's expected frequencies (`--attribute-eval-kimg`):", "",
                  *trajectory, ""]
    lines += ["## Samples", "", "The `samples.png` that the evaluation command writes (64 samples, ψ 1, stored noise, z "
              "from torch seed 0):",
              "", f"![samples](../docs/{name}_samples.png)", "",
              "## Limitations", "",
              *model["limitations"], ""]
    text = "\n".join(lines)
    write_bytes(args.out, text.encode())
    return text


def main(argv: list[str] | None = None) -> None:
    print(write_card(parse_args(argv)))


if __name__ == "__main__":
    main()
