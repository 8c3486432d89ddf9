"""``latentedit evaluate model``: FD-toy and attribute frequencies of a generator."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from latentedit.checkpoints import save_native
from latentedit.cli.main import cli
from latentedit.evaluate.generator import GOAL_ATTRIBUTES, evaluate_generator, format_report


def test_evaluate_generator_reports_floor_initial_and_frequencies(tiny_generator):
    result = evaluate_generator(tiny_generator, count=40, seed=3, workers=1, progress=False)
    fd = result["fd_toy"]
    assert fd["floor_heldout_vs_heldout"] >= 0
    # An untrained random generator is far from faces: much further than two sets of real renders.
    assert fd["generated_vs_heldout"] > fd["floor_heldout_vs_heldout"]
    assert fd["ratio_to_floor"] == pytest.approx(fd["generated_vs_heldout"] / fd["floor_heldout_vs_heldout"])
    blond = result["attribute_frequencies"]["Blond_Hair"]
    assert 0 <= blond["generated"] <= 1 and 0 < blond["training"] < 1
    assert set(GOAL_ATTRIBUTES) <= set(result["attribute_frequencies"])
    assert "generated / floor" in format_report(result)


def test_evaluate_model_cli_writes_report(tiny_generator, tmp_path):
    ckpt = tmp_path / "tiny.safetensors"
    save_native(tiny_generator, ckpt)
    result = CliRunner().invoke(cli, ["evaluate", "model", "--ckpt", str(ckpt), "--n", "20", "--workers", "1",
                                      "--no-progress", "-o", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "eval" / "model_eval.json").read_text())
    assert saved["count"] == 20 and len(saved["checkpoint"]["sha256"]) == 64
    assert (tmp_path / "eval" / "samples.png").is_file()


def test_attribute_frequency_hook_logs_goal_attributes(tiny_generator, tmp_path):
    from latentedit.evaluate.generator import attribute_frequency_hook

    tiny_generator.train()
    logged = attribute_frequency_hook(samples=16)(tiny_generator, 1.0, tmp_path)
    assert tiny_generator.training  # the hook restores the mode it found
    assert set(logged) == {f"{kind}_{name}" for name in GOAL_ATTRIBUTES for kind in ("freq", "diff_points")}
    assert all(0 <= logged[f"freq_{name}"] <= 1 for name in GOAL_ATTRIBUTES)
