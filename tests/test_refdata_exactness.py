"""Loaded checkpoints reproduce the reference implementations' outputs (../shared/refdata, see its README).

rosinality ``ros64_small.pt`` / ``ros64_small_train.pt`` and NVIDIA ``ada64_small.pkl`` (64 px, odd
channels 48, tiny): W+, W and z inputs (truncation 0.7 with the stored w_avg) with both modulation
strategies, discriminator scores, parameter counts, and bit-exact conversion to safetensors.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentedit.checkpoints import convert_checkpoint, load_discriminator, load_generator
from latentedit.checkpoints.nvidia import flatten_module
from latentedit.checkpoints.safe_pickle import load_restricted_pickle

REFDATA = Path(__file__).resolve().parents[1].parent / "shared" / "refdata"
pytestmark = pytest.mark.skipif(not REFDATA.is_dir(), reason=f"reference data not found at {REFDATA}")

ATOL = 1e-4
MODULATIONS = ("grouped", "scaled")


def ref(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(REFDATA / name))


def meta(name: str) -> dict:
    return json.loads((REFDATA / name).read_text())


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() <= ATOL


@pytest.fixture(scope="module")
def ros():
    return load_generator(REFDATA / "ros64_small.pt")


@pytest.fixture(scope="module")
def ros_train():
    return load_generator(REFDATA / "ros64_small_train.pt")


@pytest.fixture(scope="module")
def ada():
    return load_generator(REFDATA / "ada64_small.pkl")


@pytest.fixture(scope="module")
def stored_latent_avg() -> torch.Tensor:
    return torch.load(REFDATA / "ros64_small.pt", weights_only=True)["latent_avg"]


def synthesize(generator, latents: torch.Tensor, modulation: str) -> torch.Tensor:
    with torch.no_grad():
        return generator.synthesis(latents, noise_mode="const", modulation=modulation)


def from_z(generator, z: torch.Tensor, psi: float, modulation: str) -> torch.Tensor:
    with torch.no_grad():
        return generator.synthesis(generator.truncate(generator.mapping(z), psi), noise_mode="const",
                                   modulation=modulation)


@pytest.mark.parametrize("modulation", MODULATIONS)
@pytest.mark.parametrize("which", ["ros", "ros_train"])
def test_rosinality_outputs(request, which, modulation, stored_latent_avg):
    generator, _ = request.getfixturevalue(which)
    assert_close(synthesize(generator, ref("ros64_wplus.npy"), modulation), ref("ros64_out.npy"))
    assert_close(synthesize(generator, ref("ros64_w.npy")[None], modulation), ref("ros64_out_w.npy"))
    assert_close(from_z(generator, ref("ros64_z.npy"), 1.0, modulation), ref("ros64_out_z_psi1.npy"))
    if which == "ros":  # the training checkpoint stores no latent_avg: see test_training_checkpoint_w_avg
        assert_close(from_z(generator, ref("ros64_z.npy"), 0.7, modulation), ref("ros64_out_z.npy"))


def test_rosinality_stored_latent_avg_is_used(ros, stored_latent_avg):
    generator, info = ros
    assert torch.equal(generator.w_avg, stored_latent_avg)
    assert "latent_avg" in info.w_avg_source
    assert info.num_parameters == 357_432
    assert info.config.channels == {4: 64, 8: 64, 16: 48, 32: 32, 64: 32}
    assert (info.config.size, info.config.style_dim, info.config.n_mlp) == (64, 128, 4)


def test_training_checkpoint_loads_g_ema_and_computes_w_avg(ros, ros_train, stored_latent_avg):
    generator, info = ros_train
    assert info.source_format == "rosinality-train" and info.network == "g_ema"
    assert "computed" in info.w_avg_source
    for key, value in ros[0].state_dict().items():
        assert torch.equal(generator.state_dict()[key], value), key
    # With the stored mean from the converted file, truncation matches the reference.
    generator.set_w_avg(stored_latent_avg)
    try:
        assert_close(from_z(generator, ref("ros64_z.npy"), 0.7, "scaled"), ref("ros64_out_z.npy"))
    finally:
        generator.set_w_avg(generator.compute_w_avg(num_samples=10000, seed=0))


@pytest.mark.parametrize("modulation", MODULATIONS)
def test_nvidia_outputs(ada, modulation):
    generator, _ = ada
    assert_close(synthesize(generator, ref("ada64_ws.npy"), modulation), ref("ada64_out.npy"))
    assert_close(from_z(generator, ref("ada64_z.npy"), 0.7, modulation), ref("ada64_out_z.npy"))
    assert_close(from_z(generator, ref("ada64_z.npy"), 1.0, modulation), ref("ada64_out_z_psi1.npy"))
    first_w = ref("ada64_ws.npy")[:1, 0]  # a single W broadcast to all rows equals the same W repeated as W+
    assert torch.equal(synthesize(generator, first_w, modulation),
                       synthesize(generator, first_w[:, None].expand(1, generator.num_ws, -1), modulation))


def test_nvidia_generator_info_and_w_avg(ada):
    generator, info = ada
    assert torch.equal(generator.w_avg, ref("ada64_w_avg.npy"))
    assert info.source_format == "nvidia-pkl" and info.network == "G_ema"
    assert info.num_parameters == meta("ada64_meta.json")["n_params_G"]
    assert info.config.channels == {4: 64, 8: 64, 16: 64, 32: 64, 64: 32} and info.config.conv_clamp is None
    assert generator.num_ws == meta("ada64_meta.json")["num_ws"]


def test_nvidia_state_dict_walk_matches_the_recorded_keys():
    snapshot = load_restricted_pickle(REFDATA / "ada64_small.pkl")
    flat = flatten_module(snapshot["G_ema"], REFDATA / "ada64_small.pkl")
    recorded = meta("ada64_meta.json")["G_ema_state_dict"]
    assert {k: list(v.shape) for k, v in flat.items()} == recorded


def test_rosinality_discriminator_scores():
    discriminator, info = load_discriminator(REFDATA / "ros64_small_train.pt")
    assert info.num_parameters == 276_993
    with torch.no_grad():
        scores = discriminator(ref("ros64_out.npy"))
    assert_close(scores, torch.tensor(meta("ros64_meta.json")["train_d_scores_on_ros64_out_batch4"]).reshape(4, 1))


def test_nvidia_discriminator_scores():
    discriminator, info = load_discriminator(REFDATA / "ada64_small.pkl")
    assert info.num_parameters == meta("ada64_meta.json")["n_params_D"]
    with torch.no_grad():
        scores = discriminator(ref("ada64_out.npy"))
    assert_close(scores, torch.tensor(meta("ada64_meta.json")["D_out"]).reshape(4, 1))


@pytest.mark.parametrize("which, name", [("ros", "ros64_small.pt"), ("ada", "ada64_small.pkl")])
def test_conversion_to_safetensors_is_bit_exact(request, tmp_path, which, name):
    original, _ = request.getfixturevalue(which)
    info = convert_checkpoint(REFDATA / name, tmp_path / "model.safetensors")
    converted, _ = load_generator(tmp_path / "model.safetensors")
    assert info.config == original.config
    assert torch.equal(converted.w_avg, original.w_avg)
    latents = ref("ros64_wplus.npy") if which == "ros" else ref("ada64_ws.npy")
    assert torch.equal(synthesize(converted, latents, "grouped"), synthesize(original, latents, "grouped"))
