"""Baselines that latent-space editing is compared against.

- :mod:`latentedit.baselines.stargan`: the StarGAN generator and discriminator (Choi et al. 2018,
  SPEC §6), label helpers, and safetensors save/load of trained generators.
- :mod:`latentedit.baselines.celeba_split`: the CelebA layout read with StarGAN's official split and
  transforms.
- :mod:`latentedit.baselines.stargan_train`: WGAN-GP training of StarGAN (resumable, DDP).
- :mod:`latentedit.baselines.stargan_transfer`: attribute transfer and single-attribute grids for image files.
- :mod:`latentedit.baselines.faststyle`: seed 004's FastStyleNet generator and PatchGAN critic (with a domain
  classification head) for the StarGAN trainer (``--generator faststyle --discriminator patch``).
- :mod:`latentedit.baselines.cyclegan`: the CycleGAN / pix2pix networks of the reference implementation (ResNet and
  U-Net generators; PatchGAN, pixel, global+local and multi-scale discriminators), GAN losses, the image pool and
  translator files.
- :mod:`latentedit.baselines.two_domain_data`: unpaired domains and aligned pairs (folders, toyfaces).
- :mod:`latentedit.baselines.translation_train`: the training loop both two-domain trainers share;
  :mod:`~latentedit.baselines.cyclegan_train` (with the seeds' recipes) and :mod:`~latentedit.baselines.pix2pix_train`.
- :mod:`latentedit.baselines.translator_transfer`: CycleGAN / pix2pix on image files.

``stargan_train`` is exposed as a module: its resume helpers share their names with the StyleGAN2 trainer's.
"""
from latentedit.baselines import stargan, stargan_train
from latentedit.baselines.stargan_train import StarGANTrainConfig, train_stargan
from latentedit.baselines.stargan_transfer import OUTPUT_SUFFIXES, grid_files, transfer_files
from latentedit.baselines import cyclegan, cyclegan_train, pix2pix_train
from latentedit.baselines.cyclegan import load_translator, save_translator
from latentedit.baselines.cyclegan_train import CycleGANTrainConfig, train_cyclegan
from latentedit.baselines.pix2pix_train import Pix2PixTrainConfig, train_pix2pix

__all__ = ["stargan", "stargan_train", "StarGANTrainConfig", "train_stargan", "transfer_files", "grid_files",
           "OUTPUT_SUFFIXES", "cyclegan", "cyclegan_train", "pix2pix_train", "load_translator", "save_translator",
           "CycleGANTrainConfig", "train_cyclegan", "Pix2PixTrainConfig", "train_pix2pix"]
