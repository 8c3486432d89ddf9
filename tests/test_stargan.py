"""StarGAN baseline: architecture, official split and transform, training (resume, kill -9, DDP), transfer.

Networks in training tests are tiny (conv_dim 8, 1 residual block, 32 px); data is a 40-face toyfaces
export in the CelebA layout.
"""
from __future__ import annotations

import json
import os
import random
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

from latentedit.baselines import stargan
from latentedit.baselines.celeba_split import StarGANCelebA, load_cropped, official_order, read_celeba_split
from latentedit.baselines.stargan_train import (StarGANTrainConfig, read_training_checkpoint, resume_config,
                                                train_stargan)
from latentedit.cli.stargan_cmds import stargan_group
from latentedit.data.celeba import write_attr_list
from latentedit.errors import CheckpointError, InputError
from latentedit.train import common

ATTRS = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"]
TINY_ARGS = ["--image-size", "32", "--crop-size", "32", "--g-conv-dim", "8", "--d-conv-dim", "8",
             "--g-repeat-num", "1", "--d-repeat-num", "3", "--test-count", "8", "--sample-count", "4",
             "--workers", "0", "--device", "cpu", "--no-progress"]


def subprocess_env() -> dict:
    # One thread per process: the test machine is small and shared.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """40 toyfaces at 32 px in the CelebA layout (list_attr_celeba.txt + img_align_celeba/*.png)."""
    from latentedit.data.toyfaces_export import export_toyfaces

    root = tmp_path_factory.mktemp("toy")
    export_toyfaces(root, 40, size=32, seed=0, start=0, fmt="celeba", progress=False)
    return root


def tiny_config(data: Path, **overrides) -> StarGANTrainConfig:
    options = dict(data=str(data), attrs=list(ATTRS), image_size=32, crop_size=32, g_conv_dim=8, d_conv_dim=8,
                   g_repeat_num=1, d_repeat_num=3, batch=4, iters=10, test_count=8, log_every=5, sample_every=5,
                   snapshot_every=5, sample_count=4, workers=0, device="cpu")
    options.update(overrides)
    return StarGANTrainConfig(**options)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory) -> Path:
    """A finished 10-iteration tiny run."""
    run = tmp_path_factory.mktemp("trained") / "run"
    result = train_stargan(tiny_config(toy), run, progress=False)
    assert result.finished
    return run


# ----------------------------------------------------------------------------------------------------
# Architecture

def test_default_networks_have_the_official_parameter_counts():
    assert stargan.parameter_count(stargan.StarGANGenerator()) == 8_430_528
    assert stargan.parameter_count(stargan.StarGANDiscriminator()) == 44_762_048


def test_generator_layers_follow_the_official_design():
    generator = stargan.StarGANGenerator(stargan.StarGANGeneratorConfig(c_dim=3, conv_dim=4, repeat_num=2))
    convs = [m for m in generator.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert all(conv.bias is None for conv in convs)
    assert convs[0].in_channels == 3 + 3 and convs[0].kernel_size == (7, 7)
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(norms) == 1 + 2 + 2 * 2 + 2 and all(n.affine and n.track_running_stats for n in norms)
    images, labels = torch.rand(2, 3, 24, 20) * 2 - 1, torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    output = generator(images, labels)
    assert output.shape == (2, 3, 24, 20) and output.abs().max() < 1
    # The label is an input: another label changes the picture.
    assert not torch.allclose(generator(images, labels.flip(1)), output)
    with pytest.raises(InputError, match="multiples of 4"):
        generator(torch.zeros(1, 3, 18, 20), labels[:1])
    with pytest.raises(InputError, match="labels must be"):
        generator(images, labels[:, :2])


def test_discriminator_heads_and_sizes():
    config = stargan.StarGANDiscriminatorConfig(image_size=64, c_dim=4, conv_dim=8, repeat_num=5)
    discriminator = stargan.StarGANDiscriminator(config)
    realness, logits = discriminator(torch.zeros(3, 3, 64, 64))
    assert realness.shape == (3, 1, 2, 2) and logits.shape == (3, 4)
    assert discriminator.classify.kernel_size == (2, 2) and discriminator.classify.bias is None
    assert discriminator.realness.bias is None
    assert all(conv.bias is not None for conv in discriminator.trunk if isinstance(conv, torch.nn.Conv2d))
    with pytest.raises(InputError, match="multiple of 2\\^5"):
        stargan.StarGANDiscriminator(stargan.StarGANDiscriminatorConfig(image_size=48, repeat_num=5))


def test_normalisation_uses_instance_statistics_in_eval_mode_too():
    torch.manual_seed(0)
    generator = stargan.StarGANGenerator(stargan.StarGANGeneratorConfig(c_dim=2, conv_dim=4, repeat_num=1))
    images, labels = torch.randn(2, 3, 16, 16), torch.tensor([[1.0, 0], [0, 1]])
    training_output = generator(images, labels)
    norm = generator.stem.norm
    assert not torch.equal(norm.running_mean, torch.zeros(4))  # training mode tracks them
    generator.eval()
    running_before = norm.running_mean.clone()
    with torch.no_grad():
        assert torch.allclose(generator(images, labels), training_output, atol=1e-6)
    assert torch.equal(norm.running_mean, running_before)  # eval mode does not update them


# ----------------------------------------------------------------------------------------------------
# Labels

def test_single_attribute_targets_set_hair_exclusively_and_flip_others():
    labels = torch.tensor([[1.0, 0, 0, 1, 0], [0, 0, 0, 0, 1]])
    targets = stargan.single_attribute_targets(labels, ATTRS)
    assert len(targets) == 5
    assert targets[1].tolist() == [[0, 1, 0, 1, 0], [0, 1, 0, 0, 1]]  # Blond set, other colours cleared
    assert targets[0].tolist() == [[1, 0, 0, 1, 0], [1, 0, 0, 0, 1]]
    assert targets[3].tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 1, 1]]  # Male flipped
    assert targets[4].tolist() == [[1, 0, 0, 1, 1], [0, 0, 0, 0, 0]]  # Young flipped


def test_apply_changes():
    labels = torch.tensor([[1.0, 0, 0, 1, 1]])
    assert stargan.apply_changes(labels, ATTRS, {"Blond_Hair": 1, "Male": 0}).tolist() == [[0, 1, 0, 0, 1]]
    assert stargan.apply_changes(labels, ATTRS, {"Black_Hair": 0}).tolist() == [[0, 0, 0, 1, 1]]
    assert stargan.apply_changes(labels, ATTRS, {"Young": 1}).tolist() == [[1, 0, 0, 1, 1]]
    with pytest.raises(InputError, match="exclusive"):
        stargan.apply_changes(labels, ATTRS, {"Blond_Hair": 1, "Brown_Hair": 1})


@pytest.mark.parametrize("items, message", [
    (["Bald=1"], "unknown attribute 'Bald'"),
    (["Male=2"], "must be 0 or 1"),
    (["Male"], "NAME=0|1"),
    (["Male=1", "Male=0"], "both 0 and 1"),
])
def test_parse_assignments_errors(items, message):
    with pytest.raises(InputError, match=message):
        stargan.parse_assignments(items, ATTRS)


def test_parse_assignments_accepts_repeats_and_commas():
    assert stargan.parse_assignments(["Male=0,Young=1", "Blond_Hair=1"], ATTRS) == {
        "Male": 0, "Young": 1, "Blond_Hair": 1}


# ----------------------------------------------------------------------------------------------------
# Data: official split and transform

def test_official_order_is_random_seed_1234_shuffle_of_the_lines():
    lines = [f"{i:06d}.jpg" for i in range(57)]
    random.seed(1234)
    shuffled = list(lines)
    random.shuffle(shuffled)
    assert [lines[i] for i in official_order(57)] == shuffled


def test_official_split_keeps_the_first_2000_shuffled_lines_for_testing(tmp_path):
    count = 2010
    files = [f"{i:06d}.jpg" for i in range(1, count + 1)]
    values = np.where(np.random.default_rng(0).random((count, 3)) < 0.5, 1, -1)
    write_attr_list(tmp_path / "list_attr_celeba.txt", ["Male", "Young", "Smiling"], files, values)
    (tmp_path / "img_align_celeba").mkdir()
    for name in files:
        (tmp_path / "img_align_celeba" / name).touch()
    order = official_order(count)
    test = read_celeba_split(tmp_path, ["Young", "Male"], "test")
    train = read_celeba_split(tmp_path, ["Young", "Male"], "train")
    assert len(test.paths) == 2000 and len(train.paths) == 10
    assert [p.name for p in test.paths + train.paths] == [files[i] for i in order]
    assert np.array_equal(train.labels, (values[order[2000:]][:, [1, 0]] > 0).astype(np.float32))


def test_celeba_transform_matches_torchvision(tmp_path):
    transforms = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(3)
    (tmp_path / "img_align_celeba").mkdir()
    files = []
    for i in range(3):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(tmp_path / "img_align_celeba" / name)
        files.append(name)
    write_attr_list(tmp_path / "list_attr_celeba.txt", ["Male"], files, np.array([[1], [-1], [1]]))
    reference = transforms.Compose([transforms.CenterCrop(178), transforms.Resize(128), transforms.ToTensor(),
                                    transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    dataset = StarGANCelebA(tmp_path, ["Male"], "train", image_size=128, crop_size=178, test_count=1)
    for index in range(len(dataset)):
        image, label = dataset[index]
        path = dataset.split_data.paths[index]
        expected = reference(Image.open(path).convert("RGB"))
        assert image.shape == (3, 128, 128) and torch.allclose(image, expected, atol=1e-5)
        assert label.tolist() == [1.0 if files.index(path.name) != 1 else 0.0]
    # A crop of an odd margin: torchvision's rounding of the offsets.
    odd = transforms.Compose([transforms.CenterCrop(171), transforms.Resize(64), transforms.ToTensor()])
    path = tmp_path / "img_align_celeba" / files[0]
    assert torch.allclose(load_cropped(path, 171, 64), odd(Image.open(path).convert("RGB")) * 2 - 1, atol=1e-5)


def test_toyfaces_export_reads_with_labels(toy):
    dataset = StarGANCelebA(toy, ATTRS, "train", image_size=32, crop_size=32, test_count=8)
    assert len(dataset) == 32 and dataset.attribute_names == tuple(ATTRS)
    image, label = dataset[0]
    assert image.shape == (3, 32, 32) and image.min() >= -1 and image.max() <= 1
    assert label.shape == (5,) and set(label.tolist()) <= {0.0, 1.0}
    hair = dataset.labels[:, :3].sum(axis=1)
    assert (hair <= 1).all()  # toyfaces: exactly one colour of four; three are selected here


@pytest.mark.parametrize("case, message", [
    ("attribute", "Purple_Hair not in"),
    ("missing_image", "missing from"),
    ("no_list", "list_attr_celeba.txt not found"),
    ("crop", "smaller than the crop size 178"),
    ("empty_train", "leaves none to train on"),
])
def test_data_errors_are_clear(toy, tmp_path, case, message):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(toy, root)
    kwargs = dict(attrs=ATTRS, split="train", image_size=32, crop_size=32, test_count=8)
    if case == "attribute":
        kwargs["attrs"] = ["Male", "Purple_Hair"]
    elif case == "missing_image":
        for path in (root / "img_align_celeba").iterdir():
            path.unlink()
            break
        kwargs["test_count"] = 0
    elif case == "no_list":
        (root / "list_attr_celeba.txt").unlink()
    elif case == "crop":
        kwargs["crop_size"] = 178
    elif case == "empty_train":
        kwargs["test_count"] = 2000
    with pytest.raises(InputError, match=message):
        StarGANCelebA(root, **kwargs)


# ----------------------------------------------------------------------------------------------------
# Training

def test_learning_rate_decays_linearly_over_the_second_half():
    config = tiny_config(Path("unused"), iters=100)
    assert config.lr_factor(0) == config.lr_factor(50) == 1.0
    assert config.lr_factor(75) == pytest.approx(0.5) and config.lr_factor(99) == pytest.approx(0.02)
    assert tiny_config(Path("unused"), iters=100, decay_iters=0).lr_factor(99) == 1.0


@pytest.mark.parametrize("overrides, message", [
    ({"image_size": 30}, "multiple of 4"),
    ({"d_repeat_num": 6}, "multiple of 2\\^6"),
    ({"decay_iters": 11}, "--decay-iters"),
    ({"attrs": []}, "at least one attribute"),
    ({"n_critic": 0}, "--n-critic"),
])
def test_config_validation(overrides, message):
    with pytest.raises(InputError, match=message):
        tiny_config(Path("unused"), **overrides).validate()


def test_training_run_writes_checkpoint_generator_samples_and_metrics(toy, trained):
    checkpoint = read_training_checkpoint(trained / "checkpoint.pt")
    assert checkpoint["step"] == 10 and checkpoint["nimg"] == 40
    generator, info = stargan.load_stargan_generator(trained)
    assert info.attribute_names == tuple(ATTRS) and info.image_size == 32 and info.crop_size == 32
    assert info.metadata["iterations"] == "10"
    for name, value in generator.state_dict().items():
        assert torch.equal(value, checkpoint["g"][name]), name

    records = metrics(trained)
    ticks = [r for r in records if "d_loss" in r]
    assert [r["step"] for r in ticks] == [5, 10]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) and r["img_per_s"] > 0 for r in ticks)
    assert {"d_loss_gp", "d_loss_cls", "g_loss_rec", "g_loss_cls", "d_cls_acc"} <= set(ticks[0])
    assert "g_loss_id" not in ticks[0]  # the official recipe has no identity term
    # Linear decay over the second half: the last iteration (index 9) of 10 runs at 1/5 of the rate.
    assert ticks[1]["g_lr"] == pytest.approx(1e-4 * 0.2) and ticks[1]["d_lr"] == pytest.approx(1e-4 * 0.2)
    assert records[-1]["event"] == "done"

    samples = sorted(p.name for p in (trained / "samples").iterdir())
    assert samples == ["step0000000.png", "step0000005.png", "step0000010.png"]
    grid = np.asarray(Image.open(trained / "samples" / "step0000010.png"))
    # Official layout: 4 test images as rows; input + 5 translations as columns (2 px padding).
    assert grid.shape == (4 * 34 + 2, 6 * 34 + 2, 3)
    from latentedit.io import to_uint8

    test_set = StarGANCelebA(toy, ATTRS, "test", image_size=32, crop_size=32, test_count=8)
    for row in range(4):  # the first column holds the first test images, unflipped
        tile = grid[2 + row * 34:2 + row * 34 + 32, 2:34]
        assert np.array_equal(tile, to_uint8(test_set[row][0])[0])


def test_generator_updates_only_every_n_critic_iterations(toy, tmp_path):
    run = tmp_path / "run"
    train_stargan(tiny_config(toy, iters=4, n_critic=5, log_every=4), run, progress=False)
    untouched = read_training_checkpoint(run / "checkpoint.pt")
    tick = [r for r in metrics(run) if "d_loss" in r][0]
    assert "g_loss" not in tick  # no generator step in iterations 1-4
    torch.manual_seed(0)
    fresh = stargan.StarGANGenerator(tiny_config(toy).generator_config())
    for name, param in fresh.named_parameters():
        assert torch.equal(param, untouched["g"][name]), name
    assert untouched["g_optim"]["state"] == {}


def test_identity_term_is_logged_and_added_to_the_generator_loss(toy, tmp_path):
    run = tmp_path / "run"
    train_stargan(tiny_config(toy, iters=5, log_every=5, lambda_id=2.5), run, progress=False)
    tick = [r for r in metrics(run) if "g_loss" in r][0]  # one generator step, at iteration 5
    expected = tick["g_loss_fake"] + 10.0 * tick["g_loss_rec"] + 1.0 * tick["g_loss_cls"] + 2.5 * tick["g_loss_id"]
    assert tick["g_loss_id"] > 0 and tick["g_loss"] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    with pytest.raises(InputError, match="--lambda-id"):
        tiny_config(toy, lambda_id=-1.0).validate()


def test_runs_saved_before_the_identity_option_resume_without_it_unless_asked(toy, trained):
    saved = dict(read_training_checkpoint(trained / "checkpoint.pt")["args"])
    saved.pop("lambda_id")
    assert resume_config(saved, tiny_config(toy, lambda_id=5.0), explicit=set()).lambda_id == 0.0
    assert resume_config(saved, tiny_config(toy, lambda_id=5.0), explicit={"lambda_id"}).lambda_id == 5.0


def test_resumed_run_matches_an_uninterrupted_one(toy, tmp_path):
    straight = train_stargan(tiny_config(toy, iters=12, decay_iters=6), tmp_path / "straight", progress=False)
    first = train_stargan(tiny_config(toy, iters=12, decay_iters=6), tmp_path / "split", progress=False,
                          session_iters=7)
    assert first.step == 7 and not first.finished
    assert [r["event"] for r in metrics(tmp_path / "split") if "event" in r][-1] == "paused"
    # Same folder: resumes automatically.
    second = train_stargan(tiny_config(toy, iters=12, decay_iters=6), tmp_path / "split", progress=False)
    assert second.resumed_step == 7 and second.step == straight.step == 12
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    for key in ("g", "d"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"


def test_resume_refuses_other_architecture_and_merges_options(toy, trained):
    with pytest.raises(InputError, match="g_conv_dim"):
        train_stargan(tiny_config(toy, g_conv_dim=16), trained, progress=False)
    saved = read_training_checkpoint(trained / "checkpoint.pt")["args"]
    merged = resume_config(saved, tiny_config(toy, iters=50, g_lr=0.5), explicit={"iters"})
    assert merged.iters == 50 and merged.g_lr == 1e-4
    with pytest.raises(InputError, match="image_size"):
        resume_config(saved, tiny_config(toy, image_size=64), explicit={"image_size"})


def start_training(data: Path, run: Path, iters: int, extra=()) -> subprocess.Popen:
    command = [sys.executable, "-m", "latentedit", "stargan", "train", "--data", str(data), "-o", str(run),
               *TINY_ARGS, "--batch", "4", "--iters", str(iters), "--snapshot-every", "3", "--sample-every", "1000",
               "--log-every", "3", *extra]
    return subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_then_resume_continues_from_the_checkpoint(toy, tmp_path):
    run = tmp_path / "run"
    process = start_training(toy, run, iters=100000)
    deadline = time.monotonic() + 90
    while not (run / "checkpoint.pt").exists():
        if process.poll() is not None:
            raise AssertionError(f"training exited early: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.05)
    process.kill()  # SIGKILL: no handler runs
    process.communicate()
    saved = read_training_checkpoint(run / "checkpoint.pt")
    saved_step = saved["step"]
    assert saved_step > 0 and saved_step % 3 == 0
    fingerprint = common.state_dict_fingerprint(saved["g"], saved["d"])

    resumed = start_training(toy, run, iters=saved_step + 4)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"trained to iteration {saved_step + 4}" in out
    records = metrics(run)
    resume_events = [r for r in records if r.get("event") == "resume"]
    assert len(resume_events) == 1
    assert resume_events[0]["step"] == saved_step and resume_events[0]["fingerprint"] == fingerprint
    steps = [r["step"] for r in records if "d_loss" in r]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # lines after the checkpoint were dropped
    assert read_training_checkpoint(run / "checkpoint.pt")["step"] == saved_step + 4
    assert records[-1]["event"] == "done"


def test_sigterm_writes_a_checkpoint_and_exits(toy, tmp_path):
    run = tmp_path / "run"
    process = start_training(toy, run, iters=100000, extra=["--snapshot-every", "100000"])
    deadline = time.monotonic() + 90
    while not (run / "metrics.jsonl").exists() or "d_loss" not in (run / "metrics.jsonl").read_text():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert not (run / "checkpoint.pt").exists()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert "rerun the same command to resume" in err
    saved = read_training_checkpoint(run / "checkpoint.pt")
    stopped = [r for r in metrics(run) if r.get("event") == "stopped"]
    assert len(stopped) == 1 and stopped[0]["step"] == saved["step"] > 0
    assert stargan.load_stargan_generator(run)[1].metadata["iterations"] == str(saved["step"])


def test_two_process_ddp_keeps_ranks_identical(toy, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "latentedit", "stargan", "train", "--data", str(toy), "-o", str(run), *TINY_ARGS,
               "--batch", "8", "--iters", "6", "--n-critic", "2", "--snapshot-every", "3", "--log-every", "3"]
    process = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert process.returncode == 0, process.stderr[-3000:]
    records = metrics(run)
    start = next(r for r in records if r.get("event") == "start")
    assert start["world_size"] == 2
    snapshots = [r for r in records if r.get("event") == "snapshot"]
    assert [r["step"] for r in snapshots] == [3, 6]
    for snapshot in snapshots:
        assert len(snapshot["fingerprints"]) == 2 and snapshot["fingerprints"][0] == snapshot["fingerprints"][1]
        assert snapshot["fingerprints"][0] != start["fingerprint"]  # the weights did train
    ticks = [r for r in records if "d_loss" in r]
    assert all("g_loss" in r for r in ticks)
    checkpoint = read_training_checkpoint(run / "checkpoint.pt")
    assert len(checkpoint["rng"]["cpu"]) == 2 and checkpoint["nimg"] == 48


# ----------------------------------------------------------------------------------------------------
# Transfer and grid

def test_transfer_writes_translations_with_exclusive_hair(toy, trained, tmp_path):
    inputs = [toy / "img_align_celeba" / "000001.png", toy / "img_align_celeba" / "000002.png"]
    out = tmp_path / "out"
    result = CliRunner().invoke(stargan_group, [
        "transfer", *map(str, inputs), "--set", "Blond_Hair=1", "--set", "Male=0", "--ckpt", str(trained),
        "--source-attrs", "Black_Hair=1,Blond_Hair=0,Brown_Hair=0,Male=1,Young=1", "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "transfer.json").read_text())
    assert [e["output"] for e in manifest["images"]] == [str(out / "000001.png"), str(out / "000002.png")]
    assert manifest["images"][0]["target"] == {"Black_Hair": 0, "Blond_Hair": 1, "Brown_Hair": 0, "Male": 0,
                                               "Young": 1}
    generator, info = stargan.load_stargan_generator(trained)
    from latentedit.image_files import load_image_tensor
    from latentedit.io import to_uint8

    image = load_image_tensor(inputs[0], 32)[0][None]
    with torch.no_grad():
        expected = to_uint8(generator(image, torch.tensor([[0.0, 1, 0, 0, 1]])))[0]
    assert np.array_equal(np.asarray(Image.open(out / "000001.png")), expected)


def test_transfer_uses_the_classifier_for_unset_source_attributes(toy, trained, tmp_path):
    from latentedit.baselines.stargan_transfer import transfer_files

    labels = {}
    lines = (toy / "list_attr_celeba.txt").read_text().splitlines()
    names = lines[1].split()
    for line in lines[2:4]:
        parts = line.split()
        labels[parts[0]] = {n: int(v > "0") for n, v in zip(names, parts[1:]) if n in ATTRS}
    inputs = [toy / "img_align_celeba" / name for name in labels]
    manifest = transfer_files(inputs, ["Young=0"], tmp_path / "out", ckpt=trained, source_attrs=["Male=1"],
                              device="cpu")
    assert manifest["source_provenance"]["Male"] == "given"
    assert manifest["source_provenance"]["Young"] == "classifier"
    for entry, truth in zip(manifest["images"], labels.values()):
        # The shipped classifier reads toyfaces hair colour and age correctly.
        assert {k: v for k, v in entry["source"].items() if k != "Male"} == {k: v for k, v in truth.items()
                                                                             if k != "Male"}
        assert entry["target"]["Young"] == 0 and entry["target"]["Male"] == 1


def test_source_labels_keep_at_most_one_hair_colour(monkeypatch):
    import latentedit.evaluate.classifier as classifier_module
    from latentedit.baselines.stargan_transfer import source_labels

    class FakeClassifier:
        attribute_names = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")

    probabilities = torch.tensor([[0.9, 0.1, 0.7, 0.6, 0.2], [0.2, 0.3, 0.4, 0.1, 0.9]])
    monkeypatch.setattr(classifier_module, "load_classifier", lambda path=None: FakeClassifier())
    monkeypatch.setattr(classifier_module, "predict_attributes", lambda classifier, images: probabilities)
    images = torch.zeros(2, 3, 32, 32)
    predicted = source_labels(images, ATTRS)
    assert predicted.labels.tolist() == [[1, 0, 0, 1, 0], [0, 0, 0, 0, 1]]  # Brown (0.7) dropped for Black (0.9)
    given = source_labels(images, ATTRS, {"Blond_Hair": 1})
    assert given.labels.tolist() == [[0, 1, 0, 1, 0], [0, 1, 0, 0, 1]]
    assert given.provenance == {"Blond_Hair": "given", "Black_Hair": "classifier", "Brown_Hair": "classifier",
                                "Male": "classifier", "Young": "classifier"}
    with pytest.raises(InputError, match="does not predict Smiling"):
        source_labels(images, ["Male", "Smiling"])


def test_grid_has_one_column_per_attribute(toy, trained, tmp_path):
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(stargan_group, [
        "grid", str(toy / "img_align_celeba" / "000003.png"), "--ckpt", str(trained / "generator.safetensors"),
        "--source-attrs", "Black_Hair=0,Blond_Hair=1,Brown_Hair=0,Male=0,Young=1", "-o", str(out),
        "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "input | Black_Hair | Blond_Hair | Brown_Hair | Male | Young" in result.output
    assert np.asarray(Image.open(out)).shape == (34 + 2, 6 * 34 + 2, 3)


@pytest.mark.parametrize("args, message", [
    (["--set", "Bald=1"], "unknown attribute 'Bald'"),
    (["--set", "Male=yes"], "must be 0 or 1"),
    (["--set", "Blond_Hair=1", "--set", "Brown_Hair=1"], "exclusive"),
    (["--set", "Male=1", "--ckpt", "stargan_toyfaces64"], None),
    (["--set", "Male=1", "--ckpt", "nowhere.safetensors"], "not found"),
])
def test_transfer_errors_are_one_line(toy, trained, tmp_path, monkeypatch, args, message):
    from latentedit.cli.main import cli

    if message is None:  # the shipped name, pointed at an empty package folder: "not installed"
        monkeypatch.setattr(stargan, "shipped_stargan_path", lambda name="": tmp_path / "absent.safetensors")
        message = "is not installed"
    if "--ckpt" not in args:
        args = [*args, "--ckpt", str(trained)]
    result = CliRunner().invoke(cli, ["stargan", "transfer", str(toy / "img_align_celeba" / "000001.png"), *args,
                                      "--source-attrs", "Black_Hair=1,Blond_Hair=0,Brown_Hair=0,Male=1,Young=1",
                                      "-o", str(tmp_path / "x.png"), "--device", "cpu"])
    assert result.exit_code == 2
    output = result.output.strip()
    assert output.startswith("error:") and message in output and "Traceback" not in output
    assert len(output.splitlines()) == 1


def test_not_a_stargan_file_is_a_checkpoint_error(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "something-else"})
    with pytest.raises(CheckpointError, match="not a latentedit StarGAN generator"):
        stargan.load_stargan_generator(path)


@pytest.mark.parametrize("case, message", [
    ("attrs", "Purple_Hair not in"),
    ("crop", "--crop-size 32"),
    ("missing", "not found"),
    ("lambda_id", "--lambda-id must be >= 0"),
])
def test_train_cli_errors_are_one_line(toy, tmp_path, case, message):
    from latentedit.cli.main import cli

    args = ["stargan", "train", "--data", str(toy), "-o", str(tmp_path / "run"), *TINY_ARGS, "--iters", "2"]
    if case == "attrs":
        args += ["--attrs", "Male,Purple_Hair"]
    elif case == "crop":
        args += ["--crop-size", "178"]
    elif case == "missing":
        args[args.index(str(toy))] = str(tmp_path / "nope")
    elif case == "lambda_id":
        args += ["--lambda-id", "-1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    output = result.output.strip()
    assert output.startswith("error:") and message in output and "Traceback" not in output
    assert len(output.splitlines()) == 1


# ----------------------------------------------------------------------------------------------------
# Evaluation on the same footing as latent edits

class _LookupTranslator(torch.nn.Module):
    """A stand-in StarGAN that returns a fixed image per source: its truth (an oracle) or the source itself."""

    def __init__(self, sources, outputs):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.sources, self.outputs = sources, outputs

    def forward(self, images, labels):
        rows = [int((self.sources.images - image).abs().flatten(1).sum(1).argmin()) for image in images]
        return self.outputs[rows]


@pytest.fixture(scope="module")
def blond_sources():
    from latentedit.evaluate.classifier import load_classifier
    from latentedit.evaluate.translators import heldout_sources

    classifier = load_classifier()
    return classifier, heldout_sources(classifier, "Blond_Hair", 6, 64)


def test_heldout_sources_lack_the_attribute_and_come_with_their_counterfactuals(blond_sources):
    from latentedit.data import toyfaces

    classifier, sources = blond_sources
    assert len(sources.ids) == 6 and sources.images.shape == sources.truths.shape == (6, 3, 64, 64)
    column = list(classifier.attribute_names).index("Blond_Hair")
    assert (sources.probs[:, column] < 0.5).all()
    for row, index in enumerate(sources.ids):
        params = toyfaces.sample_params(toyfaces.HELDOUT_SEED, index)
        assert params.attributes["Blond_Hair"] == 0
        truth = toyfaces.render(params.with_attributes(Blond_Hair=1), 64)
        assert np.array_equal(((sources.truths[row].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy(), truth)


def test_an_oracle_translator_scores_perfectly_and_the_identity_scores_nothing(blond_sources):
    from latentedit.evaluate.translators import evaluate_stargan

    classifier, sources = blond_sources
    oracle, _ = evaluate_stargan(_LookupTranslator(sources, sources.truths), ATTRS, classifier, sources, "Blond_Hair")
    assert oracle["success_rate"] == 1.0
    assert oracle["psnr_to_truth_db"] == pytest.approx(100.0)
    assert oracle["pixel_change"] > 0.01
    assert oracle["side_effect_mean"] < 0.05  # the counterfactual changes only the hair colour
    assert "Black_Hair" not in oracle["flips"] and "Male" in oracle["flips"]
    assert oracle["target_label_changes"] == 6
    # the same per-group view as latent edits: the oracle succeeds in every group the sources fall into
    assert sum(g["n"] for g in oracle["by_group"].values()) == 6
    assert all(g["success_rate"] == 1.0 for g in oracle["by_group"].values())
    identity, outputs = evaluate_stargan(_LookupTranslator(sources, sources.images), ATTRS, classifier, sources,
                                         "Blond_Hair")
    assert identity["success_rate"] == 0.0 and identity["side_effect_mean"] == 0.0 and identity["pixel_change"] == 0
    assert torch.equal(outputs, sources.images)
    # Reconstruction G(x, c_src): the identity redraws nothing; the oracle "redraws" each face as its truth.
    assert identity["reconstruction"]["side_effect_mean"] == 0.0
    assert identity["reconstruction"]["psnr_to_source_db"] == pytest.approx(100.0)
    assert oracle["reconstruction"]["flips"] == oracle["flips"]
    assert oracle["reconstruction"]["psnr_to_source_db"] < 40
    with pytest.raises(InputError, match="cannot set Eyeglasses"):
        evaluate_stargan(_LookupTranslator(sources, sources.images), ATTRS, classifier, sources, "Eyeglasses")


def test_evaluate_stargan_command_writes_the_report(trained, tmp_path):
    from latentedit.cli.main import cli

    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["evaluate", "stargan", "--ckpt", str(trained), "--attr", "Blond_Hair,Male",
                                      "--n", "3", "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "stargan_eval.json").read_text())
    assert list(report["attributes"]) == ["Blond_Hair", "Male"]
    assert report["attributes"]["Male"]["sources"]["count"] == 3
    assert "| Blond_Hair | 3 |" in (out / "stargan_eval.md").read_text()
    assert Image.open(out / "Male_samples.png").size[0] > 3 * 32
    bad = CliRunner().invoke(cli, ["evaluate", "stargan", "--ckpt", str(trained), "--attr", "Eyeglasses",
                                   "-o", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "cannot set Eyeglasses" in bad.output and "Traceback" not in bad.output


# ----------------------------------------------------------------------------------------------------
# The shipped model

def test_shipped_stargan_resolves_by_name_and_matches_its_model_card():
    import re

    from latentedit.io import sha256_file

    generator, info = stargan.load_stargan_generator("stargan_toyfaces64")
    assert info.attribute_names == tuple(ATTRS)
    assert info.image_size == 64 and info.path == stargan.shipped_stargan_path()
    assert info.path.stat().st_size <= 10 * 2**20
    card = info.path.with_suffix(".md").read_text()
    assert re.search(r"sha256 `([0-9a-f]{64})`", card).group(1) == sha256_file(info.path)


def test_shipped_stargan_recolours_held_out_faces():
    """The property the README table rests on: most held-out faces lacking blond hair come out blond."""
    from latentedit.evaluate.classifier import load_attribute_classifier
    from latentedit.evaluate.translators import evaluate_stargan, heldout_sources

    generator, info = stargan.load_stargan_generator("stargan_toyfaces64")
    classifier, _ = load_attribute_classifier()
    sources = heldout_sources(classifier, "Blond_Hair", 16, info.image_size)
    record, outputs = evaluate_stargan(generator, info.attribute_names, classifier, sources, "Blond_Hair")
    assert outputs.shape == (16, 3, 64, 64)
    assert record["success_rate"] >= 0.75
    assert record["flips"]["Male"] <= 0.25
