"""StyleGAN2 networks with the rosinality state-dict layout, and sampling from them.

- :mod:`~latentedit.model.generator`, :mod:`~latentedit.model.discriminator`, :mod:`~latentedit.model.layers`:
  the networks; the state dict is the module tree.
- :mod:`~latentedit.model.sg3`: the StyleGAN3 generator (same interface as the StyleGAN2 one).
- :mod:`~latentedit.model.sampling`: seeds to w, batched synthesis, ``latentedit generate``.
"""
from latentedit.model.discriminator import Discriminator, DiscriminatorConfig
from latentedit.model.generator import Generator, GeneratorConfig, config_f_channels, noise_shape
from latentedit.model.sg3 import SG3Config, SG3Generator, SG3LayerConfig
from latentedit.model.sampling import generate_to_folder, synthesize, w_from_seeds

__all__ = ["Generator", "GeneratorConfig", "SG3Generator", "SG3Config", "SG3LayerConfig",
           "Discriminator", "DiscriminatorConfig", "config_f_channels",
           "noise_shape", "synthesize", "w_from_seeds", "generate_to_folder"]
