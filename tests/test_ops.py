"""Custom ops: the native reference against the definition, the compiled CPU kernels against the
native path (values, gradients of first and second order), backend dispatch, and ``ops check``.

The CPU extension is compiled once for this module into a temporary ``$XDG_CACHE_HOME``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck, gradgradcheck

from latentedit.errors import InputError, OpsBuildError
from latentedit.ops import FusedLeakyReLU, _build, backend, fused_leaky_relu, fused_leaky_relu_native, upfirdn2d
from latentedit.ops import upfirdn2d_native
from latentedit.ops.filtered_lrelu import filtered_lrelu, filtered_lrelu_compiled, filtered_lrelu_native
from latentedit.ops.filtered_lrelu import filtered_lrelu_output_size
from latentedit.ops.fused_act import fused_leaky_relu_compiled
from latentedit.ops.upfirdn2d import output_size, upfirdn2d_compiled

HAVE_CXX = shutil.which(os.environ.get("CXX", "c++")) is not None
BLUR = torch.tensor([1.0, 3.0, 3.0, 1.0])
BLUR = BLUR[:, None] * BLUR[None, :] / 64


@pytest.fixture(scope="module")
def ops_cache(tmp_path_factory):
    """A fresh ``$XDG_CACHE_HOME`` for this module; the backend's memory is reset around it."""
    patch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("xdg-cache")
    patch.setenv("XDG_CACHE_HOME", str(root))
    patch.delenv("LATENTEDIT_OPS", raising=False)
    backend.reset()
    yield root / "latentedit"
    patch.undo()
    backend.reset()


@pytest.fixture(scope="module")
def cpu_ops(ops_cache):
    """The compiled CPU extension, built once per test session into the temporary cache."""
    if not HAVE_CXX:
        pytest.skip("no C++ compiler (c++ or $CXX) on PATH")
    return _build.load_extension(_build.CPU_SPEC)


@pytest.fixture()
def fresh_backend(ops_cache):
    """Auto decisions and build memory cleared before and after the test (the cache dir stays)."""
    backend.reset()
    yield
    backend.reset()


def upfirdn2d_by_definition(x: np.ndarray, f: np.ndarray, up, down, pad) -> np.ndarray:
    """SPEC §2 literally: zero-insert, pad/crop, true convolution, keep every down-th sample."""
    (upx, upy), (downx, downy) = up, down
    padx0, padx1, pady0, pady1 = pad
    n, c, h, w = x.shape
    up_x = np.zeros((n, c, h * upy, w * upx))
    up_x[:, :, ::upy, ::upx] = x
    padded = np.pad(up_x, ((0, 0), (0, 0), (max(pady0, 0), max(pady1, 0)), (max(padx0, 0), max(padx1, 0))))
    padded = padded[:, :, max(-pady0, 0): padded.shape[2] - max(-pady1, 0),
                    max(-padx0, 0): padded.shape[3] - max(-padx1, 0)]
    ky, kx = f.shape
    full_h, full_w = padded.shape[2] - ky + 1, padded.shape[3] - kx + 1
    out = np.zeros((n, c, full_h, full_w))
    for a in range(ky):  # out[i] = sum_a padded[i + a] * f[K - 1 - a]: convolution, not correlation
        for b in range(kx):
            out += padded[:, :, a:a + full_h, b:b + full_w] * f[ky - 1 - a, kx - 1 - b]
    return out[:, :, ::downy, ::downx]


# --- the native reference ------------------------------------------------------------------------

@pytest.mark.parametrize("up, down, pad, fshape", [
    ((1, 1), (1, 1), (0, 0, 0, 0), (3, 3)),
    ((2, 2), (1, 1), (2, 1, 2, 1), (4, 4)),
    ((1, 1), (2, 2), (1, 1, 1, 1), (4, 4)),
    ((3, 2), (2, 3), (-1, 2, 3, -2), (2, 5)),
])
def test_native_upfirdn2d_matches_the_definition(up, down, pad, fshape):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn([2, 3, 7, 6], generator=generator, dtype=torch.float64)
    f = torch.randn(fshape, generator=generator, dtype=torch.float64)
    expected = upfirdn2d_by_definition(x.numpy(), f.numpy(), up, down, pad)
    result = upfirdn2d_native(x, f, up, down, pad)
    assert result.shape[2:] == (output_size(7, up[1], down[1], pad[2], pad[3], fshape[0]),
                                output_size(6, up[0], down[0], pad[0], pad[1], fshape[1]))
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-12)


def test_native_fused_leaky_relu_formula():
    x = torch.tensor([[-2.0, 0.5], [1.0, -0.25]]).reshape(2, 2, 1)
    bias = torch.tensor([1.0, -1.0])
    # x + bias[c] = [[-1, -0.5], [2, -1.25]]; slope 0.3 below zero, then gain 1.5
    expected = torch.tensor([[-0.3, -0.15], [2.0, -0.375]]).reshape(2, 2, 1) * 1.5
    torch.testing.assert_close(fused_leaky_relu_native(x, bias, 0.3, 1.5), expected)


def test_native_gradients_of_two_orders():
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    f = torch.randn(3, 2, dtype=torch.float64)
    assert gradgradcheck(lambda t: upfirdn2d_native(t, f, (2, 1), (1, 2), (1, -1, 2, 0)), (x,))
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(lambda t, b: fused_leaky_relu_native(t, b, 0.3, 1.7), (x, bias))


# --- compiled CPU kernels against native ---------------------------------------------------------

upfirdn_cases = st.tuples(
    st.integers(1, 2), st.integers(1, 3),  # batch, channels
    st.integers(1, 9), st.integers(1, 9),  # height, width
    st.integers(1, 5), st.integers(1, 5),  # filter height, width
    st.tuples(st.integers(1, 4), st.integers(1, 4)), st.tuples(st.integers(1, 4), st.integers(1, 4)),
    st.tuples(st.integers(-3, 4), st.integers(-3, 4), st.integers(-3, 4), st.integers(-3, 4)),
    st.integers(0, 2 ** 31 - 1),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=upfirdn_cases)
def test_compiled_upfirdn2d_agrees_with_native(cpu_ops, case):
    n, c, h, w, ky, kx, up, down, pad, seed = case
    assume(output_size(h, up[1], down[1], pad[2], pad[3], ky) >= 1)
    assume(output_size(w, up[0], down[0], pad[0], pad[1], kx) >= 1)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn([n, c, h, w], generator=generator, dtype=torch.float64)
    f = torch.randn([ky, kx], generator=generator, dtype=torch.float64)
    results = []
    for run in (lambda t: upfirdn2d_native(t, f, up, down, pad),
                lambda t: upfirdn2d_compiled(t, f, up, down, pad, module=cpu_ops)):
        xg = x.clone().requires_grad_(True)
        y = run(xg)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
        results.append((y, torch.autograd.grad(y, xg, dy)[0]))
    (y_native, g_native), (y_compiled, g_compiled) = results
    assert y_compiled.shape == y_native.shape
    torch.testing.assert_close(y_compiled, y_native, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_compiled, g_native, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("up, down, pad, fshape", [
    (1, 1, (1, 1), (4, 4)),
    ((2, 3), (1, 2), (2, -1, 1, 3), (4, 3)),
    ((3, 1), (2, 4), (-1, 2, 0, -1), (2, 5)),
])
def test_compiled_upfirdn2d_gradcheck_and_gradgradcheck(cpu_ops, up, down, pad, fshape):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn([2, 3, 7, 6], generator=generator, dtype=torch.float64, requires_grad=True)
    f = torch.randn(fshape, generator=generator, dtype=torch.float64)

    def op(t):
        return upfirdn2d_compiled(t, f, up, down, pad, module=cpu_ops)

    assert gradcheck(op, (x,))
    assert gradgradcheck(op, (x,))


def test_compiled_upfirdn2d_backward_is_the_same_function(cpu_ops):
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    y = upfirdn2d_compiled(x, BLUR * 4, up=2, pad=(2, 1), module=cpu_ops)
    grad_y = torch.randn_like(y).requires_grad_(True)  # the gradient is linear in grad_y, not in x
    (grad,) = torch.autograd.grad(y, x, grad_y, create_graph=True)
    assert type(y.grad_fn).__name__ == type(grad.grad_fn).__name__ == "_UpFirDn2dCompiledBackward"


def test_compiled_upfirdn2d_float32_non_contiguous_and_many_planes(cpu_ops):
    x = torch.randn(3, 33, 17, 11).permute(0, 1, 3, 2)  # non-contiguous, [3, 33, 11, 17]
    for up, down, pad in ((2, 1, (2, 1)), (1, 1, (1, 1)), (1, 2, (1, 1))):
        expected = upfirdn2d_native(x, BLUR * 4, up, down, pad)
        torch.testing.assert_close(upfirdn2d_compiled(x, BLUR * 4, up, down, pad, module=cpu_ops), expected,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 4), (2, 4, 3, 5)])
@pytest.mark.parametrize("alpha", [0.0, 0.2, 0.3, 1.0])
@pytest.mark.parametrize("with_bias", [True, False])
def test_compiled_fused_leaky_relu_agrees_with_native(cpu_ops, shape, alpha, with_bias):
    generator = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    bias = torch.randn(shape[1], generator=generator, dtype=torch.float64) if with_bias else None
    results = []
    for run in (lambda t, b: fused_leaky_relu_native(t, b, alpha, 1.7),
                lambda t, b: fused_leaky_relu_compiled(t, b, alpha, 1.7, module=cpu_ops)):
        xg = x.clone().requires_grad_(True)
        bg = bias.clone().requires_grad_(True) if with_bias else None
        y = run(xg, bg)
        inputs = [xg] + ([bg] if with_bias else [])
        results.append([y] + list(torch.autograd.grad(y, inputs, torch.ones_like(y).cumsum(-1))))
    for compiled, native in zip(results[1], results[0]):
        torch.testing.assert_close(compiled, native, rtol=1e-12, atol=1e-12)


def test_compiled_fused_leaky_relu_gradcheck_and_gradgradcheck_honour_alpha(cpu_ops):
    generator = torch.Generator().manual_seed(11)
    x = torch.randn([2, 4, 3, 5], generator=generator, dtype=torch.float64)
    x = torch.where(x.abs() < 0.05, x + 0.1, x).requires_grad_(True)  # keep finite differences off the kink
    bias = torch.zeros(4, dtype=torch.float64, requires_grad=True)

    def op(t, b):
        return fused_leaky_relu_compiled(t, b, 0.3, 1.7, module=cpu_ops)

    assert gradcheck(op, (x, bias))
    assert gradgradcheck(op, (x, bias))
    (grad,) = torch.autograd.grad(op(x, bias).sum(), x)
    torch.testing.assert_close(grad, torch.where(x > 0, 1.7, 0.3 * 1.7).to(torch.float64))


def test_compiled_fused_leaky_relu_bias_keeps_its_dtype(cpu_ops):
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    bias = torch.randn(3, requires_grad=True)  # float32 bias on a float64 input, as the native path allows
    y = fused_leaky_relu_compiled(x, bias, module=cpu_ops)
    torch.testing.assert_close(y, fused_leaky_relu_native(x, bias))
    (grad,) = torch.autograd.grad(y.sum(), bias)
    assert grad.dtype == torch.float32


# --- backend dispatch ----------------------------------------------------------------------------

# --- filtered_lrelu (StyleGAN3): compiled CPU kernel against native ------------------------------------------------

def _filter(kind: int, generator: torch.Generator) -> torch.Tensor | None:
    """None, a separable [K] or a full [Ky, Kx] filter (kind 0, 1, 2)."""
    if kind == 0:
        return None
    if kind == 1:
        return torch.randn(int(torch.randint(1, 9, (1,), generator=generator)), generator=generator,
                           dtype=torch.float64)
    ky, kx = (int(v) for v in torch.randint(1, 6, (2,), generator=generator))
    return torch.randn(ky, kx, generator=generator, dtype=torch.float64)


flrelu_cases = st.tuples(
    st.integers(1, 2), st.integers(1, 4),  # batch, channels
    st.integers(2, 10), st.integers(2, 10),  # height, width
    st.integers(1, 3), st.integers(1, 3),  # up, down
    st.integers(0, 2), st.integers(0, 2),  # up / down filter kind
    st.tuples(st.integers(-1, 5), st.integers(-1, 5), st.integers(-1, 5), st.integers(-1, 5)),
    st.sampled_from([(0.2, None), (0.2, 0.5), (1.0, 0.3), (0.0, None)]),  # slope, clamp
    st.booleans(),  # bias
    st.integers(0, 2 ** 31 - 1),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=flrelu_cases)
def test_compiled_filtered_lrelu_agrees_with_native_to_the_second_order(cpu_ops, case):
    n, c, h, w, up, down, fu_kind, fd_kind, padding, (slope, clamp), with_bias, seed = case
    generator = torch.Generator().manual_seed(seed)
    fu, fd = _filter(fu_kind, generator), _filter(fd_kind, generator)
    height, width = filtered_lrelu_output_size((h, w), fu, fd, up, down, padding)
    assume(height >= 1 and width >= 1)
    x = torch.randn([n, c, h, w], generator=generator, dtype=torch.float64)
    b = torch.randn([c], generator=generator, dtype=torch.float64) if with_bias else None
    dy = torch.randn([n, c, height, width], generator=generator, dtype=torch.float64)
    v = torch.randn([n, c, h, w], generator=generator, dtype=torch.float64)
    results = []
    for run in (filtered_lrelu_native, lambda *a, **k: filtered_lrelu_compiled(*a, **k, module=cpu_ops)):
        xg = x.clone().requires_grad_(True)
        bg = b.clone().requires_grad_(True) if with_bias else None
        dyg = dy.clone().requires_grad_(True)
        y = run(xg, fu, fd, bg, up, down, padding, gain=1.3, slope=slope, clamp=clamp)
        inputs = [xg] + ([bg] if with_bias else [])
        grads = torch.autograd.grad(y, inputs, dyg, create_graph=True)
        # Second order: d/d(dy) of <dL/dx, v> (the gradient's own backward).
        (second,) = torch.autograd.grad((grads[0] * v).sum(), dyg)
        results.append([y.detach(), *(g.detach() for g in grads), second])
    for compiled, native in zip(results[1], results[0]):
        assert compiled.shape == native.shape
        torch.testing.assert_close(compiled, native, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fu_shape, fd_shape, up, down, padding, clamp", [
    ((6,), (4,), 2, 2, [2, 3, 3, 2], 2.0),
    ((5,), (3, 3), 2, 2, [3, 2, 2, 3], None),
    (None, None, 1, 1, 0, 0.8),
])
def test_compiled_filtered_lrelu_gradcheck_and_gradgradcheck(cpu_ops, fu_shape, fd_shape, up, down, padding, clamp):
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(1, 2, 5, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=generator, dtype=torch.float64, requires_grad=True)
    fu, fd = (None if s is None else torch.rand(s, generator=generator, dtype=torch.float64) for s in (fu_shape,
                                                                                                       fd_shape))

    def op(t, bias):
        return filtered_lrelu_compiled(t, fu, fd, bias, up, down, padding, clamp=clamp, module=cpu_ops)

    assert gradcheck(op, (x, b))
    assert gradgradcheck(op, (x, b))


def test_compiled_filtered_lrelu_float32_and_thread_count_independent(cpu_ops):
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(2, 37, 20, 20, generator=generator)
    b = torch.randn(37, generator=generator)
    taps = torch.kaiser_window(12, periodic=False)
    f = taps / taps.sum()
    args = (x, f, f, b, 2, 2, (11, 10, 11, 10))
    expected = filtered_lrelu_native(*args, clamp=256.0)
    threads = torch.get_num_threads()
    try:
        outputs = []
        for count in (1, 2):
            torch.set_num_threads(count)
            outputs.append(filtered_lrelu_compiled(*args, clamp=256.0, module=cpu_ops))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outputs[0], outputs[1])  # each plane is done by one thread, in a fixed order
    torch.testing.assert_close(outputs[0], expected, rtol=1e-5, atol=1e-5)


def test_filtered_lrelu_dispatch(cpu_ops, fresh_backend, monkeypatch):
    monkeypatch.delenv("LATENTEDIT_OPS", raising=False)
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    f1, f2 = torch.rand(4), torch.rand(3, 3)

    def kind(fu, fd, **kwargs):
        return type(filtered_lrelu(x, fu, fd, None, 2, 2, 3, **kwargs).grad_fn).__name__

    compiled = "_FilteredLReLUCompiledBackward"
    assert kind(f1, f1) == compiled  # auto on CPU: separable filters take the C++ kernel
    assert kind(None, None) == compiled
    assert kind(f1, f2) != compiled  # a full 2-D (radial) filter: native, faster there
    assert kind(f1, f2, backend="compiled") == compiled
    assert kind(f1, f1, backend="native") != compiled
    half = torch.randn(1, 2, 6, 6).to(torch.bfloat16)  # the CPU kernel takes float32/64 only
    torch.testing.assert_close(filtered_lrelu(half, f1, f1, None, 2, 2, 3, backend="compiled"),
                               filtered_lrelu_native(half, f1, f1, None, 2, 2, 3))
    with torch.no_grad():  # no gradient wanted: the forward records no mask
        y = filtered_lrelu(x, f1, f1, None, 2, 2, 3)
    assert y.grad_fn is None


def test_invalid_backend_name_is_a_user_error(monkeypatch):
    monkeypatch.setenv("LATENTEDIT_OPS", "fastest")
    with pytest.raises(InputError, match="LATENTEDIT_OPS"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), BLUR)


def test_native_backend_never_builds(monkeypatch, fresh_backend):
    def no_build(*args, **kwargs):
        raise AssertionError("the native backend must not build anything")

    monkeypatch.setattr(_build, "load_extension", no_build)
    x = torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(upfirdn2d(x, BLUR, pad=(1, 1), backend="native"), upfirdn2d_native(x, BLUR, pad=(1, 1)))
    monkeypatch.setenv("LATENTEDIT_OPS", "native")
    torch.testing.assert_close(fused_leaky_relu(x, torch.ones(2)), fused_leaky_relu_native(x, torch.ones(2)))
    torch.testing.assert_close(upfirdn2d(x, BLUR, up=2, pad=(2, 1)), upfirdn2d_native(x, BLUR, up=2, pad=(2, 1)))


def test_compiled_backend_runs_the_kernels(cpu_ops, fresh_backend, monkeypatch):
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    assert type(upfirdn2d(x, BLUR, pad=(1, 1), backend="compiled").grad_fn).__name__ == "_UpFirDn2dCompiledBackward"
    assert type(fused_leaky_relu(x, backend="compiled").grad_fn).__name__ == "_FusedLeakyReLUCompiledBackward"
    monkeypatch.setenv("LATENTEDIT_OPS", "compiled")
    assert type(FusedLeakyReLU(2)(x).grad_fn).__name__ == "_FusedLeakyReLUCompiledBackward"
    monkeypatch.setenv("LATENTEDIT_OPS", "native")
    assert type(FusedLeakyReLU(2)(x).grad_fn).__name__ != "_FusedLeakyReLUCompiledBackward"


def test_compiled_backend_uses_native_for_inputs_the_kernels_do_not_take(cpu_ops, fresh_backend):
    x = torch.randn(1, 2, 6, 6)
    f = BLUR.clone().requires_grad_(True)  # a learnable filter needs d/df, which the kernels do not give
    y = upfirdn2d(x, f, pad=(1, 1), backend="compiled")
    (grad_f,) = torch.autograd.grad(y.sum(), f)
    (expected,) = torch.autograd.grad(upfirdn2d_native(x, f, pad=(1, 1)).sum(), f)
    torch.testing.assert_close(grad_f, expected)
    half = torch.randn(1, 2, 6, 6).to(torch.bfloat16)
    torch.testing.assert_close(fused_leaky_relu(half, backend="compiled"), fused_leaky_relu_native(half))
    negative_gain = fused_leaky_relu(x, None, 0.2, -1.0, backend="compiled")
    torch.testing.assert_close(negative_gain, fused_leaky_relu_native(x, None, 0.2, -1.0))


def test_auto_follows_the_fixed_rule_and_times_nothing(cpu_ops, fresh_backend, monkeypatch):
    def no_timing(*args, **kwargs):
        raise AssertionError("auto must not time the backends")

    monkeypatch.setattr(backend, "benchmark", no_timing)
    monkeypatch.setattr(backend, "time_call", no_timing)
    monkeypatch.delenv("LATENTEDIT_OPS", raising=False)  # the default is auto
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    for _ in range(2):
        up = upfirdn2d(x, BLUR, pad=(1, 1))
        act = fused_leaky_relu(x, torch.zeros(2))
        # On CPU the rule is native upfirdn2d, compiled fused_leaky_relu (see backend's docstring).
        assert type(up.grad_fn).__name__ != "_UpFirDn2dCompiledBackward"
        assert type(act.grad_fn).__name__ == "_FusedLeakyReLUCompiledBackward"
    assert backend.AUTO_RULE == {("upfirdn2d", "cpu"): False, ("fused_leaky_relu", "cpu"): True,
                                 ("upfirdn2d", "cuda"): True, ("fused_leaky_relu", "cuda"): True,
                                 ("filtered_lrelu", "cpu"): True, ("filtered_lrelu", "cuda"): False}
    assert not backend.auto_uses_compiled("upfirdn2d", "mps")


def test_auto_gives_bit_identical_results_whatever_the_timings(cpu_ops, fresh_backend, monkeypatch,
                                                                tiny_generator):
    """The old auto timed both paths, so a loaded machine could flip the choice between two runs."""
    monkeypatch.setenv("LATENTEDIT_OPS", "auto")
    torch.manual_seed(0)
    z = torch.randn(2, tiny_generator.w_dim)
    outputs = []
    for native_ms, compiled_ms in ((1.0, 9.0), (9.0, 1.0)):
        backend.reset()
        monkeypatch.setattr(backend, "benchmark", lambda *args, times=(native_ms, compiled_ms), **kwargs: times)
        with torch.no_grad():
            outputs.append(tiny_generator(z, noise_mode="const"))
    assert torch.equal(outputs[0], outputs[1])


def test_describe_reports_the_rule_per_device_type_without_building(fresh_backend, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("describing the backends must not build anything")

    monkeypatch.setattr(_build, "load_extension", no_build)
    monkeypatch.delenv("LATENTEDIT_OPS", raising=False)
    assert backend.describe() == {"LATENTEDIT_OPS": "auto",
                                  "upfirdn2d": {"cpu": "native", "cuda": "compiled"},
                                  "fused_leaky_relu": {"cpu": "compiled", "cuda": "compiled"},
                                  "filtered_lrelu": {"cpu": "compiled", "cuda": "native"}}
    for choice in ("native", "compiled"):
        monkeypatch.setenv("LATENTEDIT_OPS", choice.upper())
        expected = {device_type: choice for device_type in ("cpu", "cuda")}
        assert backend.describe() == {"LATENTEDIT_OPS": choice, "upfirdn2d": expected, "fused_leaky_relu": expected,
                                      "filtered_lrelu": expected}
    assert backend.resolve("upfirdn2d", "mps", "compiled") == "native"
    monkeypatch.setenv("LATENTEDIT_OPS", "fastest")
    report = backend.describe()
    assert report["LATENTEDIT_OPS"] == "fastest" and "must be one of" in report["error"]


def test_versions_in_every_manifest_name_the_ops_backends(fresh_backend, monkeypatch):
    from latentedit.io import versions

    monkeypatch.setenv("LATENTEDIT_OPS", "native")
    assert versions()["ops"] == backend.describe()
    assert versions()["ops"]["upfirdn2d"] == {"cpu": "native", "cuda": "native"}
    json.dumps(versions())  # manifests are JSON


def test_auto_benchmark_runs_on_the_real_kernels(cpu_ops, fresh_backend):
    native_ms, compiled_ms = backend.benchmark("upfirdn2d", torch.device("cpu"), cpu_ops, repeats=1)
    assert native_ms > 0 and compiled_ms > 0


@pytest.fixture()
def broken_cpu_spec(tmp_path, monkeypatch, fresh_backend):
    """Make the dispatcher's CPU extension one whose source does not compile."""
    (tmp_path / "broken.cpp").write_text('#error "deliberately broken kernel source"\n')
    spec = _build.ExtensionSpec(kind="broken", sources=("broken.cpp",), source_dir=tmp_path)
    monkeypatch.setattr(backend, "extension_for", lambda device: spec if device.type == "cpu" else None)
    builds = []
    real_build = _build._build
    monkeypatch.setattr(_build, "_build", lambda *args: builds.append(args) or real_build(*args))
    return builds


@pytest.mark.skipif(not HAVE_CXX, reason="no C++ compiler")
def test_auto_falls_back_to_native_with_one_warning(broken_cpu_spec, monkeypatch):
    monkeypatch.setenv("LATENTEDIT_OPS", "auto")
    x = torch.randn(1, 2, 5, 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            torch.testing.assert_close(upfirdn2d(x, BLUR, pad=(1, 1)), upfirdn2d_native(x, BLUR, pad=(1, 1)))
            torch.testing.assert_close(fused_leaky_relu(x), fused_leaky_relu_native(x))
    fallback = [w for w in caught if issubclass(w.category, backend.OpsFallbackWarning)]
    assert len(fallback) == 1
    assert "deliberately broken" in str(fallback[0].message)
    assert len(broken_cpu_spec) == 1  # the failure is remembered, not retried
    # Manifests then name the fallback that was used.
    assert backend.describe()["fused_leaky_relu"]["cpu"] == "native"


@pytest.mark.skipif(not HAVE_CXX, reason="no C++ compiler")
def test_compiled_raises_a_clear_error_when_the_build_fails(broken_cpu_spec):
    x = torch.randn(1, 2, 5, 5)
    for _ in range(2):
        with pytest.raises(OpsBuildError) as caught:
            fused_leaky_relu(x, backend="compiled")
        message = str(caught.value)
        assert "could not build the broken kernels" in message and "deliberately broken" in message
        assert "\n" not in message and "LATENTEDIT_OPS=native" in message
    log_path = message.split("full log: ")[1].split(")")[0]
    assert "deliberately broken" in open(log_path).read()
    assert len(broken_cpu_spec) == 1


def test_importing_latentedit_compiles_nothing(tmp_path):
    code = ("import sys; import latentedit.ops, latentedit.model, latentedit.cli.main, latentedit.io; "
            "assert 'torch.utils.cpp_extension' not in sys.modules, 'cpp_extension imported at import time'; "
            "assert latentedit.io.versions()['ops']['upfirdn2d'] == {'cpu': 'compiled', 'cuda': 'compiled'}; "
            "assert 'torch.utils.cpp_extension' not in sys.modules, 'cpp_extension imported by versions()'")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), LATENTEDIT_OPS="compiled")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "latentedit").exists()


def test_generator_output_is_the_same_with_native_and_compiled_ops(cpu_ops, fresh_backend, tiny_generator,
                                                                   monkeypatch):
    torch.manual_seed(0)
    z = torch.randn(2, tiny_generator.w_dim)
    images = {}
    for choice in ("native", "compiled"):
        monkeypatch.setenv("LATENTEDIT_OPS", choice)
        with torch.no_grad():
            images[choice] = tiny_generator(z)
    torch.testing.assert_close(images["compiled"], images["native"], rtol=1e-4, atol=1e-4)


# --- ops check -----------------------------------------------------------------------------------

def test_check_ops_reports_small_errors_for_the_compiled_cpu_kernels(cpu_ops, fresh_backend):
    from latentedit.ops.check import check_ops

    rows = check_ops(device="cpu", repeats=1)
    compiled = {row["op"]: row for row in rows if row["backend"] == "compiled"}
    assert set(compiled) == {"upfirdn2d", "fused_leaky_relu", "filtered_lrelu"}
    for row in compiled.values():
        assert row["built"] and row["max_error_forward"] < 1e-4 and row["max_error_grad"] < 1e-4
        assert row["ms_per_call"] > 0 and row["speed_vs_native"] > 0


def test_ops_check_cli_prints_the_table_and_rejects_a_bad_device(cpu_ops, fresh_backend):
    from click.testing import CliRunner

    from latentedit.cli.main import cli

    result = CliRunner().invoke(cli, ["ops", "check", "--device", "cpu", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header[:4] == ["op", "backend", "device", "built"]
    compiled_lines = [line.split() for line in result.output.splitlines() if " compiled " in line]
    assert len(compiled_lines) == 3 and all(line[3] == "yes" for line in compiled_lines)
    bad = CliRunner().invoke(cli, ["ops", "check", "--device", "nonsense"])
    assert bad.exit_code == 2 and "error: device 'nonsense'" in bad.output


def test_fused_leaky_relu_module_keeps_its_parameter_name():
    layer = FusedLeakyReLU(5)
    assert [name for name, _ in layer.named_parameters()] == ["bias"] and layer.bias.shape == (5,)
    assert math.isclose(layer.gain, math.sqrt(2))
