"""The generator's API: shapes, truncation, noise inputs, strategies and micro-batching agree."""
from __future__ import annotations

import pytest
import torch

from latentedit.model import Generator, GeneratorConfig, noise_shape


@pytest.fixture(scope="module")
def generator_256():
    torch.manual_seed(1)
    channels = {r: 8 for r in (4, 8, 16, 32, 64, 128, 256)}
    generator = Generator(GeneratorConfig(size=256, style_dim=16, n_mlp=2, channels=channels)).eval()
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("noise.weight"):
                parameter.fill_(0.2)
    return generator


def test_counts_follow_the_size(generator_256):
    assert (generator_256.num_ws, generator_256.num_layers, generator_256.w_dim) == (14, 13, 16)
    assert noise_shape(0) == (1, 1, 4, 4) and noise_shape(12) == (1, 1, 256, 256)


@torch.no_grad()
def test_micro_batching_and_strategies_give_the_same_images(generator_256):
    w = torch.randn(3, generator_256.num_ws, 16)
    noise = generator_256.make_noise("random", 3, "cpu", generator=torch.Generator().manual_seed(0))
    outputs = []
    for micro in (0, 1, 2):
        for strategy in ("grouped", "scaled"):
            generator_256.cpu_micro_batch = micro
            outputs.append(generator_256.synthesis(w, noise, modulation=strategy))
    generator_256.cpu_micro_batch = "auto"
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0], atol=1e-5, rtol=1e-5)
    assert outputs[0].shape == (3, 3, 256, 256)


@torch.no_grad()
def test_w_broadcasts_like_repeated_w_plus(tiny_generator):
    w = torch.randn(2, tiny_generator.w_dim)
    w_plus = w[:, None].repeat(1, tiny_generator.num_ws, 1)
    torch.testing.assert_close(tiny_generator.synthesis(w), tiny_generator.synthesis(w_plus))


@torch.no_grad()
def test_truncation_cutoff_only_touches_early_rows(tiny_generator):
    w = tiny_generator.mapping(torch.randn(2, tiny_generator.w_dim))
    full = tiny_generator.truncate(w, 0.5)
    cut = tiny_generator.truncate(w, 0.5, cutoff=2)
    torch.testing.assert_close(cut[:, 0], full)
    torch.testing.assert_close(cut[:, 2:], w[:, None].expand(-1, tiny_generator.num_ws - 2, -1))
    torch.testing.assert_close(tiny_generator.truncate(w, 0.0), tiny_generator.mean_w().expand(2, -1))


def test_bad_latents_and_noise_are_refused(tiny_generator):
    with pytest.raises(ValueError, match="does not fit|must be W"):
        tiny_generator.synthesis(torch.randn(1, 3, tiny_generator.w_dim))
    with pytest.raises(ValueError, match="noise maps"):
        tiny_generator.synthesis(torch.randn(1, tiny_generator.w_dim), [torch.zeros(1, 1, 4, 4)])
    with pytest.raises(ValueError, match="noise mode"):
        tiny_generator.synthesis(torch.randn(1, tiny_generator.w_dim), "loud")
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(size=48)
