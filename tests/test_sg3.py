"""StyleGAN3: NVIDIA pickles load exactly and safely, the native generator reproduces NVIDIA's outputs, and
R-type networks with shapes the reference file lacks run and round-trip (issue #24, ../shared/refdata README §3).

The reference snapshot ``sg3t64_small.pkl`` (StyleGAN3-T, 64 px, random perturbed weights) and NVIDIA's outputs
for z at psi 1 and 0.7, a W+ with distinct rows and a non-identity input transform must match to 1e-4.
Other networks are written here in NVIDIA's pickle layout (fake ``torch_utils.persistence`` / ``dnnlib.util``
modules, so that pickle records NVIDIA's global names) from a random :class:`SG3Generator`.
"""
from __future__ import annotations

import collections
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import test_checkpoints as nvidia_fakes  # the stylegan2-ada tests' helpers and pickling fakes
import torch
from click.testing import CliRunner
from latentedit.cli.main import cli
from latentedit.ops.filtered_lrelu import (
    filtered_lrelu_native,
    filtered_lrelu_output_size,
)
from latentedit.ops.upfirdn2d import upfirdn2d_native
from PIL import Image

from latentedit.checkpoints import (
    convert_checkpoint,
    inspect_checkpoint,
    load_generator,
    save_native,
)
from latentedit.checkpoints.nvidia import flatten_module
from latentedit.checkpoints.safe_pickle import load_restricted_pickle
from latentedit.errors import CheckpointError
from latentedit.model.sg3 import SG3Config, SG3Generator, SG3LayerConfig, make_transform

REFDATA = Path(__file__).resolve().parents[1].parent / "shared" / "refdata"
SG3_PKL = REFDATA / "sg3t64_small.pkl"
needs_refdata = pytest.mark.skipif(not SG3_PKL.is_file(), reason=f"reference data not found at {REFDATA}")

ATOL = 1e-4
MODULATIONS = ("grouped", "scaled")
PLACEHOLDER = b"# networks_stylegan3.py source text omitted from this fixture; a safe loader never runs it\n"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ref(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(REFDATA / name))


def meta() -> dict:
    return json.loads((REFDATA / "sg3t64_meta.json").read_text())


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape
    return (actual - expected).abs().max().item()


assert_one_line_error = nvidia_fakes.assert_one_line_error


@pytest.fixture(scope="module")
def sg3():
    if not SG3_PKL.is_file():
        pytest.skip(f"reference data not found at {REFDATA}")
    return load_generator(SG3_PKL)


# --- the reference snapshot -----------------------------------------------------------------------------------------

@needs_refdata
@pytest.mark.parametrize("modulation", MODULATIONS)
def test_reference_outputs_match_nvidia(sg3, modulation):
    generator, _ = sg3
    with torch.no_grad():
        w = generator.mapping(ref("sg3t64_z.npy"))
        assert max_error(generator.broadcast_w(w), ref("sg3t64_ws.npy")) <= ATOL
        assert max_error(generator.broadcast_w(generator.truncate(w, 0.7)), ref("sg3t64_ws_psi07.npy")) <= ATOL
        assert max_error(generator.synthesis(w, modulation=modulation), ref("sg3t64_out_z.npy")) <= ATOL
        assert max_error(generator(ref("sg3t64_z.npy"), truncation=0.7), ref("sg3t64_out_z_psi07.npy")) <= ATOL
        assert max_error(generator.synthesis(generator.truncate(w, 0.7), modulation=modulation),
                         ref("sg3t64_out_z_psi07.npy")) <= ATOL
        assert max_error(generator.synthesis(ref("sg3t64_wplus.npy"), modulation=modulation),
                         ref("sg3t64_out_wplus.npy")) <= ATOL


@needs_refdata
@pytest.mark.parametrize("ops_backend", ["native", "compiled"])
def test_reference_outputs_match_nvidia_with_each_filtered_lrelu_backend(sg3, ops_backend, monkeypatch):
    """The C++ filtered_lrelu (what auto uses on CPU for this T-type net) and the native reference both give
    NVIDIA's outputs, forward, and the same gradient to W+."""
    generator, _ = sg3
    monkeypatch.setenv("LATENTEDIT_OPS", ops_backend)
    w_plus = ref("sg3t64_wplus.npy").clone().requires_grad_(True)
    out = generator.synthesis(w_plus)
    assert max_error(out.detach(), ref("sg3t64_out_wplus.npy")) <= ATOL
    (grad,) = torch.autograd.grad(out.square().mean(), w_plus)
    monkeypatch.setenv("LATENTEDIT_OPS", "native")
    w_native = ref("sg3t64_wplus.npy").clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(generator.synthesis(w_native).square().mean(), w_native)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-7)


@needs_refdata
def test_reference_input_transform(sg3):
    generator, _ = sg3
    transform = make_transform(translate=(0.125, -0.0625), angle=10)
    assert max_error(transform, ref("sg3t64_transform.npy")) <= 1e-6
    try:
        generator.set_transform(ref("sg3t64_transform.npy"))
        with torch.no_grad():
            out = generator.synthesis(ref("sg3t64_ws.npy"))
    finally:
        generator.set_transform(None)
    assert max_error(out, ref("sg3t64_out_transform.npy")) <= ATOL
    assert torch.equal(generator.input.transform, torch.eye(3))


@needs_refdata
def test_reference_architecture_comes_from_the_pickle(sg3):
    generator, info = sg3
    recorded = meta()
    config = info.config
    assert isinstance(generator, SG3Generator) and config.kind == "stylegan3-t"
    assert info.source_format == "nvidia-pkl" and info.network == "G_ema" and info.contents == ["G_ema", "G"]
    assert info.num_parameters == recorded["n_params"]
    assert (generator.num_ws, generator.z_dim, generator.w_dim, generator.size) == (16, 128, 128, 64)
    assert torch.equal(generator.w_avg, ref("sg3t64_w_avg.npy"))
    assert info.w_avg_source == "stored in checkpoint ('mapping.w_avg')"
    for layer, expected in zip(config.layers, recorded["layers"]):
        assert layer.name == expected["name"]
        assert (layer.in_channels, layer.out_channels, layer.kernel_size) == (
            expected["in_channels"], expected["out_channels"], expected["conv_kernel"])
        assert (layer.up, layer.down, layer.padding) == (expected["up_factor"], expected["down_factor"],
                                                       expected["padding"])
        assert layer.out_size == expected["out_size"] and layer.out_cutoff == expected["out_cutoff"]
        assert layer.radial is expected["down_radial"]
    # The magnitude EMA gains and filters are the stored buffers, bit for bit.
    snapshot = load_restricted_pickle(SG3_PKL)
    flat = flatten_module(snapshot["G_ema"], SG3_PKL)
    assert len(flat) == recorded["n_state_dict_tensors"]
    state = generator.state_dict()
    for index, name in enumerate(recorded["layer_names"]):
        for key in ("magnitude_ema", "up_filter", "down_filter", "weight"):
            if f"synthesis.{name}.{key}" in flat:
                assert torch.equal(state[f"layers.{index}.{key}"], flat[f"synthesis.{name}.{key}"])
    assert torch.equal(state["input.freqs"], flat["synthesis.input.freqs"])


@needs_refdata
def test_reference_convert_round_trip_is_bit_exact(tmp_path, sg3):
    generator, _ = sg3
    destination = tmp_path / "sg3.safetensors"
    info = convert_checkpoint(SG3_PKL, destination)
    assert info.provenance["source_format"] == "nvidia-pkl"
    converted, converted_info = load_generator(destination)
    assert isinstance(converted, SG3Generator) and converted_info.config == generator.config
    assert converted_info.source_format == "safetensors"
    original, copy = generator.state_dict(), converted.state_dict()
    assert original.keys() == copy.keys()
    for key in original:
        assert torch.equal(original[key], copy[key]), key
    assert torch.equal(converted.w_avg, generator.w_avg)
    with torch.no_grad():
        assert torch.equal(converted.synthesis(ref("sg3t64_wplus.npy")), generator.synthesis(ref("sg3t64_wplus.npy")))
    report = inspect_checkpoint(destination)
    assert report["architecture"] == "stylegan3-t" and report["num_ws"] == 16 and len(report["layers"]) == 15


@needs_refdata
def test_embedded_module_source_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = b"open('ran', 'w').write('module_src was executed')"
    source = source + b"#" * (len(PLACEHOLDER) - len(source))  # same length: the pickle's frames stay valid
    data = SG3_PKL.read_bytes()
    assert data.count(PLACEHOLDER) == 1
    armed = tmp_path / "armed.pkl"
    armed.write_bytes(data.replace(PLACEHOLDER, source))
    exec(compile(source, "module_src", "exec"), {})  # noqa: S102 -- the armed source does leave a marker when it runs ...
    assert (tmp_path / "ran").exists()
    (tmp_path / "ran").unlink()
    generator, info = load_generator(armed)  # ... and loading never runs it
    assert not (tmp_path / "ran").exists()
    assert info.config.kind == "stylegan3-t" and generator.num_ws == 16


@needs_refdata
def test_hostile_edit_of_the_reference_pickle_is_refused(tmp_path):
    data = SG3_PKL.read_bytes()
    assert data.count(b"\x8c\x05numpy\x94") == 1
    path = tmp_path / "hostile.pkl"
    path.write_bytes(data.replace(b"\x8c\x05numpy\x94", b"\x8c\x05posix\x94"))  # numpy.dtype -> posix.dtype
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "refused", "posix.", "nothing was executed")


@needs_refdata
def test_cli_info_and_generate_on_the_reference_snapshot(tmp_path):
    result = CliRunner().invoke(cli, ["info", str(SG3_PKL)])
    assert result.exit_code == 0, result.output
    assert "stylegan3-t" in result.output and "layer L4_52_48" in result.output and "up 4 down 2" in result.output
    out_dir = tmp_path / "generated"
    result = CliRunner().invoke(cli, ["generate", "--ckpt", str(SG3_PKL), "--seeds", "0-1", "--psi", "0.7",
                                      "--device", "cpu", "--out", str(out_dir)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["w_plus_shape"] == [2, 16, 128] and manifest["image_size"] == 64
    assert (out_dir / "seed0001.png").is_file()
    generator, _ = load_generator(SG3_PKL)
    from latentedit.model import w_from_seeds
    assert np.array_equal(np.load(out_dir / "w_plus.npy"), w_from_seeds(generator, [0, 1], 0.7).numpy())


# --- networks written in NVIDIA's layout ----------------------------------------------------------------------------

# The NVIDIA-layout pickling fakes are the stylegan2-ada tests' own (tests/test_checkpoints.py).

EasyDict, FakePersistent = nvidia_fakes.EasyDict, nvidia_fakes.FakePersistent
nvidia_modules = nvidia_fakes.nvidia_modules  # the fixture, under its own name


def symmetric_padding(in_size: int, out_size: int, kernel: int, up: int, down: int, up_taps: int,
                      down_taps: int) -> tuple[int, int]:
    """Padding on the upsampled grid that centres the samples (the paper's symmetric interpretation)."""
    total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
    low = (total + up) // 2
    return low, total - low


def lowpass(taps: int, cutoff: float, rate: float, radial: bool) -> torch.Tensor:
    """A windowed-sinc (separable) or windowed-jinc (radial, 2-D) low-pass filter with unit DC gain."""
    x = (np.arange(taps) - (taps - 1) / 2) / rate
    window = np.kaiser(taps, 4.0)
    if not radial:
        f = 2 * cutoff / rate * np.sinc(2 * cutoff * x) * window
        return torch.tensor(f / f.sum(), dtype=torch.float32)
    from scipy.special import j1
    r = np.hypot(*np.meshgrid(x, x))
    safe = np.where(r == 0, 1.0, r)
    f = np.where(r == 0, cutoff, j1(2 * np.pi * cutoff * safe) / (np.pi * safe)) * np.outer(window, window)
    return torch.tensor(f / f.sum(), dtype=torch.float32)


def r_type_config() -> SG3Config:
    """A small StyleGAN3-R-like network: 1x1 convs, radial down filters where not critically sampled, odd
    channel counts, z_dim != w_dim, 3 mapping layers, a 24 px input, 16 px output, no conv_clamp on one layer."""
    plan = [  # in/out size, in/out rate, channels, critical, torgb
        (24, 24, 8, 8, 20, 18, False, False),
        (24, 40, 8, 16, 18, 14, False, False),
        (40, 16, 16, 16, 14, 10, True, False),
        (16, 16, 16, 16, 10, 3, True, True),
    ]
    layers = []
    cutoff = 2.0
    for index, (size_in, size_out, rate_in, rate_out, ch_in, ch_out, critical, torgb) in enumerate(plan):
        kernel = 1
        tmp = max(rate_in, rate_out) * (1 if torgb else 2)
        up, down = tmp // rate_in, tmp // rate_out
        up_taps = 6 * up if up > 1 and not torgb else 0
        down_taps = 6 * down if down > 1 and not torgb else 0
        radial = not critical and not torgb
        pad_x = symmetric_padding(size_in, size_out, kernel, up, down, max(up_taps, 1), max(down_taps, 1))
        out_cutoff = min(cutoff * 1.5, rate_out / 2)
        layers.append(SG3LayerConfig(
            in_channels=ch_in, out_channels=ch_out, kernel_size=kernel, up=up, down=down,
            padding=[pad_x[0], pad_x[1], pad_x[0], pad_x[1]], up_filter_shape=[up_taps] if up_taps else [],
            down_filter_shape=([down_taps, down_taps] if radial else [down_taps]) if down_taps else [],
            is_torgb=torgb, conv_clamp=None if index == 1 else 256.0, in_size=[size_in] * 2, out_size=[size_out] * 2,
            in_sampling_rate=rate_in, out_sampling_rate=rate_out, in_cutoff=cutoff, out_cutoff=out_cutoff,
            in_half_width=rate_in / 2 - cutoff + 1, out_half_width=rate_out / 2 - out_cutoff + 1,
            is_critically_sampled=critical, name=f"L{index}_{size_out}_{ch_out}"))
        cutoff = out_cutoff
    return SG3Config(z_dim=24, w_dim=32, mapping_layers=3, input_channels=20, input_size=[24, 24],
                     input_sampling_rate=8, input_bandwidth=2.0, layers=layers, img_resolution=16, img_channels=3,
                     mapping_lr_mul=0.01, output_scale=0.25, margin_size=4)


def make_r_generator(seed: int = 3) -> SG3Generator:
    """Random weights, real low-pass filters designed for each layer, non-trivial magnitude EMAs and w_avg."""
    torch.manual_seed(seed)
    generator = SG3Generator(r_type_config())
    with torch.no_grad():
        for layer in generator.layers:
            c = layer.config
            rate = max(c.in_sampling_rate, c.out_sampling_rate) * (1 if c.is_torgb else 2)
            if c.up_filter_shape:
                layer.up_filter.copy_(lowpass(c.up_filter_shape[0], c.in_cutoff, rate, False))
            if c.down_filter_shape:
                layer.down_filter.copy_(lowpass(c.down_filter_shape[0], c.out_cutoff, rate, c.radial))
            layer.magnitude_ema.fill_(0.5 + torch.rand([]).item())
            layer.bias.normal_(0, 0.1)
            layer.affine.bias.add_(torch.randn_like(layer.affine.bias) * 0.1)
        generator.input.affine.weight.normal_(0, 0.1)
        for parameter in generator.style.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    generator.set_w_avg(generator.compute_w_avg(num_samples=256))
    return generator.eval()


def nvidia_snapshot(generator: SG3Generator, module_src: str = "", c_dim: int = 0,
                    keys: tuple[str, ...] = ("G", "G_ema")) -> dict:
    """The dict an NVIDIA stylegan3 snapshot holds for ``generator``, in NVIDIA's module layout and types."""
    config = generator.config
    sd = generator.state_dict()

    def module(class_name, parameters=(), buffers=(), children=(), **attributes):
        state = {"training": False,
                 "_parameters": collections.OrderedDict((k, torch.nn.Parameter(v.clone(), requires_grad=False))
                                                        for k, v in dict(parameters).items()),
                 "_buffers": collections.OrderedDict((k, None if v is None else v.clone())
                                                     for k, v in dict(buffers).items()),
                 "_non_persistent_buffers_set": set(), "_forward_hooks": collections.OrderedDict(),
                 "_state_dict_pre_hooks": collections.OrderedDict(),
                 "_modules": collections.OrderedDict(children), **attributes}
        return FakePersistent(class_name, state, module_src)

    def fc(prefix, in_features, activation, lr_mul):
        return module("FullyConnectedLayer", {"weight": sd[f"{prefix}.weight"], "bias": sd[f"{prefix}.bias"]},
                      in_features=in_features, activation=activation,
                      weight_gain=np.float64(lr_mul) / np.sqrt(in_features),
                      bias_gain=lr_mul, _init_kwargs=EasyDict(activation=activation, lr_multiplier=lr_mul))

    mapping = module("MappingNetwork", {}, {"w_avg": generator.w_avg},
                     {f"fc{i}": fc(f"style.fc{i}", config.z_dim if i == 0 else config.w_dim, "lrelu",
                                   config.mapping_lr_mul) for i in range(config.mapping_layers)},
                     z_dim=config.z_dim, c_dim=c_dim, w_dim=config.w_dim, num_ws=config.num_ws, embed=None)
    source_input = module("SynthesisInput", {"weight": sd["input.weight"]},
                          {name: sd[f"input.{name}"] for name in ("transform", "freqs", "phases")},
                          {"affine": fc("input.affine", config.w_dim, "linear", 1)}, w_dim=config.w_dim,
                          channels=config.input_channels, size=np.asarray(config.input_size, dtype=np.int64),
                          sampling_rate=np.float64(config.input_sampling_rate),
                          bandwidth=np.float64(config.input_bandwidth))
    layers = collections.OrderedDict(input=source_input)
    for index, c in enumerate(config.layers):
        p = f"layers.{index}"
        layers[c.name] = module(
            "SynthesisLayer", {"weight": sd[f"{p}.weight"], "bias": sd[f"{p}.bias"]},
            {"magnitude_ema": sd[f"{p}.magnitude_ema"], "up_filter": sd.get(f"{p}.up_filter"),
             "down_filter": sd.get(f"{p}.down_filter")},
            {"affine": fc(f"{p}.affine", config.w_dim, "linear", 1)},
            is_torgb=c.is_torgb, is_critically_sampled=c.is_critically_sampled, use_fp16=np.bool_(False),
            in_channels=c.in_channels, out_channels=c.out_channels, in_size=np.asarray(c.in_size, dtype=np.int64),
            out_size=np.asarray(c.out_size, dtype=np.int64), in_sampling_rate=int(c.in_sampling_rate),
            out_sampling_rate=int(c.out_sampling_rate), in_cutoff=np.float64(c.in_cutoff),
            out_cutoff=np.float64(c.out_cutoff), in_half_width=np.float64(c.in_half_width),
            out_half_width=np.float64(c.out_half_width), conv_kernel=c.kernel_size,
            conv_clamp=None if c.conv_clamp is None else int(c.conv_clamp), magnitude_ema_beta=0.999,
            up_factor=c.up, up_taps=max(c.up_filter_shape or [1]), down_factor=c.down,
            down_taps=max(c.down_filter_shape or [1]), down_radial=c.radial, padding=list(c.padding))
    synthesis = module("SynthesisNetwork", {}, {}, layers, w_dim=config.w_dim, num_ws=config.num_ws,
                       img_resolution=config.img_resolution, img_channels=config.img_channels,
                       num_layers=len(config.layers) - 1, margin_size=config.margin_size,
                       output_scale=config.output_scale, layer_names=[c.name for c in config.layers])
    network = module("Generator", {}, {}, collections.OrderedDict(synthesis=synthesis, mapping=mapping),
                     z_dim=config.z_dim, c_dim=c_dim, w_dim=config.w_dim, img_resolution=config.img_resolution,
                     img_channels=config.img_channels, num_ws=config.num_ws, _init_args=(),
                     _init_kwargs=EasyDict(z_dim=config.z_dim, w_dim=config.w_dim, c_dim=c_dim,
                                           mapping_kwargs=EasyDict(num_layers=config.mapping_layers)))
    snapshot = {"G": None, "D": None, "G_ema": None, "augment_pipe": None, "training_set_kwargs": None}
    for key in keys:
        snapshot[key] = network
    return {k: v for k, v in snapshot.items() if k in keys or k not in ("G", "G_ema")}


def write_pickle(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


@pytest.fixture(scope="module")
def r_generator() -> SG3Generator:
    return make_r_generator()


def test_r_type_network_runs_forward_and_backward_to_w_plus(r_generator):
    generator = r_generator
    assert generator.config.kind == "stylegan3-r" and generator.num_ws == 5 and generator.z_dim == 24
    assert generator.layers[0].down_filter.shape == (12, 12) and generator.layers[2].down_filter.shape == (12,)
    w_plus = generator.broadcast_w(generator.mapping(torch.randn(3, 24))).detach().clone()
    w_plus = (w_plus + 0.2 * torch.randn_like(w_plus)).requires_grad_(True)
    images = generator.synthesis(w_plus, noise_mode="random")
    assert images.shape == (3, 3, 16, 16) and torch.isfinite(images).all()
    with torch.no_grad():
        grouped = generator.synthesis(w_plus, modulation="grouped")
    assert max_error(grouped, images.detach()) <= 1e-5
    images.square().mean().backward()
    assert torch.isfinite(w_plus.grad).all()
    assert (w_plus.grad.abs().sum(dim=2) > 0).all()  # every row of every sample moves the image
    assert generator.make_noise("random", 3, "cpu") == [] and generator.num_layers == 0


def test_r_type_network_with_compiled_filtered_lrelu_matches_native(r_generator, monkeypatch):
    """Radial 2-D down filters through the C++ kernel (forced: auto keeps them native), values and gradient."""
    w_plus = r_generator.broadcast_w(r_generator.mapping(torch.randn(2, r_generator.config.z_dim,
                                                                     generator=torch.Generator().manual_seed(5))))
    results = []
    for ops_backend in ("native", "compiled"):
        monkeypatch.setenv("LATENTEDIT_OPS", ops_backend)
        latent = w_plus.detach().clone().requires_grad_(True)
        out = r_generator.synthesis(latent)
        results.append((out.detach(), torch.autograd.grad(out.square().mean(), latent)[0]))
    (out_native, grad_native), (out_compiled, grad_compiled) = results
    assert max_error(out_compiled, out_native) <= 1e-5
    torch.testing.assert_close(grad_compiled, grad_native, rtol=1e-4, atol=1e-7)


def test_r_type_state_dict_round_trips_through_the_native_format(tmp_path, r_generator):
    path = save_native(r_generator, tmp_path / "r.safetensors")
    loaded, info = load_generator(path)
    assert info.config == r_generator.config and info.config.kind == "stylegan3-r"
    for key, value in r_generator.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(loaded.w_avg, r_generator.w_avg)
    w = torch.randn(2, r_generator.w_dim)
    with torch.no_grad():
        assert torch.equal(loaded.synthesis(w), r_generator.synthesis(w))


def test_r_type_nvidia_pickle_loads_exactly_without_running_its_source(tmp_path, nvidia_modules, r_generator):
    marker = tmp_path / "module_src_ran"
    path = write_pickle(tmp_path / "r.pkl", nvidia_snapshot(r_generator, f"open({str(marker)!r}, 'w')"))
    assert b"numpy._core.multiarray" in path.read_bytes() or b"numpy.core.multiarray" in path.read_bytes()
    generator, info = load_generator(path)
    assert not marker.exists()
    assert isinstance(generator, SG3Generator) and info.config == r_generator.config
    assert info.network == "G_ema" and info.contents == ["G_ema", "G"]
    for key, value in r_generator.state_dict().items():
        assert torch.equal(generator.state_dict()[key], value), key
    w = torch.randn(2, r_generator.w_dim)
    with torch.no_grad():
        assert torch.equal(generator.synthesis(w), r_generator.synthesis(w))
    report = inspect_checkpoint(path)
    assert report["architecture"] == "stylegan3-r" and report["z_dim"] == 24 and report["layers"][0]["radial"]


def test_conditional_stylegan3_is_refused(tmp_path, nvidia_modules, r_generator):
    path = write_pickle(tmp_path / "conditional.pkl", nvidia_snapshot(r_generator, c_dim=3))
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "conditional models are not supported")
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code != 0 and "conditional" in result.stderr and "Traceback" not in result.output


def test_stylegan3_pickle_without_g_ema(tmp_path, nvidia_modules, r_generator):
    only_g = write_pickle(tmp_path / "only_g.pkl", nvidia_snapshot(r_generator, keys=("G",)))
    _, info = load_generator(only_g)
    assert info.network == "G" and any("no 'G_ema'" in note for note in info.notes)
    neither = write_pickle(tmp_path / "neither.pkl", {"D": None, "augment_pipe": None, "G_ema": None})
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(neither)
    assert_one_line_error(excinfo, neither, "'G_ema'")


def test_inconsistent_stylegan3_geometry_is_refused(tmp_path, nvidia_modules, r_generator):
    snapshot = nvidia_snapshot(r_generator)
    layer = snapshot["G_ema"].meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["L1_40_14"]
    layer.meta["state"]["padding"] = [0, 0, 0, 0]
    path = write_pickle(tmp_path / "bad_padding.pkl", snapshot)
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "L1_40_14")


def test_truncated_stylegan3_pickle_is_refused(tmp_path, nvidia_modules, r_generator):
    whole = pickle.dumps(nvidia_snapshot(r_generator), protocol=4)
    path = tmp_path / "truncated.pkl"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path)


# --- the filtered_lrelu op ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_filtered_lrelu_separable_filters_equal_their_2d_outer_product(seed):
    rng = torch.Generator().manual_seed(seed)
    up, down = [(1, 1), (2, 2), (4, 2), (2, 1)][seed]
    x = torch.randn(2, 3, 7 + seed, 9 - seed, generator=rng, dtype=torch.float64)
    fu = torch.rand(5 + seed, generator=rng, dtype=torch.float64)
    fd = torch.rand(4 + 2 * seed, generator=rng, dtype=torch.float64)
    b = torch.randn(3, generator=rng, dtype=torch.float64)
    padding = [3, 2 + seed, 4, 1]
    clamp = 0.7 if seed % 2 else None
    out = filtered_lrelu_native(x, fu, fd, b, up, down, padding, gain=1.3, slope=0.1, clamp=clamp)
    as_2d = filtered_lrelu_native(x, torch.outer(fu, fu), torch.outer(fd, fd), b, up, down, padding, gain=1.3,
                                  slope=0.1, clamp=clamp)
    assert torch.allclose(out, as_2d, atol=1e-12)
    # Step by step, with upfirdn2d: bias, upsample (gain up^2), lrelu * gain, clamp, downsample.
    y = upfirdn2d_native(x + b[None, :, None, None], torch.outer(fu, fu) * up ** 2, up=up, pad=padding)
    y = torch.nn.functional.leaky_relu(y, 0.1) * 1.3
    y = y if clamp is None else y.clamp(-clamp, clamp)
    y = upfirdn2d_native(y, torch.outer(fd, fd), down=down)
    assert torch.allclose(out, y, atol=1e-12)
    assert tuple(out.shape[2:]) == filtered_lrelu_output_size(tuple(x.shape[2:]), fu, fd, up, down, padding)


def test_filtered_lrelu_gradients_of_first_and_second_order():
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 5, 6, generator=rng, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=rng, dtype=torch.float64, requires_grad=True)
    fu, fd = torch.rand(6, dtype=torch.float64, generator=rng), torch.rand(4, 4, dtype=torch.float64, generator=rng)

    def op(x, b):
        return filtered_lrelu_native(x, fu, fd, b, up=2, down=2, padding=[2, 3, 3, 2], clamp=2.0)

    assert torch.autograd.gradcheck(op, (x, b))
    assert torch.autograd.gradgradcheck(op, (x, b))


@needs_refdata
def test_cli_generate_translate_rotate_and_ignored_noise(tmp_path):
    out_dir = tmp_path / "moved"
    latent = tmp_path / "ws.npy"
    np.save(latent, np.load(REFDATA / "sg3t64_ws.npy")[:2])
    result = CliRunner().invoke(cli, ["generate", "--ckpt", str(SG3_PKL), "--latent", str(latent), "--translate",
                                      "0.125,-0.0625", "--rotate", "10", "--noise", "random", "--device", "cpu",
                                      "--out", str(out_dir)])
    assert result.exit_code == 0, result.output
    assert "no noise inputs" in result.stderr
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["input_transform"] == {"translate": [0.125, -0.0625], "rotate_deg": 10.0}
    expected = np.load(REFDATA / "sg3t64_out_transform.npy")[:2]
    pixels = np.stack([np.asarray(Image.open(out_dir / f"ws_{i:04d}.png").convert("RGB")) for i in range(2)])
    expected_pixels = np.clip(np.rint((expected.transpose(0, 2, 3, 1) + 1) * 127.5), 0, 255)
    assert np.abs(pixels.astype(np.float64) - expected_pixels).max() <= 1  # 8-bit rounding of a <= 1e-4 difference


def test_cli_translate_needs_a_stylegan3_checkpoint(tmp_path):
    result = CliRunner().invoke(cli, ["generate", "--seeds", "0", "--rotate", "5", "--device", "cpu", "--out",
                                      str(tmp_path / "x")])
    assert result.exit_code != 0 and "StyleGAN3" in result.output


class DirectArray:
    """Unpickling this would call ``numpy.ndarray((n,))`` directly (an allocation of the file's choosing)."""

    def __reduce__(self):
        return np.ndarray, ((3,),)


class ObjectArray:
    """An object-dtype array record: ``_reconstruct`` followed by a state holding Python objects."""

    def __reduce__(self):
        return np.asarray([1, "x"], dtype=object).__reduce__()


@pytest.mark.parametrize("payload", [DirectArray(), ObjectArray()], ids=["ndarray-call", "object-array"])
def test_only_plain_numeric_numpy_arrays_are_rebuilt(tmp_path, payload):
    path = write_pickle(tmp_path / "arrays.pkl", {"G_ema": None, "sizes": payload})
    with pytest.raises(CheckpointError) as excinfo:
        load_generator(path)
    assert_one_line_error(excinfo, path, "not a readable checkpoint pickle")
    plain = write_pickle(tmp_path / "plain.pkl", {"size": np.asarray([36, 52], dtype=np.int64)})
    assert np.array_equal(load_restricted_pickle(plain)["size"], [36, 52])


@needs_refdata
def test_generator_benchmark_has_stylegan3_rows(monkeypatch):
    import importlib

    # Its measurements run in spawned processes, which import the benchmark by module name.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    monkeypatch.delitem(sys.modules, "generator", raising=False)
    benchmark = importlib.import_module("generator")
    rows = benchmark.run([], [1, 2], ["native"], ["scaled"], repeats=1, sg3=SG3_PKL)
    assert [(r["architecture"], r["size"], r["batch"]) for r in rows] == [("stylegan3-t", 64, 1), ("stylegan3-t", 64, 2)]
    assert all(r["forward_backward_s"] > 0 for r in rows)
    assert rows[1]["batch_cost_vs_batch1"] > 0
    assert "| stylegan3-t | 64 | 2 | native | scaled |" in benchmark.table(rows)


@pytest.mark.parametrize("kind", ["t", "r"])
def test_designed_architectures_follow_nvidias_layer_plan(kind):
    """benchmarks/generator.py --sg3 t256 / r256 time these (random weights, designed filters)."""
    from latentedit.model.sg3_design import design_sg3_config, random_sg3_generator

    config = design_sg3_config(256, kind)  # SG3Config checks every layer's size against the next one's
    assert config.num_ws == 16 and config.kind == f"stylegan3-{kind}"
    assert config.input_channels == (512 if kind == "t" else 1024) and config.layers[-1].out_channels == 3
    assert [layer.out_size[0] for layer in config.layers][-3:] == [276, 256, 256]
    assert {layer.kernel_size for layer in config.layers[:-1]} == {3 if kind == "t" else 1}
    radial = [layer.radial for layer in config.layers]
    assert radial == ([False] * 15 if kind == "t" else [True] * 12 + [False] * 3)  # never in critical layers
    small = random_sg3_generator(design_sg3_config(16, kind, w_dim=32, z_dim=32, channel_base=256, channel_max=16))
    for layer in small.layers:
        for f in (layer.up_filter, layer.down_filter):
            if f is not None:
                assert abs(f.sum().item() - 1) < 1e-5  # unit DC gain
    out = small(torch.randn(2, 32))
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
