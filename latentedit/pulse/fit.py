"""The Gaussian fit of the mapping network that PULSE searches through (SPEC §4), with an on-disk cache.

PULSE does not run the mapping network during its search. It fits one Gaussian per W dimension to
``v = leaky_relu(mapping(z), negative_slope=5)`` over many ``z ~ N(0, I)`` (the slope 5 undoes the final
0.2 slope of the mapping network, so ``v`` is close to Gaussian), and maps each search vector to W
through ``w = leaky_relu(latent * std + mean, 0.2)``.

The fit draws ``num_samples`` z from one ``torch.Generator`` seeded with :data:`FIT_SEED` (0, as the
original), in consecutive blocks of :data:`FIT_BLOCK` rows (the last block holds the remainder), maps
each block and merges the block statistics in float64 (Chan et al.'s parallel update). Memory stays
bounded whatever the sample count, and because the block size is fixed, the samples (and so the fit)
are a function of the seed and ``num_samples`` only. ``std`` is the unbiased (n - 1) standard
deviation, as ``torch.std``.

Cache: ``$XDG_CACHE_HOME/latentedit/pulse_fit/<digest>_<num_samples>.npz`` (``~/.cache`` when the
variable is unset), written atomically. ``digest`` is :func:`mapping_digest`, the sha256 of the mapping
network's weights and hyper-parameters: the fit depends on nothing else, so a checkpoint converted to
another format shares its fit, and an in-memory generator gets a correct key too. A cache file that is
unreadable or does not match is recomputed and replaced, with a warning.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latentedit import io as lio
from latentedit.model.generator import Generator

#: Seed of the z samples of the fit (the original uses 0).
FIT_SEED = 0
#: The original's sample count.
DEFAULT_FIT_SAMPLES = 1_000_000
#: Rows of z drawn and mapped at once: bounds memory at ``FIT_BLOCK * w_dim`` floats per layer. Part of the
#: definition of the samples (torch draws a block of normals differently from its rows one by one).
FIT_BLOCK = 10_000
#: Bumped whenever the cached content or its computation changes.
FIT_FORMAT_VERSION = 1


@dataclasses.dataclass
class GaussianFit:
    """Per-dimension Gaussian of ``leaky_relu(mapping(z), 5)``.

    ``mean`` and ``std``: float32 tensors ``[w_dim]``. ``num_samples``: how many z were drawn; ``seed``:
    their seed; ``digest``: :func:`mapping_digest` of the generator; ``cache_path``: the cache file
    (None when caching was off); ``from_cache``: whether it was read rather than computed.
    """

    mean: torch.Tensor
    std: torch.Tensor
    num_samples: int
    seed: int
    digest: str
    cache_path: str | None = None
    from_cache: bool = False

    def to_w(self, latent: torch.Tensor) -> torch.Tensor:
        """Search vectors ``[..., w_dim]`` -> W ``[..., w_dim]``: ``leaky_relu(latent * std + mean, 0.2)``."""
        return F.leaky_relu(latent * self.std.to(latent) + self.mean.to(latent), negative_slope=0.2)

    def to_dict(self) -> dict:
        """JSON-ready description (no tensors)."""
        return {"num_samples": self.num_samples, "seed": self.seed, "mapping_digest": self.digest,
                "cache_path": self.cache_path, "from_cache": self.from_cache}


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/latentedit``, or ``~/.cache/latentedit`` when the variable is unset or empty."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "latentedit"


def fit_cache_path(digest: str, num_samples: int) -> Path:
    """Where the fit of a mapping network with ``digest`` over ``num_samples`` samples is cached."""
    return cache_root() / "pulse_fit" / f"{digest}_{int(num_samples)}.npz"


def mapping_digest(generator: Generator) -> str:
    """sha256 (hex) of what the mapping network computes: its weights plus ``style_dim``, ``n_mlp``, ``lr_mlp``
    (StyleGAN3: ``architecture``, ``z_dim``, ``w_dim``, ``mapping_layers``, ``mapping_lr_mul``)."""
    config = generator.config
    digest = hashlib.sha256()
    if getattr(generator, "architecture", None) == "stylegan3":
        described = {"architecture": "stylegan3", "z_dim": config.z_dim, "w_dim": config.w_dim,
                     "mapping_layers": config.mapping_layers, "mapping_lr_mul": config.mapping_lr_mul}
    else:
        described = {"style_dim": config.style_dim, "n_mlp": config.n_mlp, "lr_mlp": config.lr_mlp}
    digest.update(json.dumps(described, sort_keys=True).encode())
    for name, tensor in generator.style.state_dict().items():
        array = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
        digest.update(f"{name}:{list(array.shape)}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@torch.no_grad()
def compute_gaussian_fit(generator: Generator, num_samples: int = DEFAULT_FIT_SAMPLES, seed: int = FIT_SEED,
                         progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)``, each float32 ``[w_dim]`` on CPU, of ``leaky_relu(mapping(z), 5)`` over ``num_samples`` z
    (``[z_dim]`` each; StyleGAN2's z and w have the same size).

    z is drawn on the CPU from ``torch.Generator().manual_seed(seed)`` in blocks of :data:`FIT_BLOCK` rows
    (so every device sees the same samples), and mapped on the generator's device.
    """
    from tqdm.auto import tqdm

    if num_samples < 2:
        raise ValueError(f"the Gaussian fit needs at least 2 samples, got {num_samples}")
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    count = 0
    mean = torch.zeros(generator.w_dim, dtype=torch.float64)
    m2 = torch.zeros(generator.w_dim, dtype=torch.float64)
    with tqdm(total=num_samples, desc="PULSE Gaussian fit", unit="z", disable=not progress, leave=False) as bar:
        while count < num_samples:
            rows = min(FIT_BLOCK, num_samples - count)
            z = torch.randn(rows, generator.z_dim, generator=rng).to(device)
            values = F.leaky_relu(generator.mapping(z), negative_slope=5.0).double().cpu()
            chunk_mean = values.mean(0)
            chunk_m2 = (values - chunk_mean).square().sum(0)
            total = count + rows
            delta = chunk_mean - mean
            mean += delta * (rows / total)
            m2 += chunk_m2 + delta.square() * (count * rows / total)
            count = total
            bar.update(rows)
    std = (m2 / (count - 1)).sqrt()
    return mean.float(), std.float()


def _read_cache(path: Path, digest: str, num_samples: int, w_dim: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached ``(mean, std)`` if ``path`` holds a valid fit for these parameters, else None (with a warning
    when a file exists but is unusable)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            mean, std = data["mean"], data["std"]
            header = {key: data[key].item() for key in ("version", "num_samples", "seed")}
            stored_digest = str(data["digest"])
    except (OSError, ValueError, KeyError, EOFError) as error:
        warnings.warn(f"PULSE fit cache {path} is unreadable ({error}); recomputing it", stacklevel=3)
        return None
    expected = {"version": FIT_FORMAT_VERSION, "num_samples": num_samples, "seed": FIT_SEED}
    if (header != expected or stored_digest != digest or mean.shape != (w_dim,) or std.shape != (w_dim,)
            or not (np.isfinite(mean).all() and np.isfinite(std).all())):
        warnings.warn(f"PULSE fit cache {path} does not match this generator; recomputing it", stacklevel=3)
        return None
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))


def _write_cache(path: Path, digest: str, num_samples: int, mean: torch.Tensor, std: torch.Tensor) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, mean=mean.numpy(), std=std.numpy(), version=np.int64(FIT_FORMAT_VERSION),
             num_samples=np.int64(num_samples), seed=np.int64(FIT_SEED), digest=np.str_(digest))
    lio.write_bytes(path, buffer.getvalue())


def gaussian_fit(generator: Generator, num_samples: int = DEFAULT_FIT_SAMPLES, cache: bool = True,
                 progress: bool = False) -> GaussianFit:
    """The Gaussian fit of ``generator``'s mapping network: read from the cache, or computed (and cached).

    ``cache=False`` neither reads nor writes the cache. A cache folder that cannot be written only
    costs a warning: the fit is still returned.
    """
    if num_samples < 2:
        raise ValueError(f"the Gaussian fit needs at least 2 samples, got {num_samples}")
    digest = mapping_digest(generator)
    path = fit_cache_path(digest, num_samples) if cache else None
    if path is not None:
        cached = _read_cache(path, digest, num_samples, generator.w_dim)
        if cached is not None:
            return GaussianFit(cached[0], cached[1], num_samples, FIT_SEED, digest, str(path), from_cache=True)
    mean, std = compute_gaussian_fit(generator, num_samples, FIT_SEED, progress)
    if path is not None:
        try:
            _write_cache(path, digest, num_samples, mean, std)
        except OSError as error:
            warnings.warn(f"could not write the PULSE fit cache {path} ({error}); it will be recomputed next time",
                          stacklevel=2)
            path = None
    return GaussianFit(mean, std, num_samples, FIT_SEED, digest, str(path) if path else None, from_cache=False)
