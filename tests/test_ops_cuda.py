"""The CUDA kernels: compiled with nvcc whenever a CUDA toolkit and a CUDA build of torch are
present (no GPU needed: the architecture comes from TORCH_CUDA_ARCH_LIST); executed and compared
with the native path only where a GPU is visible."""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from latentedit.ops import _build, backend
from latentedit.ops.filtered_lrelu import filtered_lrelu_compiled, filtered_lrelu_native
from latentedit.ops.fused_act import fused_leaky_relu_compiled, fused_leaky_relu_native
from latentedit.ops.upfirdn2d import upfirdn2d_compiled, upfirdn2d_native

CAN_COMPILE = torch.version.cuda is not None and _build.find_cuda_home() is not None
HAVE_GPU = torch.cuda.is_available()


@pytest.fixture(scope="module")
def cuda_ops(tmp_path_factory):
    """The CUDA extension, built once into a temporary cache (for sm_90 when no GPU is visible)."""
    if not CAN_COMPILE:
        pytest.skip("needs a CUDA build of torch and a CUDA toolkit with nvcc")
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache-cuda")))
    if not HAVE_GPU and not _build.cuda_arch_list():
        patch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    backend.reset()
    try:
        yield _build.load_extension(_build.CUDA_SPEC)
    finally:
        patch.undo()
        backend.reset()


def test_cuda_sources_compile_and_link_with_nvcc(cuda_ops):
    assert {"upfirdn2d", "fused_leaky_relu", "fused_leaky_relu_grad", "filtered_lrelu"} <= set(dir(cuda_ops))
    directory = _build.build_dir(_build.CUDA_SPEC)
    record = (directory / _build.COMPLETE_MARKER).read_text()
    assert "cuda_arch_list" in record and "nvcc" in record
    assert list(directory.glob("*.cuda.o")), "the .cu file was not compiled by nvcc"


gpu = pytest.mark.skipif(not HAVE_GPU, reason="no CUDA device: the kernels are compiled but not run")

CASES = [
    ((2, 3, 16, 16), (4, 4), 2, 1, (2, 1)),
    ((2, 3, 17, 17), (4, 4), 1, 1, (1, 1)),
    ((2, 3, 16, 16), (4, 4), 1, 2, (1, 1)),
    ((3, 5, 13, 9), (3, 5), (3, 2), (2, 4), (-1, 2, 3, -2)),
    ((1, 1, 7, 5), (2, 1), (1, 4), (3, 1), (0, -1, 2, 4)),
]


@gpu
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5),
                                               (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
@pytest.mark.parametrize("shape, fshape, up, down, pad", CASES)
def test_cuda_upfirdn2d_agrees_with_native(cuda_ops, dtype, tolerance, shape, fshape, up, down, pad):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    f = torch.randn(fshape, generator=generator, dtype=torch.float64)
    expected = upfirdn2d_native(x, f, up, down, pad)  # float64 on the CPU: the reference
    result = upfirdn2d_compiled(x.cuda().to(dtype), f.cuda().to(dtype), up, down, pad, module=cuda_ops)
    assert result.dtype == dtype and result.shape == expected.shape
    torch.testing.assert_close(result.cpu().double(), expected, rtol=tolerance, atol=tolerance * 10)


@gpu
@pytest.mark.parametrize("shape, fshape, up, down, pad", CASES[2:])
def test_cuda_upfirdn2d_gradcheck_and_gradgradcheck(cuda_ops, shape, fshape, up, down, pad):
    x = torch.randn((1, 2) + shape[2:], dtype=torch.float64, device="cuda", requires_grad=True)
    f = torch.randn(fshape, dtype=torch.float64, device="cuda")

    def op(t):
        return upfirdn2d_compiled(t, f, up, down, pad, module=cuda_ops)

    assert gradcheck(op, (x,))
    assert gradgradcheck(op, (x,))


@gpu
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-6),
                                               (torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
@pytest.mark.parametrize("shape", [(5, 7), (2, 4, 3, 5)])
def test_cuda_fused_leaky_relu_agrees_with_native(cuda_ops, dtype, tolerance, shape):
    x = torch.randn(shape, dtype=torch.float64)
    bias = torch.randn(shape[1], dtype=torch.float64)
    expected = fused_leaky_relu_native(x, bias, 0.3, 1.7)
    result = fused_leaky_relu_compiled(x.cuda().to(dtype), bias.cuda().to(dtype), 0.3, 1.7, module=cuda_ops)
    torch.testing.assert_close(result.cpu().double(), expected, rtol=tolerance, atol=tolerance)


@gpu
def test_cuda_fused_leaky_relu_gradcheck_and_gradgradcheck(cuda_ops):
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64, device="cuda")
    x = torch.where(x.abs() < 0.05, x + 0.1, x).requires_grad_(True)
    bias = torch.zeros(4, dtype=torch.float64, device="cuda", requires_grad=True)

    def op(t, b):
        return fused_leaky_relu_compiled(t, b, 0.3, 1.7, module=cuda_ops)

    assert gradcheck(op, (x, bias))
    assert gradgradcheck(op, (x, bias))


# (x shape, up filter shape, down filter shape, up, down, padding, slope, clamp)
FLRELU_CASES = [
    ((2, 3, 12, 12), (12,), (12,), 2, 2, (11, 10, 11, 10), 0.2, 256.0),
    ((1, 4, 9, 11), (6,), (5, 5), 2, 2, (4, 5, 3, 6), 0.2, 0.5),
    ((2, 2, 7, 7), None, (4,), 1, 2, (1, 2, 2, 1), 0.0, None),
    ((1, 3, 8, 6), (3, 2), None, 3, 1, (-1, 2, 3, -2), 1.0, 0.3),
]


@gpu
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5),
                                               (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
@pytest.mark.parametrize("shape, fu_shape, fd_shape, up, down, padding, slope, clamp", FLRELU_CASES)
def test_cuda_filtered_lrelu_agrees_with_native(cuda_ops, dtype, tolerance, shape, fu_shape, fd_shape, up, down,
                                                padding, slope, clamp):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    b = torch.randn(shape[1], generator=generator, dtype=torch.float64)
    fu, fd = (None if s is None else (lambda f: f / f.sum())(torch.rand(s, generator=generator, dtype=torch.float64)
                                                             + 0.1) for s in (fu_shape, fd_shape))
    expected = filtered_lrelu_native(x, fu, fd, b, up, down, padding, slope=slope, clamp=clamp)
    result = filtered_lrelu_compiled(x.cuda().to(dtype), fu, fd, b.cuda().to(dtype), up, down, padding, slope=slope,
                                     clamp=clamp, module=cuda_ops)
    assert result.dtype == dtype and result.shape == expected.shape
    torch.testing.assert_close(result.cpu().double(), expected, rtol=tolerance, atol=tolerance * 10)


@gpu
@pytest.mark.parametrize("shape, fu_shape, fd_shape, up, down, padding, slope, clamp", FLRELU_CASES[1:])
def test_cuda_filtered_lrelu_gradcheck_and_gradgradcheck(cuda_ops, shape, fu_shape, fd_shape, up, down, padding,
                                                         slope, clamp):
    x = torch.randn(shape, dtype=torch.float64, device="cuda", requires_grad=True)
    b = torch.randn(shape[1], dtype=torch.float64, device="cuda", requires_grad=True)
    fu, fd = (None if s is None else torch.rand(s, dtype=torch.float64, device="cuda") for s in (fu_shape, fd_shape))

    def op(t, bias):
        return filtered_lrelu_compiled(t, fu, fd, bias, up, down, padding, slope=slope, clamp=clamp, module=cuda_ops)

    assert gradcheck(op, (x, b))
    assert gradgradcheck(op, (x, b))
