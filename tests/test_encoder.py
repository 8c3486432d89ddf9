"""The image → W+ encoder (issue #23): shape, training, files, ``invert --method encoder|encoder+optimize``."""
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

from latentedit.checkpoints import save_native
from latentedit.errors import CheckpointError, InputError
from latentedit.invert.encoder import (EXPORT_NAME, EncoderTrainConfig, build_encoder, encode, load_encoder,
                                       save_encoder, train_encoder)
from latentedit.invert.optimize import InversionSettings
from latentedit.invert.pti import invert_with_method
from helpers import make_generator, make_small_generator, run_cli

pytestmark = pytest.mark.usefixtures("single_thread", "private_caches")

#: A tiny encoder: the architecture of the shipped one at a fraction of the width.
TINY = {"base_channels": 8, "max_channels": 32, "hidden": 64}


def tiny_config(ckpt: Path, **overrides) -> EncoderTrainConfig:
    options = dict(ckpt=str(ckpt), batch=4, iters=30, lr=3e-3, log_every=5, sample_every=1000, snapshot_every=10,
                   sample_count=2, device="cpu", perceptual="none", **TINY)
    options.update(overrides)
    return EncoderTrainConfig(**options)


@pytest.fixture(scope="module")
def generator():
    return make_small_generator(4)


@pytest.fixture(scope="module")
def ckpt(generator, tmp_path_factory) -> Path:
    return save_native(generator, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def other_ckpt(tmp_path_factory) -> Path:
    """Another generator of the same shapes (another sha256)."""
    other = make_small_generator(5)
    return save_native(other, tmp_path_factory.mktemp("other") / "other.safetensors")


@pytest.fixture(scope="module")
def trained_run(ckpt, tmp_path_factory) -> Path:
    """An encoder run of 30 iterations, uninterrupted."""
    run = tmp_path_factory.mktemp("run") / "enc"
    with pytest.MonkeyPatch.context() as patch:  # the ops path of the tests (private_caches), set up before them
        patch.setenv("LATENTEDIT_OPS", "native")
        train_encoder(tiny_config(ckpt), run, progress=False)
    return run


@pytest.fixture(scope="module")
def sample_targets(generator) -> torch.Tensor:
    """Two renders of the generator (targets it can reproduce exactly)."""
    with torch.no_grad():
        w = generator.mapping(torch.randn(2, generator.z_dim, generator=torch.Generator().manual_seed(11)))
        return generator.synthesis(w).clamp(-1, 1)


def save_render(path: Path, image: torch.Tensor) -> Path:
    pixels = ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(path)
    return path


def test_encoder_maps_images_to_w_plus_starting_at_the_mean_w(generator):
    encoder = build_encoder(generator, **TINY)
    images = torch.rand(3, 3, generator.size, generator.size) * 2 - 1
    w_plus = encoder(images)
    assert w_plus.shape == (3, generator.num_ws, generator.w_dim)
    # The last layer starts at zero: an untrained encoder answers (about) the mean w.
    assert torch.allclose(w_plus, generator.mean_w().expand_as(w_plus), atol=1e-2)
    # Images of another size are resized, not refused.
    assert encoder(torch.zeros(1, 3, 64, 64)).shape == (1, generator.num_ws, generator.w_dim)


def test_short_training_reduces_the_latent_loss(trained_run):
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss_latent"] for r in records if "loss_latent" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert {r.get("event") for r in records} >= {"start", "snapshot", "done"}
    assert (trained_run / EXPORT_NAME).is_file() and (trained_run / "checkpoint.pt").is_file()


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(ckpt, trained_run, tmp_path):
    run = tmp_path / "enc"
    first = train_encoder(tiny_config(ckpt), run, progress=False, session_iters=10)
    assert first.step == 10 and not first.finished
    # What a kill -9 after the step-10 checkpoint leaves: metric lines past it, one cut mid-line, a temporary.
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"step": 15, "loss": 1.0}) + "\n" + '{"step": 16, "lo')
    (run / ".encoder.safetensors.abcdefgh.tmp").write_bytes(b"partial")
    second = train_encoder(tiny_config(ckpt), run, progress=False)
    assert second.finished and second.resumed_step == 10
    mine, uninterrupted = load_encoder(run).encoder, load_encoder(trained_run).encoder
    for (name, a), (_, b) in zip(mine.state_dict().items(), uninterrupted.state_dict().items()):
        assert torch.equal(a, b), name
    steps = [json.loads(line).get("step") for line in (run / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [5, 10, 15, 20, 25, 30]


def test_save_load_round_trip_and_the_generator_check(generator, tmp_path):
    encoder = build_encoder(generator, **TINY)
    with torch.no_grad():
        encoder.to_offsets.bias.normal_()
    path = save_encoder(encoder, tmp_path / "e.safetensors", generator_sha256="a" * 64, training={"step": 3})
    loaded, info = load_encoder(path, generator_sha256="a" * 64, generator=generator)
    images = torch.rand(2, 3, generator.size, generator.size) * 2 - 1
    assert torch.equal(loaded(images), encoder.eval()(images))
    assert info["generator_sha256"] == "a" * 64 and info["training"] == {"step": 3}
    with pytest.raises(CheckpointError, match="trained for another generator.*--force"):
        load_encoder(path, generator_sha256="b" * 64)
    forced, info = load_encoder(path, generator_sha256="b" * 64, force=True)
    assert any("--force" in note for note in info["notes"])
    # A generator tuned from the right one (invert --method pti) is accepted without --force.
    load_encoder(path, generator_sha256="c" * 64, generator_provenance={"derived_from_sha256": "a" * 64})
    wrong_shape = make_generator(1, style_dim=24)
    with pytest.raises(CheckpointError, match="predicts W\\+"):
        load_encoder(path, generator=wrong_shape, force=True)


def test_invert_method_encoder_writes_the_standard_outputs(ckpt, trained_run, sample_targets, tmp_path):
    image = save_render(tmp_path / "face.png", sample_targets[0])
    out = tmp_path / "out"
    result = run_cli("invert", image, "--ckpt", ckpt, "--method", "encoder", "--encoder", trained_run, "-o", out,
                     "--no-progress")
    assert result.exit_code == 0, result.output
    for name in ("face.npy", "face.png", "face_compare.png", "face.json", "summary.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "face.json").read_text())
    assert manifest["settings"]["method"] == "encoder" and manifest["steps"] == 0
    assert manifest["settings"]["encoder_sha256"] and manifest["metrics"]["psnr_db"] > 0
    assert manifest["latent_shape"] == list(np.load(out / "face.npy").shape)
    generated = tmp_path / "gen"
    assert run_cli("generate", "--ckpt", ckpt, "--latent", out / "face.npy", "-o", generated).exit_code == 0
    ours = np.asarray(Image.open(out / "face.png"), dtype=int)
    assert np.abs(ours - np.asarray(Image.open(generated / "face.png"), dtype=int)).max() <= 1
    # A rerun of the same method skips; another method does not silently reuse the encoder's result.
    again = run_cli("invert", image, "--ckpt", ckpt, "--method", "encoder", "--encoder", trained_run, "-o", out)
    assert again.exit_code == 0 and "skipped 1" in again.stdout
    other = run_cli("invert", image, "--ckpt", ckpt, "--steps", "2", "-o", out)
    assert other.exit_code == 2 and "made with other settings" in other.stderr and "method" in other.stderr


def test_encoder_then_optimize_beats_the_encoder_alone(generator, trained_run, sample_targets):
    encoder = load_encoder(trained_run).encoder
    names = ["a", "b"]
    alone = invert_with_method(generator, sample_targets, InversionSettings(method="encoder").validated(),
                               names=names, encoder=encoder)
    refined = invert_with_method(generator, sample_targets,
                                 InversionSettings(method="encoder+optimize", steps=15, lr=0.02).validated(),
                                 names=names, encoder=encoder)
    for start, result in zip(alone, refined):
        assert result.psnr_db > start.psnr_db + 0.5
        assert result.extra["encoder_init"]["psnr_db"] == pytest.approx(start.psnr_db, abs=1e-3)


def test_an_encoder_for_another_generator_is_refused_unless_forced(other_ckpt, trained_run, sample_targets,
                                                                   tmp_path):
    image = save_render(tmp_path / "face.png", sample_targets[1])
    refused = run_cli("invert", image, "--ckpt", other_ckpt, "--method", "encoder", "--encoder", trained_run,
                      "-o", tmp_path / "a")
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "trained for another generator" in refused.stderr and "Traceback" not in refused.stderr
    forced = run_cli("invert", image, "--ckpt", other_ckpt, "--method", "encoder", "--encoder", trained_run,
                     "--force", "-o", tmp_path / "b", "--no-progress")
    assert forced.exit_code == 0, forced.output


def test_bad_encoder_inputs_are_one_line_errors(ckpt, sample_targets, tmp_path):
    image = save_render(tmp_path / "face.png", sample_targets[0])
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(os.urandom(300))
    cases = {"missing": (["--encoder", tmp_path / "nope.safetensors"], "not found"),
             "corrupt": (["--encoder", corrupt], "cannot read encoder"),
             "generator": (["--encoder", ckpt], "not a latentedit encoder"),
             "default": ([], "was trained for another generator")}  # the shipped one is toyfaces64's
    for label, (args, message) in cases.items():
        result = run_cli("invert", image, "--ckpt", ckpt, "--method", "encoder", *args, "-o", tmp_path / label)
        assert result.exit_code == 2, (label, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, (label, lines)
        assert not (tmp_path / label / "face.json").exists()
    bad = run_cli("encoder", "train", "--ckpt", ckpt, "-o", tmp_path / "r", "--psi-min", "0")
    assert bad.exit_code == 2 and "--psi-min" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_cli_train_reports_and_resumes(ckpt, tmp_path):
    run = tmp_path / "run"
    args = ["encoder", "train", "--ckpt", ckpt, "-o", run, "--iters", "4", "--batch-size", "2", "--base-channels",
            "8", "--max-channels", "16", "--hidden", "32", "--log-every", "2", "--snapshot-every", "2",
            "--device", "cpu", "--no-progress"]
    first = run_cli(*args[:-1], "--session-iters", "2", "--no-progress")
    assert first.exit_code == 0, first.output
    assert "paused" in first.stdout
    second = run_cli(*args)
    assert second.exit_code == 0 and "trained to iteration 4" in second.stdout, second.output
    changed = run_cli(*args[:-1], "--iters", "6", "--hidden", "64")
    assert changed.exit_code == 2 and "hidden=32" in changed.stderr


def test_torchrun_two_cpu_ranks_train_one_encoder(ckpt, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "latentedit", "encoder", "train", "--ckpt", str(ckpt), "-o", str(out), "--iters", "3",
               "--batch-size", "4", "--base-channels", "8", "--max-channels", "16", "--hidden", "32",
               "--log-every", "1", "--snapshot-every", "3", "--device", "cpu", "--no-progress"]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["world_size"] == 2
    assert completed.stdout.count("trained to iteration 3") == 1  # only rank 0 reports
    load_encoder(out)


def test_encoder_method_encodes_a_folder_in_one_forward_pass(ckpt, trained_run, generator, tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    with torch.no_grad():
        w = generator.mapping(torch.randn(3, generator.z_dim, generator=torch.Generator().manual_seed(2)))
        renders = generator.synthesis(w).clamp(-1, 1)
    for i, render in enumerate(renders):
        save_render(folder / f"f{i}.png", render)
    result = run_cli("invert", folder, "--ckpt", ckpt, "--method", "encoder", "--encoder", trained_run, "-o",
                     tmp_path / "out", "--no-progress")
    assert result.exit_code == 0 and "inverted 3" in result.stdout, result.output
    manifests = [json.loads((tmp_path / "out" / f"f{i}.json").read_text()) for i in range(3)]
    assert all(m["batch_size"] == 3 and m["steps"] == 0 for m in manifests)


def test_real_images_teach_the_encoder_what_the_generator_samples_do_not(ckpt, generator, tmp_path):
    """--real adds image-loss-only examples: trained with them, the encoder reconstructs such images better
    than the same run without them."""
    from latentedit.invert.optimize import image_mse01, psnr_from_mse

    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):  # flat colour fields: nothing like the generator's samples
        Image.fromarray(np.full((32, 32, 3), rng.integers(0, 256, 3), np.uint8)).save(real / f"r{i}.png")
    targets = torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1).float() / 127.5 - 1
                           for p in sorted(real.iterdir())])

    def psnr_after(run_dir, **overrides):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LATENTEDIT_OPS", "native")
            train_encoder(tiny_config(ckpt, iters=40, image_weight=10.0, **overrides), run_dir, progress=False)
        encoder = load_encoder(run_dir).encoder
        with torch.no_grad():
            rendered = generator.synthesis(encoder(targets)).clamp(-1, 1)
        return float(psnr_from_mse(image_mse01(rendered, targets)).mean())

    with_real = psnr_after(tmp_path / "with", real_dir=str(real), real_batch=2)
    without = psnr_after(tmp_path / "without")
    assert with_real > without + 0.5, (with_real, without)
    (tmp_path / "empty").mkdir()
    result = run_cli("encoder", "train", "--ckpt", ckpt, "-o", tmp_path / "e", "--iters", 2, "--real",
                     tmp_path / "empty", "--no-progress")
    assert result.exit_code == 2 and "no images found" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "e" / "checkpoint.pt").exists()


def test_invert_benchmark_compares_every_method_on_one_footing(ckpt, trained_run, tmp_path):
    """benchmarks/invert.py --methods: one row per method on the same held-out faces, PTI above its pivot, the
    optimisation row taken from section (a) of the same run, and the README table built from the JSON."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("invert_benchmark", Path(__file__).resolve().parents[1]
                                                  / "benchmarks" / "invert.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "invert.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LATENTEDIT_OPS", "native")
        bench.main(["--ckpt", str(ckpt), "--count", "2", "--steps", "6", "--checkpoints", "2", "4", "6",
                    "--configs", "image2stylegan:w+", "--methods", "optimize", "encoder", "encoder+optimize", "pti",
                    "--encoder", str(trained_run), "--encoder-batch", "2", "--eo-steps", "4", "--pti-steps", "3",
                    "--pti-lr", "0.003", "--pti-pivot", "encoder", "--speed-sizes", "--json", str(out)])
    report = json.loads(out.read_text())
    rows = {row["method"]: row for row in report["methods"]["quality"]}
    assert list(rows) == ["optimize", "encoder", "encoder+optimize", "pti"]
    assert rows["optimize"]["median_psnr_db"] == report["quality"][0]["final_median_psnr_db"]
    assert rows["encoder"]["steps"] == 0 and rows["encoder"]["median_ms_per_image"] > 0
    assert rows["encoder+optimize"]["curve"][0]["step"] == 0  # starts from the encoder's PSNR
    assert rows["encoder+optimize"]["median_psnr_db"] >= rows["encoder"]["median_psnr_db"] - 1e-6
    assert rows["pti"]["median_psnr_db"] > rows["pti"]["median_pivot_psnr_db"]
    assert rows["pti"]["pti_lr"] == report["methods"]["settings"]["pti_lr"] == 0.003
    assert rows["pti"]["median_pivot_psnr_db"] == pytest.approx(rows["encoder"]["median_psnr_db"], abs=1e-3)
    table = bench.methods_table(report["methods"])
    assert table.count("\n") == 5 and "| pti | 0 + 3 tuning |" in table
    assert rows["encoder"]["refine_steps"] == 0 and "| encoder | 1 pass |" in table


def test_the_shipped_encoder_fits_the_shipped_generator():
    """pretrained/toyfaces64_encoder: under 10 MB, loads for toyfaces64 without --force, reconstructs held-out
    toyfaces renders far better than the mean face does, and its two refinement passes improve on its first."""
    from latentedit.checkpoints import load_generator
    from latentedit.data.toyfaces import HELDOUT_SEED, render_face
    from latentedit.invert.optimize import image_mse01, psnr_from_mse
    from latentedit.pretrained import PACKAGE_DIR

    path = PACKAGE_DIR / "toyfaces64_encoder.safetensors"
    assert path.stat().st_size <= 10 * 2 ** 20
    generator, info = load_generator("toyfaces64")
    encoder, encoder_info = load_encoder("toyfaces64_encoder", generator_sha256=info.sha256, generator=generator)
    assert encoder_info["notes"] == []
    faces = np.stack([render_face(HELDOUT_SEED, i, 64) for i in range(4)])
    targets = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        first_pass = psnr_from_mse(image_mse01(generator.synthesis(encoder(targets)).clamp(-1, 1), targets))
        refined = generator.synthesis(encode(encoder, targets, generator=generator)).clamp(-1, 1)
        encoded = psnr_from_mse(image_mse01(refined, targets))
        mean_face = generator.synthesis(generator.mean_w().expand(4, -1)).clamp(-1, 1)
        baseline = psnr_from_mse(image_mse01(mean_face, targets))
    assert encoder.refine_steps == 2
    assert float(encoded.median()) > 20.0 and float(encoded.median()) > float(baseline.median()) + 5
    assert float(encoded.median()) > float(first_pass.median()) + 0.5


# --- ReStyle-style refinement passes (--refine-steps) -------------------------------------------------------


def test_a_fresh_refiner_changes_nothing_and_needs_the_generator(generator, trained_run):
    from latentedit.invert.encoder import _copy_first_pass

    base = load_encoder(trained_run).encoder
    refining = build_encoder(generator, refine_steps=2, **TINY)
    _copy_first_pass(base, refining)  # what --init-encoder does: the trained first pass, a refiner beside it
    images = torch.rand(3, 3, generator.size, generator.size) * 2 - 1
    with torch.no_grad():
        # The refiner's last layer starts at zero, so two passes answer exactly the first pass.
        assert torch.equal(refining.invert(images, generator), base(images))
        # ... and its trunk was copied from the first pass (stem on image minus render), not left random.
        assert torch.equal(refining.refiner.to_hidden.weight, base.to_hidden.weight)
        assert torch.equal(refining.refiner.stem.weight[:, :3], base.stem.weight)
        assert torch.equal(refining.refiner.stem.weight[:, 3:], -base.stem.weight)
    with pytest.raises(InputError, match="pass the generator"):
        encode(refining, images)
    assert refining.invert(images, generator, steps=0).shape == (3, generator.num_ws, generator.w_dim)


def test_refiner_weights_round_trip_and_an_old_file_loads_without_one(generator, trained_run, tmp_path):
    refining = build_encoder(generator, refine_steps=1, **TINY)
    with torch.no_grad():
        refining.refiner.to_offsets.bias.normal_(std=0.5)  # a refiner that moves the answer
    images = torch.rand(2, 3, generator.size, generator.size) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(refining.invert(images, generator), refining(images))
    path = save_encoder(refining, tmp_path / "r.safetensors", generator_sha256="a" * 64)
    loaded, _ = load_encoder(path, generator_sha256="a" * 64, generator=generator)
    assert loaded.refine_steps == 1
    with torch.no_grad():
        assert torch.equal(loaded.invert(images, generator), refining.eval().invert(images, generator))
    # Files written before refinement existed have no refine_steps in their config: they load as one pass.
    old = load_encoder(trained_run).encoder
    assert old.refine_steps == 0 and old.refiner is None


def test_init_encoder_trains_only_the_refiner_and_resumes(ckpt, trained_run, tmp_path):
    run = tmp_path / "refine"
    config = lambda **o: tiny_config(ckpt, iters=6, snapshot_every=3, refine_steps=1, init_encoder=str(trained_run),
                                     **o)
    first = train_encoder(config(), run, progress=False, session_iters=3)
    assert first.step == 3 and not first.finished
    second = train_encoder(config(), run, progress=False)
    assert second.finished and second.resumed_step == 3
    base, refined = load_encoder(trained_run).encoder, load_encoder(run).encoder
    assert refined.refine_steps == 1
    for name, tensor in base.state_dict().items():  # the first pass is frozen
        assert torch.equal(refined.state_dict()[name], tensor), name
    assert refined.refiner.to_offsets.weight.abs().max() > 0  # the refiner learned something
    # An exported copy records what it was started from (the file's sha256 and its training).
    from latentedit.invert.encoder import export_encoder

    export_encoder(run, tmp_path / "shipped.safetensors", half=True)
    lineage = load_encoder(tmp_path / "shipped.safetensors").info["training"]["init"]
    assert lineage["sha256"] == load_encoder(trained_run).info["sha256"]
    assert lineage["training"]["options"]["refine_steps"] == 0
    # The architecture comes from --init-encoder; asking for another width is refused before training.
    with pytest.raises(InputError, match="drop --hidden"):
        train_encoder(config(hidden=48), tmp_path / "mismatch", progress=False, explicit={"hidden"})
    assert not (tmp_path / "mismatch" / "checkpoint.pt").exists()


def test_invert_with_a_refining_encoder_from_the_cli(ckpt, sample_targets, generator, tmp_path):
    from latentedit.checkpoints import load_generator

    _, info = load_generator(ckpt)
    refining = build_encoder(generator, refine_steps=1, **TINY)
    with torch.no_grad():
        refining.refiner.to_offsets.bias.normal_(std=0.5)
    encoder_path = save_encoder(refining, tmp_path / "r.safetensors", generator_sha256=info.sha256)
    image = save_render(tmp_path / "face.png", sample_targets[0])
    result = run_cli("invert", image, "--ckpt", ckpt, "--method", "encoder", "--encoder", encoder_path,
                     "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "face.json").read_text())["settings"]["method"] == "encoder"
    # The command runs the refinement pass: its latent is the refined answer, not the first pass's.
    pixels = torch.from_numpy(np.asarray(Image.open(image), dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.no_grad():
        refined = refining.eval().invert(pixels, generator)[0].numpy()
        first_pass = refining(pixels)[0].numpy()
    latent = np.load(tmp_path / "out" / "face.npy")
    assert np.abs(latent - refined).max() < 1e-4 < np.abs(latent - first_pass).max()


def test_export_half_halves_the_file_and_keeps_the_answers(trained_run, generator, tmp_path):
    result = run_cli("encoder", "export", trained_run, "--half", "-o", tmp_path / "half.safetensors")
    assert result.exit_code == 0, result.output
    full = (trained_run / EXPORT_NAME).stat().st_size
    half = (tmp_path / "half.safetensors").stat().st_size
    assert half < 0.6 * full and "float16" in result.stdout
    a, info = load_encoder(tmp_path / "half.safetensors", generator=generator)
    b, _ = load_encoder(trained_run)
    assert a.w_mean.dtype == torch.float32 and torch.equal(a.w_std, b.w_std)  # the scale buffers stay exact
    images = torch.rand(4, 3, generator.size, generator.size, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        assert (a(images) - b(images)).abs().max() < 1e-2 * b(images).abs().max()
    assert info["training"] == load_encoder(trained_run).info["training"]
    # Without -o the copy lands in the current folder, named after its source.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        default = run_cli("encoder", "export", trained_run, "--half")
    assert default.exit_code == 0 and (tmp_path / f"{trained_run.name}_float16.safetensors").is_file(), default.output
    # The output location is checked before anything is loaded.
    bad = run_cli("encoder", "export", trained_run, "-o", tmp_path / "missing" / "x.safetensors")
    assert bad.exit_code == 2 and "does not exist" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_encoder_quality_benchmark_reports_every_pass_of_the_shipped_encoder(tmp_path):
    """benchmarks/encoder_quality.py (the model card's table): one row per number of passes, the encoder's own
    setting marked, and its refinement passes better than its first pass on the held-out renders."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("encoder_quality", Path(__file__).resolve().parents[1]
                                                  / "benchmarks" / "encoder_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "q.json"
    bench.main(["--count", "16", "--extra-passes", "0", "--json", str(out)])
    (result,) = json.loads(out.read_text())["results"]
    rows = result["rows"]
    assert [row["passes"] for row in rows] == [0, 1, 2] and [row["shipped_setting"] for row in rows][-1]
    assert rows[-1]["heldout_median16_psnr_db"] > rows[0]["heldout_median16_psnr_db"] + 0.5


def test_cli_refiner_training_and_its_bad_inputs(ckpt, trained_run, tmp_path):
    """`encoder train --init-encoder RUN --refine-steps 1` from the command line, and one-line errors for what a
    user gets wrong with it or with `encoder export`."""
    run = tmp_path / "refine"
    args = ["encoder", "train", "--ckpt", ckpt, "--init-encoder", trained_run, "--refine-steps", "1", "--iters", "2",
            "--batch-size", "2", "--log-every", "1", "--snapshot-every", "2", "--device", "cpu", "--no-progress"]
    result = run_cli(*args, "-o", run)
    assert result.exit_code == 0 and "trained to iteration 2" in result.stdout, result.output
    assert load_encoder(run).encoder.refine_steps == 1
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(os.urandom(200))
    cases = {"too many passes": (["encoder", "train", "--ckpt", ckpt, "--refine-steps", "11", "-o", tmp_path / "a"],
                                 "--refine-steps"),
             "missing init": ([*args[:5], tmp_path / "nope", *args[6:], "-o", tmp_path / "b"], "not found"),
             "width mismatch": ([*args, "--hidden", "48", "-o", tmp_path / "c"], "drop --hidden"),
             "corrupt export": (["encoder", "export", corrupt, "-o", tmp_path / "d.safetensors"],
                                "cannot read encoder")}
    for label, (command, message) in cases.items():
        bad = run_cli(*command)
        lines = bad.stderr.strip().splitlines()
        assert bad.exit_code == 2 and len(lines) == 1 and message in lines[0], (label, bad.output)
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c", "d.safetensors"))
