"""StyleGAN2 networks with the rosinality state-dict layout."""
from latentedit.model.discriminator import Discriminator, DiscriminatorConfig
from latentedit.model.generator import Generator, GeneratorConfig, config_f_channels, noise_shape

__all__ = ["Generator", "GeneratorConfig", "Discriminator", "DiscriminatorConfig", "config_f_channels",
           "noise_shape"]
