"""PULSE: search the generator's latent sphere for an image whose downscale matches a reference (SPEC §4).

- :mod:`~latentedit.pulse.search`: the spherical optimiser with GEOCROSS, the bicubic downscale, RGBA
  references whose transparent pixels are unconstrained, results and the batch runner (``latentedit pulse``).
- :mod:`~latentedit.pulse.fit`: the Gaussian fit of leaky-ReLU-inverted mapped w that PULSE searches in,
  cached per mapping network.
"""
from latentedit.pulse.fit import GaussianFit, gaussian_fit
from latentedit.pulse.search import EpsNotReached, PulseResult, PulseSettings, geocross, load_reference, \
    pulse_downsample, pulse_to_folder, run_pulse, save_result

__all__ = ["run_pulse", "pulse_to_folder", "PulseSettings", "PulseResult", "EpsNotReached", "load_reference",
           "pulse_downsample", "geocross", "save_result", "GaussianFit", "gaussian_fit"]
