"""Write the model card of the shipped ``toyfaces64`` generator from its training run and its evaluation.

Inputs (all produced by committed commands):

- the run folder of ``latentedit train stylegan2`` (``metrics.jsonl``: kimg, wall time, img/s, resumes,
  attribute-balance evaluations during training),
- the shipped weights (``pretrained/toyfaces64.safetensors``: sha256, size, architecture),
- the folder of ``latentedit evaluate model --ckpt toyfaces64 --n 5000 -o EVAL`` (``model_eval.json``,
  ``model_eval.md``).

    python benchmarks/model_card.py --run runs/toyfaces64 --eval runs/toyfaces64_eval \\
        --out pretrained/toyfaces64.md
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

TRAIN_COMMAND = ("latentedit train stylegan2 --data toyfaces:0:100000 --size 64 --kimg 200 --batch 16 -o runs/toyfaces64\n"
                 "# resumed after each session end (the run folder keeps every option), with the balance check on:\n"
                 "latentedit train stylegan2 -o runs/toyfaces64 --attribute-eval-kimg 10")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=REPO_ROOT / "runs" / "toyfaces64")
    parser.add_argument("--eval", type=Path, default=REPO_ROOT / "runs" / "toyfaces64_eval")
    parser.add_argument("--weights", type=Path, default=REPO_ROOT / "pretrained" / "toyfaces64.safetensors")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "pretrained" / "toyfaces64.md")
    parser.add_argument("--planned-kimg", type=float, default=200.0)
    return parser.parse_args(argv)


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


def write_card(args: argparse.Namespace) -> str:
    sys.path.insert(0, str(REPO_ROOT))
    from latentedit.checkpoints import load_generator
    from latentedit.io import sha256_file, write_bytes

    generator, _ = load_generator(str(args.weights), "cpu")
    config = generator.config
    params = sum(p.numel() for p in generator.parameters())
    channels = " ".join(f"{res}:{ch}" for res, ch in sorted(config.channels.items()))
    run = training_summary(read_metrics(args.run / "metrics.jsonl"))
    result = json.loads((args.eval / "model_eval.json").read_text())
    report = (args.eval / "model_eval.md").read_text().strip()
    final = run["done"] or run["kimg"] >= args.planned_kimg
    hours = run["wall_s"] / 3600
    hyper = run["args"]
    status = ("Training finished." if final else
              f"**Status:** final. The EMA generator at {run['kimg']:.1f} kimg of a planned "
              f"{args.planned_kimg:.0f} kimg run, stopped there (SIGTERM, which writes a checkpoint) to leave the "
              "machine to the benchmarks that measure inversion, PULSE and directions on this model.")
    goals = result["goals"]
    lines = [
        "# Model card: toyfaces64 (`toyfaces64.safetensors`)", "",
        "The embedded default generator of latentedit: a StyleGAN2 (rosinality layout) trained by latentedit's "
        "own trainer on the procedural toyfaces data set at 64×64. `--ckpt toyfaces64` (the default of every "
        "command) resolves to this file; `latentedit info toyfaces64` describes it.", "",
        status, "",
        f"- File: safetensors, float32, architecture and `w_avg` in the metadata, "
        f"{args.weights.stat().st_size / 2**20:.1f} MB, sha256 `{sha256_file(args.weights)}`.",
        f"- Architecture: {config.size} px, style_dim {config.style_dim}, {config.n_mlp} mapping layers, "
        f"channels {channels} ({params:,} parameters; num_ws {generator.num_ws}).",
        f"- Data: toyfaces seed 0, faces [0, 100000), rendered on the fly (`--data {hyper.get('data', '?')}`).", "",
        "## Training", "", "```", TRAIN_COMMAND, "```", "",
        f"Non-saturating logistic loss, lazy R1 γ {hyper.get('r1_gamma')} every {hyper.get('r1_every')} D steps, "
        f"style mixing {hyper.get('mixing_prob')}, EMA half-life {hyper.get('ema_kimg')} kimg with ramp-up "
        f"{hyper.get('ema_rampup')}, Adam lr {hyper.get('lr')} β (0, 0.99) (D with the lazy-regularisation "
        f"correction), path-length weight {hyper.get('pl_weight')}, batch {hyper.get('batch')}, seed "
        f"{hyper.get('seed')}.", "",
        f"- Length: **{run['kimg']:.1f} kimg** ({run['steps']} steps).",
        f"- Wall time: **{hours:.2f} h** over {run['sessions']} sessions (the run was killed at session ends "
        "and resumed from its checkpoint; this includes stretches where the machine was shared with tests and "
        f"benchmarks). At the median throughput the run is {run['kimg'] * 1000 / run['median_img_per_s'] / 3600:.1f} h "
        "of machine time.",
        f"- Machine: 2-core x86-64 CPU, no GPU, torch 2.14, 2 CPU threads. Throughput: median "
        f"{run['median_img_per_s']:.1f} img/s (range {run['min_img_per_s']:.1f}–{run['max_img_per_s']:.1f}; the low "
        "end is when other work shared the 2 cores).", "",
        "## Quality", "",
        "`latentedit evaluate model --ckpt toyfaces64 --n 5000 -o runs/toyfaces64_eval` — goals: FD-toy within "
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
              "", "![samples](../docs/toyfaces64_samples.png)", "",
              "## Limitations", "",
              "- Trained for a few CPU hours: textures are smoother and simpler than the renders, and rare "
              "combinations (hats, glasses on gray hair) are less sharp.",
              "- Thin features are under-represented, as SPEC §9 predicts for this budget: wavy hair, rosy cheeks "
              "and lipstick appear less often than in the data. The hair-colour balance was far off until about "
              "110 kimg (black hair nearly absent) and then settled; see the table above.",
              "- Only the toyfaces world: it is the default so that every command runs offline; use an FFHQ "
              "checkpoint (`--ckpt ffhq.pkl`) for photographs.", ""]
    text = "\n".join(lines)
    write_bytes(args.out, text.encode())
    return text


def main(argv: list[str] | None = None) -> None:
    print(write_card(parse_args(argv)))


if __name__ == "__main__":
    main()
