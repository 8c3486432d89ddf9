"""``evaluate edit``: success and side-effect rates by strength, generated and inverted sources, reports."""
from __future__ import annotations

import json
import types
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from latentedit import directions as dirs
from latentedit.evaluate import edit as ev
from latentedit.checkpoints import save_native
from latentedit.data import toyfaces
from latentedit.data.toyfaces import ATTRIBUTE_NAMES
from latentedit.errors import InputError
from latentedit.invert.optimize import InversionSettings
from latentedit.model import Generator
from helpers import make_generator

BLOND = ATTRIBUTE_NAMES.index("Blond_Hair")


pytestmark = pytest.mark.usefixtures("single_thread", "private_caches")


@pytest.fixture(scope="module")
def generator() -> Generator:
    return make_generator(7)


class BrightnessClassifier(nn.Module):
    """Attribute k is present when the mean of colour channel ``k % 3`` exceeds ``thresholds[k]``."""

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


def median_thresholds(generator) -> list[float]:
    with torch.no_grad():
        z = torch.randn(256, 24, generator=torch.Generator().manual_seed(1))
        images = generator.synthesis(generator.mapping(z))
    medians = images.clamp(-1, 1).mean(dim=(2, 3)).median(0).values
    return [float(medians[k % 3]) for k in range(len(ATTRIBUTE_NAMES))]


@pytest.fixture(scope="module")
def classifier(generator) -> BrightnessClassifier:
    return BrightnessClassifier(median_thresholds(generator))


@pytest.fixture(scope="module")
def svm_direction(generator, classifier) -> np.ndarray:
    samples = dirs.sample_and_label(generator, classifier, 200, seed=0)
    vector, _ = dirs.interfacegan_direction(samples, "Blond_Hair")
    return vector


def test_side_effects_exclude_the_other_hair_colours_only_for_hair_colours():
    blond = ev.side_effect_attributes("Blond_Hair")
    assert not set(toyfaces.HAIR_COLOURS) & set(blond) and "Male" in blond and len(blond) == len(ATTRIBUTE_NAMES) - 4
    glasses = ev.side_effect_attributes("Eyeglasses")
    assert "Eyeglasses" not in glasses and set(toyfaces.HAIR_COLOURS) <= set(glasses)
    with pytest.raises(InputError, match="unknown attribute"):
        ev.side_effect_attributes("Blond")


def test_flip_rates_count_label_changes():
    names = ["A", "B"]
    before = np.array([[0.1, 0.9], [0.6, 0.2], [0.4, 0.7], [0.2, 0.1]])
    after = np.array([[0.7, 0.9], [0.8, 0.6], [0.4, 0.3], [0.2, 0.1]])
    assert ev.flip_rates(before, after, names, ["A", "B"]) == {"A": 0.25, "B": 0.5}


def _record(strength, success, psnr=None):
    return {"strength": strength, "success_rate": success, "side_effect_mean": 0.0,
            "side_effect_max": {"attribute": "Male", "rate": 0.0}, "flips": {"Male": 0.1 * abs(strength)},
            "pixel_change": 0.0, "lpips": None, "psnr_to_truth_db": psnr}


def test_summary_picks_the_best_and_the_smallest_strength_reaching_the_target():
    records = [_record(-2, 0.9, 10.0), _record(0, 0.0, 12.0), _record(1, 0.85, 15.0), _record(2, 0.95, 14.0),
               _record(3, 0.95, 13.0)]
    summary = ev.summarise(records, target_success=0.8)
    assert summary["best"]["strength"] == 2  # highest success; ties go to the smaller |strength|
    assert summary["first_at_target"]["strength"] == 1 and summary["first_at_target"]["watched"]["Male"] == 0.1
    assert summary["best_psnr"] == {"strength": 1, "psnr_to_truth_db": 15.0, "success_rate": 0.85}
    assert ev.summarise(records, target_success=0.99)["first_at_target"] is None


def test_generated_sources_lack_the_attribute(generator, classifier):
    sources = ev.generated_sources(generator, classifier, "Blond_Hair", 12, seed=4, batch_size=16)
    assert sources.w_plus.shape == (12, generator.num_ws, 24) and len(set(sources.ids)) == 12
    assert (sources.probs[:, BLOND] < 0.5).all()
    assert torch.equal(sources.originals, dirs.render_latents(generator, sources.w_plus, 16))
    with pytest.raises(InputError, match="lack Blond_Hair"):
        ev.generated_sources(generator, BrightnessClassifier([-5.0] * len(ATTRIBUTE_NAMES)), "Blond_Hair", 2,
                             max_draws=256)


def test_a_good_direction_succeeds_and_zero_strength_changes_nothing(generator, classifier, svm_direction, tmp_path):
    sources = ev.generated_sources(generator, classifier, "Blond_Hair", 24, seed=3, batch_size=64)
    directions = {"svm": svm_direction, "reverse": -svm_direction}
    result, kept = ev.evaluate_directions(generator, classifier, sources, directions, "Blond_Hair", [0.0, 1.5, 3.0],
                                          watch=["Male", "Young"], keep=4)
    forward = result["directions"]["svm"]["per_strength"]
    zero = forward[0]
    assert zero["success_rate"] == 0.0 and zero["pixel_change"] == 0.0 and zero["side_effect_mean"] == 0.0
    assert forward[2]["success_rate"] > 0.7 and forward[2]["pixel_change"] > forward[1]["pixel_change"] > 0
    assert result["directions"]["reverse"]["per_strength"][2]["success_rate"] < 0.1
    assert result["directions"]["svm"]["summary"]["best"]["strength"] == 3.0
    assert set(zero["flips"]) == set(ev.side_effect_attributes("Blond_Hair"))
    assert zero["lpips"] is None and zero["psnr_to_truth_db"] is None
    assert kept["svm"].shape == (4, 3, 3, 32, 32)

    result["sources"] = {"kind": "generated", "count": 24, "ids": sources.ids, "details": sources.details}
    files = ev.write_report(result, kept, sources, tmp_path)
    assert files[:3] == ["edit_eval.json", "edit_eval.md", "edit_eval.png"]
    stored = json.loads((tmp_path / "edit_eval.json").read_text())
    assert stored["directions"]["svm"]["per_strength"][2]["success_rate"] == forward[2]["success_rate"]
    markdown = (tmp_path / "edit_eval.md").read_text()
    assert "| svm | 3 |" in markdown and "Male flips" in markdown and "Young flips" in markdown
    assert "other hair colours excluded" in markdown
    assert Image.open(tmp_path / "edit_eval.png").size[0] > 500
    assert Image.open(tmp_path / "svm_samples.png").size == (3 * 34 + 2, 4 * 34 + 2)


def test_normalize_makes_strength_a_distance(generator, classifier, svm_direction):
    sources = ev.generated_sources(generator, classifier, "Blond_Hair", 6, seed=3)
    plain, _ = ev.evaluate_directions(generator, classifier, sources, {"v": svm_direction}, "Blond_Hair", [2.0])
    scaled, _ = ev.evaluate_directions(generator, classifier, sources, {"v": 5 * svm_direction}, "Blond_Hair", [2.0],
                                       normalize=True)
    assert scaled["directions"]["v"]["magnitude"] == pytest.approx(5.0, rel=1e-5)
    assert scaled["directions"]["v"]["scale"] == pytest.approx(0.2, rel=1e-5)
    assert scaled["directions"]["v"]["per_strength"][0]["pixel_change"] == pytest.approx(
        plain["directions"]["v"]["per_strength"][0]["pixel_change"], rel=1e-4)


def test_target_distances_move_each_source_as_far_as_it_needs(generator, classifier, tmp_path):
    samples = dirs.sample_and_label(generator, classifier, 200, seed=0)
    vector, report = dirs.interfacegan_direction(samples, "Blond_Hair")
    boundary = dirs.Boundary(np.asarray(report["boundary"]["normal"]), report["boundary"]["offset"])
    sources = ev.generated_sources(generator, classifier, "Blond_Hair", 12, seed=3)
    result, _ = ev.evaluate_directions(generator, classifier, sources, {"svm": vector}, "Blond_Hair", [1.0, 3.0],
                                       boundaries={"svm": boundary})
    records = result["directions"]["svm"]["per_strength"]
    assert result["mode"] == "distance" and records[1]["median_step"] > records[0]["median_step"] > 0
    assert records[1]["success_rate"] >= records[0]["success_rate"]
    with pytest.raises(InputError, match="every direction"):
        ev.evaluate_directions(generator, classifier, sources, {"svm": vector, "other": vector}, "Blond_Hair",
                               [1.0], boundaries={"svm": boundary})
    result["sources"] = {"kind": "generated", "count": 12, "ids": sources.ids, "details": sources.details}
    assert "target signed distance" in ev.format_markdown(result)


def test_inverted_sources_compare_with_the_counterfactual_and_cache_inversions(generator, tmp_path):
    thresholds = median_thresholds(generator)
    thresholds[BLOND] = 5.0  # nothing is ever labelled blond: every reconstruction qualifies
    classifier = BrightnessClassifier(thresholds)
    settings = InversionSettings(steps=2, perceptual="none")
    sources = ev.inverted_sources(generator, classifier, "Blond_Hair", 3, settings=settings, start=0, batch_size=2,
                                  cache_dir=tmp_path / "cache", cache_key={"generator_sha256": "x"})
    expected = [i for i in range(40)
                if toyfaces.sample_params(toyfaces.HELDOUT_SEED, i).attributes["Blond_Hair"] == 0][:3]
    assert sources.ids == expected
    truth = toyfaces.render(
        toyfaces.sample_params(toyfaces.HELDOUT_SEED, expected[1]).with_attributes(Blond_Hair=1), 32)
    np.testing.assert_allclose(((sources.truths[1] + 1) * 127.5).permute(1, 2, 0).numpy(), truth, atol=1e-3)
    assert sources.details["inversion"]["inverted"] == 3 and len(list((tmp_path / "cache").iterdir())) == 3

    again = ev.inverted_sources(generator, classifier, "Blond_Hair", 3, settings=settings, batch_size=2,
                                cache_dir=tmp_path / "cache", cache_key={"generator_sha256": "x"})
    assert again.details["inversion"]["cached"] == 3 and again.details["inversion"]["inverted"] == 0
    assert torch.equal(again.w_plus, sources.w_plus)

    records, _ = ev.evaluate_direction(generator, classifier, sources, np.zeros(24, np.float32), "Blond_Hair", [0.0])
    manual = ev.psnr_per_image(sources.originals, sources.truths).mean()
    assert records[0]["psnr_to_truth_db"] == pytest.approx(float(manual), rel=1e-6)
    assert sources.details["baseline"]["reconstruction_psnr_to_truth_db"] == pytest.approx(float(manual), abs=1e-3)


def test_inverted_sources_drop_reconstructions_that_already_show_the_attribute(generator):
    thresholds = median_thresholds(generator)
    thresholds[BLOND] = -5.0  # every reconstruction looks blond
    with pytest.raises(InputError, match="labelled as lacking it after inversion"):
        ev.inverted_sources(generator, BrightnessClassifier(thresholds), "Blond_Hair", 1,
                            settings=InversionSettings(steps=1, perceptual="none"), max_candidates=2)
    with pytest.raises(InputError, match="fixed noise"):
        ev.inverted_sources(generator, BrightnessClassifier(thresholds), "Blond_Hair", 1,
                            settings=InversionSettings(steps=1, noise="optimize", perceptual="none"))


def test_direction_names_accept_name_equals_path(tmp_path):
    assert ev.direction_names(["a/b/blond.npy", "single=x/y.npy", "a/c/blond.npy"]) == [
        ("blond", "a/b/blond.npy"), ("single", "x/y.npy"), ("blond_2", "a/c/blond.npy")]


def test_evaluate_edit_command(generator, tmp_path):
    from latentedit.cli.main import cli

    ckpt = save_native(generator, tmp_path / "tiny.safetensors")
    dirs.save_direction(tmp_path / "v.npy", np.ones(24, np.float32), method="test")
    result = CliRunner().invoke(cli, ["evaluate", "edit", "--ckpt", str(ckpt), "--vec", str(tmp_path / "v.npy"),
                                      "--attr", "Blond_Hair", "--n", "4", "--strengths", "0:1:2", "--no-progress",
                                      "-o", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "note: LPIPS not measured" in result.output and "v: best strength" in result.output
    stored = json.loads((tmp_path / "eval" / "edit_eval.json").read_text())
    assert stored["lpips"] is None and stored["sources"]["count"] == 4 and stored["classifier"]["sha256"]
    assert [r["strength"] for r in stored["directions"]["v"]["per_strength"]] == [0.0, 1.0]
    for name in ("edit_eval.md", "edit_eval.png", "v_samples.png"):
        assert (tmp_path / "eval" / name).is_file()
    result = CliRunner().invoke(cli, ["evaluate", "edit", "--ckpt", str(ckpt), "--vec", str(tmp_path / "v.npy"),
                                      "--attr", "Blonde", "-o", str(tmp_path / "eval2")])
    assert result.exit_code == 2 and result.output.startswith("error: unknown attribute 'Blonde'")
    # --to-distance: strengths become target distances to the boundary in the direction's sidecar
    result = CliRunner().invoke(cli, ["evaluate", "edit", "--ckpt", str(ckpt), "--vec", str(tmp_path / "v.npy"),
                                      "--attr", "Blond_Hair", "--to-distance", "--n", "4", "-o", str(tmp_path / "e3")])
    assert result.exit_code == 2 and "no SVM boundary" in result.output and "Traceback" not in result.output
    dirs.save_direction(tmp_path / "s.npy", np.ones(24, np.float32), method="interfacegan-svm",
                        extra={"report": {"boundary": {"normal": [1.0] * 24, "offset": 0.5}}})
    result = CliRunner().invoke(cli, ["evaluate", "edit", "--ckpt", str(ckpt), "--vec", str(tmp_path / "s.npy"),
                                      "--attr", "Blond_Hair", "--to-distance", "--strengths", "0,2", "--n", "4",
                                      "--no-progress", "-o", str(tmp_path / "e4")])
    assert result.exit_code == 0, result.output
    assert "s: best distance" in result.output
    stored = json.loads((tmp_path / "e4" / "edit_eval.json").read_text())
    assert stored["mode"] == "distance" and all("median_step" in r for r in stored["directions"]["s"]["per_strength"])


def test_adding_the_watched_attribute_itself_writes_a_report(generator, classifier, svm_direction, tmp_path):
    """`evaluate edit --attr Male` with the default watch (Male) used to fail while plotting."""
    sources = ev.generated_sources(generator, classifier, "Male", 6, seed=3)
    result, kept = ev.evaluate_directions(generator, classifier, sources, {"v": svm_direction}, "Male", [0.0, 2.0],
                                          keep=2)
    assert result["watch"] == [] and "Male" not in result["directions"]["v"]["per_strength"][1]["flips"]
    result["sources"] = {"kind": "generated", "count": 6, "ids": sources.ids, "details": sources.details}
    files = ev.write_report(result, kept, sources, tmp_path)
    assert (tmp_path / files[2]).exists() and "| v |" in (tmp_path / "edit_eval.md").read_text()


def test_source_groups_are_bald_first_then_the_most_likely_hair_colour():
    names = list(ATTRIBUTE_NAMES)
    probs = np.zeros((4, len(names)), np.float32)
    probs[0, names.index("Black_Hair")] = 0.9
    probs[1, names.index("Gray_Hair")], probs[1, names.index("Blond_Hair")] = 0.6, 0.3
    probs[2, names.index("Bald")], probs[2, names.index("Brown_Hair")] = 0.7, 0.9  # bald wins over its colour
    probs[3, names.index("Blond_Hair")] = 0.2  # nothing sure: still the most likely colour
    assert ev.source_groups(probs, names) == ["black", "gray", "bald", "blond"]
    assert ev.source_groups(probs[:, :3], names[:3]) is None  # a classifier without these attributes: no groups

    before = np.zeros((4, len(names)), np.float32)
    after = before.copy()
    after[[0, 1], names.index("Blond_Hair")] = 0.9
    after[1, names.index("Male")] = 0.9
    groups = ev.group_records(after, before, names, "Blond_Hair", ["black", "black", "gray", "bald"], ["Male"])
    assert groups["black"]["n"] == 2 and groups["black"]["success_rate"] == 1.0
    assert groups["black"]["watched"]["Male"] == 0.5 and groups["gray"]["success_rate"] == 0.0
    assert list(groups) == ["black", "gray", "bald"]  # SOURCE_GROUPS order, empty groups left out


def test_report_by_group_and_on_sources_that_already_have_the_attribute(generator, classifier, svm_direction,
                                                                         tmp_path):
    np.save(tmp_path / "svm.npy", svm_direction)
    result = ev.evaluate_edit_to_folder(generator, classifier, [str(tmp_path / "svm.npy")], "Blond_Hair",
                                        [0.0, 3.0], tmp_path / "out", n=12, seed=3, n_present=6,
                                        strength_unit="raw", progress=False)
    records = result["directions"]["svm"]["per_strength"]
    groups = records[1]["by_group"]
    assert sum(g["n"] for g in groups.values()) == 12
    weighted = sum(g["n"] * g["success_rate"] for g in groups.values()) / 12
    assert weighted == pytest.approx(records[1]["success_rate"])
    present = result["present"]
    assert present["count"] == 6 and present["details"]["selection"].endswith(">= 0.5")
    assert present["directions"]["svm"][0]["success_rate"] == 1.0  # strength 0: every one still has it
    markdown = (tmp_path / "out" / "edit_eval.md").read_text()
    assert "By source group" in markdown and "already have Blond_Hair" in markdown


def test_spread_unit_rescales_every_direction_to_the_same_step(generator, classifier, svm_direction):
    from latentedit.model.sampling import w_spread

    sources = ev.generated_sources(generator, classifier, "Blond_Hair", 4, seed=3)
    directions = {"small": svm_direction * 0.01, "large": svm_direction * 100}
    result, _ = ev.evaluate_directions(generator, classifier, sources, directions, "Blond_Hair", [0.0, 1.0],
                                       strength_unit="spread")
    spread = w_spread(generator)
    assert result["w_spread"] == pytest.approx(spread) and result["strength_unit"] == "spread"
    small, large = (result["directions"][name] for name in ("small", "large"))
    assert small["scale"] * 0.01 * np.linalg.norm(svm_direction) == pytest.approx(spread, rel=1e-5)
    assert small["per_strength"][1]["pixel_change"] == pytest.approx(large["per_strength"][1]["pixel_change"],
                                                                      rel=1e-3)
    with pytest.raises(InputError, match="choose one"):
        ev.evaluate_directions(generator, classifier, sources, directions, "Blond_Hair", [1.0],
                               strength_unit="spread", normalize=True)


def _all_unblond_classifier(generator) -> BrightnessClassifier:
    thresholds = median_thresholds(generator)
    thresholds[BLOND] = 5.0  # nothing is ever labelled blond: every reconstruction qualifies
    return BrightnessClassifier(thresholds)


def test_inverted_sources_by_encoder_are_its_forward_pass(generator, tmp_path):
    from latentedit.invert.encoder import build_encoder, encode

    encoder = build_encoder(generator, base_channels=8, max_channels=16, hidden=32).eval()
    settings = InversionSettings(method="encoder", perceptual="none")
    sources = ev.inverted_sources(generator, _all_unblond_classifier(generator), "Blond_Hair", 3, settings=settings,
                                  encoder=encoder, cache_dir=tmp_path / "cache", cache_key={"generator_sha256": "x"})
    assert torch.allclose(sources.w_plus, encode(encoder, sources.targets), atol=1e-6)
    assert sources.generators is None and sources.details["inversion"]["settings"]["method"] == "encoder"
    # a cache of optimised inversions is not reused for the encoder's (the settings differ)
    optimised = ev.inverted_sources(generator, _all_unblond_classifier(generator), "Blond_Hair", 3,
                                    settings=InversionSettings(steps=1, perceptual="none"),
                                    cache_dir=tmp_path / "cache", cache_key={"generator_sha256": "x"})
    assert optimised.details["inversion"]["inverted"] == 3
    with pytest.raises(InputError, match="needs an encoder"):
        ev.inverted_sources(generator, _all_unblond_classifier(generator), "Blond_Hair", 1, settings=settings)


def test_w_space_inversions_are_edited_as_w_plus_with_equal_rows(generator, tmp_path):
    """An inversion in W (e.g. PTI's W pivot) becomes a W+ source whose rows are that one w, cached as such."""
    classifier = _all_unblond_classifier(generator)
    settings = InversionSettings(steps=3, space="w", perceptual="none")
    key = {"generator_sha256": "x"}
    sources = ev.inverted_sources(generator, classifier, "Blond_Hair", 2, settings=settings,
                                  cache_dir=tmp_path / "cache", cache_key=key)
    assert sources.w_plus.shape == (2, generator.num_ws, generator.w_dim)
    assert torch.equal(sources.w_plus, sources.w_plus[:, :1].expand_as(sources.w_plus))
    assert sources.details["inversion"]["settings"]["space"] == "w"
    again = ev.inverted_sources(generator, classifier, "Blond_Hair", 2, settings=settings,
                                cache_dir=tmp_path / "cache", cache_key=key)
    assert again.details["inversion"]["cached"] == 2 and torch.equal(again.w_plus, sources.w_plus)


def test_pti_sources_are_edited_with_their_own_tuned_generators(generator, tmp_path):
    classifier = _all_unblond_classifier(generator)
    settings = InversionSettings(method="pti", steps=3, pti_steps=4, pti_lr=3e-3, perceptual="none")
    kwargs = dict(settings=settings, batch_size=2, cache_dir=tmp_path / "cache", cache_key={"generator_sha256": "x"})
    sources = ev.inverted_sources(generator, classifier, "Blond_Hair", 3, **kwargs)
    assert len(sources.generators) == 3 and all(own is not generator for own in sources.generators)
    base = ev.render_latents(generator, sources.w_plus)
    assert not torch.allclose(base, sources.originals)  # tuned: not the base generator's render of the pivot
    for i, own in enumerate(sources.generators):
        assert torch.allclose(ev.render_latents(own, sources.w_plus[i:i + 1])[0], sources.originals[i], atol=1e-5)
    records, _ = ev.evaluate_direction(generator, classifier, sources, np.zeros(24, np.float32), "Blond_Hair", [0.0])
    manual = ev.psnr_per_image(sources.originals, sources.truths).mean()
    assert records[0]["psnr_to_truth_db"] == pytest.approx(float(manual), rel=1e-6)

    again = ev.inverted_sources(generator, classifier, "Blond_Hair", 3, **kwargs)
    assert again.details["inversion"]["cached"] == 3 and again.details["inversion"]["inverted"] == 0
    assert torch.allclose(again.originals, sources.originals, atol=1e-6)
    # a latent whose tuned generator is missing is tuned again, not rendered with the base generator
    next((tmp_path / "cache").glob("*_G.safetensors")).unlink()
    partial = ev.inverted_sources(generator, classifier, "Blond_Hair", 3, **kwargs)
    assert partial.details["inversion"]["inverted"] == 1 and partial.details["inversion"]["cached"] == 2


def test_evaluate_edit_invert_method_options(generator, tmp_path):
    from latentedit.cli.main import cli

    ckpt = save_native(generator, tmp_path / "tiny.safetensors")
    dirs.save_direction(tmp_path / "v.npy", np.ones(24, np.float32), method="test")
    base = ["evaluate", "edit", "--ckpt", str(ckpt), "--vec", str(tmp_path / "v.npy"), "--attr", "Blond_Hair",
            "--n", "2", "--no-progress"]
    result = CliRunner().invoke(cli, base + ["--invert-method", "encoder", "-o", str(tmp_path / "e1")])
    assert result.exit_code == 2 and "apply to --source inverted" in result.output
    result = CliRunner().invoke(cli, base + ["--source", "inverted", "--invert-method", "encoder",
                                             "-o", str(tmp_path / "e2")])
    # the default encoder is for the shipped generator (or not installed): one line, no traceback
    assert result.exit_code != 0 and "Traceback" not in result.output and "encoder" in result.output
    assert not (tmp_path / "e2" / "edit_eval.json").exists()
