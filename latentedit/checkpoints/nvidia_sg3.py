"""NVIDIA stylegan3 snapshots (``.pkl``) -> :class:`~latentedit.model.sg3.SG3Generator` weights.

The pickle has been decoded by :mod:`latentedit.checkpoints.safe_pickle` into :class:`PersistentObject`
trees, so nothing from the file runs. A snapshot is StyleGAN3 when its generator's ``synthesis`` holds a
``SynthesisInput`` named ``input`` and a ``layer_names`` list (stylegan2-ada's has ``b4`` blocks instead).

The architecture comes from the pickled attributes and the tensor shapes only:

- mapping: the number of ``mapping.fc{i}`` layers, their shapes, ``bias_gain`` (the learning-rate multiplier;
  ``weight_gain`` must equal ``bias_gain / sqrt(in)``) and ``activation`` (``lrelu``);
- input: channels from ``synthesis.input.weight``; ``size`` (an int64 array), ``sampling_rate`` and
  ``bandwidth`` (numpy float64) from its state; ``transform``, ``freqs``, ``phases`` are buffers;
- layers, in ``layer_names`` order: channels and kernel size from ``weight [O, I, k, k]``; ``up_factor``,
  ``down_factor``, ``padding``, ``is_torgb``, ``conv_clamp`` from the state; filter shapes from the stored
  ``up_filter`` / ``down_filter`` buffers (1-D: separable; 2-D: radial); sizes, sampling rates, cutoffs and
  half widths are kept for ``info`` and checked against the geometry they imply;
- ``output_scale`` and ``margin_size`` from the synthesis state; ``img_resolution`` / ``img_channels`` from
  the generator's.

=====================================  ==================================
latentedit                             NVIDIA ``G_ema``
=====================================  ==================================
``style.fc{i}.{weight,bias}``          ``mapping.fc{i}.{weight,bias}``
w_avg                                  ``mapping.w_avg``
``input.*``                            ``synthesis.input.*``
``layers.{i}.*``                       ``synthesis.<layer_names[i]>.*``
=====================================  ==================================
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentedit.checkpoints.nvidia import (
    _network,
    _refuse_conditional,
    flatten_module,
    submodule,
)
from latentedit.checkpoints.rosinality import MAX_SIZE, NetworkWeights
from latentedit.checkpoints.safe_pickle import PersistentObject
from latentedit.errors import CheckpointError
from latentedit.model.sg3 import SG3Config, SG3LayerConfig

#: At most this many synthesis layers (NVIDIA's configs have 15); a hostile file must not make us build thousands.
MAX_LAYERS = 64


def is_stylegan3(obj: Any) -> bool:
    """True when ``obj`` (the decoded pickle) holds a StyleGAN3 generator under ``G_ema`` or ``G``."""
    if not isinstance(obj, Mapping):
        return False
    for name in ("G_ema", "G"):
        module = obj.get(name)
        if isinstance(module, PersistentObject):
            synthesis = submodule(module, "synthesis")
            if synthesis is None:
                return False
            source_input = submodule(synthesis, "input")
            return (source_input is not None and source_input.class_name == "SynthesisInput") or \
                "layer_names" in synthesis.state
    return False


class _State:
    """Typed reads of one pickled module's attributes, with one-line errors naming the module."""

    def __init__(self, module: PersistentObject, where: str, path: Path):
        self.state = module.state
        self.where = where
        self.path = path

    def _fail(self, key: str, value: Any, expected: str):
        plain = isinstance(value, (int, float, str, bool, np.generic)) or value is None
        shown = value if plain else type(value).__name__
        raise CheckpointError(f"{self.path}: '{self.where}.{key}' is {shown!r}, expected {expected}")

    def has(self, key: str) -> bool:
        return key in self.state

    def raw(self, key: str) -> Any:
        if key not in self.state:
            raise CheckpointError(f"{self.path}: '{self.where}' lacks the attribute '{key}'; not a StyleGAN3 "
                                  f"network this loader understands")
        return self.state[key]

    def integer(self, key: str, minimum: int = 0) -> int:
        value = self.raw(key)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
            self._fail(key, value, f"an integer >= {minimum}")
        return int(value)

    def number(self, key: str) -> float:
        value = self.raw(key)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) or \
                not math.isfinite(float(value)):
            self._fail(key, value, "a finite number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self.state.get(key) is None else self.number(key)

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, (bool, np.bool_)):
            self._fail(key, value, "a boolean")
        return bool(value)

    def pair(self, key: str) -> list[int]:
        """An int or a length-2 int array / list as ``[width, height]``."""
        value = self.raw(key)
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return [int(value), int(value)]
        array = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
        if array is None or array.shape != (2,) or array.dtype.kind not in "iu":
            self._fail(key, value, "an int or two ints")
        if int(array.min()) < 1 or int(array.max()) > 4 * MAX_SIZE:
            self._fail(key, value, f"sizes in [1, {4 * MAX_SIZE}]")
        return [int(v) for v in array]

    def int_list(self, key: str, length: int) -> list[int]:
        value = self.raw(key)
        if not isinstance(value, (list, tuple)) or len(value) != length or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in value):
            self._fail(key, value, f"a list of {length} ints")
        return [int(v) for v in value]


def _take(flat: dict[str, torch.Tensor], key: str, path: Path, rank: int | None = None) -> torch.Tensor:
    if key not in flat:
        raise CheckpointError(f"{path}: the generator lacks tensor '{key}'; not a StyleGAN3 generator this loader "
                              f"understands")
    tensor = flat.pop(key)
    if rank is not None and tensor.ndim != rank:
        raise CheckpointError(f"{path}: '{key}' has shape {list(tensor.shape)}, expected {rank} dimensions")
    return tensor.float() if tensor.is_floating_point() else tensor


def _check_fc(layer: PersistentObject, where: str, path: Path, in_features: int, lr_mul: float | None,
              activation: str) -> float:
    """The layer's learning-rate multiplier (``bias_gain``); refuses gains or activations we do not model."""
    state = _State(layer, where, path)
    bias_gain = state.number("bias_gain") if state.has("bias_gain") else 1.0
    weight_gain = state.number("weight_gain") if state.has("weight_gain") else bias_gain / math.sqrt(in_features)
    if lr_mul is not None and bias_gain != lr_mul:
        raise CheckpointError(f"{path}: '{where}' has bias_gain {bias_gain:g}, expected {lr_mul:g}")
    if not math.isclose(weight_gain, bias_gain / math.sqrt(in_features), rel_tol=1e-9):
        raise CheckpointError(f"{path}: '{where}' has weight_gain {weight_gain:g}, not bias_gain/sqrt(in) = "
                              f"{bias_gain / math.sqrt(in_features):g}; not supported")
    found = layer.state.get("activation", activation)
    if found != activation:
        raise CheckpointError(f"{path}: '{where}' uses activation {found!r}; only {activation!r} is supported here")
    return bias_gain


def generator_weights(obj: Any, path: Path) -> NetworkWeights:
    """The generator of a stylegan3 snapshot (``G_ema``, else ``G``) in latentedit's SG3 layout, with its config."""
    network, module, contents = _network(obj, path, ("G_ema", "G"), "Generator")
    _refuse_conditional(module, path, network)
    top = _State(module, network, path)
    mapping, synthesis = submodule(module, "mapping"), submodule(module, "synthesis")
    source_input = submodule(module, "synthesis.input")
    if mapping is None or synthesis is None or source_input is None:
        raise CheckpointError(f"{path}: '{network}' lacks its mapping, synthesis or synthesis.input module; not a "
                              f"StyleGAN3 generator")
    flat = flatten_module(module, path)
    out: dict[str, torch.Tensor] = {}
    notes = []

    # Mapping network.
    num_mapping = 0
    lr_mul = None
    while f"mapping.fc{num_mapping}.weight" in flat:
        fc = submodule(mapping, f"fc{num_mapping}")
        weight = _take(flat, f"mapping.fc{num_mapping}.weight", path, 2)
        lr_mul = _check_fc(fc, f"mapping.fc{num_mapping}", path, weight.shape[1], lr_mul, "lrelu")
        out[f"style.fc{num_mapping}.weight"] = weight
        out[f"style.fc{num_mapping}.bias"] = _take(flat, f"mapping.fc{num_mapping}.bias", path, 1)
        num_mapping += 1
    if num_mapping == 0:
        raise CheckpointError(f"{path}: the generator has no mapping layers ('mapping.fc0'); not a StyleGAN3 generator")
    z_dim, w_dim = out["style.fc0.weight"].shape[1], out["style.fc0.weight"].shape[0]
    w_avg = _take(flat, "mapping.w_avg", path, 1) if "mapping.w_avg" in flat else None

    # Input layer.
    input_state = _State(source_input, "synthesis.input", path)
    for name in ("weight", "affine.weight", "affine.bias", "transform", "freqs", "phases"):
        out[f"input.{name}"] = _take(flat, f"synthesis.input.{name}", path)
    input_channels = out["input.weight"].shape[0]
    _check_fc(submodule(source_input, "affine"), "synthesis.input.affine", path, w_dim, 1.0, "linear")

    # Synthesis layers, in execution order.
    synthesis_state = _State(synthesis, "synthesis", path)
    layer_names = synthesis_state.raw("layer_names")
    if not isinstance(layer_names, (list, tuple)) or not layer_names or \
            not all(isinstance(n, str) for n in layer_names) or len(layer_names) > MAX_LAYERS:
        raise CheckpointError(f"{path}: 'synthesis.layer_names' is not a list of 1 to {MAX_LAYERS} layer names")
    layers = []
    fp16_layers = []
    for index, name in enumerate(layer_names):
        layer = submodule(synthesis, name)
        if layer is None or layer.class_name != "SynthesisLayer":
            raise CheckpointError(f"{path}: synthesis layer '{name}' is missing or not a SynthesisLayer")
        where = f"synthesis.{name}"
        state = _State(layer, where, path)
        weight = _take(flat, f"{where}.weight", path, 4)
        out_channels, in_channels, kernel_h, kernel_w = weight.shape
        if kernel_h != kernel_w:
            raise CheckpointError(f"{path}: '{where}.weight' has a non-square kernel {kernel_h}x{kernel_w}")
        out[f"layers.{index}.weight"] = weight
        out[f"layers.{index}.bias"] = _take(flat, f"{where}.bias", path, 1)
        out[f"layers.{index}.affine.weight"] = _take(flat, f"{where}.affine.weight", path, 2)
        out[f"layers.{index}.affine.bias"] = _take(flat, f"{where}.affine.bias", path, 1)
        out[f"layers.{index}.magnitude_ema"] = _take(flat, f"{where}.magnitude_ema", path, 0)
        _check_fc(submodule(layer, "affine"), f"{where}.affine", path, w_dim, 1.0, "linear")
        shapes = {}
        for which in ("up_filter", "down_filter"):
            key = f"{where}.{which}"
            if key in flat:
                tensor = _take(flat, key, path)
                if tensor.ndim not in (1, 2) or (tensor.ndim == 2 and tensor.shape[0] != tensor.shape[1]):
                    raise CheckpointError(f"{path}: '{key}' has shape {list(tensor.shape)}; expected [K] or [K, K]")
                out[f"layers.{index}.{which}"] = tensor
                shapes[which] = list(tensor.shape)
            else:
                shapes[which] = []
        if state.has("use_fp16") and state.flag("use_fp16"):
            fp16_layers.append(name)
        clamp = state.optional_number("conv_clamp")
        try:
            layers.append(SG3LayerConfig(
                in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_h,
                up=state.integer("up_factor", 1), down=state.integer("down_factor", 1),
                padding=state.int_list("padding", 4), up_filter_shape=shapes["up_filter"],
                down_filter_shape=shapes["down_filter"], is_torgb=state.flag("is_torgb"), conv_clamp=clamp,
                in_size=state.pair("in_size"), out_size=state.pair("out_size"),
                in_sampling_rate=state.number("in_sampling_rate"), out_sampling_rate=state.number("out_sampling_rate"),
                in_cutoff=state.number("in_cutoff"), out_cutoff=state.number("out_cutoff"),
                in_half_width=state.number("in_half_width"), out_half_width=state.number("out_half_width"),
                is_critically_sampled=state.flag("is_critically_sampled"), name=name))
        except ValueError as error:
            raise CheckpointError(f"{path}: synthesis layer '{name}': {error}") from None
        for attribute, expected in (("in_channels", in_channels), ("out_channels", out_channels)):
            if state.has(attribute) and state.integer(attribute) != expected:
                raise CheckpointError(f"{path}: '{where}.{attribute}' is {state.integer(attribute)} but its weight "
                                      f"has {expected}")
    if flat:
        extra = ", ".join(list(flat)[:4])
        raise CheckpointError(f"{path}: the generator has {len(flat)} tensors with no StyleGAN3 counterpart (e.g. "
                              f"{extra}); unsupported stylegan3 variant")
    resolution = top.integer("img_resolution", 1)
    if resolution > MAX_SIZE:
        raise CheckpointError(f"{path}: a {resolution}x{resolution} network; sizes above {MAX_SIZE} are not supported")
    try:
        config = SG3Config(
            z_dim=z_dim, w_dim=w_dim, mapping_layers=num_mapping, input_channels=input_channels,
            input_size=input_state.pair("size"), input_sampling_rate=input_state.number("sampling_rate"),
            input_bandwidth=input_state.number("bandwidth"), layers=layers, img_resolution=resolution,
            img_channels=top.integer("img_channels", 1) if top.has("img_channels") else 3, mapping_lr_mul=lr_mul,
            output_scale=synthesis_state.number("output_scale"),
            margin_size=synthesis_state.integer("margin_size") if synthesis_state.has("margin_size") else None)
    except ValueError as error:
        raise CheckpointError(f"{path}: inconsistent StyleGAN3 architecture: {error}") from None
    for key, expected in (("num_ws", config.num_ws), ("z_dim", z_dim), ("w_dim", w_dim)):
        if top.has(key) and top.integer(key) != expected:
            raise CheckpointError(f"{path}: '{network}.{key}' is {top.integer(key)}, but the layers imply {expected}")
    if fp16_layers:
        notes.append(f"the snapshot ran {len(fp16_layers)} layers in float16 on GPU ({', '.join(fp16_layers)}); "
                     f"latentedit computes in float32 (conv_clamp honoured), as NVIDIA does on CPU")
    if network == "G":
        notes.append("the pickle has no 'G_ema': loaded the non-EMA training generator 'G'")
    if not torch.equal(out["input.transform"], torch.eye(3)):
        notes.append("the stored input transform is not the identity (it is used as stored)")
    return NetworkWeights(out, "nvidia-pkl", network, contents, w_avg=w_avg,
                          w_avg_origin="'mapping.w_avg'" if w_avg is not None else None,
                          w_avg_history="'mapping.w_avg' of an NVIDIA pickle" if w_avg is not None else None,
                          config=config, conv_clamp=config.conv_clamp, notes=notes)
