"""Issue #21: ``--precision fp32|bf16|fp16|auto`` for synthesis, inversion and PULSE, and the CPU allocator tuning.

float32 must stay exactly as it was (the exactness tests cover the outputs; here: the fp32 context changes no bit
and no record); bf16 must really run in bf16 (the activations between layers stay bf16) while latents, styles,
the RGB image and losses stay float32, and every manifest must say which precision ran.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import make_small_generator, run_cli
from latentedit import precision as precision_module
from latentedit.errors import InputError
from latentedit.invert import InversionSettings
from latentedit.precision import compute, generator_precision, resolve_precision
from latentedit.pulse import PulseSettings

REPO = Path(__file__).resolve().parents[1]
FACE = REPO / "examples" / "face.png"
SG3_PKL = REPO.parent / "shared" / "refdata" / "sg3t64_small.pkl"

pytestmark = pytest.mark.usefixtures("single_thread", "private_caches")


def test_explicit_choices_pass_through_and_unknown_ones_are_refused():
    for choice in ("fp32", "bf16", "fp16"):
        assert resolve_precision(choice, "cpu") == choice
    assert resolve_precision(None, "cpu") == "fp32"
    with pytest.raises(InputError, match="unknown precision 'half'"):
        resolve_precision("half", "cpu")
    with pytest.raises(InputError, match="unknown precision"):
        InversionSettings(precision="int8").validated()


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("auto", "cuda", conv_clamp=256.0) == "fp16"  # NVIDIA's fp16 configurations
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda") == "fp32"
    assert resolve_precision("auto", "meta") == "fp32"


def test_fp32_context_changes_no_bit():
    generator = make_small_generator(3).eval()
    w_plus = torch.randn(2, generator.num_ws, generator.w_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = generator.synthesis(w_plus)
        with compute("fp32", "cpu"):
            wrapped = generator.synthesis(w_plus)
    assert torch.equal(plain, wrapped)


def test_bf16_keeps_activations_reduced_and_the_rgb_image_float32():
    generator = make_small_generator(3).eval()
    w_plus = torch.randn(2, generator.num_ws, generator.w_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = generator.synthesis(w_plus)
    seen = {}

    def record(key):
        def hook(module, inputs, output):
            seen.setdefault(key, output.dtype)
        return hook

    hooks = [generator.convs[-1].register_forward_hook(record("activation")),
             generator.convs[-1].conv.modulation.register_forward_hook(record("style"))]
    with torch.no_grad(), compute("bf16", "cpu"):
        reduced = generator.synthesis(w_plus)
    for hook in hooks:
        hook.remove()
    # Without the casts in NoiseInjection the activations would be promoted back to float32 after the first noise.
    assert seen == {"activation": torch.bfloat16, "style": torch.float32}
    assert reduced.dtype == torch.float32
    difference = (reduced - reference).abs().max().item()
    assert 0 < difference < 0.1, difference


def test_bf16_gradient_reaches_a_float32_latent():
    generator = make_small_generator(3).eval().requires_grad_(False)
    latent = torch.randn(1, generator.num_ws, generator.w_dim, generator=torch.Generator().manual_seed(1))
    grads = {}
    for name in ("fp32", "bf16"):
        leaf = latent.clone().requires_grad_(True)
        with compute(name, "cpu"):
            image = generator.synthesis(leaf)
        image.float().square().mean().backward()
        assert leaf.grad.dtype == torch.float32
        grads[name] = leaf.grad
    cosine = torch.nn.functional.cosine_similarity(grads["fp32"].flatten(), grads["bf16"].flatten(), dim=0)
    assert cosine > 0.98, float(cosine)


def test_records_leave_out_the_default_precision_so_old_runs_still_resume():
    assert "precision" not in InversionSettings().validated().to_dict()
    assert InversionSettings(precision="bf16").validated().to_dict()["precision"] == "bf16"
    assert "precision" not in PulseSettings().to_dict()
    assert PulseSettings(precision="bf16").to_dict()["precision"] == "bf16"


def test_invert_bf16_records_its_precision_and_matches_fp32_quality(tmp_path):
    psnr = {}
    for name in ("fp32", "bf16"):
        result = run_cli("invert", FACE, "--steps", 40, "--precision", name, "--no-progress", "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
        manifest = json.loads((tmp_path / name / "face.json").read_text())
        assert manifest["settings"].get("precision", "fp32") == name
        psnr[name] = manifest["metrics"]["psnr_db"]
    assert abs(psnr["bf16"] - psnr["fp32"]) < 0.3, psnr
    # The same bf16 run again skips (its record matches); fp32 runs in the same folder would not.
    again = run_cli("invert", FACE, "--steps", 40, "--precision", "bf16", "--no-progress", "-o", tmp_path / "bf16")
    assert "skipped 1" in again.output


def test_generate_bf16_is_close_to_fp32_and_says_so(tmp_path):
    pictures = {}
    for name in ("fp32", "bf16"):
        result = run_cli("generate", "--seeds", "0-1", "--precision", name, "--no-progress", "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert manifest.get("precision", "fp32") == name
        pictures[name] = np.asarray(Image.open(tmp_path / name / "seed0000.png"), dtype=np.int16)
    difference = np.abs(pictures["bf16"] - pictures["fp32"])
    assert 0 < difference.max() <= 16 and difference.mean() < 2, (difference.max(), difference.mean())


def test_pulse_bf16_records_the_resolved_precision(tmp_path):
    ref = REPO / "examples" / "blond_hair.rgba.png"
    result = run_cli("pulse", "--ref", ref, "--steps", 3, "--fit-samples", 2000, "--precision", "auto",
                     "--no-progress", "-o", tmp_path)
    assert result.exit_code == 0, result.output  # without --strict a result short of eps is still written
    manifest = json.loads((tmp_path / "blond_hair.json").read_text())
    expected = "bf16" if precision_module.cpu_has_native_bf16() else "fp32"
    assert manifest["settings"]["precision"] == "auto"
    assert manifest["resolved"].get("precision", "fp32") == expected


@pytest.mark.skipif(not SG3_PKL.is_file(), reason="reference data not found")
def test_stylegan3_refuses_reduced_precision_in_one_line(tmp_path):
    from latentedit.checkpoints import load_generator

    generator, _ = load_generator(SG3_PKL)
    assert generator_precision("auto", generator) == "fp32"
    with pytest.raises(InputError, match="not available for StyleGAN3"):
        generator_precision("bf16", generator)
    result = run_cli("generate", "--ckpt", SG3_PKL, "--seeds", "0", "--precision", "bf16", "-o", tmp_path / "g")
    assert result.exit_code != 0 and "StyleGAN3" in result.output and "Traceback" not in result.output


def _allocator_state(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "LATENTEDIT_MALLOC"}
    if env_value is not None:
        env["LATENTEDIT_MALLOC"] = env_value
    code = "from latentedit.device import tune_cpu_allocator as t; print(t(), t())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_allocator_tuning_applies_once_and_can_be_turned_off():
    assert _allocator_state(None).split() == ["True", "True"]
    assert _allocator_state("system").split() == ["False", "False"]


def test_generator_benchmark_reports_precision_allocator_floor_and_spread(tmp_path):
    """benchmarks/generator.py's issue #21 columns, on a tiny config-f generator (8 px) in fresh processes."""
    out = tmp_path / "generator.json"
    # A subprocess, as a user runs it: the script's spawned workers import it by its file name.
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "generator.py"), "--sizes", "8", "--batches", "1",
                    "--backends", "native", "--modulations", "scaled", "--precisions", "fp32", "bf16",
                    "--allocators", "tuned", "system", "--processes", "2", "--repeats", "1", "--json", str(out)],
                   check=True, capture_output=True, text=True, cwd=REPO)
    report = json.loads(out.read_text())
    assert set(report["conv_peak_gflop_per_s"]) == {"fp32", "bf16"}
    rows = {(r["precision"], r["allocator"]): r for r in report["rows"]}
    assert set(rows) == {("fp32", "tuned"), ("fp32", "system"), ("bf16", "tuned")}  # allocators compared in fp32
    for row in rows.values():
        assert row["processes"] == 2 and len(row["forward_backward_per_process_s"]) == 2
        assert row["forward_backward_gflop"] > 0 and row["vs_floor"] > 0
    # The allocator changes no value; bf16 changes some, and says by how much.
    assert rows[("fp32", "tuned")]["max_output_diff_vs_others"] == 0
    assert 0 < rows[("bf16", "tuned")]["max_image_diff_vs_fp32"] < 0.5
    assert rows[("bf16", "tuned")]["fwd_bwd_speedup_vs_fp32"] > 0
    assert rows[("fp32", "tuned")]["fwd_bwd_speedup_vs_system_allocator"] > 0
