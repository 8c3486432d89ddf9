"""latentedit: edit images in the latent space of a StyleGAN2 generator.

The top-level package stays light: importing it loads no model, builds no kernel and touches no GPU.
"""
__version__ = "0.1.0"

from latentedit.errors import CheckpointError, InputError, LatentEditError  # noqa: E402

__all__ = ["__version__", "LatentEditError", "CheckpointError", "InputError"]
