"""CycleGAN baseline (issue #22): the reference networks and their parameter counts, losses, the image pool,
recipes, unpaired data, training (resume, kill -9, DDP), transfer and evaluation on the StarGAN footing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from latentedit.baselines import cyclegan
from latentedit.baselines.cyclegan_train import CycleGANTrainConfig, read_training_checkpoint, resume_config, \
    train_cyclegan
from latentedit.baselines.two_domain_data import open_unpaired, parse_toyfaces_domains
from latentedit.errors import CheckpointError, InputError
from latentedit.train import common

TOY = "toyfaces:Black_Hair:Blond_Hair:160"
TINY_ARGS = ["--image-size", "32", "--load-size", "36", "--netG", "resnet_1blocks", "--ngf", "8", "--ndf", "8",
             "--netD", "n_layers", "--n-layers-d", "2", "--sample-count", "2", "--device", "cpu", "--no-progress"]


def subprocess_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def tiny_config(**overrides) -> CycleGANTrainConfig:
    options = dict(data=TOY, image_size=32, load_size=36, netG="resnet_1blocks", ngf=8, ndf=8, netD="n_layers",
                   n_layers_d=2, batch=2, iters=8, log_every=4, sample_every=4, snapshot_every=4, sample_count=2,
                   pool_size=3, device="cpu")
    options.update(overrides)
    return CycleGANTrainConfig(**options)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cyclegan") / "run"
    torch.set_num_threads(1)
    result = train_cyclegan(tiny_config(), run, progress=False)
    assert result.finished
    return run


# ----------------------------------------------------------------------------------------------------
# Networks

@pytest.mark.parametrize("name,norm,channels,expected", [
    ("resnet_9blocks", "instance", 3, 11_378_179),
    ("resnet_6blocks", "instance", 3, 7_837_699),
    ("unet_256", "batch", 3, 54_413_955),
    ("unet_256", "instance", 3, 54_409_603),
    ("unet_128", "batch", 3, 41_828_995),
])
def test_generators_have_the_official_parameter_counts(name, norm, channels, expected):
    config = cyclegan.generator_config(name, ngf=64, norm=norm, in_channels=channels)
    assert cyclegan.parameter_count(cyclegan.build_generator(config)) == expected


@pytest.mark.parametrize("arch,norm,channels,expected", [
    ("basic", "instance", 3, 2_764_737),
    ("basic", "batch", 6, 2_768_705),
    ("pixel", "instance", 3, 8_705),
])
def test_discriminators_have_the_official_parameter_counts(arch, norm, channels, expected):
    config = cyclegan.DiscriminatorConfig(arch=arch, norm=norm, in_channels=channels)
    assert cyclegan.parameter_count(cyclegan.build_discriminator(config)) == expected


@pytest.mark.parametrize("size,side", [(256, 30), (128, 14), (64, 6)])
def test_basic_patchgan_score_map_sizes(size, side):
    torch.manual_seed(0)
    d = cyclegan.NLayerDiscriminator(3, ndf=4, n_layers=3, norm="instance")
    assert d(torch.randn(1, 3, size, size)).shape == (1, 1, side, side)


def test_receptive_fields_and_seed_003_discriminators():
    assert [cyclegan.patch_receptive_field(n) for n in (1, 2, 3, 4)] == [16, 34, 70, 142]
    gl = cyclegan.build_discriminator(cyclegan.DiscriminatorConfig(arch="global_local", ndf=8, n_layers=1,
                                                                   image_size=64))
    local, whole = gl(torch.randn(2, 3, 64, 64))
    assert local.shape == (2, 1, 30, 30) and whole.shape == (2, 1)
    # The global score depends on every pixel; a local score on its patch only (without instance norm, whose
    # statistics are the whole image's).
    gl = cyclegan.build_discriminator(cyclegan.DiscriminatorConfig(arch="global_local", ndf=8, n_layers=1,
                                                                   image_size=64, norm="none"))
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    local, whole = gl(x)
    (grad_global,) = torch.autograd.grad(whole.sum(), x)
    (grad_local,) = torch.autograd.grad(gl(x)[0][0, 0, 0, 0], x)
    assert (grad_global[0].abs().sum(0) > 0).all()
    assert (grad_local[0].abs().sum(0) > 0).sum() <= 16 * 16
    multi = cyclegan.build_discriminator(cyclegan.DiscriminatorConfig(arch="multiscale", ndf=8, num_scales=2))
    assert [o.shape[-1] for o in multi(torch.randn(1, 3, 64, 64))] == [6, 2]
    with pytest.raises(InputError, match="power-of-two"):
        cyclegan.DiscriminatorConfig(arch="global_local", image_size=48).validate()


def test_generator_layouts_follow_the_reference():
    resnet = cyclegan.build_generator(cyclegan.generator_config("resnet_9blocks", ngf=8))
    layers = list(resnet.model)
    assert isinstance(layers[0], torch.nn.ReflectionPad2d) and layers[1].kernel_size == (7, 7)
    assert sum(isinstance(layer, cyclegan.ResidualBlock) for layer in layers) == 9
    transposed = [layer for layer in layers if isinstance(layer, torch.nn.ConvTranspose2d)]
    assert [t.output_padding for t in transposed] == [(1, 1), (1, 1)] and isinstance(layers[-1], torch.nn.Tanh)
    assert not any(isinstance(m, torch.nn.Dropout) for m in resnet.modules())
    norms = [m for m in resnet.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and all(not n.affine and not n.track_running_stats for n in norms)
    unet = cyclegan.build_generator(cyclegan.generator_config("unet_256", ngf=4, norm="batch", dropout=True))
    assert sum(isinstance(m, torch.nn.Dropout) for m in unet.modules()) == 3  # num_downs - 5
    assert unet(torch.randn(2, 3, 256, 256)).shape == (2, 3, 256, 256)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in unet.modules()) == 8
    any_depth = cyclegan.build_generator(cyclegan.generator_config("unet", 32, ngf=4))
    assert any_depth.config.downs == 5 and any_depth(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    with pytest.raises(InputError, match="multiples of 256"):
        cyclegan.generator_config("unet_256", 64)
    with pytest.raises(InputError, match="unknown generator"):
        cyclegan.generator_config("vgg")


def test_initialisation_is_normal_0_002():
    torch.manual_seed(0)
    g = cyclegan.build_generator(cyclegan.generator_config("unet_128", ngf=16, norm="batch"))
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(weights.std().item() - 0.02) < 0.001 and abs(weights.mean().item()) < 0.001
    scales = torch.cat([m.weight for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert abs(scales.mean().item() - 1) < 0.01
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)
               and m.bias is not None)


# ----------------------------------------------------------------------------------------------------
# Losses and the pool

def test_gan_losses():
    scores = torch.tensor([[0.5, 2.0]])
    assert cyclegan.gan_loss(scores, True, "lsgan").item() == pytest.approx((0.25 + 1.0) / 2)
    assert cyclegan.gan_loss(scores, False, "lsgan").item() == pytest.approx((0.25 + 4.0) / 2)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(scores, torch.ones_like(scores))
    assert cyclegan.gan_loss(scores, True, "vanilla").item() == pytest.approx(expected.item())
    pair = [scores, torch.zeros(1, 1)]
    assert cyclegan.gan_loss(pair, True).item() == pytest.approx((0.25 + 1.0) / 2 + 1.0)


def test_image_pool_fills_then_swaps_half_the_time():
    torch.manual_seed(0)
    pool = cyclegan.ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool.images) == 4
    returned_old = 0
    for step in range(200):
        new = torch.full((1, 1, 1, 1), 100.0 + step)
        out = pool.query(new)
        returned_old += int(out.item() != new.item())
    assert 70 < returned_old < 130
    state = pool.state()
    copy = cyclegan.ImagePool(4)
    copy.load_state(state)
    assert torch.equal(copy.state(), state)
    assert torch.equal(cyclegan.ImagePool(0).query(first), first)


# ----------------------------------------------------------------------------------------------------
# Recipes and options

def test_recipes_set_the_seed_variants_and_explicit_options_win():
    official = CycleGANTrainConfig.from_recipe("official")
    assert (official.netG, official.netD, official.gan_mode, official.lambda_a, official.lambda_identity,
            official.pool_size, official.lr, official.batch, official.norm) == \
        ("resnet_9blocks", "basic", "lsgan", 10.0, 0.5, 50, 2e-4, 1, "instance")
    assert official.decay_iters is None and common is not None
    tf = CycleGANTrainConfig.from_recipe("tf-tutorial", image_size=256)
    assert (tf.netG, tf.norm, tf.gan_mode, tf.pool_size, tf.decay_iters, tf.lambda_a) == \
        ("unet", "instance", "vanilla", 0, 0, 10.0)
    assert tf.generator_config().name == "unet_256"
    dog = CycleGANTrainConfig.from_recipe("dog2cat", lambda_a=10.0)
    assert dog.netD == "global_local" and dog.lambda_b == 1.0 and dog.lambda_a == 10.0
    with pytest.raises(InputError, match="--recipe"):
        CycleGANTrainConfig.from_recipe("horse")


@pytest.mark.parametrize("overrides,message", [
    ({"image_size": 30}, "multiples of 4"), ({"lambda_a": -1}, "--lambda-a"), ({"gan_mode": "wgan"}, "--gan-mode"),
    ({"netD": "basic", "n_layers_d": 2}, "basic discriminator has 3 layers"), ({"load_size": 16}, "--load-size"),
    ({"amp": "fp8"}, "--amp"), ({"batch": 3, "iters": 0}, "--iters"),
])
def test_config_validation(overrides, message):
    with pytest.raises(InputError, match=message):
        tiny_config(**overrides).validate()


# ----------------------------------------------------------------------------------------------------
# Data

def _write_images(folder: Path, count: int, size: int = 40, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{k:03d}.png")


def test_toyfaces_domains_hold_the_named_attributes():
    from latentedit.data import toyfaces

    data = open_unpaired("toyfaces:Black_Hair:Blond_Hair:200", None, None, 32, sample_count=3)
    assert data.domains == {"a": "Black_Hair", "b": "Blond_Hair"}
    train_a, train_b = data.train
    assert len(train_a) > 20 and len(train_b) > 10 and train_a[0].shape == (3, 32, 32)
    assert all(toyfaces.sample_params(0, i).attributes["Black_Hair"] for i in train_a.indices)
    assert all(toyfaces.sample_params(1, i).attributes["Blond_Hair"] for i in data.test[1].indices)
    assert len(data.test[0]) == 3 and any("differ in size" in note for note in data.notes)
    assert parse_toyfaces_domains("toyfaces:Eyeglasses=0:Eyeglasses=1").a == {"Eyeglasses": 0}


@pytest.mark.parametrize("spec,message", [
    ("toyfaces:Black_Hair", "toyfaces:A:B"), ("toyfaces:Purple:Blond_Hair", "unknown toyfaces attribute"),
    ("toyfaces:Male:Male", "the same"), ("toyfaces:Male=2:Blond_Hair", "0 or 1"),
])
def test_toyfaces_domain_errors(spec, message):
    with pytest.raises(InputError, match=message):
        parse_toyfaces_domains(spec)


def test_reference_layout_folders_and_their_errors(tmp_path):
    root = tmp_path / "h2z"
    _write_images(root / "trainA", 5)
    _write_images(root / "trainB", 3)
    (root / "trainB" / "broken.png").write_bytes(b"not an image")
    _write_images(root / "testA", 2)
    _write_images(root / "testB", 2)
    data = open_unpaired(str(root), None, None, 32)
    assert [len(d) for d in data.train] == [5, 3] and data.test is not None
    assert any("1 unreadable (broken.png)" in note for note in data.notes)
    assert any("differ in size (A 5, B 3" in note for note in data.notes)
    (tmp_path / "empty" / "trainA").mkdir(parents=True)
    (tmp_path / "empty" / "trainB").mkdir()
    with pytest.raises(InputError, match="no images"):
        open_unpaired(str(tmp_path / "empty"), None, None, 32)
    _write_images(tmp_path / "nob" / "trainA", 2)
    with pytest.raises(InputError, match="missing trainB"):
        open_unpaired(str(tmp_path / "nob"), None, None, 32)
    with pytest.raises(InputError, match="not both"):
        open_unpaired(str(root), str(root / "trainA"), None, 32)


@pytest.mark.parametrize("case,message", [
    ("missing_b", "missing trainB"), ("empty", "no images"), ("no_data", "is required for a new run"),
])
def test_train_cli_data_errors_are_one_line_and_write_nothing(tmp_path, case, message):
    from latentedit.cli.main import cli

    root = tmp_path / "data"
    _write_images(root / "trainA", 2)
    if case == "empty":
        (root / "trainB").mkdir()
    args = [] if case == "no_data" else ["--data", str(root)]
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["cyclegan", "train", *args, "-o", str(run), *TINY_ARGS])
    output = result.output.strip()
    assert result.exit_code == 2 and output.startswith("error:") and message in output, output
    assert len(output.splitlines()) == 1 and not run.exists()


# ----------------------------------------------------------------------------------------------------
# Training

def test_training_run_writes_checkpoint_translator_samples_and_metrics(trained):
    records = metrics(trained)
    assert records[0]["event"] == "start" and records[-1]["event"] == "done"
    ticks = [r for r in records if "loss_g" in r]
    assert [r["step"] for r in ticks] == [4, 8]
    for name in ("loss_g_ab", "loss_cycle_a", "loss_idt_b", "loss_d_a", "loss_d_b"):
        assert all(np.isfinite(r[name]) for r in ticks), name
    assert sorted(p.name for p in (trained / "samples").iterdir()) == ["step0000000.png", "step0000004.png",
                                                                        "step0000008.png"]
    grid = Image.open(trained / "samples" / "step0000008.png")
    assert grid.size[0] > 3 * 32 and grid.size[1] > 4 * 32  # 3 columns, 2 rows per domain
    checkpoint = read_training_checkpoint(trained / "checkpoint.pt")
    assert checkpoint["step"] == 8 and set(checkpoint["nets"]) == {"g_ab", "g_ba", "d_a", "d_b"}
    assert checkpoint["pools"]["a"][0].shape == (3, 3, 32, 32)  # pool size 3, full
    translator = cyclegan.load_translator(trained, "cyclegan")
    assert set(translator.generators) == {"a2b", "b2a"} and translator.image_size == 32
    assert translator.metadata["iterations"] == "8" and translator.domains["b"] == "Blond_Hair"
    for name in ("g_ab", "g_ba"):
        direction = "a2b" if name == "g_ab" else "b2a"
        live = translator.generators[direction].state_dict()
        assert all(torch.equal(live[k], checkpoint["nets"][name][k]) for k in live)


def test_identity_term_and_lambdas_enter_the_generator_loss(tmp_path):
    torch.set_num_threads(1)
    train_cyclegan(tiny_config(iters=4, lambda_identity=0.0, pool_size=0), tmp_path / "run", progress=False)
    tick = [r for r in metrics(tmp_path / "run") if "loss_g" in r][-1]
    assert tick["loss_idt_a"] == 0.0 and tick["loss_idt_b"] == 0.0
    expected = tick["loss_g_ab"] + tick["loss_g_ba"] + 10 * (tick["loss_cycle_a"] + tick["loss_cycle_b"])
    assert tick["loss_g"] == pytest.approx(expected, rel=1e-5)


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    torch.set_num_threads(1)
    straight = train_cyclegan(tiny_config(iters=10), tmp_path / "straight", progress=False)
    first = train_cyclegan(tiny_config(iters=10), tmp_path / "split", progress=False, session_iters=6)
    assert first.step == 6 and not first.finished
    second = train_cyclegan(tiny_config(iters=10), tmp_path / "split", progress=False)
    assert second.resumed_step == 6 and second.step == straight.step == 10
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    for net in a["nets"]:
        for name in a["nets"][net]:
            assert torch.equal(a["nets"][net][name], b["nets"][net][name]), f"{net}.{name}"
    assert torch.equal(a["pools"]["b"][0], b["pools"]["b"][0])


def test_resume_refuses_other_architecture_and_merges_options(trained):
    with pytest.raises(InputError, match="ngf"):
        train_cyclegan(tiny_config(ngf=16), trained, progress=False)
    saved = read_training_checkpoint(trained / "checkpoint.pt")["args"]
    merged = resume_config(saved, tiny_config(iters=50, lr=0.5), explicit={"iters"})
    assert merged.iters == 50 and merged.lr == 2e-4
    with pytest.raises(InputError, match="netD"):
        resume_config(saved, tiny_config(netD="pixel"), explicit={"netD"})


def test_bf16_autocast_trains(tmp_path):
    torch.set_num_threads(1)
    result = train_cyclegan(tiny_config(iters=2, log_every=2, amp="bf16"), tmp_path / "run", progress=False)
    assert result.finished
    assert np.isfinite([r for r in metrics(tmp_path / "run") if "loss_g" in r][-1]["loss_g"])


def start_training(run: Path, iters: int, extra=()) -> subprocess.Popen:
    command = [sys.executable, "-m", "latentedit", "cyclegan", "train", "--data", TOY, "-o", str(run), *TINY_ARGS,
               "--batch-size", "2", "--iters", str(iters), "--snapshot-every", "3", "--sample-every", "1000",
               "--log-every", "3", *extra]
    return subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_then_resume_continues_from_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    process = start_training(run, iters=100000)
    deadline = time.monotonic() + 90
    while not (run / "checkpoint.pt").exists():
        if process.poll() is not None:
            raise AssertionError(f"training exited early: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.05)
    time.sleep(0.3)
    process.kill()  # SIGKILL: no handler runs
    process.communicate()
    saved = read_training_checkpoint(run / "checkpoint.pt")
    saved_step = saved["step"]
    assert saved_step > 0 and saved_step % 3 == 0
    fingerprint = common.state_dict_fingerprint(*saved["nets"].values())
    resumed = start_training(run, iters=saved_step + 3)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"trained to iteration {saved_step + 3}" in out
    records = metrics(run)
    resume_events = [r for r in records if r.get("event") == "resume"]
    assert len(resume_events) == 1
    assert resume_events[0]["step"] == saved_step and resume_events[0]["fingerprint"] == fingerprint
    steps = [r["step"] for r in records if "loss_g" in r]
    assert steps == sorted(steps) and len(steps) == len(set(steps))
    assert records[-1]["event"] == "done"
    assert not list(run.glob(".*.tmp"))  # atomic writes leave no temporary behind


def test_two_process_ddp_keeps_ranks_identical(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "latentedit", "cyclegan", "train", "--data", TOY, "-o", str(run), *TINY_ARGS,
               "--batch-size", "4", "--iters", "4", "--snapshot-every", "2", "--log-every", "2"]
    process = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert process.returncode == 0, process.stderr[-3000:]
    records = metrics(run)
    start = next(r for r in records if r.get("event") == "start")
    assert start["world_size"] == 2
    snapshots = [r for r in records if r.get("event") == "snapshot"]
    assert [r["step"] for r in snapshots] == [2, 4]
    for snapshot in snapshots:
        assert len(snapshot["fingerprints"]) == 2 and snapshot["fingerprints"][0] == snapshot["fingerprints"][1]
        assert snapshot["fingerprints"][0] != start["fingerprint"]
    checkpoint = read_training_checkpoint(run / "checkpoint.pt")
    assert len(checkpoint["rng"]["cpu"]) == 2 and checkpoint["nimg"] == 16 and len(checkpoint["pools"]["a"]) == 2


# ----------------------------------------------------------------------------------------------------
# Transfer

def test_transfer_writes_translations_and_cycles(trained, tmp_path):
    from latentedit.cli.main import cli
    from latentedit.image_files import load_image_tensor

    inputs = []
    for k in range(2):
        path = tmp_path / f"face{k}.png"
        from latentedit.data import toyfaces

        Image.fromarray(toyfaces.render(toyfaces.sample_params(1, k), 32)).save(path)
        inputs.append(str(path))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["cyclegan", "transfer", *inputs, "--ckpt", str(trained), "--direction", "a2b",
                                      "--cycle", "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "transfer.json").read_text())
    assert manifest["from"] == "Black_Hair" and manifest["to"] == "Blond_Hair"
    assert (out / "face0.png").is_file() and (out / "face1_cycle.png").is_file()
    translator = cyclegan.load_translator(trained, "cyclegan")
    expected = cyclegan.translate(translator.generator("a2b"), load_image_tensor(inputs[0], 32)[0][None])
    written = torch.from_numpy(np.array(Image.open(out / "face0.png"))).permute(2, 0, 1).float() / 127.5 - 1
    assert (written - expected[0].clamp(-1, 1)).abs().max() <= 1.01 / 127.5


@pytest.mark.parametrize("args,message", [
    (["--ckpt", "missing.safetensors"], "not found"),
    (["--ckpt", "STARGAN"], "not a latentedit cyclegan model"),
    (["--ckpt", "RUNCKPT"], "not a readable safetensors file"),
    (["--ckpt", "RUN", "-o", "two.png", "EXTRA"], "names one file"),
])
def test_transfer_errors_are_one_line_and_write_nothing(trained, tmp_path, args, message):
    from latentedit.baselines.stargan import shipped_stargan_path
    from latentedit.cli.main import cli

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    swap = {"STARGAN": str(shipped_stargan_path()), "RUNCKPT": str(trained / "checkpoint.pt"), "RUN": str(trained),
            "EXTRA": str(image)}
    args = [swap.get(a, a) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, ["cyclegan", "transfer", str(image), *args, "--device", "cpu"])
    output = result.output.strip()
    assert result.exit_code == 2 and output.startswith("error:") and message in output, output
    assert len(output.splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "two.png").exists()


# ----------------------------------------------------------------------------------------------------
# Evaluation on StarGAN's footing

@pytest.fixture(scope="module")
def black_sources():
    from latentedit.evaluate.classifier import load_classifier
    from latentedit.evaluate.translators import heldout_sources

    classifier = load_classifier()
    return classifier, heldout_sources(classifier, "Blond_Hair", 5, 64, where={"Black_Hair": 1})


def test_sources_come_from_the_source_domain(black_sources):
    from latentedit.data import toyfaces

    classifier, sources = black_sources
    assert len(sources.ids) == 5
    for index in sources.ids:
        attributes = toyfaces.sample_params(toyfaces.HELDOUT_SEED, index).attributes
        assert attributes["Black_Hair"] == 1 and attributes["Blond_Hair"] == 0
    assert "Black_Hair = 1" in sources.details["selection"]


def test_an_oracle_scores_perfectly_and_the_identity_collapses(black_sources):
    from latentedit.evaluate.two_domain import evaluate_two_domain

    classifier, sources = black_sources

    def lookup(table):
        def translate(images):
            rows = [int((sources.images - image).abs().flatten(1).sum(1).argmin()) for image in images]
            return table[rows]
        return translate

    oracle, _, cycled = evaluate_two_domain(lookup(sources.truths), classifier, sources, "Blond_Hair",
                                            back_fn=lambda images: images)
    assert oracle["success_rate"] == 1.0 and oracle["psnr_to_truth_db"] == pytest.approx(100.0)
    assert oracle["side_effect_mean"] < 0.05 and oracle["identity_collapse_rate"] == 0.0
    assert oracle["cycle"]["psnr_to_source_db"] < 40 and torch.equal(cycled, sources.truths)
    identity, outputs, _ = evaluate_two_domain(lambda images: images, classifier, sources, "Blond_Hair")
    assert identity["success_rate"] == 0.0 and identity["identity_collapse_rate"] == 1.0 and "cycle" not in identity
    assert identity["pixel_change"] == 0 and torch.equal(outputs, sources.images)


def test_evaluate_cyclegan_command_writes_the_report(trained, tmp_path, private_caches):
    from latentedit.cli.main import cli

    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["evaluate", "cyclegan", "--ckpt", str(trained), "--direction", "both", "--n",
                                      "3", "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "cyclegan_eval.json").read_text())
    assert list(report["directions"]) == ["a2b", "b2a"]
    assert report["directions"]["b2a"]["attribute"] == "Black_Hair"
    record = report["directions"]["a2b"]["record"]
    for key in ("success_rate", "side_effect_mean", "psnr_to_truth_db", "seconds_per_image", "cycle",
                "identity_collapse_rate", "flips"):
        assert key in record, key
    assert "| a2b | Blond_Hair | 3 |" in (out / "cyclegan_eval.md").read_text()
    assert Image.open(out / "a2b_samples.png").size[0] > 4 * 32  # render | translation | truth | cycle


def test_evaluate_needs_toyfaces_domains(tmp_path):
    from latentedit.evaluate.two_domain import direction_attribute

    with pytest.raises(InputError, match="not a toyfaces attribute condition"):
        direction_attribute({"a": "h2z/A", "b": "h2z/B"}, "a2b")
    with pytest.raises(InputError, match="not one attribute set to 1"):
        direction_attribute({"a": "Eyeglasses=1", "b": "Eyeglasses=0"}, "a2b")
    assert direction_attribute({"a": "Black_Hair", "b": "Blond_Hair"}, "b2a") == ({"Blond_Hair": 1}, "Black_Hair")


def test_not_a_translator_file_is_a_checkpoint_error(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "something"})
    with pytest.raises(CheckpointError, match="not a latentedit cyclegan model"):
        cyclegan.load_translator(path, "cyclegan")


# ----------------------------------------------------------------------------------------------------
# The shipped translators (pretrained/cyclegan_black2blond64, pretrained/pix2pix_black2blond64)

@pytest.mark.parametrize("kind", ["cyclegan", "pix2pix"])
def test_shipped_translator_resolves_by_name_and_matches_its_model_card(kind):
    import re

    from latentedit.io import sha256_file

    translator = cyclegan.load_translator(f"{kind}_black2blond64", kind)
    assert translator.path == cyclegan.shipped_translator_path(f"{kind}_black2blond64")
    assert translator.image_size == 64 and translator.path.stat().st_size <= 15 * 2**20
    card = translator.path.with_suffix(".md").read_text()
    assert re.search(r"sha256 `([0-9a-f]{64})`", card).group(1) == sha256_file(translator.path)


@pytest.mark.parametrize("kind", ["cyclegan", "pix2pix"])
def test_shipped_translator_is_the_default_and_turns_held_out_black_hair_blond(kind, tmp_path):
    """What the README table rests on: `evaluate KIND` with no --ckpt scores the shipped model, and held-out
    black-haired faces come out blond without flipping the sex."""
    from latentedit.cli.main import cli

    result = CliRunner().invoke(cli, ["evaluate", kind, "--n", "16", "--progress", "-o", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "Blond_Hair sources: 100%" in result.output  # --progress draws the bar even off a terminal
    report = json.loads((tmp_path / "eval" / f"{kind}_eval.json").read_text())
    assert report["model"]["path"].endswith(f"{kind}_black2blond64.safetensors")
    record = report["directions"]["a2b"]["record"]
    assert record["success_rate"] >= 0.75
    assert record["flips"]["Male"] <= 0.25


def test_baselines_table_builds_the_readme_rows_from_the_evaluations(tmp_path):
    """benchmarks/baselines_table.py: one row per method and attribute from the committed evaluations' JSONs,
    the learned direction at its fixed strength, and exit 2 naming a missing input (nothing written)."""
    import importlib.util
    import json as json_module

    spec = importlib.util.spec_from_file_location("baselines_table", Path(__file__).resolve().parents[1]
                                                  / "benchmarks" / "baselines_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)

    def record(success, side, psnr, seconds=None):
        out = {"success_rate": success, "side_effect_mean": side, "flips": {"Male": 0.01}, "psnr_to_truth_db": psnr}
        return out if seconds is None else {**out, "seconds_per_image": seconds}

    inputs = {
        "learned": {"layers": "3-5", "sources": {"count": 100, "details": {"baseline": {"target_psnr_to_truth_db": 17.0}}},
                    "directions": {"learned": {"per_strength": [{**record(0.5, 0.2, 18.0), "strength": 8.0},
                                                                {**record(0.9, 0.1, 19.5), "strength": 12.0}]}}},
        "svm": {"latent_seconds_per_image": 4.0, "args": {"n": "100"},
                "attributes": {a: {"latent": {"direction": "svm", "strength": 4.0, "record": record(0.8, 0.13, 19.0)}}
                               for a in table.ATTRIBUTES}},
        "stargan": {"attributes": {a: {"record": record(0.98, 0.065, 22.8, 0.0063),
                                       "sources": {"count": 1000, "source_psnr_to_truth_db": 18.7}}
                                   for a in table.ATTRIBUTES}},
        "cyclegan": {"directions": {
            "a2b": {"attribute": "Blond_Hair", "source_domain": {"Black_Hair": 1}, "sources": {"count": 1000, "source_psnr_to_truth_db": 15.7},
                    "record": {**record(1.0, 0.046, 23.0, 0.0013), "psnr_to_source_db": 30.0}},
            "b2a": {"attribute": "Black_Hair", "source_domain": {"Blond_Hair": 1}, "sources": {"count": 1000, "source_psnr_to_truth_db": 14.7},
                    "record": {**record(1.0, 0.059, 24.4, 0.0019), "psnr_to_source_db": 30.0}}}},
        "pix2pix": {"directions": {
            "a2b": {"attribute": "Blond_Hair", "source_domain": {"Black_Hair": 1}, "sources": {"count": 1000, "source_psnr_to_truth_db": 15.7},
                    "record": {**record(1.0, 0.017, 25.7, 0.0062), "psnr_to_source_db": 30.0}}}},
    }
    for key, relative in table.INPUTS.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(json_module.dumps(inputs[key]))
    summary, markdown = table.summarize(tmp_path)
    assert [row["method"].split(" (")[0] for row in summary["attributes"]["Blond_Hair"]] == \
        ["learned direction", "SVM direction", "StarGAN", "CycleGAN", "pix2pix"]
    assert [row["method"] for row in summary["attributes"]["Black_Hair"]] == \
        ["SVM direction (svm, strength 4)", "StarGAN", "CycleGAN"]
    assert ("| Blond_Hair | learned direction (rows 3-5, strength 12) | 100 inverted, lacking it | 90.0 % | 10.0 % "
            "| 1.0 % | 19.50 dB | 17.00 dB | 4,000.0 |") in markdown
    assert "| Black_Hair | CycleGAN | 1000 held-out, blond hair | 100.0 % | 5.9 % | 1.0 % | 24.40 dB | 14.70 dB | 1.9 |" \
        in markdown
    (tmp_path / table.INPUTS["pix2pix"]).unlink()
    assert table.main(["--results", str(tmp_path), "--json", str(tmp_path / "t.json")]) == 2
    assert not (tmp_path / "t.json").exists()
