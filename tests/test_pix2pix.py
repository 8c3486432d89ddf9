"""pix2pix baseline (issue #22): aligned and toyfaces-counterfactual pairs, the reference recipe, training (resume),
batch-norm statistics at test time, transfer and evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from latentedit.baselines import cyclegan
from latentedit.baselines.pix2pix_train import Pix2PixTrainConfig, read_training_checkpoint, train_pix2pix
from latentedit.baselines.two_domain_data import AlignedFolder, open_paired
from latentedit.data import toyfaces
from latentedit.errors import InputError

TOY = "toyfaces:Black_Hair:Blond_Hair:120"
TINY_ARGS = ["--image-size", "32", "--load-size", "32", "--netG", "unet", "--ngf", "8", "--ndf", "8",
             "--sample-count", "2", "--device", "cpu", "--no-progress"]


def tiny_config(**overrides) -> Pix2PixTrainConfig:
    options = dict(data=TOY, image_size=32, load_size=34, ngf=8, ndf=8, batch=2, iters=8, log_every=4,
                   sample_every=4, snapshot_every=4, sample_count=2, device="cpu")
    options.update(overrides)
    return Pix2PixTrainConfig(**options)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("pix2pix") / "run"
    torch.set_num_threads(1)
    assert train_pix2pix(tiny_config(), run, progress=False).finished
    return run


def _aligned(folder: Path, count: int, height: int = 24, width: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        pixels = np.zeros((height, width or 2 * height, 3), np.uint8)
        pixels[:, :height] = (10 * k, 0, 0)  # A: red level k
        pixels[:, height:] = (0, 200, 10 * k)  # B: green, blue level k
        Image.fromarray(pixels).save(folder / f"{k:02d}.png")


# ----------------------------------------------------------------------------------------------------
# Defaults and data

def test_reference_defaults():
    config = Pix2PixTrainConfig(data="x")
    assert (config.netG, config.norm, config.dropout, config.gan_mode, config.lambda_l1, config.pool_size,
            config.netD, config.d_loss_weight, config.batch, config.lr) == \
        ("unet", "batch", True, "vanilla", 100.0, 0, "basic", 0.5, 1, 2e-4)
    assert config.generator_config().name == "unet_256"
    d = cyclegan.build_discriminator(config.discriminator_config())
    assert cyclegan.parameter_count(d) == 2_768_705  # conditional PatchGAN on 6 channels, batch norm


def test_aligned_images_split_into_a_and_b(tmp_path):
    _aligned(tmp_path / "facades" / "train", 3)
    _aligned(tmp_path / "facades" / "test", 1)
    data = open_paired(str(tmp_path / "facades"), None, None, 16)
    assert len(data.train) == 3 and len(data.test) == 1
    a, b = data.train[2]
    assert a.shape == b.shape == (3, 16, 16)
    assert a[0].mean().item() == pytest.approx(20 / 127.5 - 1, abs=1e-3) and a[1].max().item() == -1
    assert b[1].mean().item() == pytest.approx(200 / 127.5 - 1, abs=1e-3)


def test_aligned_errors(tmp_path):
    _aligned(tmp_path / "odd", 2, width=30)
    with pytest.raises(InputError, match="width must be twice the height"):
        AlignedFolder(tmp_path / "odd", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        open_paired(str(tmp_path / "empty"), None, None, 16)
    _aligned(tmp_path / "skip", 2)
    (tmp_path / "skip" / "bad.png").write_bytes(b"\x89PNG broken")
    data = open_paired(str(tmp_path / "skip"), None, None, 16)
    assert len(data.train) == 2 and any("unreadable (bad.png)" in note for note in data.notes)


def test_matched_folders_need_complete_pairs(tmp_path):
    for side, count in (("A", 3), ("B", 2)):
        (tmp_path / side).mkdir()
        for k in range(count):
            Image.fromarray(np.full((20, 20, 3), 40 * k, np.uint8)).save(tmp_path / side / f"{k}.png")
    with pytest.raises(InputError, match="1 image\\(s\\) only in A"):
        open_paired(None, str(tmp_path / "A"), str(tmp_path / "B"), 16)
    (tmp_path / "A" / "2.png").unlink()
    data = open_paired(None, str(tmp_path / "A"), str(tmp_path / "B"), 16)
    assert len(data.train) == 2 and torch.equal(data.train[1][0], data.train[1][1])


def test_toyfaces_pairs_are_exact_counterfactuals():
    data = open_paired("toyfaces:Black_Hair:Blond_Hair:60", None, None, 32, sample_count=2)
    index = data.train.indices[0]
    params = toyfaces.sample_params(toyfaces.TRAIN_SEED, index)
    assert params.attributes["Black_Hair"] == 1
    a, b = data.train[0]
    expected = toyfaces.render(params.with_attributes(Blond_Hair=1), 32)
    assert np.array_equal(((b.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy(), expected)
    assert not torch.equal(a, b) and len(data.test) == 2


# ----------------------------------------------------------------------------------------------------
# Training

def test_training_run_writes_checkpoint_translator_samples_and_metrics(trained):
    records = metrics(trained)
    ticks = [r for r in records if "loss_g" in r]
    assert [r["step"] for r in ticks] == [4, 8] and records[-1]["event"] == "done"
    for tick in ticks:
        assert tick["loss_g"] == pytest.approx(tick["loss_g_gan"] + 100 * tick["loss_g_l1"], rel=1e-5)
        assert tick["loss_d"] == pytest.approx(0.5 * (tick["loss_d_real"] + tick["loss_d_fake"]), rel=1e-5)
    checkpoint = read_training_checkpoint(trained / "checkpoint.pt")
    assert set(checkpoint["nets"]) == {"g", "d"} and checkpoint["step"] == 8
    translator = cyclegan.load_translator(trained, "pix2pix")
    assert list(translator.generators) == ["a2b"] and translator.config.norm == "batch"
    assert (trained / "samples" / "step0000008.png").is_file()


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    torch.set_num_threads(1)
    straight = train_pix2pix(tiny_config(iters=8), tmp_path / "straight", progress=False)
    first = train_pix2pix(tiny_config(iters=8), tmp_path / "split", progress=False, session_iters=5)
    second = train_pix2pix(tiny_config(iters=8), tmp_path / "split", progress=False)
    assert first.step == 5 and second.resumed_step == 5 and second.step == straight.step == 8
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["nets"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["nets"]
    for net in a:
        for name in a[net]:
            assert torch.equal(a[net][name], b[net][name]), f"{net}.{name}"


def test_reversed_direction_trains_b_to_a(tmp_path):
    torch.set_num_threads(1)
    train_pix2pix(tiny_config(iters=2, log_every=2, direction="b2a"), tmp_path / "run", progress=False)
    translator = cyclegan.load_translator(tmp_path / "run", "pix2pix")
    assert list(translator.generators) == ["b2a"]
    with pytest.raises(InputError, match="translates b2a only"):
        translator.generator("a2b")


def test_train_cli_aligned_error_is_one_line_and_writes_nothing(tmp_path):
    from latentedit.cli.main import cli

    _aligned(tmp_path / "odd", 2, width=40)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["pix2pix", "train", "--data", str(tmp_path / "odd"), "-o", str(run), *TINY_ARGS])
    output = result.output.strip()
    assert result.exit_code == 2 and output.startswith("error:") and "twice the height" in output, output
    assert len(output.splitlines()) == 1 and not run.exists()


def test_train_cli_runs_on_an_aligned_folder(tmp_path):
    from latentedit.cli.main import cli

    _aligned(tmp_path / "pairs" / "train", 4, height=32)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["pix2pix", "train", "--data", str(tmp_path / "pairs"), "-o", str(run),
                                      *TINY_ARGS, "--iters", "2", "--log-every", "1", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "trained to iteration 2" in result.output
    assert cyclegan.load_translator(run, "pix2pix").domains == {"a": "pairs/A", "b": "pairs/B"}


# ----------------------------------------------------------------------------------------------------
# Test-time normalisation, transfer, evaluation

def test_translate_uses_each_images_own_batch_statistics_and_leaves_the_state_alone(trained):
    translator = cyclegan.load_translator(trained, "pix2pix")
    generator = translator.generator("a2b")
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    together = cyclegan.translate(generator, images)
    alone = torch.cat([cyclegan.translate(generator, images[k:k + 1]) for k in range(3)])
    assert torch.allclose(together, alone, atol=1e-6)
    assert torch.equal(cyclegan.translate(generator, images), together)  # deterministic: dropout off
    running = cyclegan.translate(generator, images, norm_stats="running")
    assert not torch.allclose(running, together)
    after = generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and not generator.training


def test_transfer_command_and_wrong_kind(trained, tmp_path):
    from latentedit.cli.main import cli

    image = tmp_path / "face.png"
    Image.fromarray(toyfaces.render(toyfaces.sample_params(1, 3), 32)).save(image)
    out = tmp_path / "blond.png"
    result = CliRunner().invoke(cli, ["pix2pix", "transfer", str(image), "--ckpt", str(trained), "-o", str(out),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (32, 32) and "Black_Hair -> Blond_Hair" in result.output
    for args, message in ((["--direction", "b2a"], "translates a2b only"),
                          (["--cycle"], "no such option")):
        bad = CliRunner().invoke(cli, ["pix2pix", "transfer", str(image), "--ckpt", str(trained), *args, "-o",
                                       str(tmp_path / "bad"), "--device", "cpu"])
        assert bad.exit_code == 2 and message in bad.output.lower() and len(bad.output.strip().splitlines()) == 1
    wrong = CliRunner().invoke(cli, ["cyclegan", "transfer", str(image), "--ckpt", str(trained), "-o",
                                     str(tmp_path / "bad"), "--device", "cpu"])
    assert wrong.exit_code == 2 and "it is a pix2pix model" in wrong.output
    assert not (tmp_path / "bad").exists()


def test_evaluate_pix2pix_command_writes_the_report(trained, tmp_path, private_caches):
    from latentedit.cli.main import cli

    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["evaluate", "pix2pix", "--ckpt", str(trained), "--n", "3", "--device", "cpu",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "pix2pix_eval.json").read_text())
    record = report["directions"]["a2b"]["record"]
    assert "cycle" not in record and 0 <= record["success_rate"] <= 1 and record["psnr_to_truth_db"] > 0
    assert "| a2b | Blond_Hair | 3 |" in (out / "pix2pix_eval.md").read_text()
    bad = CliRunner().invoke(cli, ["evaluate", "pix2pix", "--ckpt", str(trained), "--direction", "b2a", "-o",
                                   str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "translates a2b only" in bad.output and not (tmp_path / "bad").exists()
