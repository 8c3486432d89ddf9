"""Issue #24, second part: the editing commands on StyleGAN3 generators (no noise inputs, 16 W+ rows).

The reference snapshot ``../shared/refdata/sg3t64_small.pkl`` (StyleGAN3-T, 64 px, random weights) goes through
``invert``, ``generate --latent``, ``pulse``, ``direction diff / sefa / ganspace / svm`` and ``apply-direction``
on the command line; the small R-type network of ``test_sg3`` (16 px, z_dim 24 != w_dim 32) checks everything
that draws z. Few steps everywhere: these tests check that the paths run and agree, not inversion quality.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from latentedit.checkpoints import save_native
from latentedit.errors import InputError

REFDATA = Path(__file__).resolve().parents[1].parent / "shared" / "refdata"
SG3_PKL = REFDATA / "sg3t64_small.pkl"
FACE = Path(__file__).resolve().parents[1] / "examples" / "face.png"
needs_refdata = pytest.mark.skipif(not SG3_PKL.is_file(), reason=f"reference data not found at {REFDATA}")

pytestmark = pytest.mark.usefixtures("single_thread", "private_caches")


def invoke(*args):
    from latentedit.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(result) -> str:
    assert result.exit_code == 0, result.output + (repr(result.exception) if result.exception else "")
    return result.output


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def snapshot_seed(tmp_path_factory) -> Path:
    """``generate --seeds 3`` on the snapshot: a folder with seed0003.png (an image the network can make) and
    seed0003.npy; seed 5 beside it for a second latent."""
    if not SG3_PKL.is_file():
        pytest.skip(f"reference data not found at {REFDATA}")
    out = tmp_path_factory.mktemp("sg3_generated")
    ok(invoke("generate", "--ckpt", SG3_PKL, "--seeds", "3,5", "--device", "cpu", "-o", out))
    return out


@pytest.fixture(scope="module")
def inverted(snapshot_seed, tmp_path_factory) -> Path:
    """``invert`` of seed0003.png and of examples/face.png (resized to 64 px) into the snapshot, 8 steps."""
    out = tmp_path_factory.mktemp("sg3_inverted")
    inputs = tmp_path_factory.mktemp("sg3_inputs")
    (inputs / "seed0003.png").write_bytes((snapshot_seed / "seed0003.png").read_bytes())
    (inputs / "face.png").write_bytes(FACE.read_bytes())
    output = ok(invoke("invert", inputs, "--ckpt", SG3_PKL, "--steps", 8, "--device", "cpu", "--no-progress",
                       "-o", out))
    assert "inverted 2, skipped 0 (already done), failed 0 of 2" in output
    return out


# --- invert + generate --latent -------------------------------------------------------------------------------------

@needs_refdata
def test_invert_then_generate_latent_rerenders_the_reconstruction(inverted, tmp_path):
    """The issue's test: the latent an inversion writes, rendered by `generate --latent`, is its reconstruction."""
    for name in ("seed0003", "face"):
        latent = np.load(inverted / f"{name}.npy")
        assert latent.shape == (16, 128) and latent.dtype == np.float32 and np.isfinite(latent).all()
        manifest = json.loads((inverted / f"{name}.json").read_text())
        assert manifest["latent_shape"] == [16, 128] and manifest["steps"] == 8
        assert "noise" not in " ".join(manifest["files"])  # fixed noise, and there is none anyway
        curve = manifest["loss_curve"]
        assert curve[-1]["step"] == 8 and curve[-1]["psnr_db"] > curve[0]["psnr_db"]  # it does optimise
        out = tmp_path / name
        ok(invoke("generate", "--ckpt", SG3_PKL, "--latent", inverted / f"{name}.npy", "--device", "cpu",
                  "-o", out))
        rendered = sorted(p for p in out.glob("*.png") if p.name != "grid.png")
        assert len(rendered) == 1
        assert np.array_equal(pixels(rendered[0]), pixels(inverted / f"{name}.png")), name
    compare = pixels(inverted / "face_compare.png")  # target | reconstruction, with the grid's padding
    assert compare.shape[0] < compare.shape[1] and compare.shape[0] >= 64


@needs_refdata
def test_projector_preset_on_sg3_notes_the_missing_noise_and_writes_no_noise_file(snapshot_seed, tmp_path):
    from latentedit.invert import InversionSettings, invert_files

    messages = []
    summary = invert_files([snapshot_seed / "seed0003.png"], tmp_path / "out",
                           InversionSettings(preset="projector", steps=3, perceptual="none"), ckpt=SG3_PKL,
                           device="cpu", progress=False, log=messages.append)
    assert summary["counts"]["inverted"] == 1
    assert any("no noise inputs" in m and "--noise optimize" in m for m in messages), messages
    assert not list((tmp_path / "out").glob("*_noise.npz"))
    assert np.load(tmp_path / "out" / "seed0003.npy").shape == (16, 128)


# --- PULSE ----------------------------------------------------------------------------------------------------------

def _rgba_reference(path: Path, source_png: Path, side: int) -> Path:
    rgb = np.asarray(Image.open(source_png).convert("RGB").resize((side, side), Image.Resampling.BICUBIC))
    alpha = np.full((side, side), 255, np.uint8)
    alpha[:, : side // 3] = 0  # the left third is not matched
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    return path


@needs_refdata
def test_pulse_on_sg3_with_an_rgba_reference_writes_its_outputs(snapshot_seed, tmp_path):
    reference = _rgba_reference(tmp_path / "target.rgba.png", snapshot_seed / "seed0003.png", 16)
    out = tmp_path / "pulse"
    output = ok(invoke("pulse", "--ref", reference, "--ckpt", SG3_PKL, "--steps", 3, "--fit-samples", 2000,
                       "--device", "cpu", "--no-progress", "-o", out))
    assert "no noise inputs" in output and "have no effect" in output
    assert output.count("no noise inputs") == 1
    for name in ("target.png", "target_lr.png", "target.npy", "target_noise.npz", "target.json"):
        assert (out / name).is_file(), name
    w_plus = np.load(out / "target.npy")
    assert w_plus.shape == (16, 128) and np.isfinite(w_plus).all()
    assert len(np.unique(w_plus.round(4), axis=0)) == 16  # 16 distinct rows, searched separately
    with np.load(out / "target_noise.npz") as noise:
        assert list(noise.keys()) == []
    assert pixels(out / "target_lr.png").shape == (16, 16, 3)
    record = json.loads((out / "target.json").read_text())
    assert record["generator"] == {"size": 64, "num_ws": 16, "w_dim": 128, "num_layers": 0}
    assert record["resolved"]["noise_kinds"] == [] and record["resolved"]["bad_noise_layers"] == []
    assert record["losses"]["GEOCROSS"] > 0 and record["steps_run"] == 3
    # The saved W+ renders the saved image (generate --latent, batch of one as in the search).
    ok(invoke("generate", "--ckpt", SG3_PKL, "--latent", out / "target.npy", "--device", "cpu", "-o", tmp_path / "re"))
    assert np.array_equal(pixels(tmp_path / "re" / "target.png"), pixels(out / "target.png"))

    # The noise options have nothing to act on: any well-formed values give the same result, bit for bit.
    other = tmp_path / "pulse_noise_options"
    ok(invoke("pulse", "--ref", reference, "--ckpt", SG3_PKL, "--steps", 3, "--fit-samples", 2000, "--device", "cpu",
              "--no-progress", "--noise-type", "fixed", "--num-trainable-noise-layers", 9, "--bad-noise-layers", "7,8",
              "-o", other))
    assert np.array_equal(np.load(other / "target.npy"), w_plus)
    bad = invoke("pulse", "--ref", reference, "--ckpt", SG3_PKL, "--steps", 1, "--fit-samples", 2000,
                 "--bad-noise-layers", "seven", "--device", "cpu", "-o", tmp_path / "bad")
    assert bad.exit_code != 0 and "bad noise layer list" in bad.output
    assert "Traceback" not in bad.output


def test_pulse_settings_without_noise_inputs(r_generator):
    from latentedit.pulse.search import PulseSettings, initial_state, noise_note

    settings = PulseSettings(num_trainable_noise_layers=12, bad_noise_layers=[3, -1])
    settings.validate(r_generator)
    assert settings.bad_layers(0) == () and settings.noise_kinds(0) == []
    assert noise_note(r_generator) is not None
    with pytest.raises(InputError, match="bad noise layer list"):
        PulseSettings(bad_noise_layers="3;4").validate(r_generator)
    with pytest.raises(InputError, match="num_trainable_noise_layers"):
        PulseSettings(num_trainable_noise_layers=-1).validate(r_generator)
    latent, maps = initial_state(r_generator, [0, 1])
    assert latent.shape == (2, 5, 32) and maps == []
    torch.testing.assert_close(latent.norm(dim=2), torch.full((2, 5), 32 ** 0.5))


# --- z drawn with z_dim (the R-type network: z_dim 24, w_dim 32) ---------------------------------------------------

@pytest.fixture(scope="module")
def r_generator():
    from test_sg3 import make_r_generator

    generator = make_r_generator()
    assert generator.z_dim == 24 and generator.w_dim == 32
    return generator


def test_everything_that_draws_z_uses_z_dim(r_generator):
    from latentedit.directions.unsupervised import ganspace_directions
    from latentedit.evaluate.generator import sample_images
    from latentedit.model.sampling import w_spread
    from latentedit.pulse.fit import compute_gaussian_fit, gaussian_fit, mapping_digest
    from latentedit.pulse.search import PulseSettings, run_pulse

    components, stds, ratios = ganspace_directions(r_generator, n=64, k=3)
    assert components.shape == (3, 32) and (stds > 0).all() and ratios.sum() <= 1 + 1e-6
    mean, std = compute_gaussian_fit(r_generator, num_samples=200)
    assert mean.shape == (32,) and (std > 0).all()
    fit = gaussian_fit(r_generator, 200)  # cached under the private cache; the digest names StyleGAN3
    assert fit.digest == mapping_digest(r_generator) and not fit.from_cache
    assert gaussian_fit(r_generator, 200).from_cache
    assert w_spread(r_generator, num_samples=100) > 0
    assert sample_images(r_generator, 3).shape == (3, 3, 16, 16)
    reference = (sample_images(r_generator, 1)[0] + 1) / 2
    reference = torch.nn.functional.avg_pool2d(reference[None], 2)[0]  # 8 px: factor 2
    result = run_pulse(r_generator, reference[None], 0, PulseSettings(steps=2, fit_samples=200), fit=fit)[0]
    assert result.error is None and result.w_plus.shape == (5, 32) and result.noise == []


def test_sefa_on_sg3_uses_the_layer_affines(r_generator):
    from latentedit.directions.unsupervised import modulation_weights, sefa_directions

    weights = modulation_weights(r_generator, range(5))
    assert [(name, row) for name, row, _ in weights] == [("layers.0", 1), ("layers.1", 2), ("layers.2", 3)]
    assert [tuple(w.shape) for _, _, w in weights] == [(20, 32), (18, 32), (14, 32)]
    with_rgb = modulation_weights(r_generator, range(5), include_torgb=True)
    assert with_rgb[-1][:2] == ("layers.3", 4)
    directions, singular, names = sefa_directions(r_generator, k=4)
    assert directions.shape == (4, 32) and np.allclose(np.linalg.norm(directions, axis=1), 1, atol=1e-5)
    assert (np.diff(singular) <= 1e-6).all() and names == ["layers.0", "layers.1", "layers.2"]
    with pytest.raises(InputError, match="Fourier input"):
        sefa_directions(r_generator, layers=[0])


def test_evaluate_model_reference_generator_for_sg3(r_generator):
    from latentedit.evaluate.generator import initial_generator

    untrained = initial_generator(r_generator, seed=0)
    assert type(untrained) is type(r_generator)
    trained_buffers = dict(r_generator.named_buffers())
    for name, buffer in untrained.named_buffers():
        if name.endswith("magnitude_ema"):
            assert float(buffer) == 1.0
        elif name != "w_avg":
            assert torch.equal(buffer, trained_buffers[name]), name
    assert not torch.equal(untrained.layers[0].weight, r_generator.layers[0].weight)
    with torch.no_grad():
        assert torch.isfinite(untrained(torch.randn(2, 24))).all()


def test_cli_on_a_native_sg3_file_with_z_dim_not_w_dim(r_generator, tmp_path):
    """ganspace and evaluate model through the CLI on a converted R-type network (z 24, w 32)."""
    ckpt = save_native(r_generator, tmp_path / "r.safetensors")
    output = ok(invoke("direction", "ganspace", "--ckpt", ckpt, "--k", 2, "--n", 200, "--grid-seeds", "0",
                       "--grid-strengths", "-1,0,1", "--device", "cpu", "-o", tmp_path / "pcs"))
    assert "wrote 2 principal components" in output
    assert np.load(tmp_path / "pcs" / "pc_00.npy").shape == (32,)
    ok(invoke("evaluate", "model", "--ckpt", ckpt, "--n", 10, "--workers", 1, "--device", "cpu", "--no-progress",
              "-o", tmp_path / "model_eval"))
    result = json.loads((tmp_path / "model_eval" / "model_eval.json").read_text())
    assert np.isfinite(result["fd_toy"]["generated_vs_heldout"]) and np.isfinite(result["fd_toy"]["initial_vs_heldout"])


# --- directions and apply-direction on the snapshot ----------------------------------------------------------------

@needs_refdata
def test_direction_diff_and_apply_direction_on_an_inverted_sg3_latent(snapshot_seed, inverted, tmp_path):
    direction = tmp_path / "d.npy"
    ok(invoke("direction", "diff", snapshot_seed / "seed0005.npy", snapshot_seed / "seed0003.npy", "-o", direction))
    vector = np.load(direction)
    assert vector.shape == (16, 128)
    out = tmp_path / "edited"
    ok(invoke("apply-direction", "--vec", direction, "--latent", inverted / "seed0003.npy", "--strength", "0,0.5",
              "--ckpt", SG3_PKL, "--device", "cpu", "-o", out))
    latent = np.load(inverted / "seed0003.npy")
    assert np.array_equal(np.load(out / "seed0003_s0.npy"), latent)
    assert np.array_equal(pixels(out / "seed0003_s0.png"), pixels(inverted / "seed0003.png"))
    manifest = json.loads((out / "manifest.json").read_text())
    raw = manifest["raw_strengths"][1]
    np.testing.assert_allclose(np.load(out / "seed0003_s0.5.npy"), latent + raw * vector, rtol=0, atol=1e-5)
    assert not np.array_equal(pixels(out / "seed0003_s0.5.png"), pixels(out / "seed0003_s0.png"))
    assert manifest["noise"].startswith("const")
    sweep = pixels(out / "sweep.png")  # one row, two columns
    assert sweep.shape[0] >= 64 and sweep.shape[1] >= 128 and sweep.shape[0] < sweep.shape[1]


@needs_refdata
def test_sefa_and_svm_directions_on_the_snapshot_apply_to_a_latent(inverted, tmp_path):
    output = ok(invoke("direction", "sefa", "--ckpt", SG3_PKL, "--k", 2, "--layers", "1-8", "--grid-seeds", "0",
                       "--grid-strengths", "-2,0,2", "--device", "cpu", "-o", tmp_path / "sefa"))
    assert "wrote 2 SeFa directions (layers 1-8" in output
    sidecar = json.loads((tmp_path / "sefa" / "sefa_00.json").read_text())
    assert sidecar["params"]["weights"] == [f"layers.{i}" for i in range(8)]
    sefa = np.load(tmp_path / "sefa" / "sefa_00.npy")
    assert sefa.shape == (16, 128) and not sefa[0].any() and not sefa[9:].any()
    bad = invoke("direction", "sefa", "--ckpt", SG3_PKL, "--layers", "0", "--device", "cpu", "-o", tmp_path / "x")
    assert bad.exit_code != 0 and "Fourier input" in bad.output and "Traceback" not in bad.output

    svm = tmp_path / "smiling.npy"
    output = ok(invoke("direction", "svm", "--attr", "Smiling", "--n", 32, "--batch-size", 8, "--ckpt", SG3_PKL,
                       "--device", "cpu", "--no-progress", "-o", svm))
    assert "wrote" in output and np.load(svm).shape == (128,)
    out = tmp_path / "to_distance"
    ok(invoke("apply-direction", "--vec", svm, "--latent", inverted / "face.npy", "--to-distance", "--strength",
              "0,2", "--ckpt", SG3_PKL, "--device", "cpu", "-o", out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "distance" and (out / "face_d2.png").is_file()
    boundary = json.loads(svm.with_suffix(".json").read_text())
    assert boundary["generator"] == {"size": 64, "num_ws": 16, "w_dim": 128}


# --- evaluate -------------------------------------------------------------------------------------------------------

@needs_refdata
@pytest.mark.parametrize("source", ["generated", "inverted"])
def test_evaluate_edit_runs_on_the_sg3_snapshot(snapshot_seed, tmp_path, source):
    direction = tmp_path / "d.npy"
    ok(invoke("direction", "diff", snapshot_seed / "seed0005.npy", snapshot_seed / "seed0003.npy", "-o", direction))
    extra = ["--invert-steps", 2, "--invert-batch-size", 2] if source == "inverted" else []
    output = ok(invoke("evaluate", "edit", "--vec", direction, "--attr", "Blond_Hair", "--n", 2, "--strength", "0,1",
                       "--source", source, *extra, "--samples", 2, "--batch-size", 8, "--ckpt", SG3_PKL,
                       "--device", "cpu", "--no-progress", "-o", tmp_path / "eval"))
    assert "d: best strength" in output
    result = json.loads((tmp_path / "eval" / "edit_eval.json").read_text())
    assert result["sources"]["kind"] == source and result["sources"]["count"] == 2
    assert (tmp_path / "eval" / "d_samples.png").is_file()


def test_sg3_renders_on_cpu_do_not_depend_on_their_batch(r_generator):
    """cpu_micro_batch "auto" (one sample at a time): a latent renders bit for bit the same alone or in a batch,
    which is what lets apply-direction's strength 0 reproduce an inversion's PNG exactly."""
    w_plus = r_generator.broadcast_w(r_generator.mapping(torch.randn(3, 24, generator=torch.Generator().manual_seed(5))))
    with torch.no_grad():
        together = r_generator.synthesis(w_plus)
        alone = torch.cat([r_generator.synthesis(w_plus[i:i + 1]) for i in range(3)])
        assert torch.equal(together, alone)
        try:
            r_generator.cpu_micro_batch = 0  # NVIDIA's whole-batch arithmetic: equal up to rounding
            whole = r_generator.synthesis(w_plus)
        finally:
            r_generator.cpu_micro_batch = "auto"
    torch.testing.assert_close(whole, together, rtol=0, atol=1e-5)


@needs_refdata
def test_photo_align_invert_and_paste_back_on_sg3(tmp_path):
    """A photograph (examples/scene.png) through ``invert --align`` into the SG3 snapshot, then
    ``apply-direction --paste-back``: the face is found, aligned to 64 px, inverted, edited and pasted back."""
    inverted_dir, edited_dir = tmp_path / "inv", tmp_path / "edit"
    scene = FACE.parent / "scene.png"
    ok(invoke("invert", scene, "--align", "--ckpt", SG3_PKL, "--steps", 4, "--device", "cpu", "-o", inverted_dir))
    latent = inverted_dir / "scene_face0.npy"
    assert np.load(latent).shape == (16, 128)  # the snapshot's 16 W+ rows
    direction = tmp_path / "dir.npy"
    np.save(direction, np.random.default_rng(0).standard_normal(128).astype(np.float32))
    ok(invoke("apply-direction", "--vec", direction, "--latent", latent, "--ckpt", SG3_PKL, "--strength", 1,
              "--paste-back", scene, "--device", "cpu", "-o", edited_dir))
    full = pixels(edited_dir / "scene_face0_s1_full.png")
    original = pixels(scene)
    assert full.shape == original.shape
    changed = np.abs(full.astype(int) - original.astype(int)).max(axis=2) > 8
    assert 0 < changed.mean() < 0.5  # the face region changed, the rest of the photo did not


@needs_refdata
def test_serve_engine_on_sg3_inverts_previews_and_runs_pulse(tmp_path):
    """What ``latentedit serve --ckpt SG3.pkl`` does behind the page: invert an upload, preview an edit that equals
    ``apply-direction``'s PNG, align a photo, and run PULSE on an RGBA reference."""
    pytest.importorskip("gradio")
    from latentedit.serve import DirectionEdit, Engine, ServeConfig

    engine = Engine(ServeConfig(ckpt=str(SG3_PKL), device="cpu"))
    assert (engine.size, engine.num_ws) == (64, 16)
    assert engine.shipped_blond() is None  # examples/blond_learned.npy is [10, 256], for the toyfaces model
    inverted = engine.invert(FACE, tmp_path / "inv", steps=3)
    direction = tmp_path / "dir.npy"
    np.save(direction, np.random.default_rng(1).standard_normal(engine.generator.w_dim).astype(np.float32))
    edits = [DirectionEdit(direction, 0.5, "mine")]
    preview, _ = engine.preview(inverted.latent, edits)
    saved = engine.save_edit(inverted.latent, edits, None, tmp_path / "work")
    assert np.array_equal(preview, pixels(saved["png"]))
    reference = FACE.parent / "blond_hair.rgba.png"
    results = engine.pulse(reference, tmp_path / "pulse", seed=0, count=1, steps=3)
    assert len(results) == 1 and results[0].get("status") != "failed"
    assert pixels(tmp_path / "pulse" / f"{results[0]['name']}.png").shape == (64, 64, 3)
