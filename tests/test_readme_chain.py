"""The README's quick-start chain, run literally on the shipped example with the shipped model.

``latentedit invert examples/face.png`` writes ``inverted/``; ``latentedit apply-direction --vec
examples/blond_learned.npy`` reads it and writes ``edited/``. The attribute classifier must then see blond hair
at strength 0.5 (W spreads) with Male unchanged, on the common-case example; the gray-haired hard case is measured, not
asserted blond (see docs/directions.md). Fewer inversion steps than the default keep the test short.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
INVERT_STEPS = "300"

pytestmark = pytest.mark.usefixtures("single_thread", "private_caches")


def run(*args) -> str:
    from latentedit.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, f"latentedit {' '.join(map(str, args))}\n{result.output}"
    return result.output


def attributes(path: Path) -> dict[str, float]:
    from latentedit.evaluate.classifier import load_classifier, predict_attributes

    classifier = load_classifier()
    pixels = np.asarray(Image.open(path).convert("RGB"), np.float32) / 127.5 - 1.0
    probabilities = predict_attributes(classifier, torch.from_numpy(pixels).permute(2, 0, 1)[None])[0]
    return dict(zip(classifier.attribute_names, probabilities.tolist()))


def test_the_readme_chain_turns_the_example_blond_and_keeps_its_sex(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLES / "face.png", tmp_path / "face.png")
    shutil.copy(EXAMPLES / "blond_learned.npy", tmp_path / "blond.npy")
    shutil.copy(EXAMPLES / "blond_learned.json", tmp_path / "blond.json")

    # the design card's forms, with no output flags
    assert "-> inverted" in run("invert", "face.png", "--steps", INVERT_STEPS, "--no-progress")
    assert "edited" in run("apply-direction", "--vec", "blond.npy")

    manifest = json.loads((tmp_path / "edited" / "manifest.json").read_text())
    assert manifest["names"] == ["face"] and manifest["strength_unit"] == "spread"
    assert manifest["strengths"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert (tmp_path / "edited" / "sweep.png").is_file()

    before, after = attributes(tmp_path / "edited" / "face_s0.png"), attributes(tmp_path / "edited" / "face_s0.5.png")
    assert before["Blond_Hair"] < 0.5 < after["Blond_Hair"], (before, after)
    assert (before["Male"] > 0.5) == (after["Male"] > 0.5), (before, after)


def test_pulse_writes_its_default_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = run("pulse", "--ref", EXAMPLES / "blond_hair.rgba.png", "--steps", "2", "--fit-samples", "2000",
                 "--no-progress")
    assert "pulse" in output and (tmp_path / "pulse" / "blond_hair.npy").is_file()


def test_apply_direction_without_inverted_latents_says_what_to_run(tmp_path, monkeypatch):
    from latentedit.cli.main import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["apply-direction", "--vec", str(EXAMPLES / "blond_learned.npy")])
    assert result.exit_code == 2
    assert "latentedit invert" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "edited").exists()
