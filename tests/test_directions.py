"""Directions (SPEC §4.2, §5): parsing, arithmetic, apply, sidecar provenance, PULSE pairs, InterFaceGAN,
SeFa, GANSpace, and the ``direction`` / ``apply-direction`` commands."""
from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from latentedit import directions as dirs
from latentedit.checkpoints import save_native
from latentedit.data.toyfaces import ATTRIBUTE_NAMES
from latentedit.errors import InputError
from latentedit.model import Generator
from helpers import make_generator

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"


pytestmark = pytest.mark.usefixtures("single_thread", "private_caches")


@pytest.fixture(scope="module")
def generator() -> Generator:
    return make_generator(7)


@pytest.fixture(scope="module")
def ckpt(generator, tmp_path_factory) -> Path:
    return save_native(generator, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


class BrightnessClassifier(nn.Module):
    """A stand-in attribute classifier with a known rule: attribute k is present when the mean of colour
    channel ``k % 3`` exceeds ``thresholds[k]`` (logit = gain x the margin)."""

    def __init__(self, thresholds, gain: float = 40.0):
        super().__init__()
        self.config = types.SimpleNamespace(input_size=16)
        self.attribute_names = ATTRIBUTE_NAMES
        self.register_buffer("thresholds", torch.as_tensor(thresholds, dtype=torch.float32))
        self.unused = nn.Parameter(torch.zeros(1))
        self.gain = gain

    def forward(self, images):
        means = images.mean(dim=(2, 3))
        return self.gain * (means[:, [k % 3 for k in range(len(ATTRIBUTE_NAMES))]] - self.thresholds)


@pytest.fixture(scope="module")
def classifier(generator) -> BrightnessClassifier:
    """Thresholds at the median channel means of the tiny generator's samples: every attribute ~50 % present."""
    with torch.no_grad():
        z = torch.randn(256, 24, generator=torch.Generator().manual_seed(1))
        images = generator.synthesis(generator.mapping(z))
    medians = images.clamp(-1, 1).mean(dim=(2, 3)).median(0).values
    return BrightnessClassifier([float(medians[k % 3]) for k in range(len(ATTRIBUTE_NAMES))])


def run_cli(*args):
    from latentedit.cli.main import cli

    return CliRunner().invoke(cli, list(map(str, args)))


# --------------------------------------------------------------------------------------------------
# Parsing


def test_parse_layers_ranges_lists_and_all():
    assert dirs.parse_layers("0-3", 10) == [0, 1, 2, 3]
    assert dirs.parse_layers("5, 0,2-3,2", 10) == [0, 2, 3, 5]
    assert dirs.parse_layers("all", 6) == list(range(6))
    assert dirs.parse_layers(None, 4) == [0, 1, 2, 3]
    assert dirs.format_layers([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert dirs.parse_layers(dirs.format_layers([0, 1, 2, 5, 7, 8]), 10) == [0, 1, 2, 5, 7, 8]


@pytest.mark.parametrize("text, message", [("0-10", "does not exist"), ("3-1", "below the start"),
                                           ("a", "bad layer list"), ("1;2", "bad layer list")])
def test_parse_layers_rejects_bad_input(text, message):
    with pytest.raises(InputError, match=message):
        dirs.parse_layers(text, 10)


def test_parse_strengths_sweep_list_and_single():
    assert dirs.parse_strengths("-3:3:7") == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert dirs.parse_strengths("0:1:3") == [0.0, 0.5, 1.0]
    assert dirs.parse_strengths("1.5") == [1.5]
    assert dirs.parse_strengths("0, 2,-1") == [0.0, 2.0, -1.0]
    assert dirs.format_strength(-1.5) == "-1.5" and dirs.format_strength(2.0) == "2"
    for bad in ("1:2", "a", "0:1:x", "0:1:0", "nan", ""):
        with pytest.raises(InputError):
            dirs.parse_strengths(bad)


# --------------------------------------------------------------------------------------------------
# Arithmetic and apply


def test_difference_and_mean_broadcast_w_over_w_plus_rows():
    rng = np.random.default_rng(0)
    w_plus, w = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    np.testing.assert_allclose(dirs.difference(w_plus, w), w_plus - w[None], rtol=1e-6)
    np.testing.assert_allclose(dirs.difference(w, w_plus), w[None] - w_plus, rtol=1e-6)
    assert dirs.difference(w, 2 * w).shape == (6,)
    mean = dirs.mean_of([w_plus, w, w_plus[None]])  # a leading batch axis of 1 is dropped
    np.testing.assert_allclose(mean, (2 * w_plus + w[None]) / 3, rtol=1e-5)


def test_difference_rejects_shapes_that_cannot_meet():
    with pytest.raises(InputError, match="different w_dim"):
        dirs.difference(np.zeros(6), np.zeros(7))
    with pytest.raises(InputError, match="numbers of W\\+ rows"):
        dirs.difference(np.zeros((4, 6)), np.zeros((5, 6)))
    with pytest.raises(InputError, match="one latent per file"):
        dirs.mean_of([np.zeros((2, 4, 6))])


def test_apply_direction_edits_only_the_chosen_rows():
    rng = torch.Generator().manual_seed(0)
    w_plus = torch.randn(3, 6, 5, generator=rng)
    vector = torch.randn(5, generator=rng).numpy()
    edited = dirs.apply_direction(w_plus, vector, 2.0, layers=[1, 4])
    changed = [1, 4]
    unchanged = [0, 2, 3, 5]
    assert torch.equal(edited[:, unchanged], w_plus[:, unchanged])
    torch.testing.assert_close(edited[:, changed], w_plus[:, changed] + 2.0 * torch.from_numpy(vector))
    assert torch.equal(dirs.apply_direction(w_plus, vector, 0.0), w_plus)

    per_row = torch.randn(6, 5, generator=rng).numpy()
    sweep = dirs.apply_direction(w_plus, per_row, [-1.0, 0.0, 3.0])
    assert sweep.shape == (3, 3, 6, 5)
    torch.testing.assert_close(sweep[:, 2], w_plus + 3.0 * torch.from_numpy(per_row))
    assert torch.equal(sweep[:, 1], w_plus)


def test_apply_direction_of_the_wrong_shape_is_a_clear_error():
    with pytest.raises(InputError, match=r"needs W \[5\] or W\+ \[6, 5\]"):
        dirs.apply_direction(torch.zeros(1, 6, 5), np.zeros((4, 5)), 1.0)


def test_direction_magnitude_counts_only_the_edited_rows():
    vector = np.zeros((4, 3), np.float32)
    vector[1] = [3, 4, 0]
    assert dirs.direction_magnitude(vector) == pytest.approx(5.0)
    assert dirs.direction_magnitude(vector, rows=[0, 1]) == pytest.approx(5.0 / np.sqrt(2))
    assert dirs.direction_magnitude(np.array([3.0, 4.0])) == pytest.approx(5.0)


# --------------------------------------------------------------------------------------------------
# Files and provenance


def test_sidecar_round_trip_and_generator_checks(tmp_path):
    vector = np.arange(12, dtype=np.float32).reshape(3, 4)
    meta = dirs.save_direction(tmp_path / "v.npy", vector, method="test", params={"a": 1}, seeds=[0, 1],
                               generator_sha256="a" * 64)
    assert (tmp_path / "v.json").is_file() and meta["shape"] == [3, 4] and meta["space"] == "w+"
    loaded = dirs.load_direction(tmp_path / "v.npy")
    np.testing.assert_array_equal(loaded.vector, vector)
    stored = json.loads((tmp_path / "v.json").read_text())
    assert stored["generator_sha256"] == "a" * 64 and stored["seeds"] == [0, 1] and stored["method"] == "test"
    assert set(stored) >= {"params", "created", "versions", "shape"}

    assert dirs.direction_problems(loaded, 3, 4, "a" * 64) == []
    assert dirs.direction_problems(loaded, 3, 4, None) == []
    warnings = dirs.direction_problems(loaded, 3, 4, "b" * 64)
    assert len(warnings) == 1 and "made with generator aaaaaaaaaaaa, not this one" in warnings[0]
    with pytest.raises(InputError, match=r"shape \[3, 4\].*W \[4\] or W\+ \[7, 4\]"):
        dirs.direction_problems(loaded, 7, 4, "a" * 64)


def test_a_missing_or_broken_sidecar_is_not_an_error(tmp_path):
    np.save(tmp_path / "bare.npy", np.ones(4, np.float32))
    bare = dirs.load_direction(tmp_path / "bare.npy")
    assert bare.meta == {} and dirs.direction_problems(bare, 3, 4, "c" * 64) == []
    (tmp_path / "bare.json").write_text("{not json")
    broken = dirs.load_direction(tmp_path / "bare.npy")
    problems = dirs.direction_problems(broken, 3, 4, "c" * 64)
    assert len(problems) == 1 and "unreadable" in problems[0]
    with pytest.raises(InputError, match="does not exist"):
        dirs.load_direction(tmp_path / "missing.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError):
        dirs.load_direction(tmp_path / "objects.npy")


# --------------------------------------------------------------------------------------------------
# InterFaceGAN


def test_condition_direction_is_orthogonal_to_every_condition():
    rng = np.random.default_rng(1)
    primary = rng.normal(size=16)
    conditions = rng.normal(size=(3, 16))
    conditions = np.vstack([conditions, conditions[0] + conditions[1]])  # a dependent one adds nothing
    result = dirs.condition_direction(primary, conditions)
    assert np.linalg.norm(result) == pytest.approx(1.0)
    np.testing.assert_allclose(conditions @ result, 0, atol=1e-10)
    assert result @ primary > 0
    # nothing to remove: the primary direction, normalised
    np.testing.assert_allclose(dirs.condition_direction(primary, np.zeros((0, 16))), primary / np.linalg.norm(primary))
    with pytest.raises(InputError, match="inside the span"):
        dirs.condition_direction(conditions[0] - 2 * conditions[2], conditions[:3])


def test_linear_svm_recovers_a_separating_plane():
    rng = np.random.default_rng(2)
    normal = rng.normal(size=12)
    normal /= np.linalg.norm(normal)
    w = rng.normal(size=(600, 12)) * 2 + 5
    labels = ((w - 5) @ normal > 0.3).astype(int)
    found, info = dirs.fit_attribute_normal(w, labels, seed=0)
    assert found @ normal > 0.95
    assert info["validation_accuracy"] > 0.9 and info["positives"] + info["negatives"] == 600
    # the recorded offset puts the plane where the labels change: its sign classifies the samples
    distance = w @ found + info["boundary_offset"]
    assert ((distance > 0) == labels.astype(bool)).mean() > 0.95
    with pytest.raises(InputError, match="needs both classes"):
        dirs.fit_attribute_normal(w, np.zeros(600), name="Bald")


def test_interfacegan_conditioning_removes_the_correlated_attribute():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(800, 10))
    a, b = np.eye(10)[0], (np.eye(10)[0] + np.eye(10)[1]) / np.sqrt(2)  # correlated attribute normals
    names = tuple(ATTRIBUTE_NAMES)
    probs = np.zeros((800, len(names)), np.float32)
    probs[:, names.index("Blond_Hair")] = w @ a > 0
    probs[:, names.index("Male")] = w @ b > 0
    samples = dirs.LabelledSamples(w.astype(np.float32), probs, names, seed=0)
    plain, report = dirs.interfacegan_direction(samples, "Blond_Hair")
    conditioned, report_c = dirs.interfacegan_direction(samples, "Blond_Hair", ["Male"])
    assert plain @ a > 0.95 and abs(plain @ b) > 0.5
    male_normal, _ = dirs.fit_attribute_normal(w, probs[:, names.index("Male")], seed=0)
    assert abs(conditioned @ male_normal) < 1e-5
    assert report_c["conditions"]["Male"]["cosine_before"] == pytest.approx(float(plain @ male_normal), abs=1e-3)
    with pytest.raises(InputError, match="on itself"):
        dirs.interfacegan_direction(samples, "Male", ["Male"])


def test_labelled_samples_are_cached_and_keyed(generator, classifier, tmp_path):
    cache = tmp_path / "samples.npz"
    first = dirs.sample_and_label(generator, classifier, 40, seed=5, batch_size=16, cache_path=cache,
                                  cache_key={"generator_sha256": "x"})
    assert not first.from_cache and first.w.shape == (40, 24) and first.probs.shape == (40, len(ATTRIBUTE_NAMES))
    again = dirs.sample_and_label(generator, classifier, 40, seed=5, batch_size=40, cache_path=cache,
                                  cache_key={"generator_sha256": "x"})
    assert again.from_cache
    np.testing.assert_array_equal(again.w, first.w)
    other = dirs.sample_and_label(generator, classifier, 40, seed=5, cache_path=cache,
                                  cache_key={"generator_sha256": "y"})
    assert not other.from_cache
    # the samples are w = mapping(z) of the seeded draw, and the labels are the classifier's
    z = torch.randn(40, 24, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        w = generator.mapping(z)
        images = generator.synthesis(w)
    np.testing.assert_allclose(first.w, w.numpy(), atol=1e-5)
    from latentedit.evaluate.classifier import predict_attributes

    np.testing.assert_allclose(first.probs, predict_attributes(classifier, images).numpy(), atol=1e-4)


def test_svm_direction_moves_samples_towards_the_attribute(generator, classifier, tmp_path):
    """End to end with a classifier whose rule is known: adding the SVM direction raises the attribute's score."""
    meta = dirs.svm_to_file(generator, classifier, "Blond_Hair", tmp_path / "blond.npy", n=200, seed=0,
                            conditions=["Male"], checkpoint_info={"sha256": "d" * 64}, progress=False)
    vector = np.load(tmp_path / "blond.npy")
    assert vector.shape == (24,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert meta["method"] == "interfacegan-svm" and meta["params"]["condition"] == ["Male"]
    assert meta["generator_sha256"] == "d" * 64 and meta["report"]["fit"]["validation_accuracy"] > 0.6
    boundary = dirs.boundary_of(dirs.load_direction(tmp_path / "blond.npy"))
    assert boundary.offset == meta["report"]["fit"]["boundary_offset"] and boundary.normal.shape == (24,)
    w = generator.broadcast_w(generator.mapping(torch.randn(64, 24, generator=torch.Generator().manual_seed(9))))
    from latentedit.evaluate.classifier import predict_attributes

    column = ATTRIBUTE_NAMES.index("Blond_Hair")
    before = predict_attributes(classifier, dirs.render_latents(generator, w))[:, column]
    edited = dirs.render_latents(generator, dirs.apply_direction(w, vector, 3.0))
    after = predict_attributes(classifier, edited)[:, column]
    assert (after >= 0.5).float().mean() > (before >= 0.5).float().mean() + 0.3


def test_apply_to_distance_puts_every_latent_at_the_target_distance():
    rng = np.random.default_rng(4)
    w_plus = torch.from_numpy(rng.normal(size=(5, 6, 8))).double()
    normal = rng.normal(size=8)
    boundary = dirs.Boundary(normal=normal / np.linalg.norm(normal), offset=0.7)
    vector = rng.normal(size=8) + 2 * boundary.normal  # crosses the plane, not along its normal
    edited, steps = dirs.apply_to_distance(w_plus, vector, boundary, [-1.0, 3.0], layers=[1, 2, 3])
    assert edited.shape == (5, 2, 6, 8) and steps.shape == (5, 2)
    for k, target in enumerate([-1.0, 3.0]):
        np.testing.assert_allclose(boundary.distance(edited[:, k], [1, 2, 3]).numpy(), target, atol=1e-9)
        assert torch.equal(edited[:, k, [0, 4, 5]], w_plus[:, [0, 4, 5]])
        # the edit is an ordinary strength edit, with one strength per latent
        for i in range(5):
            expected = dirs.apply_direction(w_plus[i:i + 1], vector, float(steps[i, k]), [1, 2, 3])
            torch.testing.assert_close(edited[i:i + 1, k], expected)
    # latents at different distances get different steps; a W+ direction works row by row
    assert steps[:, 1].std() > 0
    rows = torch.from_numpy(rng.normal(size=(6, 8)))
    single, _ = dirs.apply_to_distance(w_plus, rows, boundary, 2.0)
    np.testing.assert_allclose(boundary.distance(single).numpy(), 2.0, atol=1e-9)
    orthogonal = rng.normal(size=8)
    orthogonal -= (orthogonal @ boundary.normal) * boundary.normal
    with pytest.raises(InputError, match="parallel to the SVM boundary"):
        dirs.apply_to_distance(w_plus, orthogonal, boundary, 1.0)


def test_only_svm_directions_carry_a_boundary(tmp_path):
    dirs.save_direction(tmp_path / "v.npy", np.ones(8, np.float32), method="test")
    with pytest.raises(InputError, match="no SVM boundary"):
        dirs.boundary_of(dirs.load_direction(tmp_path / "v.npy"))
    dirs.save_direction(tmp_path / "s.npy", np.ones(8, np.float32), method="interfacegan-svm",
                        extra={"report": {"boundary": {"normal": [2.0] + [0.0] * 7, "offset": -1.5}}})
    boundary = dirs.boundary_of(dirs.load_direction(tmp_path / "s.npy"))
    assert boundary.offset == -1.5 and boundary.normal[0] == 1.0  # normalised
    dirs.save_direction(tmp_path / "z.npy", np.ones(8, np.float32), method="interfacegan-svm",
                        extra={"report": {"boundary": {"normal": [0.0] * 8, "offset": 1.0}}})
    with pytest.raises(InputError, match="malformed"):
        dirs.boundary_of(dirs.load_direction(tmp_path / "z.npy"))


def test_a_learned_direction_adds_the_attribute_and_keeps_the_one_it_is_told_to(generator, classifier, tmp_path):
    """With the known rule of the stand-in classifier (Blond_Hair reads the red channel, Male the green one),
    weighting Male in the loss must leave Male flips lower than learning without it, at full success."""
    from latentedit.directions.learn import LearnSettings, learn_direction, learn_to_file

    settings = LearnSettings(strength=3.0, steps=40, batch_size=16, lr=0.1, pool=200, other_weight=0.0, shift=0)
    kept, report = learn_direction(generator, classifier, "Blond_Hair", ["Male"], [0, 1, 2, 3],
                                   dataclasses.replace(settings, keep_weight=20.0))
    free, free_report = learn_direction(generator, classifier, "Blond_Hair", ["Male"], [0, 1, 2, 3],
                                        dataclasses.replace(settings, keep_weight=0.0))
    assert kept.shape == (generator.num_ws, 24) and not kept[4:].any()
    np.testing.assert_allclose(np.linalg.norm(kept[:4], axis=1), 1.0, atol=1e-5)
    after, free_after = report["guide_on_pool"]["after"], free_report["guide_on_pool"]["after"]
    before = report["guide_on_pool"]["before"]  # the class-mean difference both start from
    assert after["success_rate"] >= before["success_rate"] + 0.4 and free_after["success_rate"] >= 0.95
    assert after["flips_Male"] <= 0.05 < 0.1 < free_after["flips_Male"]
    meta = learn_to_file(generator, classifier, "Blond_Hair", tmp_path / "learned.npy", keep=["Male"],
                         layers="0-3", settings=dataclasses.replace(settings, steps=2, shift=2),
                         guide_info={"sha256": "g" * 64}, progress=False)
    assert meta["method"] == "guided" and meta["params"]["layers"] == "0-3" and meta["params"]["guide"]["sha256"]
    with pytest.raises(InputError, match="both added and kept"):
        learn_direction(generator, classifier, "Male", ["Male"], None, settings)
    with pytest.raises(InputError, match=r"\.npy"):
        learn_to_file(generator, classifier, "Blond_Hair", tmp_path / "learned.txt", settings=settings)


# --------------------------------------------------------------------------------------------------
# SeFa and GANSpace


def test_modulation_weights_follow_the_row_to_layer_map(generator):
    names = [name for name, _, _ in dirs.modulation_weights(generator, range(generator.num_ws), include_torgb=True)]
    assert names[:5] == ["conv1", "to_rgb1", "convs.0", "convs.1", "to_rgbs.0"]
    rows = {name: row for name, row, _ in dirs.modulation_weights(generator, range(generator.num_ws), True)}
    assert rows["to_rgb1"] == rows["convs.0"] == 1 and rows["to_rgbs.0"] == rows["convs.2"] == 3
    assert [n for n, _, _ in dirs.modulation_weights(generator, [1])] == ["convs.0"]
    last = generator.num_ws - 1
    with pytest.raises(InputError, match="feed no styled convolution"):
        dirs.sefa_directions(generator, [last])
    assert dirs.sefa_directions(generator, [last], k=2, include_torgb=True)[0].shape == (2, 24)


def test_sefa_directions_are_the_top_eigenvectors(generator):
    directions, singular, names = dirs.sefa_directions(generator, [0, 1, 2], k=4)
    assert names == ["conv1", "convs.0", "convs.1"]
    stacked = torch.cat([generator.conv1.conv.modulation.weight, generator.convs[0].conv.modulation.weight,
                         generator.convs[1].conv.modulation.weight]).double().numpy()
    stacked /= np.linalg.norm(stacked, axis=1, keepdims=True)
    values, vectors = np.linalg.eigh(stacked.T @ stacked)
    np.testing.assert_allclose(singular ** 2, values[::-1][:4], rtol=1e-4)
    for k in range(4):
        assert abs(directions[k] @ vectors[:, -1 - k]) == pytest.approx(1.0, abs=1e-4)
        assert directions[k][np.abs(directions[k]).argmax()] > 0
    np.testing.assert_allclose(directions @ directions.T, np.eye(4), atol=1e-5)
    other, _, _ = dirs.sefa_directions(generator, [3, 4], k=1)
    assert abs(other[0] @ directions[0]) < 0.99


def test_sefa_folder_writes_masked_w_plus_files_and_grids(generator, tmp_path):
    manifest = dirs.sefa_to_folder(generator, tmp_path, layers="0-3", k=2, checkpoint_info={"sha256": "e" * 64},
                                   grid_seeds=[0, 1], grid_strengths=[-3, 0, 3])
    assert [d["file"] for d in manifest["directions"]] == ["sefa_00.npy", "sefa_01.npy"]
    vector = np.load(tmp_path / "sefa_00.npy")
    assert vector.shape == (generator.num_ws, 24)
    assert np.all(vector[4:] == 0) and np.allclose(np.linalg.norm(vector[:4], axis=1), 1.0, atol=1e-5)
    side = json.loads((tmp_path / "sefa_00.json").read_text())
    assert side["method"] == "sefa" and side["params"]["layers"] == "0-3" and side["generator_sha256"] == "e" * 64
    grid = Image.open(tmp_path / "sefa_00.png")
    assert grid.size == (3 * (32 + 2) + 2, 2 * (32 + 2) + 2)
    assert Image.open(tmp_path / "overview.png").size == (3 * 34 + 2, 2 * 34 + 2)
    everything = dirs.sefa_to_folder(generator, tmp_path / "all", k=1, grid_seeds=[0], grid_strengths=[0])
    assert np.load(tmp_path / "all" / "sefa_00.npy").shape == (24,) and everything["params"]["layers"] == "0-7"


def test_ganspace_components_are_scaled_principal_axes(generator, tmp_path):
    components, stds, ratios = dirs.ganspace_directions(generator, n=2000, k=3, seed=0)
    np.testing.assert_allclose(components @ components.T, np.eye(3), atol=1e-5)
    assert stds[0] >= stds[1] >= stds[2] > 0 and 0 < ratios.sum() <= 1
    z = torch.randn(2000, 24, generator=torch.Generator().manual_seed(0))
    w = generator.mapping(z).double().numpy()
    assert np.std((w - w.mean(0)) @ components[0].astype(np.float64), ddof=1) == pytest.approx(stds[0], rel=1e-3)
    dirs.ganspace_to_folder(generator, tmp_path, k=2, n=500, grid_seeds=[0], grid_strengths=[-1, 1])
    saved = np.load(tmp_path / "pc_00.npy")
    assert np.linalg.norm(saved) == pytest.approx(json.loads((tmp_path / "pc_00.json").read_text())["params"]["std"],
                                                  rel=1e-4)


# --------------------------------------------------------------------------------------------------
# PULSE pairs


@pytest.fixture(scope="module")
def fit(generator):
    from latentedit.pulse.fit import GaussianFit, compute_gaussian_fit, mapping_digest

    mean, std = compute_gaussian_fit(generator, num_samples=2000)
    return GaussianFit(mean, std, 2000, 0, mapping_digest(generator))


def _reference(seed: int) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    return torch.cat([torch.rand(3, 16, 16, generator=rng), (torch.rand(1, 16, 16, generator=rng) > 0.5).float()])


def test_pulse_pairs_start_together_and_average_their_differences(generator, fit):
    from latentedit.pulse.search import PulseSettings

    settings = PulseSettings(steps=3)
    same = dirs.run_pulse_pairs(generator, _reference(0), _reference(0), [0, 1, 2], settings, batch_size=2, fit=fit)
    vector, used = dirs.pulse_pair_direction(same)
    assert used == [0, 1, 2] and vector.shape == (generator.num_ws, 24) and np.all(vector == 0)
    pairs = dirs.run_pulse_pairs(generator, _reference(0), _reference(1), [0, 1, 2], settings, batch_size=2, fit=fit)
    vector, _ = dirs.pulse_pair_direction(pairs)
    np.testing.assert_allclose(vector, (pairs.w_a - pairs.w_b).mean(0).numpy(), atol=1e-6)
    assert np.abs(vector).max() > 0
    single, _ = dirs.pulse_pair_direction(dirs.PulsePairs(
        [0], pairs.w_a[:1], pairs.w_b[:1], pairs.images_a[:1], pairs.images_b[:1], [True], [False], [0.0], [1.0]))
    np.testing.assert_allclose(single, (pairs.w_a[0] - pairs.w_b[0]).numpy(), atol=1e-6)
    with pytest.raises(InputError, match="no seed reached eps"):
        dirs.pulse_pair_direction(dirs.PulsePairs(
            [0], pairs.w_a[:1], pairs.w_b[:1], pairs.images_a[:1], pairs.images_b[:1], [True], [False], [0.0], [1.0]),
            only_successful=True)
    grid = dirs.pairs_grid(pairs, per_row=2)  # 3 seeds in strips of 2: A, B, A, B rows
    assert grid.shape == (4 * 34 + 2, 2 * 34 + 2, 3)


# --------------------------------------------------------------------------------------------------
# Commands


def test_diff_mean_and_info_commands(ckpt, tmp_path):
    result = run_cli("generate", "--ckpt", ckpt, "--seeds", "0-1", "-o", tmp_path / "gen")
    assert result.exit_code == 0, result.output
    a, b = tmp_path / "gen" / "seed0000.npy", tmp_path / "gen" / "seed0001.npy"
    result = run_cli("direction", "diff", a, b, "-o", tmp_path / "d.npy")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "d.npy"), np.load(a) - np.load(b), atol=1e-6)
    side = json.loads((tmp_path / "d.json").read_text())
    assert side["method"] == "diff" and [s["role"] for s in side["sources"]] == ["A", "B"]
    np.save(tmp_path / "w.npy", np.load(a)[0])  # a W vector
    result = run_cli("direction", "mean", tmp_path / "d.npy", tmp_path / "w.npy", "-o", tmp_path / "m.npy")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), (np.load(tmp_path / "d.npy") + np.load(a)[0]) / 2,
                               atol=1e-6)
    result = run_cli("direction", "info", tmp_path / "m.npy")
    assert result.exit_code == 0 and json.loads(result.output)["sidecar"]["method"] == "mean"
    np.save(tmp_path / "odd.npy", np.zeros(7, np.float32))
    result = run_cli("direction", "diff", a, tmp_path / "odd.npy", "-o", tmp_path / "bad.npy")
    assert result.exit_code == 2 and result.output.startswith("error:") and "different w_dim" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "bad.npy").exists()


def test_apply_direction_command_writes_the_sweep(ckpt, generator, tmp_path):
    run_cli("generate", "--ckpt", ckpt, "--seeds", "3", "-o", tmp_path / "gen")
    latent = tmp_path / "gen" / "seed0003.npy"
    vector = np.random.default_rng(0).normal(size=24).astype(np.float32)
    dirs.save_direction(tmp_path / "v.npy", vector, method="test", generator_sha256=None)
    result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "v.npy", "--latent", latent,
                     "--strength", "-1:1:3", "--strength-unit", "raw", "--layers", "0-5", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["strengths"] == [-1.0, 0.0, 1.0] and manifest["layers"] == "0-5"
    original = np.load(latent)
    np.testing.assert_array_equal(np.load(out / "seed0003_s0.npy"), original)
    edited = np.load(out / "seed0003_s1.npy")
    np.testing.assert_allclose(edited[:6], original[:6] + vector, atol=1e-6)
    np.testing.assert_array_equal(edited[6:], original[6:])
    # the PNG is the render of the edited latent
    expected = dirs.render_latents(generator, torch.from_numpy(edited)[None])
    from latentedit.io import to_uint8

    np.testing.assert_array_equal(np.asarray(Image.open(out / "seed0003_s-1.png")).shape, (32, 32, 3))
    assert np.abs(np.asarray(Image.open(out / "seed0003_s1.png")).astype(int)
                  - to_uint8(expected)[0].astype(int)).max() <= 1
    assert Image.open(out / "sweep.png").size == (3 * 34 + 2, 34 + 2)


def test_strength_one_moves_one_w_spread_whatever_the_norm(ckpt, generator, tmp_path):
    from latentedit.model.sampling import w_spread

    run_cli("generate", "--ckpt", ckpt, "--seeds", "3-4", "-o", tmp_path / "gen")
    spread = w_spread(generator)
    vector = np.zeros((generator.num_ws, 24), np.float32)
    vector[2], vector[3] = 1.0, 0.5  # the most-moved row is row 2
    for scale in (0.01, 100.0):  # the stored norm does not change what a strength means
        dirs.save_direction(tmp_path / "v.npy", vector * scale, method="test")
        out = tmp_path / f"out{scale}"
        result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "v.npy", "--latent", tmp_path / "gen",
                         "--strength", "1", "-o", out)
        assert result.exit_code == 0, result.output
        manifest = json.loads((out / "manifest.json").read_text())
        # a folder from generate: each image once, under its own name (not w_plus_0000)
        assert manifest["names"] == ["seed0003", "seed0004"] and manifest["strength_unit"] == "spread"
        moved = np.load(out / "seed0003_s1.npy") - np.load(tmp_path / "gen" / "seed0003.npy")
        assert np.linalg.norm(moved[2]) == pytest.approx(spread, rel=1e-4)
        assert np.linalg.norm(moved[3]) == pytest.approx(spread / 2, rel=1e-4)
        assert manifest["raw_strengths"] == [pytest.approx(spread / (np.sqrt(24) * scale), rel=1e-5)]
    # far outside W: a warning naming the distance; absurdly far: an error before anything is written
    result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "v.npy", "--latent", tmp_path / "gen",
                     "--strength", "3", "-o", tmp_path / "far")
    assert result.exit_code == 0 and "W spreads from the mean w" in result.output
    result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "v.npy", "--latent", tmp_path / "gen",
                     "--strength", "1e30", "-o", tmp_path / "absurd")
    assert result.exit_code == 2 and "W spreads" in result.output and not (tmp_path / "absurd").exists()
    for bad in ("1,,2", "1,"):
        result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "v.npy", "--latent",
                         tmp_path / "gen", "--strength", bad, "-o", tmp_path / "bad")
        assert result.exit_code == 2 and "empty entry" in result.output
    np.save(tmp_path / "zero.npy", np.zeros(24, np.float32))
    result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "zero.npy", "--latent", tmp_path / "gen",
                     "-o", tmp_path / "zero")
    assert result.exit_code == 2 and "all zeros" in result.output


def test_apply_direction_to_a_target_distance(ckpt, generator, classifier, tmp_path):
    run_cli("generate", "--ckpt", ckpt, "--seeds", "3-4", "-o", tmp_path / "gen")
    latents = np.stack([np.load(tmp_path / "gen" / f"seed000{seed}.npy") for seed in (3, 4)])
    np.save(tmp_path / "two.npy", latents)
    dirs.svm_to_file(generator, classifier, "Blond_Hair", tmp_path / "blond.npy", n=200, seed=0, progress=False)
    result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "blond.npy", "--latent",
                     tmp_path / "two.npy", "--to-distance", "--strength", "0,2", "--layers", "2-4",
                     "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["mode"] == "distance" and len(manifest["steps"]) == 2 and len(manifest["distance_before"]) == 2
    boundary = dirs.boundary_of(dirs.load_direction(tmp_path / "blond.npy"))
    for i in range(2):
        edited = torch.from_numpy(np.load(tmp_path / "out" / f"two_{i:04d}_d2.npy"))[None].double()
        assert float(boundary.distance(edited, [2, 3, 4])) == pytest.approx(2.0, abs=1e-4)
        assert (tmp_path / "out" / f"two_{i:04d}_d0.png").is_file()
    # a direction without a boundary is a one-line error
    dirs.save_direction(tmp_path / "plain.npy", np.ones(24, np.float32), method="test")
    result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "plain.npy", "--latent",
                     tmp_path / "two.npy", "--to-distance", "-o", tmp_path / "bad")
    assert result.exit_code == 2 and "no SVM boundary" in result.output and "Traceback" not in result.output


def test_apply_direction_warns_for_another_generator_and_rejects_wrong_shapes(ckpt, tmp_path):
    run_cli("generate", "--ckpt", ckpt, "--seeds", "0", "-o", tmp_path / "gen")
    latent = tmp_path / "gen" / "seed0000.npy"
    dirs.save_direction(tmp_path / "foreign.npy", np.ones(24, np.float32), method="test", generator_sha256="f" * 64)
    result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "foreign.npy", "--latent", latent,
                     "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "ffffffffffff" in warnings[0]
    dirs.save_direction(tmp_path / "big.npy", np.ones((18, 512), np.float32), method="test")
    result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "big.npy", "--latent", latent,
                     "-o", tmp_path / "out2")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0 and "W [24] or W+ [8, 24]" in result.output
    result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "foreign.npy", "--latent", latent,
                     "--strength", "1:2", "-o", tmp_path / "out3")
    assert result.exit_code == 2 and "bad strength" in result.output


def test_apply_direction_inverts_an_image_first(ckpt, tmp_path):
    image = tmp_path / "face.png"
    Image.open(EXAMPLES / "face.png").convert("RGB").resize((32, 32)).save(image)
    dirs.save_direction(tmp_path / "v.npy", np.ones(24, np.float32), method="test")
    result = run_cli("apply-direction", "--ckpt", ckpt, "--vec", tmp_path / "v.npy", "--latent", image,
                     "--strength", "0,1", "--invert-steps", "2", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    inverted = np.load(tmp_path / "out" / "face_inverted.npy")
    assert inverted.shape == (8, 24)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "face_s0.npy"), inverted)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "image" and manifest["source"]["inversion"]["steps"] == 2


def test_sefa_and_svm_commands(ckpt, tmp_path):
    result = run_cli("direction", "sefa", "--ckpt", ckpt, "--layers", "0-3", "--k", "2", "--grid-seeds", "0",
                     "--grid-strengths", "-1,1", "-o", tmp_path / "sefa")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sefa" / "sefa_01.npy").is_file() and (tmp_path / "sefa" / "overview.png").is_file()
    result = run_cli("direction", "svm", "--ckpt", ckpt, "--attr", "Nope", "--n", "10", "-o", tmp_path / "x.npy")
    assert result.exit_code == 2 and "unknown attribute 'Nope'" in result.output
    result = run_cli("direction", "learn", "--ckpt", ckpt, "--attr", "Blond_Hair", "--keep", "Nope", "--steps", "1",
                     "-o", tmp_path / "y.npy")
    assert result.exit_code == 2 and "unknown attribute 'Nope'" in result.output and "Traceback" not in result.output
    result = run_cli("direction", "learn", "--ckpt", ckpt, "--attr", "Smiling", "--layers", "0-3", "--steps", "2",
                     "--pool", "128", "--batch-size", "8", "--no-progress", "-o", tmp_path / "smile.npy")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "smile.npy").shape == (8, 24) and "Smiling" in result.output


def test_learning_from_one_source_group_starts_from_that_group(generator, classifier):
    """--sources-with: the pool's sources are those the guide also labels with that attribute, and the start is
    the class-mean difference from them (so a gray-hair direction starts from gray sources, not the average)."""
    from latentedit.directions.learn import LearnSettings, learn_direction

    settings = LearnSettings(strength=3.0, steps=1, batch_size=8, lr=1e-9, pool=200, shift=0)
    everyone, report = learn_direction(generator, classifier, "Blond_Hair", ["Male"], [0, 1], settings)
    group, group_report = learn_direction(generator, classifier, "Blond_Hair", ["Male"], [0, 1],
                                          dataclasses.replace(settings, sources_with="Young"))
    assert 0 < group_report["pool"]["sources"] < report["pool"]["sources"]
    assert not np.allclose(everyone, group)  # lr ~0: the two starting points themselves differ
    with pytest.raises(InputError, match="--sources-with"):
        learn_direction(generator, classifier, "Blond_Hair", ["Male"], [0, 1],
                        dataclasses.replace(settings, sources_with="Purple_Hair"))


def test_the_shipped_learned_blond_direction_turns_held_out_samples_blond():
    """examples/blond_learned.npy is made for the shipped generator and does what the README says of it."""
    from latentedit.checkpoints import load_generator
    from latentedit.evaluate.classifier import load_attribute_classifier
    from latentedit.evaluate.edit import evaluate_direction, generated_sources

    repo = Path(__file__).resolve().parents[1]
    direction = dirs.load_direction(repo / "examples" / "blond_learned.npy")
    generator, info = load_generator("toyfaces64")
    assert direction.meta["method"] == "guided" and direction.meta["generator_sha256"] == info.sha256
    assert not direction.vector[[0, 1, 2, 6, 7, 8, 9]].any()
    classifier, _ = load_attribute_classifier()
    sources = generated_sources(generator, classifier, "Blond_Hair", 40, seed=5)
    (record,), _ = evaluate_direction(generator, classifier, sources, direction.vector, "Blond_Hair", [12.0])
    assert record["success_rate"] >= 0.7 and record["flips"]["Male"] <= 0.1
