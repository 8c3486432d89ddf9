"""Small random generators for tests: one function instead of a copy per test file."""
from __future__ import annotations

import torch

from latentedit.model import Generator, GeneratorConfig

#: The odd channel counts most tests use (not a refdata shape, so shape bugs cannot hide).
ODD_CHANNELS = {4: 20, 8: 18, 16: 12, 32: 10}


def make_generator(seed: int = 7, *, style_dim: int = 24, n_mlp: int = 2, channels: dict | None = None,
                   noise_weight: float | None = 0.3, w_avg_samples: int | None = 256) -> Generator:
    """A frozen random 32 px generator in eval mode.

    ``noise_weight``: every noise strength is set to it (they start at 0, so noise inputs would not matter);
    None leaves them. ``w_avg_samples``: the mean w is computed from that many samples; None leaves it unset.
    """
    torch.manual_seed(seed)
    generator = Generator(GeneratorConfig(size=32, style_dim=style_dim, n_mlp=n_mlp,
                                          channels=dict(channels or ODD_CHANNELS)))
    if noise_weight is not None:
        with torch.no_grad():
            for name, parameter in generator.named_parameters():
                if name.endswith("noise.weight"):
                    parameter.fill_(noise_weight)
    if w_avg_samples is not None:
        generator.set_w_avg(generator.compute_w_avg(num_samples=w_avg_samples))
    return generator.eval().requires_grad_(False)


#: Channels of the small generator the encoder and PTI tests train against (fast enough for many steps).
SMALL_CHANNELS = {4: 16, 8: 16, 16: 8, 32: 8}


def make_small_generator(seed: int) -> Generator:
    """A 32 px generator with ``style_dim`` 16 and :data:`SMALL_CHANNELS`, noise strengths 0.2, mean w set."""
    return make_generator(seed, style_dim=16, channels=SMALL_CHANNELS, noise_weight=0.2, w_avg_samples=256)


def run_cli(*args):
    """Invoke the ``latentedit`` command in-process with ``args`` (str() of each); exceptions propagate."""
    from click.testing import CliRunner

    from latentedit.cli.main import cli

    return CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)
