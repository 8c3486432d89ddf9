"""GAN inversion: find the latent that makes the generator reproduce an image (SPEC §3).

- :mod:`~latentedit.invert.optimize`: Image2StyleGAN W+ optimisation (and the W / W+ + noise variants, the
  projector presets), one image or a resumable batch of files (``latentedit invert``).
- :mod:`~latentedit.invert.perceptual`: the VGG16 perceptual distances it optimises (Image2StyleGAN's
  layers, LPIPS when its weights exist, and the fallbacks), never downloaded.
- :mod:`~latentedit.invert.encoder`: an image → W+ encoder trained on the generator's own samples
  (``latentedit encoder train``; ``invert --method encoder``), its file format and loader.
- :mod:`~latentedit.invert.pti`: the methods ``encoder``, ``encoder+optimize`` and ``pti`` (pivotal tuning of the
  generator, written as ``<stem>_G.safetensors``) that :func:`invert_files` runs besides the optimisation.
"""
from latentedit.invert.optimize import DEFAULT_STEPS, METHODS, PRESETS, SPACES, ImageResult, InversionSettings, \
    invert, invert_files, prepare_perceptual, psnr_from_mse, write_result
from latentedit.invert.perceptual import PerceptualDistance, build_perceptual, choose_perceptual, find_vgg16_weights

__all__ = ["invert", "invert_files", "InversionSettings", "ImageResult", "prepare_perceptual", "write_result",
           "psnr_from_mse", "DEFAULT_STEPS", "METHODS", "PRESETS", "SPACES", "PerceptualDistance", "build_perceptual",
           "choose_perceptual", "find_vgg16_weights"]
