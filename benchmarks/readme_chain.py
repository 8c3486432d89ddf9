"""The README's quick-start chain on both example faces, timed, with what the classifier sees.

Runs, in a scratch folder per example, exactly the commands the README prints:

    latentedit invert FACE.png
    latentedit apply-direction --vec examples/blond_learned.npy

then labels every edited image with the shipped attribute classifier and writes

- ``--json``: per example and strength, P(Blond_Hair), P(Male), the hair group, and each command's wall time;
- ``--markdown``: the same as a table;
- ``--figure``: the two sweeps (``edited/sweep.png``) stacked, common case above the hard case.

Timings are wall-clock on whatever machine runs it; compare them only with figures from the same run.

    python benchmarks/readme_chain.py --json benchmarks/results/readme_chain.json \\
        --markdown benchmarks/results/readme_chain.md --figure docs/readme_chain_sweep.png
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
FIGURE_SCALE = 3
CASES = (("face.png", "common case: black hair"), ("face_gray.png", "hard case: gray hair"))


def _run(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["latentedit", *args, "--no-progress"], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _labels(paths: list[Path]) -> list[dict[str, float]]:
    from latentedit.evaluate.classifier import load_classifier, predict_attributes

    classifier = load_classifier()
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) / 127.5 - 1.0 for p in paths])
    probs = predict_attributes(classifier, torch.from_numpy(pixels).permute(0, 3, 1, 2)).numpy()
    return [dict(zip(classifier.attribute_names, map(float, row))) for row in probs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, required=True)
    parser.add_argument("--figure", type=Path, required=True)
    args = parser.parse_args(argv)

    from latentedit.io import make_grid, save_png, versions, write_json

    results, sweeps = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for file_name, label in CASES:
            work = Path(scratch) / Path(file_name).stem
            work.mkdir()
            shutil.copy(EXAMPLES / file_name, work / "face.png")
            invert_s = _run(["invert", "face.png"], work)
            apply_s = _run(["apply-direction", "--vec", str(EXAMPLES / "blond_learned.npy")], work)
            manifest = json.loads((work / "edited" / "manifest.json").read_text())
            inversion = json.loads((work / "inverted" / "face.json").read_text())
            paths = [work / "edited" / f"face_s{s:g}.png" for s in manifest["strengths"]]
            labels = _labels(paths)
            results.append({"example": f"examples/{file_name}", "case": label,
                            "invert_seconds": round(invert_s, 2), "apply_direction_seconds": round(apply_s, 2),
                            "inversion_psnr_db": inversion["metrics"]["psnr_db"],
                            "strengths": manifest["strengths"], "w_spread": manifest["w_spread"],
                            "blond": [round(x["Blond_Hair"], 4) for x in labels],
                            "male": [round(x["Male"], 4) for x in labels],
                            "gray": [round(x["Gray_Hair"], 4) for x in labels]})
            sweeps.append(np.asarray(Image.open(work / "edited" / "sweep.png").convert("RGB")))
    grid = make_grid(np.stack(sweeps), columns=1, padding=4)
    # 64 px faces are small on a page: show every pixel as 3 x 3 (no interpolation, nothing invented).
    save_png(args.figure, grid.repeat(FIGURE_SCALE, axis=0).repeat(FIGURE_SCALE, axis=1))
    write_json(args.json, {"command": "python benchmarks/readme_chain.py", "results": results,
                           "versions": versions()})
    lines = ["# The README chain on the example faces", "",
             "`latentedit invert FACE.png` then `latentedit apply-direction --vec examples/blond_learned.npy` "
             "(defaults: 1000 inversion steps, strengths 0:1:5 in W spreads). P = the shipped classifier's "
             "probability.", "",
             "| example | strength | P(blond) | P(gray) | P(male) |", "|---|---|---|---|---|"]
    for result in results:
        for i, strength in enumerate(result["strengths"]):
            lines.append(f"| {result['example']} ({result['case']}) | {strength:g} | {result['blond'][i]:.2f} | "
                         f"{result['gray'][i]:.2f} | {result['male'][i]:.2f} |")
    lines += ["", "| example | invert | apply-direction | inversion PSNR |", "|---|---|---|---|"]
    for result in results:
        lines.append(f"| {result['example']} | {result['invert_seconds']:.1f} s | "
                     f"{result['apply_direction_seconds']:.1f} s | {result['inversion_psnr_db']:.2f} dB |")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
