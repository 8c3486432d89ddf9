"""Checkpoint loading, conversion and refusal of unsafe or foreign files (SPEC §1.1).

Self-contained: every checkpoint is built here from small random networks (size 32, odd channel
counts), including NVIDIA-style pickles written with the same global names as real stylegan2-ada
snapshots. The reference-data exactness tests live in test_refdata_exactness.py.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

import latentedit.pretrained as pretrained
from latentedit.checkpoints import (DEFAULT_CHECKPOINT, SHIPPED_MODELS, convert_checkpoint, inspect_checkpoint,
                                    load_discriminator, load_generator, resolve_checkpoint, save_native)
from latentedit.checkpoints.rosinality import NOISE_SEED
from latentedit.cli.main import cli
from latentedit.errors import CheckpointError, InputError
from latentedit.io import sha256_file
from latentedit.model import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, noise_shape
from latentedit.model.layers import make_blur_kernel

SMALL_G = dict(size=32, style_dim=16, n_mlp=3, channels={4: 24, 8: 20, 16: 12, 32: 10})
SMALL_D = dict(size=32, channels={4: 24, 8: 20, 16: 12, 32: 10})


def perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Add N(0, 0.1) to every parameter so that no weight (noise strengths, biases) is at its init value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return module.eval()


def make_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    generator = perturbed(Generator(GeneratorConfig(**SMALL_G)), seed + 100)
    generator.set_w_avg(torch.randn(SMALL_G["style_dim"], generator=torch.Generator().manual_seed(seed + 200)))
    return generator


def make_discriminator(seed: int = 0) -> Discriminator:
    torch.manual_seed(seed)
    return perturbed(Discriminator(DiscriminatorConfig(**SMALL_D)), seed + 100)


def render(generator: Generator, seed: int = 5) -> torch.Tensor:
    """Images ``[2, 3, 32, 32]`` for fixed W+ latents, with the stored (const) noise."""
    w_plus = torch.randn(2, generator.num_ws, generator.w_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator.synthesis(w_plus, noise_mode="const")


def save_rosinality(path: Path, **entries) -> Path:
    torch.save(entries, path)
    return path


@pytest.fixture(scope="module")
def reference():
    return make_generator(0)


@pytest.fixture(scope="module")
def reference_d():
    return make_discriminator(1)


@pytest.fixture
def converted_pt(tmp_path, reference):
    return save_rosinality(tmp_path / "model.pt", g_ema=reference.state_dict(), latent_avg=reference.w_avg.clone())


def assert_one_line_error(excinfo, path: Path | None, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    if path is not None:
        assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


# --- rosinality .pt -----------------------------------------------------------------------------------------------

def test_converted_rosinality_checkpoint_with_odd_channels_loads_exactly(converted_pt, reference):
    generator, info = load_generator(converted_pt)
    assert generator.config == reference.config
    assert not generator.training
    assert not any(p.requires_grad for p in generator.parameters())
    assert torch.equal(render(generator), render(reference))
    assert torch.equal(generator.w_avg, reference.w_avg) and generator.has_w_avg
    assert info.source_format == "rosinality" and info.network == "g_ema"
    assert info.sha256 == sha256_file(converted_pt)
    assert info.num_parameters == sum(p.numel() for p in reference.parameters())
    assert "latent_avg" in info.w_avg_source
    assert info.notes == []


def test_g_ema_is_preferred_and_a_file_with_only_g_loads_g(tmp_path, reference):
    other = make_generator(7)
    both = save_rosinality(tmp_path / "both.pt", g=other.state_dict(), g_ema=reference.state_dict())
    assert torch.equal(render(load_generator(both).generator), render(reference))
    only_g = save_rosinality(tmp_path / "g.pt", g=other.state_dict())
    generator, info = load_generator(only_g)
    assert torch.equal(render(generator), render(other))
    assert info.network == "g" and any("g_ema" in note for note in info.notes)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_bare_generator_state_dict_loads(tmp_path, reference, zip_format):
    path = tmp_path / "bare.pt"
    torch.save(reference.state_dict(), path, _use_new_zipfile_serialization=zip_format)
    generator, info = load_generator(path)
    assert info.network == "state_dict"
    assert torch.equal(render(generator), render(reference))


def test_training_checkpoint_with_namespace_args(tmp_path, reference, reference_d):
    args = argparse.Namespace(size=32, latent=16, n_mlp=3, channel_multiplier=2, lr=0.002)
    g_optim = torch.optim.Adam(make_generator(3).parameters()).state_dict()
    path = save_rosinality(tmp_path / "train.pt", g=make_generator(3).state_dict(), d=reference_d.state_dict(),
                           g_ema=reference.state_dict(), g_optim=g_optim, d_optim=g_optim, args=args, ada_aug_p=0.0)
    generator, info = load_generator(path)
    assert info.source_format == "rosinality-train" and info.network == "g_ema"
    assert torch.equal(render(generator), render(reference))
    # No latent_avg stored: w_avg is the seeded mean of the mapping output, and the info says so.
    assert torch.equal(generator.w_avg, generator.compute_w_avg(num_samples=10000, seed=0))
    assert "computed" in info.w_avg_source
    discriminator, d_info = load_discriminator(path)
    assert d_info.network == "d" and discriminator.config.channels == reference_d.config.channels
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(discriminator(images), reference_d(images))


def test_inspect_does_not_compute_a_missing_w_avg(tmp_path, reference):
    path = save_rosinality(tmp_path / "noavg.pt", g_ema=reference.state_dict())
    report = inspect_checkpoint(path)
    assert "not stored" in report["w_avg_source"]
    assert report["channels"] == {"4": 24, "8": 20, "16": 12, "32": 10}
    assert (report["size"], report["style_dim"], report["n_mlp"], report["num_ws"], report["num_noise_layers"]) == \
        (32, 16, 3, 8, 7)


def test_missing_noise_buffers_are_filled_deterministically_and_reported(tmp_path, reference):
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("noises.")}
    path = save_rosinality(tmp_path / "old.pt", g_ema=state, latent_avg=reference.w_avg)
    first, info = load_generator(path)
    second, _ = load_generator(path)
    draws = torch.Generator().manual_seed(NOISE_SEED)
    for i, (a, b) in enumerate(zip(first.noises.maps(), second.noises.maps())):
        assert torch.equal(a, b)
        assert torch.equal(a, torch.randn(noise_shape(i), generator=draws))
    assert any("no stored noise buffers" in note and f"seeded {NOISE_SEED}" in note for note in info.notes)
    # Only the missing buffer is generated; stored ones are kept.
    partial = {k: v for k, v in reference.state_dict().items() if k != "noises.noise_2"}
    generator, info = load_generator(save_rosinality(tmp_path / "partial.pt", g_ema=partial))
    assert torch.equal(generator.noises.noise_1, reference.noises.noise_1)
    assert not torch.equal(generator.noises.noise_2, reference.noises.noise_2)
    assert any("[2]" in note for note in info.notes)


def test_half_precision_weights_are_loaded_as_float32_with_a_note(tmp_path, reference):
    state = {k: v.half() for k, v in reference.state_dict().items()}
    generator, info = load_generator(save_rosinality(tmp_path / "half.pt", g_ema=state, latent_avg=reference.w_avg))
    assert generator.style[1].weight.dtype == torch.float32
    assert torch.equal(generator.style[1].weight, reference.style[1].weight.half().float())
    assert any("float16" in note for note in info.notes)


# --- native safetensors ---------------------------------------------------------------------------------------------

def test_convert_round_trip_is_bit_exact(tmp_path, converted_pt, reference):
    out = tmp_path / "model.safetensors"
    info = convert_checkpoint(converted_pt, out)
    assert info.source_format == "safetensors" and info.provenance["source_format"] == "rosinality"
    assert info.provenance["source_sha256"] == sha256_file(converted_pt)
    generator, _ = load_generator(out)
    assert generator.config == reference.config
    assert torch.equal(generator.w_avg, reference.w_avg)
    assert torch.equal(render(generator), render(reference))
    for key, value in reference.state_dict().items():
        assert torch.equal(generator.state_dict()[key], value), key
    with open(out, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    assert json.loads(header["__metadata__"]["config"]) == reference.config.to_dict()


def test_save_native_discriminator_and_reserved_metadata(tmp_path, reference, reference_d):
    path = save_native(reference_d, tmp_path / "d.safetensors", extra_metadata={"run": {"step": 3}})
    discriminator, info = load_discriminator(path)
    assert info.provenance == {"run": '{"step": 3}'}
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(discriminator(images), reference_d(images))
    with pytest.raises(CheckpointError, match="not a generator"):
        load_generator(path)
    with pytest.raises(ValueError, match="reserved"):
        save_native(reference, tmp_path / "g.safetensors", extra_metadata={"config": "{}"})


def test_convert_refuses_an_output_that_is_not_safetensors(tmp_path, converted_pt):
    with pytest.raises(InputError, match=".safetensors"):
        convert_checkpoint(converted_pt, tmp_path / "out.pt")


def test_safetensors_without_or_with_garbled_metadata_is_refused(tmp_path, reference):
    tensors = {k: v.contiguous() for k, v in reference.state_dict().items()}
    plain = tmp_path / "plain.safetensors"
    save_file(tensors, plain)
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(plain)
    assert_one_line_error(excinfo, plain, "without latentedit metadata")
    garbled = tmp_path / "garbled.safetensors"
    save_file(tensors, garbled, metadata={"format": "latentedit", "format_version": "1", "network": "generator",
                                          "config": "{size: 32,"})
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(garbled)
    assert_one_line_error(excinfo, garbled, "garbled")
    wrong = tmp_path / "wrong.safetensors"
    config = dict(reference.config.to_dict(), n_mlp=5)
    save_file(tensors, wrong, metadata={"format": "latentedit", "format_version": "1", "network": "generator",
                                        "config": json.dumps(config)})
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(wrong)
    assert_one_line_error(excinfo, wrong, "disagrees", "n_mlp 5 vs 3")


# --- NVIDIA stylegan2-ada pickles -----------------------------------------------------------------------------------

class FakePersistent:
    """Pickles like an NVIDIA persistent_class instance: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, class_name: str, state: dict, module_src: str):
        self.meta = {"type": "class", "version": 6, "module_src": module_src, "class_name": class_name,
                     "state": state}

    def __reduce__(self):
        return _reconstruct_persistent_obj, (self.meta,)


def _reconstruct_persistent_obj(meta):  # only its name is used: it is what the pickle refers to
    raise AssertionError("never called while pickling")


class EasyDict(dict):
    """Pickled as dnnlib.util.EasyDict."""


@pytest.fixture
def nvidia_modules(monkeypatch):
    """Fake ``torch_utils.persistence`` / ``dnnlib.util`` modules so that pickle writes NVIDIA's global names."""
    fakes = {"torch_utils": None, "torch_utils.persistence": _reconstruct_persistent_obj, "dnnlib": None,
             "dnnlib.util": EasyDict}
    for name, member in fakes.items():
        module = types.ModuleType(name)
        if member is not None:
            member.__module__ = name
            member.__qualname__ = member.__name__
            setattr(module, member.__name__, member)
        monkeypatch.setitem(sys.modules, name, module)
    yield
    _reconstruct_persistent_obj.__module__ = __name__
    EasyDict.__module__ = __name__


def nvidia_snapshot(generator: Generator, c_dim: int = 0, module_src: str = "", conv_clamp: float | None = None,
                    num_fp16_res: int = 0) -> dict:
    """The dict an NVIDIA training snapshot holds for ``generator`` (G and G_ema only), in NVIDIA's layout."""
    sd = generator.state_dict()
    resample_filter = make_blur_kernel((1, 3, 3, 1))

    def module(class_name, parameters=(), buffers=(), children=(), **attributes):
        state = {"training": False,
                 "_parameters": {k: torch.nn.Parameter(v.clone()) for k, v in dict(parameters).items()},
                 "_buffers": {k: v.clone() for k, v in dict(buffers).items()}, "_non_persistent_buffers_set": set(),
                 "_forward_hooks": collections.OrderedDict(), "_modules": dict(children), **attributes}
        return FakePersistent(class_name, state, module_src)

    def affine(prefix):
        return module("FullyConnectedLayer", {"weight": sd[f"{prefix}.weight"], "bias": sd[f"{prefix}.bias"]},
                      activation="linear", weight_gain=np.float64(0.25))

    def layer(ours, noise_index):
        return module("SynthesisLayer",
                      {"weight": sd[f"{ours}.conv.weight"][0], "noise_strength": sd[f"{ours}.noise.weight"].reshape(()),
                       "bias": sd[f"{ours}.activate.bias"]},
                      {"resample_filter": resample_filter, "noise_const": sd[f"noises.noise_{noise_index}"][0, 0]},
                      {"affine": affine(f"{ours}.conv.modulation")}, conv_clamp=conv_clamp,
                      act_gain=np.float64(2 ** 0.5))

    def torgb(ours):
        return module("ToRGBLayer", {"weight": sd[f"{ours}.conv.weight"][0], "bias": sd[f"{ours}.bias"].reshape(-1)},
                      {}, {"affine": affine(f"{ours}.conv.modulation")}, conv_clamp=conv_clamp)

    config = generator.config
    mapping = module("MappingNetwork", {}, {"w_avg": generator.w_avg},
                     {f"fc{i}": module("FullyConnectedLayer", {"weight": sd[f"style.{i + 1}.weight"],
                                                               "bias": sd[f"style.{i + 1}.bias"]})
                      for i in range(config.n_mlp)})
    blocks = {"b4": module("SynthesisBlock", {"const": sd["input.input"][0]}, {"resample_filter": resample_filter},
                           {"conv1": layer("conv1", 0), "torgb": torgb("to_rgb1")}, architecture="skip")}
    for j, resolution in enumerate(config.resolutions[1:]):
        blocks[f"b{resolution}"] = module("SynthesisBlock", {}, {"resample_filter": resample_filter},
                                          {"conv0": layer(f"convs.{2 * j}", 2 * j + 1),
                                           "conv1": layer(f"convs.{2 * j + 1}", 2 * j + 2),
                                           "torgb": torgb(f"to_rgbs.{j}")}, architecture="skip")
    init_kwargs = {"z_dim": config.style_dim, "w_dim": config.style_dim, "c_dim": c_dim,
                   "img_resolution": config.size, "img_channels": 3,
                   "mapping_kwargs": EasyDict(num_layers=config.n_mlp),
                   "synthesis_kwargs": EasyDict(channel_base=512, channel_max=24, num_fp16_res=num_fp16_res,
                                                conv_clamp=conv_clamp)}
    network = module("Generator", {}, {}, {"synthesis": module("SynthesisNetwork", {}, {}, blocks), "mapping": mapping},
                     c_dim=c_dim, _init_args=(), _init_kwargs=init_kwargs)
    return {"training_set_kwargs": {"resolution": config.size}, "G": network, "G_ema": network, "augment_pipe": None}


def write_pickle(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=3))
    return path


def test_nvidia_pickle_loads_without_running_its_module_source(tmp_path, nvidia_modules, reference):
    marker = tmp_path / "module_src_ran"
    source = f"open({str(marker)!r}, 'w').write('executed')"
    path = write_pickle(tmp_path / "snapshot.pkl", nvidia_snapshot(reference, module_src=source))
    generator, info = load_generator(path)
    assert not marker.exists()
    assert info.source_format == "nvidia-pkl" and info.network == "G_ema"
    assert info.w_avg_source == "stored in checkpoint ('mapping.w_avg')"
    assert generator.config == reference.config
    assert torch.equal(generator.w_avg, reference.w_avg)
    assert torch.equal(render(generator), render(reference))


def test_nvidia_conv_clamp_is_honoured_and_fp16_is_reported(tmp_path, nvidia_modules, reference):
    path = write_pickle(tmp_path / "ada.pkl", nvidia_snapshot(reference, conv_clamp=0.5, num_fp16_res=2))
    generator, info = load_generator(path)
    assert info.config.conv_clamp == 0.5 and generator.conv1.conv_clamp == 0.5
    assert any("float16" in note for note in info.notes)
    clamped = render(generator)
    assert not torch.equal(clamped, render(reference))  # the clamp is active at 0.5 ...
    expected = Generator(dataclasses.replace(reference.config, conv_clamp=0.5)).eval()
    expected.load_state_dict(reference.state_dict())
    assert torch.equal(clamped, render(expected))  # ... and is the only difference


def test_conditional_nvidia_model_is_refused(tmp_path, nvidia_modules, reference):
    path = write_pickle(tmp_path / "conditional.pkl", nvidia_snapshot(reference, c_dim=1))
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "conditional models are not supported")
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code != 0
    assert "conditional models are not supported" in result.stderr and "Traceback" not in result.output


# --- hostile and broken files ---------------------------------------------------------------------------------------

class ShellCommand:
    """Unpickling this would run a shell command (``os.system``) that creates a marker file."""

    def __init__(self, marker: Path):
        self.command = f"touch {marker}"

    def __reduce__(self):
        import os
        return os.system, (self.command,)


def test_malicious_pickle_is_refused_without_running_anything(tmp_path):
    marker = tmp_path / "pwned"
    path = write_pickle(tmp_path / "evil.pkl", {"G_ema": ShellCommand(marker)})
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "refused", "system", "nothing was executed")
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code != 0 and "refused" in result.stderr and "Traceback" not in result.output
    assert not marker.exists()


def test_malicious_pickle_through_the_installed_command(tmp_path):
    marker = tmp_path / "pwned"
    path = write_pickle(tmp_path / "evil.pkl", ShellCommand(marker))
    result = subprocess.run([sys.executable, "-m", "latentedit", "info", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and "refused" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_malicious_global_inside_a_torch_zip_is_refused(tmp_path, reference):
    marker = tmp_path / "pwned"
    path = save_rosinality(tmp_path / "evil.pt", g_ema=reference.state_dict(), latent_avg=ShellCommand(marker))
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "refused", "system")
    assert not marker.exists()


def test_malicious_nested_storage_stream_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class NestedStorage:
        def __reduce__(self):
            return torch.storage._load_from_bytes, (pickle.dumps(ShellCommand(marker), protocol=2),)

    path = write_pickle(tmp_path / "nested.pkl", {"G_ema": NestedStorage()})
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "refused", "system")
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pt", "pkl", "safetensors"])
def test_truncated_files_are_refused(tmp_path, nvidia_modules, reference, converted_pt, kind):
    if kind == "pt":
        whole = converted_pt.read_bytes()
    elif kind == "pkl":
        whole = pickle.dumps(nvidia_snapshot(reference), protocol=3)
    else:
        whole = save_native(reference, tmp_path / "whole.safetensors").read_bytes()
    path = tmp_path / f"truncated.{kind}"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path)


@pytest.mark.parametrize("content", [b"", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
                                     b"\x80\x03" + bytes(range(200))])
def test_empty_random_and_garbage_pickle_bytes_are_refused(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path)


def test_missing_file_is_a_clear_error(tmp_path):
    path = tmp_path / "absent" / "model.pt"
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "not found")
    result = CliRunner().invoke(cli, ["convert", str(path), "-o", str(tmp_path / "out.safetensors")])
    assert result.exit_code != 0 and "not found" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out.safetensors").exists()


def test_other_architectures_are_refused(tmp_path, reference):
    resnet = {"conv1.weight": torch.randn(8, 3, 7, 7), "bn1.weight": torch.ones(8), "bn1.running_mean": torch.zeros(8),
              "layer1.0.conv1.weight": torch.randn(8, 8, 3, 3), "fc.weight": torch.randn(10, 8),
              "fc.bias": torch.zeros(10)}
    path = tmp_path / "resnet.pt"
    torch.save(resnet, path)
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "no StyleGAN2 generator")
    state = reference.state_dict()
    state["convs.3.conv.weight"] = torch.randn(1, 12, 7, 3, 3)
    state["extra.weight"] = torch.randn(3)
    path = save_rosinality(tmp_path / "odd.pt", g_ema=state)
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "unexpected", "extra.weight", "convs.3.conv.weight")
    huge = {f"to_rgbs.{j}.conv.weight": torch.zeros(1, 3, 1, 1, 1) for j in range(20)}
    huge.update({"style.1.weight": torch.zeros(4, 4), "input.input": torch.zeros(1, 1, 4, 4)})
    path = save_rosinality(tmp_path / "huge.pt", g_ema=huge)
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "not supported")
    with pytest.raises(CheckpointError) as excinfo:
        load_discriminator(save_rosinality(tmp_path / "g_only.pt", g_ema=reference.state_dict()))
    assert_one_line_error(excinfo, None, "no discriminator")


# --- shipped names and the CLI --------------------------------------------------------------------------------------

def test_resolve_checkpoint(tmp_path, monkeypatch, converted_pt):
    assert DEFAULT_CHECKPOINT == "toyfaces64" and DEFAULT_CHECKPOINT in SHIPPED_MODELS
    assert resolve_checkpoint(converted_pt) == converted_pt
    monkeypatch.setattr(pretrained, "PACKAGE_DIR", tmp_path)
    monkeypatch.setitem(pretrained.SHIPPED_MODELS, "tiny", "model.pt")
    monkeypatch.setitem(pretrained.SHIPPED_MODELS, "notinstalled", "notinstalled.safetensors")
    assert resolve_checkpoint("tiny") == tmp_path / "model.pt"
    assert load_generator("tiny").info.path == str(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="shipped model 'notinstalled' is not installed"):
        resolve_checkpoint("notinstalled")
    with pytest.raises(CheckpointError, match="known: .*toyfaces64"):
        resolve_checkpoint("no-such-model")
    with pytest.raises(CheckpointError, match="directory"):
        resolve_checkpoint(tmp_path)


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_generators_match_their_model_cards_and_draw_every_hair_colour(name):
    """Each shipped name resolves to a generator of at most 10 MB whose sha256 is the one its model card states,
    and whose samples the attribute classifier reads as faces with every hair colour represented."""
    import re

    from latentedit.evaluate.classifier import load_classifier, predict_attributes
    from latentedit.data.toyfaces import HAIR_COLOURS
    from latentedit.evaluate.generator import sample_images

    path = resolve_checkpoint(name)
    assert path.stat().st_size <= 10 * 2**20
    card = path.with_suffix(".md").read_text()
    assert re.search(r"sha256 `([0-9a-f]{64})`", card).group(1) == sha256_file(path)
    generator = load_generator(name).generator
    images = sample_images(generator, 64)
    assert images.shape == (64, 3, 64, 64)
    classifier = load_classifier()
    frequencies = (predict_attributes(classifier, images) >= 0.5).float().mean(0)
    hair = {colour: float(frequencies[classifier.attribute_names.index(colour)]) for colour in HAIR_COLOURS}
    assert min(hair.values()) >= 0.05, hair


def test_cli_info_and_convert(tmp_path, converted_pt, reference):
    runner = CliRunner()
    result = runner.invoke(cli, ["info", "--json", str(converted_pt)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["source_format"] == "rosinality" and report["sha256"] == sha256_file(converted_pt)
    assert report["channels"] == {"4": 24, "8": 20, "16": 12, "32": 10} and report["conv_clamp"] is None
    assert report["num_parameters"] == sum(p.numel() for p in reference.parameters())
    text = runner.invoke(cli, ["info", str(converted_pt)])
    assert text.exit_code == 0 and "4:24 8:20 16:12 32:10" in text.stdout and "latent_avg" in text.stdout
    out = tmp_path / "sub" / "converted.safetensors"
    result = runner.invoke(cli, ["convert", str(converted_pt), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert torch.equal(render(load_generator(out).generator), render(reference))
    bad = runner.invoke(cli, ["convert", str(converted_pt), "-o", str(tmp_path / "converted.pt")])
    assert bad.exit_code != 0 and ".safetensors" in bad.stderr
