"""Baselines that latent-space editing is compared against.

- :mod:`latentedit.baselines.stargan`: the StarGAN generator and discriminator (Choi et al. 2018,
  SPEC §6), label helpers, and safetensors save/load of trained generators.
- :mod:`latentedit.baselines.celeba_split`: the CelebA layout read with StarGAN's official split and
  transforms.
- :mod:`latentedit.baselines.stargan_train`: WGAN-GP training of StarGAN (resumable, DDP).
- :mod:`latentedit.baselines.stargan_transfer`: attribute transfer and single-attribute grids for image files.

``stargan_train`` is exposed as a module: its resume helpers share their names with the StyleGAN2 trainer's.
"""
from latentedit.baselines import stargan, stargan_train
from latentedit.baselines.stargan_train import StarGANTrainConfig, train_stargan
from latentedit.baselines.stargan_transfer import OUTPUT_SUFFIXES, grid_files, transfer_files

__all__ = ["stargan", "stargan_train", "StarGANTrainConfig", "train_stargan", "transfer_files", "grid_files",
           "OUTPUT_SUFFIXES"]
