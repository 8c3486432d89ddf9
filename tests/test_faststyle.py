"""Seed 004 (issue #19): FastStyleNet generator, PatchGAN critic, exclusive categories, transfer at other sizes.

Training tests use tiny networks (conv_dim 8, 1 block, 32 px) on 40 toyfaces, either rendered on the fly
(``toyfaces-hair:40``) or exported as a class-folder layout.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open

from latentedit.baselines import faststyle, stargan
from latentedit.baselines.stargan_train import StarGANTrainConfig, read_training_checkpoint, train_stargan
from latentedit.cli.main import cli
from latentedit.data import categories
from latentedit.errors import InputError

TINY = dict(image_size=32, crop_size=32, g_conv_dim=8, d_conv_dim=8, g_repeat_num=1, d_repeat_num=2, batch=4,
            iters=10, test_count=4, log_every=5, sample_every=5, snapshot_every=5, sample_count=3, workers=0,
            device="cpu", generator="faststyle", discriminator="patch")
TINY_ARGS = ["--image-size", "32", "--crop-size", "32", "--g-conv-dim", "8", "--d-conv-dim", "8", "--g-repeat-num",
             "1", "--d-repeat-num", "2", "--batch-size", "4", "--test-count", "4", "--sample-count", "3",
             "--workers", "0", "--device", "cpu", "--no-progress", "--log-every", "5", "--sample-every", "5",
             "--snapshot-every", "5"]


def one_line_error(result, message: str) -> None:
    output = result.output.strip()
    assert result.exit_code != 0 and output.startswith("error:") and "\n" not in output, output
    assert message in output, output


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """40 toyfaces at 32 px as hair-colour category folders."""
    root = tmp_path_factory.mktemp("cats") / "hair"
    categories.export_toyfaces_categories(root, 40, size=32, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("fs") / "run"
    result = train_stargan(StarGANTrainConfig(data="toyfaces-hair:40", **TINY), run, progress=False)
    assert result.finished
    return run


# ----------------------------------------------------------------------------------------------------
# Architecture

def test_parameter_counts_at_the_seeds_settings():
    generator = faststyle.FastStyleNet(faststyle.FastStyleNetConfig(c_dim=10))
    critic = faststyle.PatchCritic(faststyle.PatchCriticConfig(image_size=256, c_dim=10))
    assert stargan.parameter_count(generator) == 1_703_555
    assert stargan.parameter_count(critic) == 2_846_657
    assert stargan.parameter_count(critic.patch) == 2_764_737  # the reference PatchGAN's count
    assert stargan.parameter_count(faststyle.FastStyleNet(faststyle.FastStyleNetConfig(c_dim=4))) == 1_688_003
    assert stargan.parameter_count(faststyle.PatchCritic(faststyle.PatchCriticConfig(c_dim=4))) == 2_797_505
    assert list(generator.buffers()) == []  # instance statistics only, no running averages


def test_generator_layer_table():
    rows = faststyle.layer_table(faststyle.FastStyleNet(faststyle.FastStyleNetConfig(c_dim=10)), 256)
    convs = [row for row in rows if row["layer"].startswith("Conv")]
    assert [row["layer"] for row in convs[:3]] == ["Conv9x9 s1 13->32", "Conv3x3 s2 32->64", "Conv3x3 s2 64->128"]
    assert [row["output"] for row in convs[:3]] == [[32, 256, 256], [64, 128, 128], [128, 64, 64]]
    assert sum(1 for row in convs if row["layer"] == "Conv3x3 s1 128->128") == 10  # five residual blocks
    assert [row["layer"] for row in convs[-3:]] == ["ConvT3x3 s2 128->64", "ConvT3x3 s2 64->32",
                                                    "Conv9x9 s1 32->3 +bias"]
    assert convs[-1]["output"] == [3, 256, 256]
    assert sum(row["parameters"] for row in rows) == 1_703_555
    assert sum(1 for row in rows if row["layer"].startswith("InstanceNorm")) == 15


def test_critic_layer_table_and_outputs():
    critic = faststyle.PatchCritic(faststyle.PatchCriticConfig(image_size=256, c_dim=10))
    rows = faststyle.layer_table(critic, 256)
    convs = [row for row in rows if row["layer"].startswith("Conv")]
    assert [row["output"] for row in convs] == [[64, 128, 128], [128, 64, 64], [256, 32, 32], [512, 31, 31],
                                                [1, 30, 30], [10, 30, 30]]
    assert convs[-1]["layer"] == "Conv4x4 s1 512->10"
    assert sum(row["parameters"] for row in rows) == 2_846_657
    realness, logits = critic(torch.zeros(2, 3, 256, 256))
    assert realness.shape == (2, 1, 30, 30) and logits.shape == (2, 10)
    assert "Conv4x4" in faststyle.format_layer_table(rows)


def test_generator_is_fully_convolutional():
    torch.manual_seed(0)
    generator = faststyle.FastStyleNet(faststyle.FastStyleNetConfig(c_dim=3, conv_dim=4, repeat_num=1)).eval()
    for shape in ((1, 3, 32, 32), (2, 3, 64, 64), (1, 3, 36, 48)):
        output = generator(torch.rand(*shape) * 2 - 1, torch.eye(3)[:shape[0]])
        assert output.shape == shape and output.abs().max() < 1
    with pytest.raises(InputError, match="multiples of 4"):
        generator(torch.zeros(1, 3, 30, 32), torch.zeros(1, 3))
    with pytest.raises(InputError, match="labels"):
        generator(torch.zeros(1, 3, 32, 32), torch.zeros(1, 4))
    with pytest.raises(InputError, match="at least 24 px"):
        faststyle.PatchCritic(faststyle.PatchCriticConfig(image_size=16, c_dim=2))


def test_default_sizes_follow_the_kinds():
    assert faststyle.default_sizes("stargan", "stargan") == {"g_conv_dim": 64, "g_repeat_num": 6, "d_repeat_num": 6}
    assert faststyle.default_sizes("faststyle", "patch") == {"g_conv_dim": 32, "g_repeat_num": 5, "d_repeat_num": 3}


# ----------------------------------------------------------------------------------------------------
# Data

def test_category_folder_reads_one_hot_labels(folder):
    index = categories.read_category_folder(folder)
    assert index.categories == categories.HAIR_CATEGORIES
    assert sum(index.counts().values()) == 40 and min(index.counts().values()) >= 1
    train = categories.CategoryFolderDataset(folder, None, "train", 32, 32, test_count=4)
    test = categories.CategoryFolderDataset(folder, None, "test", 32, 32, test_count=4)
    assert len(train) == 36 and len(test) == 4
    image, label = train[0]
    assert image.shape == (3, 32, 32) and label.sum() == 1
    assert np.allclose(train.labels.sum(axis=1), 1)
    assert set(map(str, train.paths)).isdisjoint(map(str, test.paths))
    # The export and the on-the-fly set agree on every face's category.
    hair = categories.ToyFacesHairDataset(0, 0, 40, 32)
    by_index = {int(p.stem): int(k) for p, k in zip(index.paths, index.indices)}
    assert [by_index[i] for i in range(40)] == list(hair.labels.argmax(axis=1))


def test_bad_category_folders(tmp_path, folder):
    single = tmp_path / "single"
    (single / "ramen").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(single / "ramen" / "a.png")
    with pytest.raises(InputError, match="single category"):
        categories.read_category_folder(single)
    empty = tmp_path / "empty"
    (empty / "ramen").mkdir(parents=True)
    (empty / "udon").mkdir()
    Image.new("RGB", (32, 32)).save(empty / "ramen" / "a.png")
    with pytest.raises(InputError, match="udon holds no images"):
        categories.read_category_folder(empty)
    mixed = tmp_path / "mixed"
    for name, side in (("ramen", 32), ("udon", 40)):
        (mixed / name).mkdir(parents=True)
        Image.new("RGB", (side, side)).save(mixed / name / "a.png")
    with pytest.raises(InputError, match="mixed sizes"):
        categories.CategoryFolderDataset(mixed, None, "train", 32, 32, 0)
    with pytest.raises(InputError, match="not a folder of"):
        categories.read_category_folder(folder, ["Black_Hair", "Red_Hair"])


@pytest.mark.parametrize("case,message", [("empty", "holds no images"), ("single", "single category"),
                                          ("mixed", "mixed sizes")])
def test_train_cli_bad_data_is_one_line(tmp_path, case, message):
    root = tmp_path / case
    sides = {"empty": (32, None), "single": (32,), "mixed": (32, 40)}[case]
    for k, side in enumerate(sides):
        (root / f"cat{k}").mkdir(parents=True)
        if side:
            for i in range(3):
                Image.new("RGB", (side, side), (i * 40, 0, 0)).save(root / f"cat{k}" / f"{i}.png")
    result = CliRunner().invoke(cli, ["stargan", "train", "--data", str(root), "-o", str(tmp_path / "run"),
                                      "--generator", "faststyle", "--discriminator", "patch", *TINY_ARGS,
                                      "--test-count", "0"])
    one_line_error(result, message)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# ----------------------------------------------------------------------------------------------------
# Training

def test_training_records_the_kinds_and_exports_a_faststyle_file(trained):
    checkpoint = read_training_checkpoint(trained / "checkpoint.pt")
    assert checkpoint["config"]["architecture"] == {"generator": "faststyle", "discriminator": "patch"}
    assert checkpoint["config"]["labels"] == "exclusive"
    assert checkpoint["args"]["attrs"] == list(categories.HAIR_CATEGORIES)
    with safe_open(str(trained / "generator.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["architecture"] == "faststyle" and metadata["label_mode"] == "exclusive"
    generator, info = stargan.load_stargan_generator(trained)
    assert isinstance(generator, faststyle.FastStyleNet) and info.exclusive and info.architecture == "faststyle"
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "d_loss" in r]
    assert losses and all(np.isfinite(r["d_loss"]) for r in losses) and "g_loss" in losses[-1]
    grid = Image.open(trained / "samples" / "step0000010.png")
    assert grid.size[0] > 4 * 32  # input + four category columns


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    config = StarGANTrainConfig(data="toyfaces-hair:40", **{**TINY, "iters": 10})
    train_stargan(config, straight, progress=False)
    first = train_stargan(config, split, progress=False, session_iters=5)
    assert not first.finished and first.step == 5
    second = train_stargan(config, split, progress=False)
    assert second.finished and second.resumed_step == 5
    a = read_training_checkpoint(straight / "checkpoint.pt")
    b = read_training_checkpoint(split / "checkpoint.pt")
    for part in ("g", "d"):
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), (part, name)


def test_resume_refuses_another_generator_kind(trained, tmp_path):
    config = StarGANTrainConfig(data="toyfaces-hair:40", **{**TINY, "generator": "stargan", "iters": 12})
    with pytest.raises(InputError, match="generator"):
        train_stargan(config, trained, progress=False)


def test_cli_trains_on_a_class_folder_with_stargan_generator_and_patch_critic(folder, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["stargan", "train", "--data", str(folder), "--discriminator", "patch",
                                      "--iters", "5", "-o", str(run), *TINY_ARGS])
    assert result.exit_code == 0, result.output
    checkpoint = read_training_checkpoint(run / "checkpoint.pt")
    assert checkpoint["args"]["generator"] == "stargan" and checkpoint["args"]["discriminator"] == "patch"
    assert checkpoint["args"]["attrs"] == list(categories.HAIR_CATEGORIES)
    generator, info = stargan.load_stargan_generator(run)
    assert isinstance(generator, stargan.StarGANGenerator) and info.exclusive


def test_cli_kind_defaults(folder, tmp_path, monkeypatch):
    seen = {}

    def fake_train(config, run_dir, **kwargs):
        seen["config"] = config
        raise InputError("stop here")

    from latentedit.baselines import stargan_train

    monkeypatch.setattr(stargan_train, "train_stargan", fake_train)
    result = CliRunner().invoke(cli, ["stargan", "train", "--data", str(folder), "--generator", "faststyle",
                                      "--discriminator", "patch", "-o", str(tmp_path / "r")])
    assert "stop here" in result.output
    config = seen["config"]
    assert (config.g_conv_dim, config.g_repeat_num, config.d_repeat_num, config.batch, config.n_critic) == (32, 5, 3,
                                                                                                           16, 5)


# ----------------------------------------------------------------------------------------------------
# Transfer and grid

@pytest.fixture(scope="module")
def face(tmp_path_factory) -> Path:
    from latentedit.data import toyfaces
    from latentedit.io import save_png

    path = tmp_path_factory.mktemp("face") / "face.png"
    save_png(path, toyfaces.render_face(1, 3, 64))
    return path


def test_transfer_to_a_category_at_twice_the_training_size(trained, face, tmp_path):
    out = tmp_path / "blond.png"
    result = CliRunner().invoke(cli, ["stargan", "transfer", str(face), "--to", "Blond_Hair", "--size", "64",
                                      "--ckpt", str(trained), "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (64, 64)
    folder_out = tmp_path / "many"
    result = CliRunner().invoke(cli, ["stargan", "transfer", str(face), "--to", "Gray_Hair", "--ckpt", str(trained),
                                      "-o", str(folder_out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((folder_out / "transfer.json").read_text())
    assert manifest["to"] == "Gray_Hair" and manifest["size"] == 32
    assert Image.open(folder_out / "face.png").size == (32, 32)


@pytest.mark.parametrize("args,message", [
    (["--to", "Red_Hair"], "unknown category 'Red_Hair'"),
    (["--set", "Blond_Hair=1"], "use --to CATEGORY"),
    (["--to", "Blond_Hair", "--size", "30"], "--size must be a multiple of 4"),
    ([], "give --set NAME=0|1"),
])
def test_transfer_errors_are_one_line(trained, face, tmp_path, args, message):
    out = tmp_path / "x.png"
    result = CliRunner().invoke(cli, ["stargan", "transfer", str(face), *args, "--ckpt", str(trained), "-o", str(out),
                                      "--device", "cpu"])
    one_line_error(result, message)
    assert not out.exists()


def test_grid_shows_every_category(trained, face, tmp_path):
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(cli, ["stargan", "grid", str(face), str(face), "--ckpt", str(trained), "--size", "64",
                                      "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "input | Black_Hair | Blond_Hair | Brown_Hair | Gray_Hair" in result.output
    width, height = Image.open(out).size
    assert width == 5 * 64 + 6 * 2 and height == 2 * 64 + 3 * 2  # make_grid: 2 px padding around tiles


def test_evaluate_stargan_on_categories_at_twice_the_size(trained, tmp_path):
    from latentedit.evaluate.translators import evaluate_stargan_to_folder

    result = evaluate_stargan_to_folder(trained, ["Blond_Hair"], tmp_path / "eval", n=4, size=64, device="cpu")
    assert result["stargan"]["exclusive"] and result["stargan"]["eval_size"] == 64
    record = result["attributes"]["Blond_Hair"]["record"]
    assert 0 <= record["success_rate"] <= 1 and record["seconds_per_image"] > 0
    assert (tmp_path / "eval" / "stargan_eval.md").exists()


def test_comparison_table_reads_the_evaluations(tmp_path):
    """benchmarks/faststyle_vs_stargan.py turns evaluate stargan's JSONs into the docs' table, or names what is missing."""
    import importlib.util
    import json as json_module

    spec = importlib.util.spec_from_file_location("faststyle_vs_stargan",
                                                  Path(__file__).resolve().parents[1] / "benchmarks"
                                                  / "faststyle_vs_stargan.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    record = {"success_rate": 0.5, "side_effect_mean": 0.1, "psnr_to_truth_db": 20.0, "seconds_per_image": 0.006}
    for model, _ in table.MODELS:
        for size in table.SIZES:
            folder = tmp_path / model / size
            folder.mkdir(parents=True)
            success = 0.9 if model == "cmp_stargan64" else 0.5
            (folder / "stargan_eval.json").write_text(json_module.dumps({"attributes": {
                "Blond_Hair": {"record": {**record, "success_rate": success}}, "Male": {"record": record}}}))
    summary, markdown = table.summarize(tmp_path, 3000)
    assert summary["runs"]["cmp_stargan64"]["64"]["success_mean"] == pytest.approx(0.7)
    assert "| StarGAN nets, 3000 iters | 64 px | 70.0 % | 10.0 % | 20.00 dB | 6.0 |" in markdown
    assert "| model | size | Blond_Hair | Male |" in markdown
    (tmp_path / "cmp_faststyle64" / "128" / "stargan_eval.json").unlink()
    assert table.main([str(tmp_path), "--iterations", "3000", "--json", str(tmp_path / "t.json"),
                       "--markdown", str(tmp_path / "t.md")]) == 2
    assert not (tmp_path / "t.json").exists()
