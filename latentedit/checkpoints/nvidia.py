"""NVIDIA stylegan2-ada-pytorch snapshots (``.pkl``) -> rosinality-layout state dicts (SPEC §1.1).

The pickle has already been decoded by :mod:`latentedit.checkpoints.safe_pickle` into
:class:`PersistentObject` trees (class name + module ``__dict__``), so nothing here runs NVIDIA code.
We walk ``_parameters`` / ``_buffers`` / ``_modules`` into a flat NVIDIA state dict and rename it:

=============================  ====================================  ==========================
rosinality                     NVIDIA ``G_ema``                      transform
=============================  ====================================  ==========================
``style.{i+1}.*``              ``mapping.fc{i}.*``                   none
latent_avg (w_avg)             ``mapping.w_avg``                     none
``input.input``                ``synthesis.b4.const``                unsqueeze(0)
``conv1`` / ``to_rgb1``        ``synthesis.b4.conv1`` / ``.torgb``   layer / torgb rule
``convs.{2j}`` / ``{2j+1}``    ``synthesis.b{8*2^j}.conv0`` / conv1  layer rule (no weight flip)
``to_rgbs.{j}``                ``synthesis.b{8*2^j}.torgb``          torgb rule
``noises.noise_0``             ``synthesis.b4.conv1.noise_const``    [None, None]
``noises.noise_{2j+1/2j+2}``   ``b{r}.conv0/conv1.noise_const``      [None, None]
=============================  ====================================  ==========================

Layer rule: ``conv.weight = weight.unsqueeze(0)``, ``conv.modulation = affine``, ``noise.weight =
noise_strength.reshape(1)``, ``activate.bias = bias``. ToRGB: same weight/affine, ``bias.reshape(1,3,1,1)``.
Blur kernels are NVIDIA's ``resample_filter`` (sum 1) times 4, the upsampling gain rosinality bakes in.

The discriminator (architecture ``resnet``) maps ``b{top}.fromrgb`` -> ``convs.0``, each ``b{r}``
(r = top .. 8) -> ResBlock ``convs.{i}`` (``conv0`` -> ``conv1``, ``conv1`` -> ``conv2``, ``skip`` -> ``skip``)
and the ``b4`` epilogue ``conv`` / ``fc`` / ``out`` -> ``final_conv`` / ``final_linear.0`` / ``final_linear.1``.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from latentedit.checkpoints.rosinality import NetworkWeights
from latentedit.checkpoints.safe_pickle import PersistentObject
from latentedit.errors import CheckpointError
from latentedit.model.layers import make_blur_kernel

#: NVIDIA's default ``resample_filter`` ([1, 3, 3, 1] outer product, sum 1); other filters are refused.
DEFAULT_RESAMPLE_FILTER = make_blur_kernel((1, 3, 3, 1))

_NETWORK_KEYS = ("G_ema", "G", "D")


def flatten_module(module: PersistentObject, path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flat ``{dotted name: tensor}`` of a module tree: parameters, persistent buffers, then children."""
    state = module.state
    flat = {}
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        entries = state.get(group) or {}
        if not isinstance(entries, Mapping):
            raise CheckpointError(f"{path}: module '{prefix or module.class_name}' has a malformed {group} record")
        for name, tensor in entries.items():
            if tensor is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"{path}: '{prefix}{name}' is a {type(tensor).__name__}, not a tensor")
            flat[prefix + name] = tensor
    children = state.get("_modules") or {}
    if not isinstance(children, Mapping):
        raise CheckpointError(f"{path}: module '{prefix or module.class_name}' has a malformed _modules record")
    for name, child in children.items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise CheckpointError(f"{path}: submodule '{prefix}{name}' is a {type(child).__name__}, not a network "
                                  f"module")
        flat.update(flatten_module(child, path, f"{prefix}{name}."))
    return flat


def submodule(module: PersistentObject, dotted: str) -> PersistentObject | None:
    """The child at ``dotted`` (e.g. ``synthesis.b8.conv0``), or None if it does not exist."""
    for name in dotted.split("."):
        children = module.state.get("_modules") or {}
        module = children.get(name) if isinstance(children, Mapping) else None
        if not isinstance(module, PersistentObject):
            return None
    return module


def _network(obj: Any, path: Path, names: tuple[str, ...], class_name: str) -> tuple[str, PersistentObject, list[str]]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: the pickle holds a {type(obj).__name__}, not a stylegan2-ada snapshot dict")
    contents = [k for k in _NETWORK_KEYS if obj.get(k) is not None]  # stylegan3 fixtures may store D=None
    for name in names:
        if name in obj:
            module = obj[name]
            if not isinstance(module, PersistentObject) or module.class_name != class_name:
                found = module.class_name if isinstance(module, PersistentObject) else type(module).__name__
                raise CheckpointError(f"{path}: '{name}' is a {found}, not a stylegan2-ada {class_name}")
            return name, module, contents
    raise CheckpointError(f"{path}: no {' or '.join(repr(n) for n in names)} network in this pickle (found keys: "
                          f"{', '.join(repr(k) for k in list(obj)[:6])})")


def _init_kwargs(module: PersistentObject) -> dict:
    kwargs = module.state.get("_init_kwargs")
    return dict(kwargs) if isinstance(kwargs, Mapping) else {}


def _refuse_conditional(module: PersistentObject, path: Path, name: str) -> None:
    c_dim = _init_kwargs(module).get("c_dim", module.state.get("c_dim", 0))
    if c_dim:
        raise CheckpointError(f"{path}: '{name}' is a conditional model (c_dim={int(c_dim)}); conditional models are "
                              f"not supported")


class _TensorTaker:
    """Pops NVIDIA tensors by name so that anything left over can be reported as unsupported."""

    def __init__(self, tensors: dict[str, torch.Tensor], path: Path, what: str):
        self.tensors = dict(tensors)
        self.path = path
        self.what = what

    def has(self, key: str) -> bool:
        return key in self.tensors

    def take(self, key: str) -> torch.Tensor:
        if key not in self.tensors:
            raise CheckpointError(f"{self.path}: the {self.what} lacks tensor '{key}'; not a stylegan2-ada "
                                  f"{self.what} (StyleGAN3 and other variants are not supported)")
        return self.tensors.pop(key)

    def take_filters(self) -> None:
        """Remove every ``resample_filter`` buffer, refusing filters other than [1, 3, 3, 1]."""
        for key in [k for k in self.tensors if k.endswith("resample_filter")]:
            value = self.tensors.pop(key)
            if value.shape != DEFAULT_RESAMPLE_FILTER.shape or not torch.allclose(value.float(),
                                                                                   DEFAULT_RESAMPLE_FILTER):
                raise CheckpointError(f"{self.path}: '{key}' is not the [1, 3, 3, 1] filter; other resampling "
                                      f"filters are not supported")

    def finish(self) -> None:
        if self.tensors:
            extra = ", ".join(list(self.tensors)[:4])
            raise CheckpointError(f"{self.path}: the {self.what} has {len(self.tensors)} tensors with no StyleGAN2 "
                                  f"counterpart (e.g. {extra}); unsupported stylegan2-ada variant")


def _conv_clamp(module: PersistentObject, layer_names: list[str], path: Path) -> float | None:
    """The activation clamp the layers were built with (the same for all layers in stylegan2-ada)."""
    values = set()
    for name in layer_names:
        layer = submodule(module, name)
        if layer is not None and "conv_clamp" in layer.state:
            values.add(None if layer.state["conv_clamp"] is None else float(layer.state["conv_clamp"]))
    if not values:
        synthesis_kwargs = _init_kwargs(module).get("synthesis_kwargs") or {}
        value = synthesis_kwargs.get("conv_clamp")
        return None if value is None else float(value)
    if len(values) > 1:
        raise CheckpointError(f"{path}: layers use different conv_clamp values {sorted(values, key=str)}; not "
                              f"supported")
    return values.pop()


def generator_weights(obj: Any, path: Path) -> NetworkWeights:
    """The generator of a stylegan2-ada snapshot (``G_ema``, else ``G``) in the rosinality layout."""
    network, module, contents = _network(obj, path, ("G_ema", "G"), "Generator")
    _refuse_conditional(module, path, network)
    kwargs = _init_kwargs(module)
    synthesis_kwargs = kwargs.get("synthesis_kwargs") or {}
    architecture = synthesis_kwargs.get("architecture", "skip")
    if architecture != "skip":
        raise CheckpointError(f"{path}: synthesis architecture '{architecture}' is not supported (only the default "
                              f"'skip')")
    src = _TensorTaker(flatten_module(module, path), path, "generator")
    out: dict[str, torch.Tensor] = {}
    notes = []
    layers_without_noise = []

    def convert_layer(nvidia: str, ours: str, noise_index: int) -> None:
        out[f"{ours}.conv.weight"] = src.take(f"{nvidia}.weight").unsqueeze(0)
        out[f"{ours}.conv.modulation.weight"] = src.take(f"{nvidia}.affine.weight")
        out[f"{ours}.conv.modulation.bias"] = src.take(f"{nvidia}.affine.bias")
        out[f"{ours}.activate.bias"] = src.take(f"{nvidia}.bias")
        if src.has(f"{nvidia}.noise_strength"):
            out[f"{ours}.noise.weight"] = src.take(f"{nvidia}.noise_strength").reshape(1)
            out[f"noises.noise_{noise_index}"] = src.take(f"{nvidia}.noise_const")[None, None]
        else:  # built with use_noise=False: a zero noise weight computes the same thing
            out[f"{ours}.noise.weight"] = torch.zeros(1)
            layers_without_noise.append(nvidia)

    def convert_torgb(nvidia: str, ours: str) -> None:
        out[f"{ours}.conv.weight"] = src.take(f"{nvidia}.weight").unsqueeze(0)
        out[f"{ours}.conv.modulation.weight"] = src.take(f"{nvidia}.affine.weight")
        out[f"{ours}.conv.modulation.bias"] = src.take(f"{nvidia}.affine.bias")
        out[f"{ours}.bias"] = src.take(f"{nvidia}.bias").reshape(1, -1, 1, 1)

    num_mapping = 0
    while src.has(f"mapping.fc{num_mapping}.weight"):
        out[f"style.{num_mapping + 1}.weight"] = src.take(f"mapping.fc{num_mapping}.weight")
        out[f"style.{num_mapping + 1}.bias"] = src.take(f"mapping.fc{num_mapping}.bias")
        num_mapping += 1
    w_avg = src.take("mapping.w_avg").reshape(-1).float() if src.has("mapping.w_avg") else None
    out["input.input"] = src.take("synthesis.b4.const").unsqueeze(0)
    convert_layer("synthesis.b4.conv1", "conv1", 0)
    convert_torgb("synthesis.b4.torgb", "to_rgb1")
    layer_names = ["synthesis.b4.conv1", "synthesis.b4.torgb"]
    upsample_kernel = DEFAULT_RESAMPLE_FILTER * 4
    j = 0
    while src.has(f"synthesis.b{8 * 2 ** j}.torgb.weight"):
        block = f"synthesis.b{8 * 2 ** j}"
        convert_layer(f"{block}.conv0", f"convs.{2 * j}", 2 * j + 1)
        convert_layer(f"{block}.conv1", f"convs.{2 * j + 1}", 2 * j + 2)
        convert_torgb(f"{block}.torgb", f"to_rgbs.{j}")
        out[f"convs.{2 * j}.conv.blur.kernel"] = upsample_kernel.clone()
        out[f"to_rgbs.{j}.upsample.kernel"] = upsample_kernel.clone()
        layer_names += [f"{block}.conv0", f"{block}.conv1", f"{block}.torgb"]
        j += 1
    src.take_filters()
    src.finish()
    if layers_without_noise:
        notes.append(f"layers built without noise input ({', '.join(layers_without_noise)}): noise weight set to 0")
    num_fp16_res = int(synthesis_kwargs.get("num_fp16_res", 0) or 0)
    if num_fp16_res:
        notes.append(f"the snapshot ran its top {num_fp16_res} resolutions in float16 on GPU; latentedit computes in "
                     f"float32 (conv_clamp honoured), so outputs differ from NVIDIA's GPU outputs by fp16 rounding")
    if network == "G":
        notes.append("the pickle has no 'G_ema': loaded the non-EMA training generator 'G'")
    return NetworkWeights(out, "nvidia-pkl", network, contents, w_avg=w_avg,
                          w_avg_origin="'mapping.w_avg'" if w_avg is not None else None,
                          w_avg_history="'mapping.w_avg' of an NVIDIA pickle" if w_avg is not None else None,
                          conv_clamp=_conv_clamp(module, layer_names, path), notes=notes)


def discriminator_weights(obj: Any, path: Path) -> NetworkWeights:
    """The discriminator ``D`` of a stylegan2-ada snapshot (architecture ``resnet``) in the rosinality layout."""
    network, module, contents = _network(obj, path, ("D",), "Discriminator")
    _refuse_conditional(module, path, network)
    kwargs = _init_kwargs(module)
    architecture = kwargs.get("architecture", "resnet")
    if architecture != "resnet":
        raise CheckpointError(f"{path}: discriminator architecture '{architecture}' is not supported (only the "
                              f"default 'resnet')")
    mbstd = submodule(module, "b4.mbstd")
    if mbstd is None:
        raise CheckpointError(f"{path}: the discriminator has no minibatch-stddev layer; not supported")
    if int(mbstd.state.get("num_channels", 1)) != 1:
        raise CheckpointError(f"{path}: minibatch-stddev with {mbstd.state['num_channels']} channels is not supported "
                              f"(only 1)")
    stddev_group = int(mbstd.state.get("group_size", 4))
    src = _TensorTaker(flatten_module(module, path), path, "discriminator")
    tops = [k[1:-len(".fromrgb.weight")] for k in src.tensors if k.startswith("b") and k.endswith(".fromrgb.weight")]
    if len(tops) != 1 or not tops[0].isdigit():
        raise CheckpointError(f"{path}: expected exactly one 'b<res>.fromrgb' layer in the discriminator, found "
                              f"{len(tops)}")
    resolution = int(tops[0])
    out = {"convs.0.0.weight": src.take(f"b{resolution}.fromrgb.weight"),
           "convs.0.1.bias": src.take(f"b{resolution}.fromrgb.bias")}
    down_kernel = DEFAULT_RESAMPLE_FILTER
    index = 1
    while resolution > 4:
        block = f"b{resolution}"
        out[f"convs.{index}.conv1.0.weight"] = src.take(f"{block}.conv0.weight")
        out[f"convs.{index}.conv1.1.bias"] = src.take(f"{block}.conv0.bias")
        out[f"convs.{index}.conv2.0.kernel"] = down_kernel.clone()
        out[f"convs.{index}.conv2.1.weight"] = src.take(f"{block}.conv1.weight")
        out[f"convs.{index}.conv2.2.bias"] = src.take(f"{block}.conv1.bias")
        out[f"convs.{index}.skip.0.kernel"] = down_kernel.clone()
        out[f"convs.{index}.skip.1.weight"] = src.take(f"{block}.skip.weight")
        resolution //= 2
        index += 1
    out["final_conv.0.weight"] = src.take("b4.conv.weight")
    out["final_conv.1.bias"] = src.take("b4.conv.bias")
    out["final_linear.0.weight"] = src.take("b4.fc.weight")
    out["final_linear.0.bias"] = src.take("b4.fc.bias")
    out["final_linear.1.weight"] = src.take("b4.out.weight")
    out["final_linear.1.bias"] = src.take("b4.out.bias")
    src.take_filters()
    src.finish()
    notes = []
    conv_clamp = kwargs.get("conv_clamp")
    if conv_clamp is not None:
        notes.append(f"the discriminator's conv_clamp={conv_clamp} is not applied (latentedit's discriminator does not "
                     f"clamp activations)")
    return NetworkWeights(out, "nvidia-pkl", network, contents, stddev_group=stddev_group, notes=notes)
