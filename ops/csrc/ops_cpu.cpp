// CPU kernels of latentedit's custom ops: upfirdn2d, fused bias + leaky ReLU (forward and the
// mask-and-scale used by its backward) and StyleGAN3's filtered_lrelu (forward and the masked filter
// pair its backward is made of). Parallelised over rows with at::parallel_for, which is OpenMP
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
#include <pybind11/stl.h>

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


// ---- filtered_lrelu --------------------------------------------------------------------------------
//
// One call computes, for every plane of x [P, H, W]:
//
//   y = stage2(middle(stage1(x + bias[p % C])))
//
// where each stage is an upfirdn2d with its own filter (1-D [K]: separable, applied along x then y;
// 2-D [Ky, Kx]: as is), up, down and padding, and `middle` is either
//   compute: v -> clamp(gain * leaky_relu(v, slope), -clamp, clamp), optionally recording per sample
//            0 (v <= 0), 1 (v > 0) or 2 (clamped) in a uint8 mask [P, Hs, Ws]; or
//   apply:   v -> v * {gain * slope, gain, 0}[mask] (the derivative of `compute`, for the backward).
// A plane is finished by one thread in a fixed order, so the result does not depend on the number of
// threads; the intermediates of one plane stay in per-thread buffers (cache-sized for StyleGAN3's layers)
// instead of full-size tensors.

// Geometry of one axis of one stage.
struct FirAxis {
  int taps, up, down, pad0, in, out;
};

struct FirStage {
  bool separable;
  FirAxis x, y;
  std::vector<AxisTaps> taps_x, taps_y;  // per output column / row
  int padded_h, padded_w, phase_w;       // 2-D filters: the zero-inserted, padded grid and its phase width
  int64_t work_size;                     // samples of scratch run_stage needs
};

FirStage make_stage(const at::Tensor& f, const std::vector<int64_t>& s, int in_h, int in_w, const char* name) {
  TORCH_CHECK(s.size() == 8, "filtered_lrelu: ", name, " parameters must be [up_x, up_y, down_x, down_y, "
              "pad_x0, pad_x1, pad_y0, pad_y1]");
  TORCH_CHECK(f.dim() == 1 || f.dim() == 2, "filtered_lrelu: ", name, " filter must be [K] or [Ky, Kx]");
  TORCH_CHECK(s[0] >= 1 && s[1] >= 1 && s[2] >= 1 && s[3] >= 1, "filtered_lrelu: up and down must be >= 1");
  FirStage st;
  st.separable = f.dim() == 1;
  const int taps_x = checked_int(f.size(f.dim() - 1), "filter width");
  const int taps_y = checked_int(f.size(0), "filter height");
  const int64_t out_w = upfirdn_out_size(in_w, static_cast<int>(s[0]), static_cast<int>(s[2]),
                                         static_cast<int>(s[4]), static_cast<int>(s[5]), taps_x);
  const int64_t out_h = upfirdn_out_size(in_h, static_cast<int>(s[1]), static_cast<int>(s[3]),
                                         static_cast<int>(s[6]), static_cast<int>(s[7]), taps_y);
  TORCH_CHECK(out_h >= 1 && out_w >= 1, "filtered_lrelu: ", name, " has an empty output (", out_h, "x", out_w, ")");
  checked_int(static_cast<int64_t>(in_h) * s[1] + std::abs(s[6]) + std::abs(s[7]), "padded height");
  checked_int(static_cast<int64_t>(in_w) * s[0] + std::abs(s[4]) + std::abs(s[5]), "padded width");
  st.x = {taps_x, static_cast<int>(s[0]), static_cast<int>(s[2]), static_cast<int>(s[4]), in_w,
          static_cast<int>(out_w)};
  st.y = {taps_y, static_cast<int>(s[1]), static_cast<int>(s[3]), static_cast<int>(s[6]), in_h,
          static_cast<int>(out_h)};
  st.taps_x.resize(out_w);
  st.taps_y.resize(out_h);
  for (int o = 0; o < out_w; ++o) st.taps_x[o] = axis_taps(o, in_w, st.x.up, st.x.down, st.x.pad0, taps_x);
  for (int o = 0; o < out_h; ++o) st.taps_y[o] = axis_taps(o, in_h, st.y.up, st.y.down, st.y.pad0, taps_y);
  // The rows and columns the output windows read (the padded grid, cropped by negative pads); the last
  // window ends inside it by construction of the output size.
  st.padded_h = static_cast<int>((out_h - 1) * st.y.down + taps_y);
  st.padded_w = static_cast<int>((out_w - 1) * st.x.down + taps_x);
  st.phase_w = (st.padded_w + st.x.down - 1) / st.x.down;
  st.work_size = st.separable ? static_cast<int64_t>(in_h) * out_w
                              : static_cast<int64_t>(st.padded_h) * st.phase_w * st.x.down;
  return st;
}

// Filter along x: in [rows, ax.in] -> out [rows, ax.out] with the 1-D filter f [ax.taps].
template <typename scalar_t>
void fir_along_x(const scalar_t* __restrict__ in, scalar_t* __restrict__ out, int rows, const FirAxis& ax,
                 const std::vector<AxisTaps>& taps, const scalar_t* __restrict__ f) {
  for (int r = 0; r < rows; ++r) {
    const scalar_t* in_row = in + static_cast<int64_t>(r) * ax.in;
    scalar_t* out_row = out + static_cast<int64_t>(r) * ax.out;
    for (int o = 0; o < ax.out; ++o) {
      const AxisTaps& t = taps[o];
      const scalar_t* x_run = in_row + t.i_first;
      const scalar_t* f_run = f + (ax.taps - 1 - t.k_first);  // walked backwards: a true convolution
      scalar_t acc = 0;
      for (int s = 0; s < t.count; ++s) acc += x_run[s] * f_run[-s * ax.up];
      out_row[o] = acc;
    }
  }
}

// Filter along y: in [ax.in, width] -> out [ax.out, width]; whole rows at a time, so the inner loop is a
// vectorisable multiply-add over contiguous samples.
template <typename scalar_t>
void fir_along_y(const scalar_t* __restrict__ in, scalar_t* __restrict__ out, int width, const FirAxis& ax,
                 const std::vector<AxisTaps>& taps, const scalar_t* __restrict__ f) {
  for (int o = 0; o < ax.out; ++o) {
    const AxisTaps& t = taps[o];
    scalar_t* __restrict__ out_row = out + static_cast<int64_t>(o) * width;
    std::fill(out_row, out_row + width, scalar_t(0));
    for (int s = 0; s < t.count; ++s) {
      const scalar_t w = f[ax.taps - 1 - (t.k_first + s * ax.up)];
      const scalar_t* __restrict__ in_row = in + static_cast<int64_t>(t.i_first + s) * width;
      for (int i = 0; i < width; ++i) out_row[i] += w * in_row[i];
    }
  }
}

// Full 2-D filter f [Ky, Kx]: in [st.y.in, st.x.in] -> out [st.y.out, st.x.out]. The input is written once,
// zero-inserted and padded, into `work` split into the `down_x` column phases of the padded grid, so that
// every tap is a multiply-add over contiguous samples of one output row (a direct loop over the taps of each
// output sample cannot vectorise and ran at half the speed of PyTorch's depthwise convolution).
template <typename scalar_t>
void fir_2d(const scalar_t* __restrict__ in, scalar_t* __restrict__ out, const FirStage& st,
            const scalar_t* __restrict__ f, scalar_t* __restrict__ work) {
  const int dx = st.x.down;
  const int dy = st.y.down;
  const int64_t phase_size = static_cast<int64_t>(st.padded_h) * st.phase_w;
  std::fill(work, work + phase_size * dx, scalar_t(0));
  for (int iy = 0; iy < st.y.in; ++iy) {
    const int py = iy * st.y.up + st.y.pad0;
    if (py < 0 || py >= st.padded_h) continue;
    for (int ix = 0; ix < st.x.in; ++ix) {
      const int px = ix * st.x.up + st.x.pad0;
      if (px < 0 || px >= st.padded_w) continue;
      work[(px % dx) * phase_size + static_cast<int64_t>(py) * st.phase_w + px / dx] =
          in[static_cast<int64_t>(iy) * st.x.in + ix];
    }
  }
  const int taps_x = st.x.taps;
  const int taps_y = st.y.taps;
  for (int oy = 0; oy < st.y.out; ++oy) {
    scalar_t* __restrict__ out_row = out + static_cast<int64_t>(oy) * st.x.out;
    std::fill(out_row, out_row + st.x.out, scalar_t(0));
    for (int ky = 0; ky < taps_y; ++ky) {
      const int64_t row = static_cast<int64_t>(oy) * dy + ky;
      for (int kx = 0; kx < taps_x; ++kx) {
        // Correlation with the flipped filter: tap (ky, kx) of the window meets f[Ky-1-ky][Kx-1-kx].
        const scalar_t w = f[static_cast<int64_t>(taps_y - 1 - ky) * taps_x + (taps_x - 1 - kx)];
        const scalar_t* __restrict__ q = work + (kx % dx) * phase_size + row * st.phase_w + kx / dx;
        for (int ox = 0; ox < st.x.out; ++ox) out_row[ox] += w * q[ox];
      }
    }
  }
}

// One stage on one plane; `tmp` holds at least st.work_size samples.
template <typename scalar_t>
void run_stage(const scalar_t* in, scalar_t* out, scalar_t* tmp, const FirStage& st, const scalar_t* f) {
  if (st.separable) {
    fir_along_x<scalar_t>(in, tmp, st.y.in, st.x, st.taps_x, f);
    fir_along_y<scalar_t>(tmp, out, st.x.out, st.y, st.taps_y, f);
  } else {
    fir_2d<scalar_t>(in, out, st, f, tmp);
  }
}

template <typename scalar_t>
void activate(scalar_t* __restrict__ v, uint8_t* __restrict__ mask, int64_t n, scalar_t positive, scalar_t negative,
              bool has_clamp, scalar_t clamp) {
  for (int64_t i = 0; i < n; ++i) {
    const bool up = v[i] > 0;  // leaky_relu's backward: slope at exactly 0, as in PyTorch
    scalar_t value = v[i] * (up ? positive : negative);
    uint8_t code = up ? 1 : 0;
    if (has_clamp && (value > clamp || value < -clamp)) {  // torch.clamp passes the gradient at the bound
      value = value > 0 ? clamp : -clamp;
      code = 2;
    }
    v[i] = value;
    if (mask != nullptr) mask[i] = code;
  }
}

template <typename scalar_t>
void apply_mask(scalar_t* __restrict__ v, const uint8_t* __restrict__ mask, int64_t n, scalar_t positive,
                scalar_t negative) {
  const scalar_t scale[3] = {negative, positive, scalar_t(0)};
  for (int64_t i = 0; i < n; ++i) v[i] *= scale[mask[i] < 3 ? mask[i] : 2];
}

// x [P, H, W]; bias [C] or None (plane p uses bias[p % C]); f1, f2: [K] or [Ky, Kx] of x's dtype;
// s1, s2: [up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1]; mask: None (compute) or uint8
// [P, Hs, Ws] (apply); clamp < 0: none. Returns [y [P, outH, outW], mask] (mask empty unless written).
std::vector<at::Tensor> filtered_lrelu(const at::Tensor& x, const c10::optional<at::Tensor>& bias,
                                       const at::Tensor& f1, const std::vector<int64_t>& s1, const at::Tensor& f2,
                                       const std::vector<int64_t>& s2, const c10::optional<at::Tensor>& mask,
                                       double gain, double slope, double clamp, bool write_mask) {
  TORCH_CHECK(x.device().is_cpu() && f1.device().is_cpu() && f2.device().is_cpu(),
              "filtered_lrelu (CPU kernel): tensors must be on the CPU");
  TORCH_CHECK(x.dim() == 3 && x.is_contiguous(), "filtered_lrelu (CPU kernel): x must be contiguous [planes, H, W]");
  TORCH_CHECK(f1.scalar_type() == x.scalar_type() && f2.scalar_type() == x.scalar_type() && f1.is_contiguous() &&
                  f2.is_contiguous(),
              "filtered_lrelu (CPU kernel): filters must be contiguous, of x's dtype");
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) >= 1 && bias->is_contiguous() && bias->device().is_cpu() &&
                    bias->scalar_type() == x.scalar_type() && x.size(0) % bias->size(0) == 0,
                "filtered_lrelu (CPU kernel): bias must be a contiguous [C] CPU tensor of x's dtype, C dividing planes");
  }
  const int64_t planes = x.size(0);
  const FirStage st1 = make_stage(f1, s1, checked_int(x.size(1), "height"), checked_int(x.size(2), "width"), "stage 1");
  const FirStage st2 = make_stage(f2, s2, st1.y.out, st1.x.out, "stage 2");
  const int64_t mid_size = static_cast<int64_t>(st1.y.out) * st1.x.out;
  const bool apply = mask.has_value() && mask->defined();
  if (apply) {
    TORCH_CHECK(mask->scalar_type() == at::kByte && mask->is_contiguous() && mask->dim() == 3 &&
                    mask->size(0) == planes && mask->size(1) == st1.y.out && mask->size(2) == st1.x.out,
                "filtered_lrelu (CPU kernel): mask must be contiguous uint8 [planes, ", st1.y.out, ", ", st1.x.out, "]");
  }
  const bool record = write_mask && !apply;
  at::Tensor y = at::empty({planes, st2.y.out, st2.x.out}, x.options());
  at::Tensor mask_out = at::empty({record ? planes : 0, st1.y.out, st1.x.out}, x.options().dtype(at::kByte));
  if (planes == 0) return {y, mask_out};
  const int64_t in_size = x.size(1) * x.size(2);
  const int64_t out_size = static_cast<int64_t>(st2.y.out) * st2.x.out;
  const int64_t tmp_size = std::max<int64_t>(st1.work_size, st2.work_size);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "filtered_lrelu_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* bp = has_bias ? bias->const_data_ptr<scalar_t>() : nullptr;
    const int64_t channels = has_bias ? bias->size(0) : 1;
    const scalar_t* f1p = f1.const_data_ptr<scalar_t>();
    const scalar_t* f2p = f2.const_data_ptr<scalar_t>();
    const uint8_t* mask_in = apply ? mask->const_data_ptr<uint8_t>() : nullptr;
    uint8_t* mask_rec = record ? mask_out.data_ptr<uint8_t>() : nullptr;
    scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t positive = static_cast<scalar_t>(gain);
    const scalar_t negative = static_cast<scalar_t>(gain * slope);
    const bool has_clamp = clamp >= 0;
    const scalar_t clamp_value = static_cast<scalar_t>(has_clamp ? clamp : 0);
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> biased(has_bias ? in_size : 0), mid(mid_size), tmp(tmp_size);
      for (int64_t p = begin; p < end; ++p) {
        const scalar_t* in = xp + p * in_size;
        if (has_bias) {
          const scalar_t b = bp[p % channels];
          for (int64_t i = 0; i < in_size; ++i) biased[i] = in[i] + b;
          in = biased.data();
        }
        run_stage<scalar_t>(in, mid.data(), tmp.data(), st1, f1p);
        if (apply) {
          apply_mask<scalar_t>(mid.data(), mask_in + p * mid_size, mid_size, positive, negative);
        } else {
          activate<scalar_t>(mid.data(), record ? mask_rec + p * mid_size : nullptr, mid_size, positive, negative,
                             has_clamp, clamp_value);
        }
        run_stage<scalar_t>(mid.data(), yp + p * out_size, tmp.data(), st2, f2p);
      }
    });
  });
  return {y, mask_out};
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
  m.def("filtered_lrelu", &latentedit::filtered_lrelu,
        "stage2(middle(stage1(x + bias))) per plane of x [planes, H, W]; returns [y, mask]", pybind11::arg("x"),
        pybind11::arg("bias"), pybind11::arg("f1"), pybind11::arg("s1"), pybind11::arg("f2"), pybind11::arg("s2"),
        pybind11::arg("mask"), pybind11::arg("gain"), pybind11::arg("slope"), pybind11::arg("clamp"),
        pybind11::arg("write_mask"));
}
