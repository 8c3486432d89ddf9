"""Baselines that latent-space editing is compared against.

- :mod:`latentedit.baselines.stargan`: the StarGAN generator and discriminator (Choi et al. 2018,
  SPEC §6), label helpers, and safetensors save/load of trained generators.
- :mod:`latentedit.baselines.celeba_split`: the CelebA layout read with StarGAN's official split and
  transforms.
- :mod:`latentedit.baselines.stargan_train`: WGAN-GP training of StarGAN (resumable, DDP).
- :mod:`latentedit.baselines.stargan_transfer`: attribute transfer and single-attribute grids for image files.

Nothing heavy is imported here; import the submodules.
"""
