"""PULSE (SPEC §4, §4.1): downsampler, GEOCROSS, loss grammar, sphere constraint, RGBA references,
determinism, per-image success, the Gaussian-fit cache and the ``latentedit pulse`` command."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from latentedit.errors import InputError
from latentedit.model import Generator, GeneratorConfig
from latentedit.pulse.search import (PulseSettings, geocross, initial_state, load_reference, lr_factor, parse_loss,
                              parse_noise_layers, pulse_downsample, pulse_kernel, result_names, run_pulse,
                              valid_reference_sizes, visible_l2)
from latentedit.pulse.fit import GaussianFit, compute_gaussian_fit, fit_cache_path, gaussian_fit, mapping_digest

REPO_ROOT = Path(__file__).resolve().parents[1]
REFDATA = REPO_ROOT.parent / "shared" / "refdata"


pytestmark = pytest.mark.usefixtures("single_thread", "private_caches")


@pytest.fixture(scope="module")
def generator() -> Generator:
    """A random 32 px generator whose output mostly lies in [-1, 1] (ToRGB weights scaled down), so that
    its own downscaled images are valid references in [0, 1]."""
    torch.manual_seed(3)
    gen = Generator(GeneratorConfig(size=32, style_dim=24, n_mlp=2, channels={4: 16, 8: 16, 16: 12, 32: 8}))
    with torch.no_grad():
        for name, parameter in gen.named_parameters():
            if name.endswith("noise.weight"):
                parameter.fill_(0.3)
            if "to_rgb" in name and name.endswith("conv.weight"):
                parameter.mul_(0.15)
    return gen.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def fit(generator) -> GaussianFit:
    mean, std = compute_gaussian_fit(generator, num_samples=4000)
    return GaussianFit(mean, std, 4000, 0, mapping_digest(generator))


def start_image(generator, fit, seed, settings=None) -> torch.Tensor:
    """The image ``[1, 3, S, S]`` in [0, 1] that PULSE renders at step 0 for ``seed``."""
    settings = settings or PulseSettings()
    latent, noise = initial_state(generator, [seed], settings.tile_latent)
    kinds = settings.noise_kinds(generator.num_layers)
    maps = [None if kind == "zero" else n for n, kind in zip(noise, kinds)]
    with torch.no_grad():
        return (generator.synthesis(fit.to_w(latent.expand(-1, generator.num_ws, -1)), maps) + 1) / 2


def reachable_reference(generator, fit, seed, size=8) -> torch.Tensor:
    """``[1, 3, size, size]``: the downscale of the image PULSE starts from with ``seed`` (L2 ~ 0 at step 0)."""
    image = start_image(generator, fit, seed)
    return pulse_downsample(image, generator.size // size).clamp(0, 1)


# ------------------------------------------------------------------------------------------------
# Downsampler, GEOCROSS, schedule, loss grammar


def test_downsampler_taps_match_hand_computed_keys_cubic():
    # Factor 2: taps at (i - 4 + 0.5) / 2 = +-0.25, +-0.75, +-1.25, +-1.75; Keys a = -0.5 gives 0.8671875,
    # 0.2265625, -0.0703125, -0.0234375 (sum of all eight = 2), then divided by their sum.
    expected = [-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875]
    assert pulse_kernel(2).tolist() == pytest.approx(expected, abs=1e-12)
    # Factor 1: taps at +-0.5 and +-1.5: 0.5625 and -0.0625 (sum 1).
    assert pulse_kernel(1).tolist() == pytest.approx([-0.0625, 0.5625, 0.5625, -0.0625], abs=1e-12)
    # Factor 4: 16 taps, the central ones at +-0.125: 0.9638671875 / 4 (four integer-spaced sets sum to 1 each).
    kernel = pulse_kernel(4)
    assert kernel.numel() == 16 and float(kernel.sum()) == pytest.approx(1.0)
    assert float(kernel[7]) == pytest.approx(0.9638671875 / 4) and torch.equal(kernel, kernel.flip(0))


def test_downsampler_on_a_ramp_matches_hand_computed_values():
    # Rows 0..7 of value i, factor 2: reflect padding 3 before / 3 after, windows of 8 with stride 2.
    # Row 0 sees [3,2,1,0,1,2,3,4], row 1 [1,0,1,2,3,4,5,6], row 2 [1..7,6], row 3 [3,4,5,6,7,6,5,4].
    ramp = torch.arange(8.0, dtype=torch.float64).view(1, 1, 8, 1).expand(1, 2, 8, 8)
    out = pulse_downsample(ramp, 2)
    assert out.shape == (1, 2, 4, 4)
    assert out[0, 0, :, 0].tolist() == pytest.approx([0.515625, 2.4765625, 4.5234375, 6.484375], abs=1e-12)
    # Separable: the horizontal pass of a horizontally constant image changes nothing; the transpose agrees.
    assert torch.allclose(out, out[..., :1].expand_as(out))
    assert torch.allclose(pulse_downsample(ramp.transpose(2, 3), 2), out.transpose(2, 3))
    constant = torch.full((2, 3, 32, 32), 0.3)
    assert torch.allclose(pulse_downsample(constant, 4), torch.full((2, 3, 8, 8), 0.3), atol=1e-6)


def test_geocross_matches_hand_computed_values():
    # Rows (1, 0) and (0, 1): theta = 2 atan2(sqrt 2, sqrt 2) = pi / 2 off the diagonal, ~0 on it.
    # mean over the 4 pairs of theta^2 * D (D = 2), divided by 8: (2 * (pi/2)^2 * 2 / 4) / 8.
    w = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    assert float(geocross(w)[0]) == pytest.approx((2 * (math.pi / 2) ** 2 * 2 / 4) / 8, rel=1e-6)
    # Opposite unit rows: |x - y| = 2, |x + y| = 0, so theta = 2 atan2(2, sqrt(1e-9)) (just below pi); on the
    # diagonal theta = 2 atan2(sqrt(1e-9), 2).
    w = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]], dtype=torch.float64)
    off, diagonal = 2 * math.atan2(2, math.sqrt(1e-9)), 2 * math.atan2(math.sqrt(1e-9), 2)
    assert float(geocross(w)[0]) == pytest.approx((2 * off ** 2 + 2 * diagonal ** 2) * 2 / 4 / 8, rel=1e-9)
    assert off == pytest.approx(math.pi, rel=1e-4)
    # Identical rows give (almost) nothing; one row (a tiled latent) exactly nothing; one value per image.
    same = torch.ones(3, 5, 7)
    assert geocross(same).shape == (3,) and float(geocross(same).max()) < 1e-8
    assert geocross(torch.randn(2, 1, 7)).tolist() == [0.0, 0.0]


def test_linear1cycledrop_schedule_is_the_official_one():
    assert lr_factor("linear1cycledrop", 0, 100) == pytest.approx(0.1)
    assert lr_factor("linear1cycledrop", 45, 100) == pytest.approx(1.0)
    assert lr_factor("linear1cycledrop", 90, 100) == pytest.approx(0.1)
    assert lr_factor("linear1cycledrop", 99, 100) == pytest.approx(0.1 + 0.9 * (0.001 - 0.1))
    assert lr_factor("linear1cycle", 50, 100) == pytest.approx(1.0)
    assert lr_factor("linear1cycle", 0, 100) == pytest.approx(0.1)
    assert lr_factor("fixed", 37, 100) == 1.0


def test_loss_string_grammar():
    assert parse_loss("100*L2+0.05*GEOCROSS") == (("L2", 100.0), ("GEOCROSS", 0.05))
    assert parse_loss(" 1e+2 * l2 + 5e-2*geocross ") == (("L2", 100.0), ("GEOCROSS", 0.05))
    assert parse_loss("1*L1") == (("L1", 1.0),)


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("100*L2+", "malformed"),
    ("L2", "malformed"),
    ("100*L2*3", "malformed"),
    ("100*L3", "unknown loss term"),
    ("abc*L2", "not a number"),
    ("-1*L2", ">= 0"),
    ("nan*L2", ">= 0"),
    ("1*L2+2*L2", "twice"),
    ("0.05*GEOCROSS", "no image term"),
    ("0*L2+1*GEOCROSS", "no image term"),
])
def test_malformed_loss_strings_are_clear_errors(text, fragment):
    with pytest.raises(InputError, match=fragment):
        parse_loss(text)


# ------------------------------------------------------------------------------------------------
# Alpha-weighted L2


def test_visible_l2_is_plain_l2_for_opaque_and_ignores_transparent_pixels():
    torch.manual_seed(0)
    lowres, rgb = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    opaque = torch.cat([rgb, torch.ones(2, 1, 4, 4)], 1)
    assert torch.allclose(visible_l2(lowres, opaque), (lowres - rgb).square().mean(dim=(1, 2, 3)))
    alpha = torch.zeros(2, 1, 4, 4)
    alpha[:, :, :2] = 1.0
    masked = torch.cat([rgb, alpha], 1)
    expected = (lowres - rgb)[:, :, :2].square().mean(dim=(1, 2, 3))
    assert torch.allclose(visible_l2(lowres, masked), expected)
    generated = lowres.clone().requires_grad_(True)
    visible_l2(generated, masked).sum().backward()
    assert torch.count_nonzero(generated.grad[:, :, 2:]) == 0
    assert torch.count_nonzero(generated.grad[:, :, :2]) > 0


def test_transparent_pixels_have_no_influence_on_the_result(generator, fit):
    torch.manual_seed(1)
    rgb = torch.rand(1, 3, 8, 8)
    alpha = torch.zeros(1, 1, 8, 8)
    alpha[:, :, 1:4, 2:6] = 1.0
    other = rgb.clone()
    other[:, :, alpha[0, 0] == 0] = torch.rand_like(other[:, :, alpha[0, 0] == 0])
    settings = PulseSettings(steps=6)
    first = run_pulse(generator, torch.cat([rgb, alpha], 1), 4, settings, fit=fit)[0]
    second = run_pulse(generator, torch.cat([other, alpha], 1), 4, settings, fit=fit)[0]
    assert torch.equal(first.w_plus, second.w_plus)
    assert first.l2_history == second.l2_history


# ------------------------------------------------------------------------------------------------
# The search


def test_latents_and_noise_stay_on_their_spheres_after_every_step(generator, fit):
    settings = PulseSettings(steps=8, lr=0.8, lr_schedule="fixed")
    kinds = settings.noise_kinds(generator.num_layers)
    _, start_noise = initial_state(generator, [2, 9])
    seen = []

    def check(state):
        norms = state.latent.norm(dim=-1)
        assert torch.allclose(norms, torch.full_like(norms, math.sqrt(generator.w_dim)), rtol=1e-5)
        for index, kind in enumerate(kinds):
            if kind == "trainable":
                radius = start_noise[index].flatten(1).norm(dim=1)
                assert torch.allclose(state.noise[index].flatten(1).norm(dim=1), radius, rtol=1e-5)
            elif kind == "zero":
                assert state.noise[index] is None
            else:
                assert torch.equal(state.noise[index], start_noise[index])
        seen.append((state.latent.clone(), [None if n is None else n.clone() for n in state.noise]))

    run_pulse(generator, torch.rand(2, 3, 8, 8), [2, 9], settings, fit=fit, step_callback=check)
    assert len(seen) == 8
    # The optimiser really moved the latent and the trainable noise (a constraint on a frozen point proves nothing).
    assert not torch.allclose(seen[0][0], seen[-1][0])
    trainable = kinds.index("trainable")
    assert not torch.allclose(seen[0][1][trainable], seen[-1][1][trainable])


def test_noise_plan_defaults_and_errors(generator):
    layers = generator.num_layers  # 7 for 32 px
    assert PulseSettings().noise_kinds(layers) == ["trainable"] * 5 + ["fixed", "zero"]
    assert PulseSettings(noise_type="fixed").noise_kinds(layers) == ["fixed"] * 6 + ["zero"]
    assert PulseSettings(noise_type="zero").noise_kinds(layers) == ["zero"] * 7
    assert PulseSettings(bad_noise_layers="none").noise_kinds(layers)[-1] == "fixed"
    assert PulseSettings(bad_noise_layers=[0, -1]).noise_kinds(layers)[0] == "zero"
    assert parse_noise_layers("2.3", layers) == (2, 3) and parse_noise_layers("last", layers) == (6,)
    with pytest.raises(InputError, match="does not exist"):
        PulseSettings(bad_noise_layers="7").validate(generator)
    with pytest.raises(InputError, match="bad noise layer list"):
        PulseSettings(bad_noise_layers="x").validate(generator)
    with pytest.raises(InputError, match="num_trainable_noise_layers"):
        PulseSettings(num_trainable_noise_layers=8).validate(generator)


@pytest.mark.parametrize("changes, fragment", [
    ({"steps": 0}, "steps"), ({"lr": -1.0}, "learning rate"), ({"eps": 0.0}, "eps"),
    ({"lr_schedule": "cosine"}, "schedule"), ({"optimizer": "lbfgs"}, "optimiser"),
    ({"noise_type": "random"}, "noise type"), ({"loss": "L2"}, "malformed"),
])
def test_bad_settings_are_clear_errors(generator, fit, changes, fragment):
    with pytest.raises(InputError, match=fragment):
        run_pulse(generator, torch.rand(1, 3, 8, 8), 0, PulseSettings(**changes), fit=fit)


def test_same_seed_same_start_and_same_result(generator, fit):
    latent_a, noise_a = initial_state(generator, [5, 6])
    latent_b, noise_b = initial_state(generator, [6])
    assert torch.equal(latent_a[1:], latent_b) and all(torch.equal(a[1:], b) for a, b in zip(noise_a, noise_b))
    tiled, noise_t = initial_state(generator, [6], tile_latent=True)
    assert tiled.shape == (1, 1, generator.w_dim) and all(torch.equal(a, b) for a, b in zip(noise_t, noise_b))

    refs = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    settings = PulseSettings(steps=5)
    starts = []
    run_pulse(generator, refs, 11, settings, fit=fit,
              step_callback=lambda state: starts.append(state.latent.clone()) if state.step == 0 else None)
    assert torch.equal(starts[0][0], starts[0][1])  # one int seed: both references start from the same point
    first = run_pulse(generator, refs[:1], 11, settings, fit=fit)[0]
    again = run_pulse(generator, refs[:1], 11, settings, fit=fit)[0]
    other = run_pulse(generator, refs[:1], 12, settings, fit=fit)[0]
    assert torch.equal(first.w_plus, again.w_plus) and first.l2_history == again.l2_history
    assert all(torch.equal(a, b) for a, b in zip(first.noise, again.noise))
    assert not torch.allclose(first.w_plus, other.w_plus)


def test_success_is_decided_per_image_in_a_batch(generator, fit):
    reachable = reachable_reference(generator, fit, seed=7)
    unreachable = torch.zeros(1, 3, 8, 8)
    unreachable[..., ::2, :] = 1.0  # stripes at the reference's own Nyquist frequency
    results = run_pulse(generator, torch.cat([unreachable, reachable]), 7, PulseSettings(steps=4), fit=fit)
    assert [r.success for r in results] == [False, True]
    assert results[1].first_eps_step == 0 and results[1].l2 <= 2e-3
    assert results[0].first_eps_step is None and results[0].l2 > 2e-3
    assert "eps NOT reached" in results[0].eps_report("a") and "above eps" in results[0].eps_report("a")


def test_the_saved_result_is_the_best_iterate_and_its_latent_reproduces_it(generator, fit):
    # From seed 8 towards seed 3's face with a fixed lr of 0.4, the loss bottoms out early and rises again.
    settings = PulseSettings(steps=10, lr=0.4, lr_schedule="fixed")
    result = run_pulse(generator, reachable_reference(generator, fit, seed=3), 8, settings, fit=fit)[0]
    history = result.loss_history
    assert result.total_loss == pytest.approx(min(history)) and result.best_step == int(np.argmin(history))
    assert result.best_step < 9 and history[-1] > result.total_loss  # the last iterate is not what was kept
    assert result.l2 == pytest.approx(result.l2_history[result.best_step])
    assert result.w_plus.shape == (generator.num_ws, generator.w_dim)
    sides = [2 ** ((i + 5) // 2) for i in range(generator.num_layers)]
    assert [tuple(n.shape) for n in result.noise] == [(1, 1, r, r) for r in sides]
    with torch.no_grad():
        image = generator.synthesis(result.w_plus[None], [n for n in result.noise])
    assert torch.allclose(image[0], result.image, atol=1e-5)
    assert torch.allclose(pulse_downsample((image + 1) / 2, 4)[0], result.lowres, atol=1e-5)


def test_an_iterate_within_eps_is_kept_over_a_lower_loss_outside_it(generator, fit):
    # Step 0 matches the reference (L2 ~ 0); a heavy GEOCROSS weight then pulls the rows together at the
    # cost of the L2, so later iterates have a lower total loss but miss eps.
    reference = reachable_reference(generator, fit, seed=5)
    settings = PulseSettings(steps=6, loss="100*L2+50*GEOCROSS", lr=1.0, lr_schedule="fixed")
    result = run_pulse(generator, reference, 5, settings, fit=fit)[0]
    lowest = int(np.argmin(result.loss_history))
    assert result.loss_history[lowest] < result.loss_history[0] and result.l2_history[lowest] > 2e-3
    assert result.best_step == 0 and result.success and result.l2 <= 2e-3


def test_stop_at_eps_stops_when_every_image_is_done(generator, fit):
    reference = reachable_reference(generator, fit, seed=1)
    result = run_pulse(generator, reference, 1, PulseSettings(steps=20, stop_at_eps=True), fit=fit)[0]
    assert result.steps_run == 1 and result.success and len(result.l2_history) == 1


def test_tiled_latent_has_one_row_and_no_geocross(generator, fit):
    result = run_pulse(generator, torch.rand(1, 3, 8, 8), 0, PulseSettings(steps=3, tile_latent=True), fit=fit)[0]
    assert result.latent.shape == (1, generator.w_dim) and result.losses["GEOCROSS"] == 0.0
    assert torch.allclose(result.w_plus, result.w_plus[:1].expand_as(result.w_plus))


def test_reference_tensors_are_checked(generator, fit):
    for bad, fragment in [(torch.rand(1, 3, 12, 12), "valid sizes: 32, 16, 8, 4, 2"),
                          (torch.rand(1, 3, 1, 1), "too small: PULSE's downsampler needs a reference of at least 2x2"),
                          (torch.rand(1, 3, 64, 64), "larger than the 32 px generator"),
                          (torch.rand(1, 3, 8, 4), "square"),
                          (torch.rand(1, 2, 8, 8), r"\[B, 3 or 4, h, w\]"),
                          (torch.rand(1, 3, 8, 8) * 2, r"\[0, 1\]"),
                          (torch.cat([torch.rand(1, 3, 8, 8), torch.zeros(1, 1, 8, 8)], 1), "fully transparent")]:
        with pytest.raises(InputError, match=fragment):
            run_pulse(generator, bad, 0, PulseSettings(steps=1), fit=fit)
    with pytest.raises(InputError, match="seeds"):
        run_pulse(generator, torch.rand(2, 3, 8, 8), [1, 2, 3], PulseSettings(steps=1), fit=fit)


# ------------------------------------------------------------------------------------------------
# Reference files, the Gaussian fit


def save_rgba(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_reference_files(tmp_path):
    assert valid_reference_sizes(64) == [64, 32, 16, 8, 4, 2]
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[2:5, 4:12] = (230, 190, 90, 255)
    tensor, info = load_reference(save_rgba(tmp_path / "hair.png", rgba), 64)
    assert tensor.shape == (4, 16, 16) and info["has_alpha"] and info["visible_fraction"] == pytest.approx(24 / 256)
    assert torch.allclose(tensor[:3, 3, 5], torch.tensor([230, 190, 90]) / 255.0)
    rgb, info = load_reference(save_rgba(tmp_path / "rgb.png", np.full((8, 8, 3), 128)), 64)
    assert not info["has_alpha"] and torch.equal(rgb[3], torch.ones(8, 8))
    with pytest.raises(InputError, match="valid sizes: 64, 32, 16, 8, 4, 2"):
        load_reference(save_rgba(tmp_path / "odd.png", np.zeros((20, 20, 3))), 64)
    with pytest.raises(InputError, match="square"):
        load_reference(save_rgba(tmp_path / "wide.png", np.zeros((16, 32, 3))), 64)
    with pytest.raises(InputError, match="fully transparent"):
        load_reference(save_rgba(tmp_path / "empty.png", np.zeros((16, 16, 4))), 64)
    with pytest.raises(InputError, match="does not exist"):
        load_reference(tmp_path / "missing.png", 64)
    assert result_names(["a/blond.rgba.png", "b/black.png"], 2) == [["blond_0", "blond_1"], ["black_0", "black_1"]]
    with pytest.raises(InputError, match="rename"):
        result_names(["a/x.png", "b/x.png"], 1)


def test_example_references_are_valid_hair_masks_for_a_64px_model():
    examples = REPO_ROOT / "examples"
    loaded = {name: load_reference(examples / f"{name}.rgba.png", 64)[0]
              for name in ("blond_hair", "black_hair", "blond_hair_with_face", "black_hair_with_face")}
    # Hair only: a region in the upper half of the face, the same in both, blond much brighter than black.
    blond, black = loaded["blond_hair"], loaded["black_hair"]
    hair = blond[3] > 0
    assert blond.shape == (4, 16, 16) and torch.equal(blond[3], black[3])
    assert 8 <= int(hair.sum()) <= 64 and not hair[8:].any()
    assert bool((blond[:3, hair].mean(0) > black[:3, hair].mean(0) + 0.4).all())
    # With face: most of the image constrained, the same pixels in both; background and skin shared, so
    # only some pixels (the hair, in the upper part of the head) change strongly between the two.
    blond, black = loaded["blond_hair_with_face"], loaded["black_hair_with_face"]
    face = blond[3] > 0
    assert torch.equal(blond[3], black[3]) and int(face.sum()) > 128 and bool(face[0].all())
    difference = (blond[:3] - black[:3]).abs().amax(0)[face]
    assert 8 <= int((difference > 0.3).sum()) <= 64 and float((difference < 2 / 255).float().mean()) > 0.6


def test_gaussian_fit_merges_blocks_exactly_and_is_cached(generator, tmp_path):
    # 25,000 samples = blocks of 10,000, 10,000 and 5,000 drawn in turn from one seeded generator.
    rng = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(rows, generator.w_dim, generator=rng) for rows in (10_000, 10_000, 5_000)])
    with torch.no_grad():
        values = torch.nn.functional.leaky_relu(generator.mapping(z), 5.0).double()
    mean, std = compute_gaussian_fit(generator, 25_000)
    assert torch.allclose(mean.double(), values.mean(0), atol=1e-5)
    assert torch.allclose(std.double(), values.std(0), atol=1e-5)

    first = gaussian_fit(generator, 3000)
    path = fit_cache_path(mapping_digest(generator), 3000)
    assert not first.from_cache and Path(first.cache_path) == path and path.is_file()
    assert str(path).startswith(str(tmp_path / "cache" / "latentedit" / "pulse_fit"))
    second = gaussian_fit(generator, 3000)
    assert second.from_cache and torch.equal(second.mean, first.mean) and torch.equal(second.std, first.std)
    path.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable"):
        third = gaussian_fit(generator, 3000)
    assert not third.from_cache and torch.equal(third.mean, first.mean)
    assert gaussian_fit(generator, 3000).from_cache  # the damaged file was replaced


# ------------------------------------------------------------------------------------------------
# Command line


@pytest.fixture(scope="module")
def checkpoint(generator, tmp_path_factory) -> Path:
    from latentedit.checkpoints import save_native

    generator.set_w_avg(torch.zeros(generator.w_dim))
    return save_native(generator, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def invoke(*args: str):
    from latentedit.cli.main import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_writes_every_output_and_reports_missed_eps(checkpoint, tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[1:3, 2:6] = (240, 200, 100, 255)
    reference = save_rgba(tmp_path / "blond.rgba.png", rgba)
    out = tmp_path / "out"
    result = invoke("pulse", "--ref", str(reference), "--ckpt", str(checkpoint), "-o", str(out), "--steps", "3",
                    "--fit-samples", "500", "--seed", "4", "--duplicates", "2", "--batch-size", "2",
                    "--save-intermediate", "--no-progress", "--device", "cpu")
    assert result.exit_code == 0, result.output
    for name in ("blond_0", "blond_1"):
        for suffix in (".png", "_lr.png", ".npy", "_noise.npz", ".json"):
            assert (out / f"{name}{suffix}").is_file()
        assert sorted(p.name for p in (out / "intermediate" / name).iterdir())[:2] == ["0000.png", "0000_lr.png"]
    record = json.loads((out / "blond_1.json").read_text())
    assert record["seed"] == 5 and record["reference"]["has_alpha"] and record["factor"] == 4
    assert set(record["losses"]) == {"L2", "GEOCROSS"} and record["settings"]["steps"] == 3
    assert record["checkpoint"]["sha256"] and record["gaussian_fit"]["num_samples"] == 500
    assert np.load(out / "blond_1.npy").shape == (8, 24)
    assert Image.open(out / "blond_1.png").size == (32, 32) and Image.open(out / "blond_1_lr.png").size == (8, 8)
    with np.load(out / "blond_1_noise.npz") as noise:
        assert noise["noise_6"].shape == (1, 1, 32, 32) and not noise["noise_6"].any()  # the bad layer is zero
    if not record["success"]:
        assert "eps NOT reached" in result.output and "above eps" in result.output

    # Missing eps: outputs written, exit 0; with --strict, exit 3.
    stripes = np.zeros((8, 8, 3), np.uint8)
    stripes[::2] = 255
    hard = save_rgba(tmp_path / "stripes.png", stripes)
    args = ("pulse", "--ref", str(hard), "--ckpt", str(checkpoint), "--steps", "2", "--fit-samples", "500",
            "--no-progress")
    lenient = invoke(*args, "-o", str(tmp_path / "lenient"))
    assert lenient.exit_code == 0 and "eps NOT reached" in lenient.output
    assert (tmp_path / "lenient" / "stripes.png").is_file()
    strict = invoke(*args, "-o", str(tmp_path / "strict"), "--strict")
    assert strict.exit_code == 3 and "--strict" in strict.output
    assert (tmp_path / "strict" / "stripes.json").is_file()
    assert json.loads((tmp_path / "strict" / "stripes.json").read_text())["success"] is False


def test_cli_bad_inputs_are_one_line_errors(checkpoint, tmp_path):
    good = save_rgba(tmp_path / "good.png", np.full((8, 8, 3), 100))
    odd = save_rgba(tmp_path / "odd.png", np.full((12, 12, 3), 100))
    empty = save_rgba(tmp_path / "empty.png", np.zeros((8, 8, 4)))
    base = ("pulse", "--ckpt", str(checkpoint), "-o", str(tmp_path / "out"), "--steps", "1", "--fit-samples", "100",
            "--no-progress")
    cases = [
        (("--ref", str(odd)), "valid sizes: 32, 16, 8, 4, 2"),
        (("--ref", str(empty)), "fully transparent"),
        (("--ref", str(tmp_path / "nope.png")), "does not exist"),
        (("--ref", str(good), "--loss", "100*L2+GEO"), "malformed"),
        (("--ref", str(good), "--bad-noise-layers", "99"), "does not exist"),
        (("--ref", str(good), "--eps", "-1"), "eps"),
        (("--ref", str(good), "--num-trainable-noise-layers", "50"), "num_trainable_noise_layers"),
    ]
    for extra, fragment in cases:
        result = invoke(*base, *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert result.output.startswith("error: ") and fragment in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "good.png").exists()


def test_refdata_generator_moves_towards_a_reachable_target(refdata):
    """On a small trained rosinality model: 15 steps from seed 3 cut the L2 to a seed-11 face's downscale."""
    from latentedit.checkpoints import load_generator

    gen, _ = load_generator(refdata / "ros64_small.pt")
    fit = gaussian_fit(gen, 20000)
    target = pulse_downsample(start_image(gen, fit, 11), 4).clamp(0, 1)
    result = run_pulse(gen, target, 3, PulseSettings(steps=15), fit=fit)[0]
    assert result.l2 < 0.5 * result.l2_history[0]
