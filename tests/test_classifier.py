"""The toyfaces attribute classifier: shipped accuracy, Fréchet distance, input checks, training, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from latentedit.evaluate import classifier as clf
from latentedit.data import toyfaces
from latentedit.errors import CheckpointError, InputError, LatentEditError


@pytest.fixture(scope="module")
def shipped():
    if not clf.shipped_classifier_path().is_file():
        pytest.fail(f"shipped classifier missing at {clf.shipped_classifier_path()}")
    return clf.load_classifier()


@pytest.fixture(scope="module")
def heldout_images():
    """Held-out faces 0..299 as float images [300, 3, 64, 64] in [-1, 1] and labels [300, A]."""
    pixels, labels = clf.render_labelled(toyfaces.HELDOUT_SEED, 0, 300)
    return torch.from_numpy(pixels).float() / 127.5 - 1.0, labels


def tiny_classifier() -> clf.AttributeClassifier:
    torch.manual_seed(3)
    return clf.AttributeClassifier(clf.ClassifierConfig(widths=(4, 6, 8), feature_dim=10)).eval()


# ----------------------------------------------------------------------------------------------------
# The shipped weights


def test_shipped_classifier_is_accurate_on_heldout_renders(shipped, heldout_images):
    images, labels = heldout_images
    predicted = clf.predict_attributes(shipped, images).numpy() >= 0.5
    accuracy = (predicted == (labels == 1)).mean(axis=0)
    below = {name: float(accuracy[k]) for k, name in enumerate(shipped.attribute_names) if accuracy[k] < 0.95}
    assert not below, f"attributes under 95% on 300 held-out faces: {below}"


def test_shipped_classifier_metadata_and_size(shipped):
    assert shipped.attribute_names == toyfaces.ATTRIBUTE_NAMES
    assert clf.shipped_classifier_path().stat().st_size < 2_000_000
    training = json.loads(clf.read_classifier_metadata(clf.shipped_classifier_path())["training"])
    assert training["train_seed"] == toyfaces.TRAIN_SEED


def test_evaluate_classifier_reports_every_attribute(shipped):
    result = clf.evaluate_classifier(shipped, count=40, start=300)
    assert list(result["accuracy"]) == list(toyfaces.ATTRIBUTE_NAMES)
    assert result["min_accuracy"] == min(result["accuracy"].values())
    table = clf.format_accuracy_table(result)
    assert all(f"| {name} |" in table for name in toyfaces.ATTRIBUTE_NAMES)


def test_other_image_sizes_are_resized(shipped, heldout_images):
    images = heldout_images[0][:24]
    upsampled = torch.nn.functional.interpolate(images, size=(128, 128), mode="bilinear", align_corners=False)
    at_64 = clf.predict_attributes(shipped, images) >= 0.5
    at_128 = clf.predict_attributes(shipped, upsampled) >= 0.5
    assert (at_64 == at_128).float().mean() > 0.97


# ----------------------------------------------------------------------------------------------------
# Features and Fréchet distance


def test_features_shape_and_batching_do_not_change_results(shipped, heldout_images):
    images = heldout_images[0][:10]
    features = clf.extract_features(shipped, images, batch_size=3)
    assert features.shape == (10, shipped.config.feature_dim) and features.dtype == torch.float32
    torch.testing.assert_close(features, clf.extract_features(shipped, images, batch_size=10), atol=1e-5, rtol=1e-5)
    assert clf.predict_attributes(shipped, images[:0]).shape == (0, len(toyfaces.ATTRIBUTE_NAMES))


def test_frechet_distance_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 4))
    b = 0.5 * rng.standard_normal((20000, 4)) + np.array([1.0, 0.0, -1.0, 0.0])
    # |mu_a - mu_b|^2 + tr(I + 0.25 I - 2 * 0.5 I) = 2 + 4 * 0.25
    assert clf.frechet_distance(a, b) == pytest.approx(3.0, rel=0.03)


def test_frechet_distance_is_zero_for_same_set_and_symmetric():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 16)) @ rng.standard_normal((16, 16))
    b = rng.standard_normal((250, 16)) * 2.0 + 0.3
    assert clf.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6 * np.trace(np.cov(a, rowvar=False)))
    assert clf.frechet_distance(a, b) > 1.0
    assert clf.frechet_distance(a, b) == pytest.approx(clf.frechet_distance(b, a), rel=1e-6)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite():
    rng = np.random.default_rng(2)
    value = clf.frechet_distance(rng.random((10, 64)), rng.random((12, 64)))
    assert np.isfinite(value) and value >= 0.0


def test_frechet_distance_rejects_bad_feature_sets():
    with pytest.raises(InputError, match="width"):
        clf.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(InputError, match="at least 2"):
        clf.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(InputError, match="NaN"):
        clf.frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))


def test_fd_toy_separates_distributions(shipped, heldout_images):
    same_a, same_b = heldout_images[0][:150], heldout_images[0][150:]
    # The same people, all rendered blond with glasses: a different attribute distribution.
    shifted = np.stack([toyfaces.render_face(toyfaces.HELDOUT_SEED, i, 64, {"Blond_Hair": 1, "Eyeglasses": 1})
                        for i in range(150)])
    shifted = torch.from_numpy(shifted).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    floor = clf.fd_toy(same_a, same_b, shipped)
    assert clf.fd_toy(same_a, same_a, shipped) == pytest.approx(0.0, abs=1e-3 * floor)
    assert clf.fd_toy(same_a, shifted, shipped) > 3.0 * floor


# ----------------------------------------------------------------------------------------------------
# Input and file errors


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 64, 64, 3), r"\[N, 3, H, W\]"),
    (torch.zeros(3, 64, 64), r"\[N, 3, H, W\]"),
    (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "floating point"),
    (torch.zeros(2, 3, 4, 4), "too small"),
    ([[0.0]], "tensor or array"),
])
def test_predict_rejects_wrong_inputs(bad, match):
    with pytest.raises(InputError, match=match):
        clf.predict_attributes(tiny_classifier(), bad)


def test_save_load_roundtrip(tmp_path):
    model = tiny_classifier()
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    clf.save_classifier(model, tmp_path / "c.safetensors", {"note": "x"})
    loaded = clf.load_classifier(tmp_path / "c.safetensors")
    assert loaded.config == model.config and not loaded.training
    torch.testing.assert_close(clf.predict_attributes(loaded, images), clf.predict_attributes(model, images))


def test_missing_or_foreign_weights_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="not found"):
        clf.load_classifier(tmp_path / "absent.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a latentedit attribute classifier"):
        clf.load_classifier(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        clf.load_classifier(tmp_path / "junk.safetensors")
    monkeypatch.setattr(clf, "shipped_classifier_path", lambda: tmp_path / "missing.safetensors")
    with pytest.raises(LatentEditError, match="not installed"):
        clf.load_classifier()


# ----------------------------------------------------------------------------------------------------
# Training


def _tiny_options(epochs: int) -> clf.TrainOptions:
    return clf.TrainOptions(count=48, epochs=epochs, batch_size=16, widths=(4, 6, 8), feature_dim=10)


def test_training_resumes_to_the_same_weights(tmp_path):
    straight = tmp_path / "straight.safetensors"
    clf.train_classifier(straight, _tiny_options(2), workers=1, validation_count=8, progress=False,
                         log=lambda message: None)

    class Stop(Exception):
        pass

    def stop_after_first_epoch(message):
        if message.startswith("epoch 1/2"):
            raise Stop

    resumed = tmp_path / "resumed.safetensors"
    with pytest.raises(Stop):
        clf.train_classifier(resumed, _tiny_options(2), workers=1, validation_count=8, progress=False,
                             log=stop_after_first_epoch)
    assert not resumed.exists() and (tmp_path / "resumed.safetensors.train-state.pt").is_file()
    with pytest.raises(InputError, match="different options"):
        clf.train_classifier(resumed, _tiny_options(3), workers=1, validation_count=8, progress=False,
                             log=lambda message: None)
    messages = []
    clf.train_classifier(resumed, _tiny_options(2), workers=1, validation_count=8, progress=False,
                         log=messages.append)
    assert any(message.startswith("resuming") for message in messages)
    assert not (tmp_path / "resumed.safetensors.train-state.pt").exists()
    a, b = clf.load_classifier(straight), clf.load_classifier(resumed)
    for (name, left), right in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(left, right, msg=name)


def test_augment_keeps_shape_and_range():
    images = torch.rand(6, 3, 64, 64) * 2 - 1
    out = clf.augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, images)


def test_render_labelled_matches_toyfaces_and_ignores_workers():
    pixels, labels = clf.render_labelled(toyfaces.TRAIN_SEED, 5, 3)
    assert pixels.shape == (3, 3, 64, 64) and labels.shape == (3, len(toyfaces.ATTRIBUTE_NAMES))
    np.testing.assert_array_equal(pixels[1].transpose(1, 2, 0), toyfaces.render_face(toyfaces.TRAIN_SEED, 6, 64))
    np.testing.assert_array_equal(labels[1], toyfaces.attribute_vector(toyfaces.sample_params(toyfaces.TRAIN_SEED, 6)))


# ----------------------------------------------------------------------------------------------------
# CLI


def test_cli_evaluate_prints_table_and_writes_json(shipped, tmp_path):
    from latentedit.cli.eval_cmds import classifier_group

    out = tmp_path / "eval.json"
    result = CliRunner().invoke(classifier_group, ["evaluate", "--n", "200", "--workers", "1", "--quiet",
                                                   "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "| attribute | accuracy (%) |" in result.output
    assert all(f"| {name} |" in result.output for name in toyfaces.ATTRIBUTE_NAMES)
    report = json.loads(out.read_text())
    assert report["count"] == 200 and set(report["accuracy"]) == set(toyfaces.ATTRIBUTE_NAMES)


def test_cli_missing_checkpoint_is_a_one_line_error(tmp_path):
    from latentedit.cli.main import cli

    if "classifier" not in cli.commands:
        pytest.skip("latentedit.cli.eval_cmds is not registered in cli/main.py COMMAND_MODULES yet")
    result = CliRunner().invoke(cli, ["classifier", "evaluate", "--ckpt", str(tmp_path / "none.safetensors"),
                                      "-o", str(tmp_path / "e.json")])
    assert result.exit_code != 0
    assert "error:" in result.output and "not found" in result.output and "Traceback" not in result.output
