// CPU kernels of latentedit's custom ops: upfirdn2d and fused bias + leaky ReLU (forward and the
// mask-and-scale used by its backward). Parallelised over rows with at::parallel_for, which is OpenMP
// in PyTorch's CPU builds and honours torch.set_num_threads.
//
// Only the headers that are needed are included (not torch/extension.h) because they halve the
// compile time of the JIT build.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "ops_common.h"

namespace latentedit {
namespace {

// Work below this many multiply-adds per chunk is not worth a thread.
constexpr int64_t kGrainElements = 32768;

// The element loops live in functions that take restrict pointers and values (not lambda captures
// by reference, which the compiler must assume may alias the output): that is what lets them vectorise.
template <typename scalar_t>
void bias_leaky_relu_run(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, int64_t n, scalar_t bias,
                         scalar_t positive, scalar_t negative) {
  // A select between two constants and one multiply: gcc vectorises this form (not `v > 0 ? v : v * a`).
  for (int64_t i = 0; i < n; ++i) {
    const scalar_t v = x[i] + bias;
    y[i] = v * (v > 0 ? positive : negative);
  }
}

template <typename scalar_t>
void mask_scale_run(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ y, scalar_t* __restrict__ dx,
                    int64_t n, scalar_t positive, scalar_t negative) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (y[i] > 0 ? positive : negative);
}

template <typename scalar_t>
void upfirdn2d_rows(const scalar_t* x, const scalar_t* f, scalar_t* y, int64_t planes, int in_h, int in_w,
                    int out_h, int out_w, int taps_y, int taps_x, int up_x, int up_y, int down_x, int down_y,
                    int pad_x0, int pad_y0) {
  // The horizontal tap ranges are the same for every row of every plane: compute them once.
  std::vector<AxisTaps> col_taps(out_w);
  for (int ox = 0; ox < out_w; ++ox) col_taps[ox] = axis_taps(ox, in_w, up_x, down_x, pad_x0, taps_x);

  const int64_t rows = planes * out_h;
  const int64_t work_per_row = std::max<int64_t>(1, static_cast<int64_t>(out_w) * taps_x * taps_y / (up_x * up_y));
  const int64_t grain = std::max<int64_t>(1, kGrainElements / work_per_row);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t plane = row / out_h;
      const int oy = static_cast<int>(row % out_h);
      const AxisTaps row_taps = axis_taps(oy, in_h, up_y, down_y, pad_y0, taps_y);
      const scalar_t* x_plane = x + plane * in_h * in_w;
      scalar_t* y_row = y + row * out_w;
      for (int ox = 0; ox < out_w; ++ox) {
        const AxisTaps& ct = col_taps[ox];
        scalar_t acc = 0;
        for (int sy = 0; sy < row_taps.count; ++sy) {
          const scalar_t* x_run = x_plane + static_cast<int64_t>(row_taps.i_first + sy) * in_w + ct.i_first;
          // Walking the filter backwards: the convolution is a correlation with the flipped filter.
          const scalar_t* f_run = f + static_cast<int64_t>(taps_y - 1 - (row_taps.k_first + sy * up_y)) * taps_x +
                                  (taps_x - 1 - ct.k_first);
          for (int sx = 0; sx < ct.count; ++sx) acc += x_run[sx] * f_run[-sx * up_x];
        }
        y_row[ox] = acc;
      }
    }
  });
}

int checked_int(int64_t value, const char* what) {
  TORCH_CHECK(value >= 0 && value <= INT32_MAX, what, " out of range: ", value);
  return static_cast<int>(value);
}

// x [P, H, W] (P = N*C planes), f [Ky, Kx]; both contiguous, same dtype. Returns [P, outH, outW].
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                     int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1) {
  TORCH_CHECK(x.device().is_cpu() && f.device().is_cpu(), "upfirdn2d (CPU kernel): tensors must be on the CPU");
  TORCH_CHECK(x.dim() == 3, "upfirdn2d (CPU kernel): x must be [planes, H, W]");
  TORCH_CHECK(f.dim() == 2, "upfirdn2d (CPU kernel): f must be [Ky, Kx]");
  TORCH_CHECK(x.scalar_type() == f.scalar_type(), "upfirdn2d (CPU kernel): x and f must have the same dtype");
  TORCH_CHECK(x.is_contiguous() && f.is_contiguous(), "upfirdn2d (CPU kernel): tensors must be contiguous");
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1");
  const int64_t planes = x.size(0);
  const int in_h = checked_int(x.size(1), "height");
  const int in_w = checked_int(x.size(2), "width");
  const int taps_y = checked_int(f.size(0), "filter height");
  const int taps_x = checked_int(f.size(1), "filter width");
  const int64_t out_h = upfirdn_out_size(in_h, up_y, down_y, pad_y0, pad_y1, taps_y);
  const int64_t out_w = upfirdn_out_size(in_w, up_x, down_x, pad_x0, pad_x1, taps_x);
  TORCH_CHECK(out_h >= 1 && out_w >= 1, "upfirdn2d: empty output (", out_h, "x", out_w, ")");
  checked_int(static_cast<int64_t>(in_h) * up_y + std::abs(pad_y0) + std::abs(pad_y1), "padded height");
  checked_int(static_cast<int64_t>(in_w) * up_x + std::abs(pad_x0) + std::abs(pad_x1), "padded width");

  at::Tensor y = at::empty({planes, out_h, out_w}, x.options());
  if (planes == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "upfirdn2d_cpu", [&] {
    upfirdn2d_rows<scalar_t>(x.const_data_ptr<scalar_t>(), f.const_data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                             planes, in_h, in_w, static_cast<int>(out_h), static_cast<int>(out_w), taps_y, taps_x,
                             static_cast<int>(up_x), static_cast<int>(up_y), static_cast<int>(down_x),
                             static_cast<int>(down_y), static_cast<int>(pad_x0), static_cast<int>(pad_y0));
  });
  return y;
}

// Elements of x that share one bias value form runs of `inner` = prod(shape[2:]) contiguous elements;
// runs cycle through the C channels.
int64_t inner_size(const at::Tensor& x) {
  int64_t inner = 1;
  for (int64_t d = 2; d < x.dim(); ++d) inner *= x.size(d);
  return inner;
}

// y = leaky_relu(x + bias[c], alpha) * gain with x [N, C, ...] contiguous and bias [C] (or None).
at::Tensor fused_leaky_relu(const at::Tensor& x, const c10::optional<at::Tensor>& bias, double alpha, double gain) {
  TORCH_CHECK(x.device().is_cpu(), "fused_leaky_relu (CPU kernel): x must be on the CPU");
  TORCH_CHECK(x.is_contiguous(), "fused_leaky_relu (CPU kernel): x must be contiguous");
  const bool has_bias = bias.has_value() && bias->defined();
  int64_t channels = 1;
  int64_t inner = 1;
  if (has_bias) {
    TORCH_CHECK(x.dim() >= 2 && bias->dim() == 1 && bias->size(0) == x.size(1),
                "fused_leaky_relu (CPU kernel): bias must be [C] for x [N, C, ...]");
    TORCH_CHECK(bias->is_contiguous() && bias->scalar_type() == x.scalar_type() && bias->device().is_cpu(),
                "fused_leaky_relu (CPU kernel): bias must be a contiguous CPU tensor of x's dtype");
    channels = x.size(1);
    inner = inner_size(x);
  }
  at::Tensor y = at::empty_like(x);
  const int64_t numel = x.numel();
  if (numel == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_leaky_relu_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* bp = has_bias ? bias->const_data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t positive = static_cast<scalar_t>(gain);
    const scalar_t negative = static_cast<scalar_t>(gain * alpha);
    // Consecutive runs of `inner` elements share one bias value, so the innermost loop is a plain
    // vectorisable map; chunks are split by element count so that small C or no bias still parallelises.
    const int64_t run_length = has_bias ? inner : numel;
    at::parallel_for(0, numel, kGrainElements, [&](int64_t begin, int64_t end) {
      int64_t i = begin;
      while (i < end) {
        const int64_t run = i / run_length;
        const int64_t run_end = std::min(end, (run + 1) * run_length);
        const scalar_t b = has_bias ? bp[run % channels] : scalar_t(0);
        bias_leaky_relu_run<scalar_t>(xp + i, yp + i, run_end - i, b, positive, negative);
        i = run_end;
      }
    });
  });
  return y;
}

// dx = dy * gain * (y > 0 ? 1 : alpha): the backward of fused_leaky_relu (for gain > 0, alpha >= 0,
// the sign of y is the sign of x + b). It is linear in dy, so it is also its own backward.
at::Tensor fused_leaky_relu_grad(const at::Tensor& dy, const at::Tensor& y, double alpha, double gain) {
  TORCH_CHECK(dy.device().is_cpu() && y.device().is_cpu(), "fused_leaky_relu_grad (CPU kernel): CPU tensors only");
  TORCH_CHECK(dy.is_contiguous() && y.is_contiguous() && dy.sizes() == y.sizes() &&
                  dy.scalar_type() == y.scalar_type(),
              "fused_leaky_relu_grad (CPU kernel): dy and y must be contiguous with equal shape and dtype");
  at::Tensor dx = at::empty_like(dy);
  const int64_t numel = dy.numel();
  if (numel == 0) return dx;
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "fused_leaky_relu_grad_cpu", [&] {
    const scalar_t* dyp = dy.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    scalar_t* dxp = dx.data_ptr<scalar_t>();
    const scalar_t positive = static_cast<scalar_t>(gain);
    const scalar_t negative = static_cast<scalar_t>(gain * alpha);
    at::parallel_for(0, numel, kGrainElements, [&](int64_t begin, int64_t end) {
      mask_scale_run<scalar_t>(dyp + begin, yp + begin, dxp + begin, end - begin, positive, negative);
    });
  });
  return dx;
}

}  // namespace
}  // namespace latentedit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "latentedit custom ops, CPU kernels";
  m.def("upfirdn2d", &latentedit::upfirdn2d, "upfirdn2d on x [planes, H, W] with filter f [Ky, Kx]",
        pybind11::arg("x"), pybind11::arg("f"), pybind11::arg("up_x"), pybind11::arg("up_y"), pybind11::arg("down_x"),
        pybind11::arg("down_y"), pybind11::arg("pad_x0"), pybind11::arg("pad_x1"), pybind11::arg("pad_y0"),
        pybind11::arg("pad_y1"));
  m.def("fused_leaky_relu", &latentedit::fused_leaky_relu, "leaky_relu(x + bias[c], alpha) * gain",
        pybind11::arg("x"), pybind11::arg("bias"), pybind11::arg("alpha"), pybind11::arg("gain"));
  m.def("fused_leaky_relu_grad", &latentedit::fused_leaky_relu_grad, "dy * gain * (y > 0 ? 1 : alpha)",
        pybind11::arg("dy"), pybind11::arg("y"), pybind11::arg("alpha"), pybind11::arg("gain"));
}
