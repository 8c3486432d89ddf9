"""StyleGAN2 trainer: recipe pieces, checkpoints and resume, kill -9 / SIGTERM, DDP, CLI errors.

All runs use tiny networks (16 px, 8-16 channels) on a folder of random-blob PNGs.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from latentedit.checkpoints import load_generator
from latentedit.cli.main import cli
from latentedit.errors import InputError
from latentedit.model import Generator, GeneratorConfig
from latentedit.train import common
from latentedit.train.stylegan2 import (StyleGAN2TrainConfig, StyleMixingGenerator, default_channels,
                                        read_training_checkpoint, resume_config, train_stylegan2)

TINY = {"size": 16, "channels": {4: 16, 8: 16, 16: 8}, "style_dim": 16, "n_mlp": 2, "batch": 4}
TINY_ARGS = ["--size", "16", "--channels", "4:16,8:16,16:8", "--style-dim", "16", "--n-mlp", "2", "--batch", "4"]
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    """24 random-blob PNGs of mixed sizes."""
    root = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(0)
    for i in range(24):
        height, width = (24, 24) if i % 3 else (20, 28)
        yy, xx = np.mgrid[:height, :width]
        pixels = np.full((height, width, 3), rng.integers(0, 256, 3), np.uint8)
        for _ in range(3):
            cy, cx, radius = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(3, 9)
            pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] = rng.integers(0, 256, 3)
        Image.fromarray(pixels).save(root / f"{i:03d}.png")
    return root


def tiny_config(data: Path, **overrides) -> StyleGAN2TrainConfig:
    options = dict(TINY, data=str(data), kimg=0.032, snapshot_kimg=0.016, sample_kimg=0.016, log_kimg=0.008,
                   sample_count=4, workers=0, device="cpu")
    options.update(overrides)
    return StyleGAN2TrainConfig(**options)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(autouse=True)
def small_machine_settings(monkeypatch):
    """The trainer is tested, not the kernels: the reference ops never need a build that could outlast
    a subprocess test's patience. One intra-op thread: these networks are tiny, and OpenMP spin-waits
    collapse when the shared test machine is oversubscribed (the trainer honours OMP_NUM_THREADS)."""
    monkeypatch.setenv("LATENTEDIT_OPS", "native")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def subprocess_env() -> dict:
    # One thread per process: the test machine is small and shared, and OpenMP spin-waits collapse
    # under oversubscription.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "LATENTEDIT_OPS": "native"}


# ----------------------------------------------------------------------------------------------------
# Recipe pieces

def test_ema_beta_half_life_and_rampup():
    beta = common.ema_beta(batch=16, ema_kimg=5, nimg=10**6, rampup=0.05)
    assert beta ** (5000 / 16) == pytest.approx(0.5)  # weights halve their influence every 5 kimg
    early = common.ema_beta(batch=16, ema_kimg=5, nimg=1600, rampup=0.05)
    assert early == pytest.approx(0.5 ** (16 / 80))  # half-life capped at 5% of the images seen
    assert common.ema_beta(16, 5, 1600, rampup=None) == pytest.approx(beta)
    assert common.ema_beta(16, 0, 1600) == 0.0


def test_update_ema_interpolates_parameters():
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = target.weight.detach().clone()
    common.update_ema(target, source, beta=0.75)
    assert torch.allclose(target.weight, 0.75 * before + 0.25 * source.weight.detach())


def test_sampler_shards_are_disjoint_and_cover_the_single_process_stream():
    n, b = 10, 3
    single = common.InfiniteShardSampler(n, per_rank_batch=2 * b, seed=5)
    ranks = [common.InfiniteShardSampler(n, per_rank_batch=b, rank=r, world_size=2, seed=5) for r in range(2)]
    take = lambda sampler, count: [i for i, _ in zip(iter(sampler), range(count))]
    stream = take(single, 60)
    shards = [take(s, 30) for s in ranks]
    for step in range(10):  # global batch `step` = rank 0's b items, then rank 1's
        assert stream[6 * step:6 * step + 6] == shards[0][3 * step:3 * step + 3] + shards[1][3 * step:3 * step + 3]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))  # epochs permute
    resumed = common.InfiniteShardSampler(n, per_rank_batch=2 * b, seed=5, start_position=24)
    assert take(resumed, 12) == stream[24:36]


def test_style_mixing_takes_rows_from_both_latents():
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(size=16, style_dim=8, n_mlp=1, channels={4: 8, 8: 8, 16: 8}))
    mixing = StyleMixingGenerator(generator)
    z, z_mix = torch.randn(2, 8), torch.randn(2, 8)
    images, w_plus = mixing(z, z_mix, crossover=2)
    assert images.shape == (2, 3, 16, 16) and w_plus.shape == (2, generator.num_ws, 8)
    assert torch.allclose(w_plus[:, :2], generator.mapping(z)[:, None].expand(-1, 2, -1), atol=1e-6)
    assert torch.allclose(w_plus[:, 2:], generator.mapping(z_mix)[:, None].expand(-1, generator.num_ws - 2, -1),
                          atol=1e-6)


def test_default_channels_follow_the_cpu_recipe():
    assert default_channels(64) == {4: 128, 8: 128, 16: 128, 32: 64, 64: 32}
    assert default_channels(256)[256] == 16


@pytest.mark.parametrize("overrides, message", [
    ({"size": 48}, "power of two"),
    ({"channels": {4: 16, 16: 8}}, "lacks resolution"),
    ({"batch": 6}, "minibatch-stddev"),
    ({"kimg": 0}, "--kimg"),
    ({"mixing_prob": 1.5}, "--mixing-prob"),
])
def test_config_validation_errors(overrides, message):
    with pytest.raises(InputError, match=message):
        tiny_config(Path("unused"), **overrides).validate()


def test_batch_must_split_across_processes():
    with pytest.raises(InputError, match="divisible"):
        tiny_config(Path("unused"), batch=6).validate(world_size=4)


def test_parse_channels():
    assert common.parse_channels("4:128, 8:64") == {4: 128, 8: 64}
    for bad in ("4-128", "4:x", "", "4:0"):
        with pytest.raises(InputError):
            common.parse_channels(bad)


def test_resume_config_keeps_saved_options_unless_given():
    saved = tiny_config(Path("data"), kimg=1.0, lr=0.002).to_dict()
    requested = tiny_config(Path("data"), kimg=3.0, lr=0.01, seed=9)
    merged = resume_config(saved, requested, explicit={"kimg"})
    assert merged.kimg == 3.0 and merged.lr == 0.002 and merged.seed == 0
    with pytest.raises(InputError, match="size"):
        resume_config(saved, tiny_config(Path("data"), size=32, channels={4: 8, 8: 8, 16: 8, 32: 8}),
                      explicit={"size"})


# ----------------------------------------------------------------------------------------------------
# In-process runs

def test_training_run_writes_checkpoint_export_samples_and_metrics(blobs, tmp_path):
    run = tmp_path / "run"
    calls = []

    def evaluate(generator, kimg, run_dir):
        calls.append(kimg)
        return {"probe": float(generator(torch.zeros(1, 16), noise_mode="const").mean())}

    result = train_stylegan2(tiny_config(blobs, pl_weight=1.0), run, eval_hook=evaluate, eval_every_kimg=0.016,
                             progress=False)
    assert result.finished and result.step == 8 and result.nimg == 32
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 8 and checkpoint["kimg"] == pytest.approx(0.032)
    assert set(checkpoint) >= {"g", "d", "g_ema", "g_optim", "d_optim", "rng", "config", "args", "latent_avg"}

    # Both files load as generators anywhere a --ckpt is accepted, and hold the EMA weights.
    for path in (run / "g_ema.safetensors", run / "checkpoint.pt"):
        generator, info = load_generator(path)
        assert info.config.size == 16 and info.config.channels == {4: 16, 8: 16, 16: 8}
        for key, value in generator.state_dict().items():
            assert torch.equal(value, checkpoint["g_ema"][key]), key
        assert torch.equal(generator.w_avg, checkpoint["latent_avg"])

    records = metrics(run)
    ticks = [r for r in records if "loss_d" in r]
    assert [r["step"] for r in ticks] == [2, 4, 6, 8]
    assert all(np.isfinite(r["loss_d"]) and np.isfinite(r["loss_g"]) and r["img_per_s"] > 0 for r in ticks)
    assert any("r1_penalty" in r for r in ticks) and any("pl_penalty" in r for r in ticks)
    assert calls == [0.016, 0.032]
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["kimg"] for r in evals] == [0.016, 0.032] and all(np.isfinite(r["probe"]) for r in evals)
    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert samples == ["fakes_kimg000000.000.png", "fakes_kimg000000.016.png", "fakes_kimg000000.032.png", "reals.png"]
    assert records[-1]["event"] == "done"


def test_resumed_run_matches_an_uninterrupted_one(blobs, tmp_path):
    straight = train_stylegan2(tiny_config(blobs, kimg=0.048), tmp_path / "straight", progress=False)
    first = train_stylegan2(tiny_config(blobs, kimg=0.024), tmp_path / "split", progress=False)
    assert first.finished and first.step == 6
    # Same run folder: resumes automatically; kimg extended as a user would do on the command line.
    second = train_stylegan2(tiny_config(blobs, kimg=0.048), tmp_path / "split", progress=False)
    assert second.resumed_step == 6 and second.step == straight.step == 12
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    for key in ("g", "d", "g_ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"


def test_resume_is_bit_identical_at_default_ops_settings(blobs, tmp_path, monkeypatch):
    """LATENTEDIT_OPS unset (auto): the backends follow a fixed rule, not timings, so a run stopped
    midway and resumed ends with the weights of an uninterrupted one even when the machine's load
    would have favoured other backends in each session (here: timings that say the opposite)."""
    from latentedit.ops import backend

    monkeypatch.delenv("LATENTEDIT_OPS")
    timings = iter([(1.0, 9.0), (9.0, 1.0), (1.0, 9.0)] * 100)
    monkeypatch.setattr(backend, "benchmark", lambda *args, **kwargs: next(timings))
    runs = {}
    backend.reset()
    runs["straight"] = train_stylegan2(tiny_config(blobs, kimg=0.032), tmp_path / "straight", progress=False)
    backend.reset()  # a new process: nothing remembered
    first = train_stylegan2(tiny_config(blobs, kimg=0.016), tmp_path / "split", progress=False)
    backend.reset()
    runs["split"] = train_stylegan2(tiny_config(blobs, kimg=0.032), tmp_path / "split", progress=False)
    assert first.step == 4 and runs["split"].resumed_step == 4 and runs["split"].step == runs["straight"].step == 8
    prints = []
    for name in runs:
        payload = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)
        prints.append(common.state_dict_fingerprint(payload["g"], payload["d"], payload["g_ema"]))
    assert prints[0] == prints[1]
    assert metrics(tmp_path / "straight")[-2]["fingerprints"] == metrics(tmp_path / "split")[-2]["fingerprints"]
    if shutil.which(os.environ.get("CXX", "c++")):  # the rule's compiled fused_leaky_relu really ran
        assert backend.describe()["fused_leaky_relu"]["cpu"] == "compiled"


def test_progress_bar_total_is_what_is_trained(blobs, tmp_path, capsys):
    """--kimg 0.01 at batch 4 trains 12 images (whole batches); the bar must end at 100 %, not 120 %."""
    import warnings

    from latentedit.train.stylegan2 import final_nimg

    assert final_nimg(0, 10, 4) == 12 and final_nimg(8, 16, 4) == 16 and final_nimg(20, 16, 4) == 20
    assert final_nimg(4, 10, 4) == 12
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_stylegan2(tiny_config(blobs, kimg=0.01), tmp_path / "run", progress=True)
    assert result.nimg == 12 and result.finished
    assert not [w for w in caught if "Tqdm" in type(w.message).__name__], [str(w.message) for w in caught]
    err = capsys.readouterr().err
    assert "100%" in err and "120%" not in err


def test_finished_run_is_not_trained_further(blobs, tmp_path):
    run = tmp_path / "run"
    train_stylegan2(tiny_config(blobs, kimg=0.016), run, progress=False)
    before = (run / "checkpoint.pt").read_bytes()
    result = train_stylegan2(tiny_config(blobs, kimg=0.016), run, progress=False)
    assert result.finished and result.step == 4 and (run / "checkpoint.pt").read_bytes() == before


def test_resume_with_other_architecture_is_refused(blobs, tmp_path):
    run = tmp_path / "run"
    train_stylegan2(tiny_config(blobs, kimg=0.008), run, progress=False)
    with pytest.raises(InputError, match="style_dim"):
        train_stylegan2(tiny_config(blobs, kimg=0.016, style_dim=8), run, progress=False)


# ----------------------------------------------------------------------------------------------------
# Subprocesses: kill -9, SIGTERM, DDP

def start_training(data: Path, run: Path, kimg: str, extra=()) -> subprocess.Popen:
    command = [sys.executable, "-m", "latentedit", "train", "stylegan2", "--data", str(data), "-o", str(run),
               *TINY_ARGS, "--kimg", kimg, "--snapshot-kimg", "0.02", "--sample-kimg", "1", "--log-kimg", "0.02",
               "--sample-count", "4", "--workers", "0", "--device", "cpu", "--no-progress", *extra]
    # A session of its own, so that a test can signal the whole process group as a terminal or torchrun does.
    return subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"training exited early: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.05)


def test_kill_9_then_resume_continues_from_the_checkpoint(blobs, tmp_path):
    run = tmp_path / "run"
    process = start_training(blobs, run, kimg="2")
    wait_for(run / "checkpoint.pt", process)
    assert process.poll() is None
    process.kill()  # SIGKILL: no handler runs
    process.communicate()
    saved = read_training_checkpoint(run / "checkpoint.pt")
    saved_step, saved_nimg = saved["step"], saved["nimg"]
    assert 0 < saved_step < 500
    saved_fingerprint = common.state_dict_fingerprint(saved["g"], saved["d"], saved["g_ema"])

    # Same command with a shorter total: resumes from the checkpoint automatically and finishes.
    finish = f"{(saved_nimg + 40) / 1000:.3f}"
    resumed = start_training(blobs, run, kimg=finish)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    records = metrics(run)
    resume_events = [r for r in records if r.get("event") == "resume"]
    assert len(resume_events) == 1
    assert resume_events[0]["step"] == saved_step and resume_events[0]["fingerprint"] == saved_fingerprint
    steps = [r["step"] for r in records if "loss_d" in r]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # lines after the checkpoint were dropped
    final = read_training_checkpoint(run / "checkpoint.pt")
    assert final["step"] == saved_step + 10 and final["nimg"] == saved_nimg + 40
    assert records[-1]["event"] == "done"


def test_sigterm_writes_a_checkpoint_and_exits(blobs, tmp_path):
    run = tmp_path / "run"
    # With a DataLoader worker, which receives the signal too (it is sent to the process group).
    process = start_training(blobs, run, kimg="4", extra=["--snapshot-kimg", "1000", "--workers", "1"])
    deadline = time.monotonic() + 60
    while not (run / "metrics.jsonl").exists() or "loss_d" not in (run / "metrics.jsonl").read_text():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert not (run / "checkpoint.pt").exists()
    os.killpg(process.pid, signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert "rerun the same command to resume" in err
    saved = read_training_checkpoint(run / "checkpoint.pt")
    stopped = [r for r in metrics(run) if r.get("event") == "stopped"]
    assert len(stopped) == 1 and stopped[0]["step"] == saved["step"] > 0


def test_two_process_ddp_keeps_ranks_identical(blobs, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "latentedit", "train", "stylegan2", "--data", str(blobs), "-o", str(run),
               "--size", "16", "--channels", "4:16,8:16,16:8", "--style-dim", "16", "--n-mlp", "2",
               "--batch", "8", "--kimg", "0.04", "--snapshot-kimg", "0.024", "--log-kimg", "0.016",
               "--sample-count", "4", "--pl-weight", "1", "--workers", "0", "--device", "cpu", "--no-progress"]
    process = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert process.returncode == 0, process.stderr[-3000:]
    records = metrics(run)
    start = next(r for r in records if r.get("event") == "start")
    assert start["world_size"] == 2
    snapshots = [r for r in records if r.get("event") == "snapshot"]
    assert [r["step"] for r in snapshots] == [3, 5]
    for snapshot in snapshots:
        assert len(snapshot["fingerprints"]) == 2
        assert snapshot["fingerprints"][0] == snapshot["fingerprints"][1]
        assert snapshot["fingerprints"][0] != start["fingerprint"]  # the weights did train
    ticks = [r for r in records if "loss_d" in r]
    assert any("r1_penalty" in r for r in ticks) and any("pl_penalty" in r for r in ticks)
    checkpoint = read_training_checkpoint(run / "checkpoint.pt")
    assert len(checkpoint["rng"]["cpu"]) == 2 and checkpoint["nimg"] == 40


# ----------------------------------------------------------------------------------------------------
# CLI errors: one line, non-zero exit, no traceback

@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("empty", "no images"),
    ("size", "power of two"),
    ("channels", "lacks resolution"),
])
def test_cli_bad_input_gives_one_line_error(blobs, tmp_path, case, message):
    data = {"missing": tmp_path / "nope", "empty": tmp_path / "empty"}.get(case, blobs)
    (tmp_path / "empty").mkdir()
    args = ["train", "stylegan2", "--data", str(data), "-o", str(tmp_path / "run"), *TINY_ARGS,
            "--kimg", "0.004", "--workers", "0", "--device", "cpu", "--no-progress"]
    if case == "size":
        args += ["--size", "24"]
    if case == "channels":
        args += ["--channels", "4:16,16:8"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    output = result.output.strip()
    assert output.startswith("error:") and message in output and "Traceback" not in output
    assert len(output.splitlines()) == 1


def truncated_png(path: Path) -> None:
    """A PNG whose header reads but whose pixels stop half-way: it passes the data set's scan, and fails
    to decode in the DataLoader worker."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])


def test_cli_unreadable_images_in_a_worker_give_one_line_error(tmp_path):
    data = tmp_path / "corrupt"
    data.mkdir()
    for i in range(3):
        truncated_png(data / f"{i}.png")
    result = CliRunner().invoke(cli, ["train", "stylegan2", "--data", str(data), "-o", str(tmp_path / "run"),
                                      *TINY_ARGS, "--kimg", "0.004", "--workers", "1", "--device", "cpu",
                                      "--no-progress"])
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: 3 images in a row could not be read") and "Traceback" not in result.output


def test_cli_reports_skipped_images_in_one_line_and_trains_on_the_rest(blobs, tmp_path):
    data = tmp_path / "mixed"
    shutil.copytree(blobs, data)
    (data / "a.png").write_bytes(b"not an image")
    (data / "b.jpg").write_bytes(b"")
    Image.new("RGB", (6, 30), (1, 2, 3)).save(data / "c.png")  # a 16 px run needs a side of at least 8 px
    result = CliRunner().invoke(cli, ["train", "stylegan2", "--data", str(data), "-o", str(tmp_path / "run"),
                                      *TINY_ARGS, "--kimg", "0.004", "--workers", "0", "--device", "cpu",
                                      "--no-progress", "--sample-count", "4"])
    assert result.exit_code == 0, result.output
    expected = (f"latentedit: skipped 3 of 27 images under {data}: 2 unreadable (a.png, b.jpg), "
                "1 smaller than 8 px (c.png); training on the other 24")
    assert expected in result.output.splitlines()
    assert "Warning" not in result.output and "trained to 0.004 kimg" in result.output
    start = metrics(tmp_path / "run")[0]
    assert start["data_images"] == 24 and start["data_skipped"].startswith("skipped 3 of 27 images")


def test_cli_folder_with_nothing_usable_is_a_one_line_error(tmp_path):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "a.png").write_bytes(b"not an image")
    Image.new("RGB", (4, 4)).save(data / "b.png")
    result = CliRunner().invoke(cli, ["train", "stylegan2", "--data", str(data), "-o", str(tmp_path / "run"),
                                      *TINY_ARGS, "--kimg", "0.004", "--workers", "0", "--device", "cpu",
                                      "--no-progress"])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: none of the 2 image files under {data} can be trained on: "
                                     "1 unreadable (a.png), 1 smaller than 8 px (b.png)")


def test_cli_trains_and_reports(blobs, tmp_path):
    result = CliRunner().invoke(cli, ["train", "stylegan2", "--data", str(blobs), "-o", str(tmp_path / "run"),
                                      *TINY_ARGS, "--kimg", "0.008", "--workers", "0", "--device", "cpu",
                                      "--no-progress", "--sample-count", "4"])
    assert result.exit_code == 0, result.output
    assert "trained to 0.008 kimg" in result.output
    assert (tmp_path / "run" / "g_ema.safetensors").is_file()


def test_a_batch_lost_to_a_stop_signal_stops_training_instead_of_failing():
    """The signal that stops training also ends the DataLoader workers; a fetch that then fails is a stop."""
    def broken():
        raise RuntimeError("DataLoader worker (pid 123) exited unexpectedly")
        yield  # pragma: no cover

    stop = common.StopRequest()
    assert common.next_unless_stopped(iter([7]), stop) == 7
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        common.next_unless_stopped(broken(), stop)
    stop.signal_number = signal.SIGTERM
    assert common.next_unless_stopped(broken(), stop) is None


def test_train_speed_benchmark_times_the_trainers_own_steps(tmp_path):
    """benchmarks/train_speed.py drives the private trainer; this keeps it working when the trainer changes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_speed", REPO_ROOT / "benchmarks" / "train_speed.py")
    train_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_speed)
    rows = train_speed.main(["--device", "cpu", "--batches", "4", "--steps", "2", "--warmup", "1",
                             "--data-batches", "2", "--size", "16", "--workers", "0", "--json", str(tmp_path / "s.json")])
    (row,) = rows
    assert row["batch"] == 4 and row["compute_img_per_s"] > 0 and row["data_img_per_s"] > 0
    assert row["bound_img_per_s"] == min(row["compute_img_per_s"], row["data_img_per_s"])
    assert json.loads((tmp_path / "s.json").read_text())["rows"][0]["limited_by"] == row["limited_by"]
