// PyTorch bindings of the CUDA kernels in ops_cuda_kernels.cu: argument checks, output allocation,
// device guard and stream, then one launch. Same Python-facing functions as the CPU module.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>
#include <torch/csrc/utils/pybind.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <vector>

#include "ops_common.h"
#include "ops_cuda.h"

namespace latentedit {
namespace {

CudaDType cuda_dtype(const at::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kHalf: return CudaDType::kHalf;
    case at::kBFloat16: return CudaDType::kBFloat16;
    case at::kFloat: return CudaDType::kFloat;
    case at::kDouble: return CudaDType::kDouble;
    default: break;
  }
  TORCH_CHECK(false, op, " (CUDA kernel): unsupported dtype ", t.scalar_type());
  return CudaDType::kFloat;  // unreachable: TORCH_CHECK(false) throws
}

void check_launch(const char* error, const char* op) {
  TORCH_CHECK(error == nullptr, op, " (CUDA kernel) launch failed: ", error);
}

void* current_stream(const at::Tensor& t) {
  return static_cast<void*>(c10::cuda::getCurrentCUDAStream(t.device().index()).stream());
}

int checked_int(int64_t value, const char* what) {
  TORCH_CHECK(value >= 0 && value <= INT32_MAX, what, " out of range: ", value);
  return static_cast<int>(value);
}

// x [P, H, W] (P = N*C planes), f [Ky, Kx]; both contiguous, same dtype and device. Returns [P, outH, outW].
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                     int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1) {
  TORCH_CHECK(x.is_cuda() && f.is_cuda() && x.device() == f.device(),
              "upfirdn2d (CUDA kernel): x and f must be on the same CUDA device");
  TORCH_CHECK(x.dim() == 3, "upfirdn2d (CUDA kernel): x must be [planes, H, W]");
  TORCH_CHECK(f.dim() == 2, "upfirdn2d (CUDA kernel): f must be [Ky, Kx]");
  TORCH_CHECK(x.scalar_type() == f.scalar_type(), "upfirdn2d (CUDA kernel): x and f must have the same dtype");
  TORCH_CHECK(x.is_contiguous() && f.is_contiguous(), "upfirdn2d (CUDA kernel): tensors must be contiguous");
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1");
  UpFirDn2dParams p;
  p.planes = x.size(0);
  p.in_h = checked_int(x.size(1), "height");
  p.in_w = checked_int(x.size(2), "width");
  p.taps_y = checked_int(f.size(0), "filter height");
  p.taps_x = checked_int(f.size(1), "filter width");
  const int64_t out_h = upfirdn_out_size(p.in_h, up_y, down_y, pad_y0, pad_y1, p.taps_y);
  const int64_t out_w = upfirdn_out_size(p.in_w, up_x, down_x, pad_x0, pad_x1, p.taps_x);
  TORCH_CHECK(out_h >= 1 && out_w >= 1, "upfirdn2d: empty output (", out_h, "x", out_w, ")");
  checked_int(static_cast<int64_t>(p.in_h) * up_y + std::abs(pad_y0) + std::abs(pad_y1), "padded height");
  checked_int(static_cast<int64_t>(p.in_w) * up_x + std::abs(pad_x0) + std::abs(pad_x1), "padded width");
  p.out_h = static_cast<int>(out_h);
  p.out_w = static_cast<int>(out_w);
  p.up_x = static_cast<int>(up_x);
  p.up_y = static_cast<int>(up_y);
  p.down_x = static_cast<int>(down_x);
  p.down_y = static_cast<int>(down_y);
  p.pad_x0 = static_cast<int>(pad_x0);
  p.pad_y0 = static_cast<int>(pad_y0);

  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty({p.planes, out_h, out_w}, x.options());
  check_launch(upfirdn2d_cuda_launch(cuda_dtype(x, "upfirdn2d"), x.const_data_ptr(), f.const_data_ptr(),
                                     y.data_ptr(), p, current_stream(x)),
               "upfirdn2d");
  return y;
}

// y = leaky_relu(x + bias[c], alpha) * gain with x [N, C, ...] contiguous and bias [C] (or None).
at::Tensor fused_leaky_relu(const at::Tensor& x, const c10::optional<at::Tensor>& bias, double alpha, double gain) {
  TORCH_CHECK(x.is_cuda() && x.is_contiguous(), "fused_leaky_relu (CUDA kernel): x must be a contiguous CUDA tensor");
  const bool has_bias = bias.has_value() && bias->defined();
  int64_t channels = 1;
  int64_t inner = 1;
  if (has_bias) {
    TORCH_CHECK(x.dim() >= 2 && bias->dim() == 1 && bias->size(0) == x.size(1),
                "fused_leaky_relu (CUDA kernel): bias must be [C] for x [N, C, ...]");
    TORCH_CHECK(bias->is_contiguous() && bias->scalar_type() == x.scalar_type() && bias->device() == x.device(),
                "fused_leaky_relu (CUDA kernel): bias must be contiguous, of x's dtype and on x's device");
    channels = x.size(1);
    for (int64_t d = 2; d < x.dim(); ++d) inner *= x.size(d);
  }
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty_like(x);
  check_launch(fused_leaky_relu_cuda_launch(cuda_dtype(x, "fused_leaky_relu"), x.const_data_ptr(),
                                            has_bias ? bias->const_data_ptr() : nullptr, y.data_ptr(), x.numel(),
                                            channels, inner, alpha, gain, current_stream(x)),
               "fused_leaky_relu");
  return y;
}

// dx = dy * gain * (y > 0 ? 1 : alpha); linear in dy, so it is also its own backward.
at::Tensor fused_leaky_relu_grad(const at::Tensor& dy, const at::Tensor& y, double alpha, double gain) {
  TORCH_CHECK(dy.is_cuda() && y.is_cuda() && dy.device() == y.device() && dy.is_contiguous() &&
                  y.is_contiguous() && dy.sizes() == y.sizes() && dy.scalar_type() == y.scalar_type(),
              "fused_leaky_relu_grad (CUDA kernel): dy and y must be contiguous CUDA tensors of equal shape, "
              "dtype and device");
  const c10::cuda::CUDAGuard guard(dy.device());
  at::Tensor dx = at::empty_like(dy);
  check_launch(fused_leaky_relu_grad_cuda_launch(cuda_dtype(dy, "fused_leaky_relu_grad"), dy.const_data_ptr(),
                                                 y.const_data_ptr(), dx.data_ptr(), dy.numel(), alpha, gain,
                                                 current_stream(dy)),
               "fused_leaky_relu_grad");
  return dx;
}

// One upfirdn2d launch: x [P, in_h, in_w] -> a new [P, out_h, out_w] tensor.
at::Tensor upfirdn_launch(const at::Tensor& x, const at::Tensor& f, int taps_x, int taps_y, int up_x, int up_y,
                          int down_x, int down_y, int pad_x0, int pad_x1, int pad_y0, int pad_y1) {
  UpFirDn2dParams p;
  p.planes = x.size(0);
  p.in_h = static_cast<int>(x.size(1));
  p.in_w = static_cast<int>(x.size(2));
  p.taps_y = taps_y;
  p.taps_x = taps_x;
  const int64_t out_h = upfirdn_out_size(p.in_h, up_y, down_y, pad_y0, pad_y1, taps_y);
  const int64_t out_w = upfirdn_out_size(p.in_w, up_x, down_x, pad_x0, pad_x1, taps_x);
  TORCH_CHECK(out_h >= 1 && out_w >= 1, "filtered_lrelu: empty output (", out_h, "x", out_w, ")");
  checked_int(static_cast<int64_t>(p.in_h) * up_y + std::abs(pad_y0) + std::abs(pad_y1), "padded height");
  checked_int(static_cast<int64_t>(p.in_w) * up_x + std::abs(pad_x0) + std::abs(pad_x1), "padded width");
  p.out_h = static_cast<int>(out_h);
  p.out_w = static_cast<int>(out_w);
  p.up_x = up_x;
  p.up_y = up_y;
  p.down_x = down_x;
  p.down_y = down_y;
  p.pad_x0 = pad_x0;
  p.pad_y0 = pad_y0;
  at::Tensor y = at::empty({p.planes, out_h, out_w}, x.options());
  check_launch(upfirdn2d_cuda_launch(cuda_dtype(x, "filtered_lrelu"), x.const_data_ptr(), f.const_data_ptr(),
                                     y.data_ptr(), p, current_stream(x)),
               "filtered_lrelu");
  return y;
}

// One FIR stage: a separable [K] filter is two launches (along x as [1, K], then along y as [K, 1]: the
// same memory), a [Ky, Kx] filter one. s = [up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1].
at::Tensor fir_stage(const at::Tensor& x, const at::Tensor& f, const std::vector<int64_t>& s, const char* name) {
  TORCH_CHECK(s.size() == 8, "filtered_lrelu: ", name, " parameters must be [up_x, up_y, down_x, down_y, "
              "pad_x0, pad_x1, pad_y0, pad_y1]");
  TORCH_CHECK(f.dim() == 1 || f.dim() == 2, "filtered_lrelu: ", name, " filter must be [K] or [Ky, Kx]");
  TORCH_CHECK(s[0] >= 1 && s[1] >= 1 && s[2] >= 1 && s[3] >= 1, "filtered_lrelu: up and down must be >= 1");
  int v[8];
  for (int i = 0; i < 8; ++i) v[i] = static_cast<int>(s[i]);
  if (f.dim() == 2) {
    return upfirdn_launch(x, f, checked_int(f.size(1), "filter width"), checked_int(f.size(0), "filter height"),
                          v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
  }
  const int taps = checked_int(f.size(0), "filter length");
  const at::Tensor rows = upfirdn_launch(x, f, taps, 1, v[0], 1, v[2], 1, v[4], v[5], 0, 0);
  return upfirdn_launch(rows, f, 1, taps, 1, v[1], 1, v[3], 0, 0, v[6], v[7]);
}

// Same interface as the CPU kernel: x [P, H, W]; bias [C] or None (plane p uses bias[p % C]); f1, f2 [K] or
// [Ky, Kx]; mask None (compute) or uint8 [P, Hs, Ws] (apply); clamp < 0: none. Returns [y, mask].
std::vector<at::Tensor> filtered_lrelu(const at::Tensor& x, const c10::optional<at::Tensor>& bias,
                                       const at::Tensor& f1, const std::vector<int64_t>& s1, const at::Tensor& f2,
                                       const std::vector<int64_t>& s2, const c10::optional<at::Tensor>& mask,
                                       double gain, double slope, double clamp, bool write_mask) {
  TORCH_CHECK(x.is_cuda() && f1.device() == x.device() && f2.device() == x.device(),
              "filtered_lrelu (CUDA kernel): x and the filters must be on the same CUDA device");
  TORCH_CHECK(x.dim() == 3 && x.is_contiguous(), "filtered_lrelu (CUDA kernel): x must be contiguous [planes, H, W]");
  TORCH_CHECK(f1.scalar_type() == x.scalar_type() && f2.scalar_type() == x.scalar_type() && f1.is_contiguous() &&
                  f2.is_contiguous(),
              "filtered_lrelu (CUDA kernel): filters must be contiguous, of x's dtype");
  checked_int(x.size(1), "height");
  checked_int(x.size(2), "width");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor in = x;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) >= 1 && bias->is_contiguous() && bias->device() == x.device() &&
                    bias->scalar_type() == x.scalar_type() && x.size(0) % bias->size(0) == 0,
                "filtered_lrelu (CUDA kernel): bias must be a contiguous [C] tensor of x's dtype and device, "
                "C dividing planes");
    in = at::empty_like(x);
    // leaky_relu with slope 1 and gain 1 is the identity: this launch is a plain bias add.
    check_launch(fused_leaky_relu_cuda_launch(cuda_dtype(x, "filtered_lrelu"), x.const_data_ptr(),
                                              bias->const_data_ptr(), in.data_ptr(), x.numel(), bias->size(0),
                                              x.size(1) * x.size(2), 1.0, 1.0, current_stream(x)),
                 "filtered_lrelu");
  }
  at::Tensor mid = fir_stage(in, f1, s1, "stage 1");
  const bool apply = mask.has_value() && mask->defined();
  if (apply) {
    TORCH_CHECK(mask->scalar_type() == at::kByte && mask->is_contiguous() && mask->device() == x.device() &&
                    mask->sizes() == mid.sizes(),
                "filtered_lrelu (CUDA kernel): mask must be contiguous uint8 of the intermediate's shape");
  }
  const bool record = write_mask && !apply;
  at::Tensor mask_out = at::empty({record ? mid.size(0) : 0, mid.size(1), mid.size(2)}, x.options().dtype(at::kByte));
  check_launch(filtered_lrelu_act_cuda_launch(cuda_dtype(x, "filtered_lrelu"), mid.data_ptr(),
                                              apply ? mask->const_data_ptr<uint8_t>() : nullptr,
                                              record ? mask_out.data_ptr<uint8_t>() : nullptr, mid.numel(), gain,
                                              slope, clamp, current_stream(x)),
               "filtered_lrelu");
  return {fir_stage(mid, f2, s2, "stage 2"), mask_out};
}

}  // namespace
}  // namespace latentedit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "latentedit custom ops, CUDA kernels";
  m.def("upfirdn2d", &latentedit::upfirdn2d, "upfirdn2d on x [planes, H, W] with filter f [Ky, Kx]",
        pybind11::arg("x"), pybind11::arg("f"), pybind11::arg("up_x"), pybind11::arg("up_y"), pybind11::arg("down_x"),
        pybind11::arg("down_y"), pybind11::arg("pad_x0"), pybind11::arg("pad_x1"), pybind11::arg("pad_y0"),
        pybind11::arg("pad_y1"));
  m.def("fused_leaky_relu", &latentedit::fused_leaky_relu, "leaky_relu(x + bias[c], alpha) * gain",
        pybind11::arg("x"), pybind11::arg("bias"), pybind11::arg("alpha"), pybind11::arg("gain"));
  m.def("fused_leaky_relu_grad", &latentedit::fused_leaky_relu_grad, "dy * gain * (y > 0 ? 1 : alpha)",
        pybind11::arg("dy"), pybind11::arg("y"), pybind11::arg("alpha"), pybind11::arg("gain"));
  m.def("filtered_lrelu", &latentedit::filtered_lrelu,
        "stage2(middle(stage1(x + bias))) per plane of x [planes, H, W]; returns [y, mask]", pybind11::arg("x"),
        pybind11::arg("bias"), pybind11::arg("f1"), pybind11::arg("s1"), pybind11::arg("f2"), pybind11::arg("s2"),
        pybind11::arg("mask"), pybind11::arg("gain"), pybind11::arg("slope"), pybind11::arg("clamp"),
        pybind11::arg("write_mask"));
}
