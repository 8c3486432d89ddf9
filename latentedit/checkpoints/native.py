"""latentedit's native checkpoint format: one network in a ``.safetensors`` file (no pickle at all).

Layout (format version 1):

- tensors: the network's ``state_dict()`` in the rosinality layout; for a generator also ``w_avg``
  ``[style_dim]`` (float32) when the mean w is known. ``w_avg`` is stored as a tensor rather than as
  text so that it round-trips bit-exactly; it cannot clash with a state-dict key because the
  generator's ``w_avg`` buffer is non-persistent.
- string metadata: ``format`` = ``latentedit``, ``format_version`` = ``1``, ``network`` =
  ``generator`` | ``discriminator``, ``config`` = the config's ``to_dict()`` as JSON, ``w_avg_source``
  (how the stored w_avg was obtained), ``architecture`` = ``stylegan3`` for a
  :class:`~latentedit.model.sg3.SG3Generator` (absent: StyleGAN2), plus any caller-supplied provenance (e.g.
  ``source_format``, ``source_sha256``).

The architecture comes from ``config``; the strict load then checks that the tensors agree with it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentedit.checkpoints.rosinality import NetworkWeights
from latentedit.errors import CheckpointError
from latentedit.io import safetensors_bytes, write_bytes
from latentedit.model import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from latentedit.model.sg3 import SG3Config, SG3Generator

FORMAT_NAME = "latentedit"
FORMAT_VERSION = "1"
W_AVG_TENSOR = "w_avg"
RESERVED_METADATA = ("format", "format_version", "network", "config", "w_avg_source", "architecture")
STYLEGAN3 = "stylegan3"


def save_native(network: nn.Module, path: str | os.PathLike, extra_metadata: Mapping[str, Any] | None = None,
                w_avg_source: str | None = None) -> Path:
    """Write ``network`` (a :class:`Generator`, :class:`SG3Generator` or :class:`Discriminator`) to ``path`` as
    safetensors, atomically.

    For a generator whose ``has_w_avg`` is set, ``w_avg [style_dim]`` is stored too, with
    ``w_avg_source`` (free text, default "stored by save_native") describing its origin.
    ``extra_metadata`` values that are not strings are stored as JSON; they cannot override the
    reserved keys :data:`RESERVED_METADATA` (ValueError). Returns ``path`` as a Path.
    """

    if isinstance(network, (Generator, SG3Generator)):
        kind = "generator"
    elif isinstance(network, Discriminator):
        kind = "discriminator"
    else:
        raise TypeError(f"save_native expects a Generator, SG3Generator or Discriminator, got "
                        f"{type(network).__name__}")
    tensors = {name: tensor.detach().to("cpu", torch.float32).contiguous().clone()
               for name, tensor in network.state_dict().items()}
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "network": kind,
                "config": json.dumps(network.config.to_dict())}
    if isinstance(network, SG3Generator):
        metadata["architecture"] = STYLEGAN3
    if kind == "generator" and network.has_w_avg:
        tensors[W_AVG_TENSOR] = network.w_avg.detach().to("cpu", torch.float32).contiguous().clone()
        metadata["w_avg_source"] = w_avg_source or "stored by save_native"
    for key, value in (extra_metadata or {}).items():
        if key in RESERVED_METADATA:
            raise ValueError(f"extra_metadata may not set the reserved key {key!r}")
        metadata[str(key)] = value if isinstance(value, str) else json.dumps(value)
    path = Path(path)
    write_bytes(path, safetensors_bytes(tensors, metadata))
    return path


def _metadata(metadata: dict | None, path: Path) -> dict:
    if not metadata or metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: safetensors file without latentedit metadata (write native checkpoints with "
                              f"'latentedit convert')")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: native format version {metadata.get('format_version')!r} is not supported "
                              f"(this latentedit reads version {FORMAT_VERSION})")
    return metadata


def _config(metadata: dict, path: Path, config_class):
    try:
        data = json.loads(metadata["config"])
        if not isinstance(data, dict):
            raise TypeError("config is not a JSON object")
        return config_class.from_dict(data)
    except KeyError:
        raise CheckpointError(f"{path}: latentedit metadata lacks the architecture 'config'") from None
    except (ValueError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{path}: garbled architecture config in the metadata ({error})") from None


def native_weights(tensors: dict[str, torch.Tensor], metadata: dict | None, path: Path, network: str) -> NetworkWeights:
    """The ``network`` (``generator`` or ``discriminator``) stored in a native safetensors file."""
    metadata = _metadata(metadata, path)
    stored = metadata.get("network")
    if stored != network:
        raise CheckpointError(f"{path}: this native checkpoint holds a {stored!r} network, not a {network}")
    architecture = metadata.get("architecture")
    if architecture not in (None, STYLEGAN3) or (architecture == STYLEGAN3 and network != "generator"):
        raise CheckpointError(f"{path}: unknown architecture {architecture!r} in the latentedit metadata")
    if architecture == STYLEGAN3:
        config_class = SG3Config
    else:
        config_class = GeneratorConfig if network == "generator" else DiscriminatorConfig
    config = _config(metadata, path, config_class)
    tensors = dict(tensors)
    weights = NetworkWeights(tensors, "safetensors", network, [network], config=config)
    if network == "generator" and W_AVG_TENSOR in tensors:
        weights.w_avg = tensors.pop(W_AVG_TENSOR).reshape(-1).float()
        weights.w_avg_history = metadata.get("w_avg_source", "origin not recorded")
        weights.w_avg_origin = f"'{W_AVG_TENSOR}', originally {weights.w_avg_history}"
    if network == "discriminator":
        weights.stddev_group = config.stddev_group
    else:
        weights.conv_clamp = config.conv_clamp
    return weights


def provenance(metadata: dict | None) -> dict[str, str]:
    """The non-reserved metadata entries of a native file (e.g. ``source_format``, ``source_sha256``)."""
    return {k: v for k, v in (metadata or {}).items() if k not in RESERVED_METADATA}
