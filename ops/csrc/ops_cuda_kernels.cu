// CUDA kernels of latentedit's custom ops. One thread per output element; half and bfloat16 are
// loaded and stored in their own type and computed in float.
//
// PyTorch compiles CUDA extensions with __CUDA_NO_HALF_OPERATORS__ and friends, so every conversion
// below goes through the explicit intrinsics.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "ops_common.h"
#include "ops_cuda.h"

namespace latentedit {
namespace {

constexpr int kThreads = 256;
// Grid-stride loops cover whatever a grid of this many blocks does not.
constexpr int64_t kMaxBlocks = 65535LL * 32;

template <typename T>
struct Compute {
  using type = T;
  __device__ static type load(T v) { return v; }
  __device__ static T store(type v) { return v; }
};

template <>
struct Compute<__half> {
  using type = float;
  __device__ static float load(__half v) { return __half2float(v); }
  __device__ static __half store(float v) { return __float2half(v); }
};

template <>
struct Compute<__nv_bfloat16> {
  using type = float;
  __device__ static float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 store(float v) { return __float2bfloat16(v); }
};

int blocks_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
}

template <typename T>
__global__ void upfirdn2d_kernel(const T* __restrict__ x, const T* __restrict__ f, T* __restrict__ y,
                                 UpFirDn2dParams p) {
  using C = Compute<T>;
  using acc_t = typename C::type;
  const int64_t total = p.planes * p.out_h * p.out_w;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int ox = static_cast<int>(idx % p.out_w);
    const int64_t row = idx / p.out_w;
    const int oy = static_cast<int>(row % p.out_h);
    const int64_t plane = row / p.out_h;
    const AxisTaps ty = axis_taps(oy, p.in_h, p.up_y, p.down_y, p.pad_y0, p.taps_y);
    const AxisTaps tx = axis_taps(ox, p.in_w, p.up_x, p.down_x, p.pad_x0, p.taps_x);
    const T* x_plane = x + plane * p.in_h * p.in_w;
    acc_t acc = acc_t(0);
    for (int sy = 0; sy < ty.count; ++sy) {
      const T* x_run = x_plane + static_cast<int64_t>(ty.i_first + sy) * p.in_w + tx.i_first;
      // Walking the filter backwards: the convolution is a correlation with the flipped filter.
      const T* f_run = f + static_cast<int64_t>(p.taps_y - 1 - (ty.k_first + sy * p.up_y)) * p.taps_x +
                       (p.taps_x - 1 - tx.k_first);
      for (int sx = 0; sx < tx.count; ++sx) acc += C::load(x_run[sx]) * C::load(f_run[-sx * p.up_x]);
    }
    y[idx] = C::store(acc);
  }
}

template <typename T>
__global__ void fused_leaky_relu_kernel(const T* __restrict__ x, const T* __restrict__ bias, T* __restrict__ y,
                                        int64_t numel, int64_t channels, int64_t inner, double alpha_d,
                                        double gain_d) {
  using C = Compute<T>;
  using acc_t = typename C::type;
  const acc_t alpha = static_cast<acc_t>(alpha_d);
  const acc_t gain = static_cast<acc_t>(gain_d);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    acc_t v = C::load(x[i]);
    if (bias != nullptr) v += C::load(bias[(i / inner) % channels]);
    y[i] = C::store((v > acc_t(0) ? v : v * alpha) * gain);
  }
}

template <typename T>
__global__ void fused_leaky_relu_grad_kernel(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx,
                                             int64_t numel, double alpha_d, double gain_d) {
  using C = Compute<T>;
  using acc_t = typename C::type;
  const acc_t positive = static_cast<acc_t>(gain_d);
  const acc_t negative = static_cast<acc_t>(gain_d * alpha_d);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    dx[i] = C::store(C::load(dy[i]) * (C::load(y[i]) > acc_t(0) ? positive : negative));
  }
}

template <typename T>
__global__ void filtered_lrelu_act_kernel(T* __restrict__ v, const uint8_t* __restrict__ mask_in,
                                          uint8_t* __restrict__ mask_out, int64_t numel, double gain_d,
                                          double slope_d, double clamp_d) {
  using C = Compute<T>;
  using acc_t = typename C::type;
  const acc_t positive = static_cast<acc_t>(gain_d);
  const acc_t negative = static_cast<acc_t>(gain_d * slope_d);
  const bool has_clamp = clamp_d >= 0;
  const acc_t clamp = static_cast<acc_t>(has_clamp ? clamp_d : 0);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const acc_t value = C::load(v[i]);
    if (mask_in != nullptr) {
      const uint8_t code = mask_in[i];
      v[i] = C::store(code == 1 ? value * positive : (code == 0 ? value * negative : acc_t(0)));
      continue;
    }
    const bool up = value > acc_t(0);  // leaky_relu's backward: slope at exactly 0, as in PyTorch
    acc_t out = value * (up ? positive : negative);
    uint8_t code = up ? 1 : 0;
    if (has_clamp && (out > clamp || out < -clamp)) {  // torch.clamp passes the gradient at the bound
      out = out > acc_t(0) ? clamp : -clamp;
      code = 2;
    }
    v[i] = C::store(out);
    if (mask_out != nullptr) mask_out[i] = code;
  }
}

const char* last_error() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

template <typename T>
const char* upfirdn2d_typed(const void* x, const void* f, void* y, const UpFirDn2dParams& p, cudaStream_t stream) {
  const int64_t total = p.planes * p.out_h * p.out_w;
  if (total == 0) return nullptr;
  upfirdn2d_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(f), static_cast<T*>(y), p);
  return last_error();
}

template <typename T>
const char* fused_leaky_relu_typed(const void* x, const void* bias, void* y, int64_t numel, int64_t channels,
                                   int64_t inner, double alpha, double gain, cudaStream_t stream) {
  if (numel == 0) return nullptr;
  fused_leaky_relu_kernel<T><<<blocks_for(numel), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(bias), static_cast<T*>(y), numel, channels, inner,
      alpha, gain);
  return last_error();
}

template <typename T>
const char* fused_leaky_relu_grad_typed(const void* dy, const void* y, void* dx, int64_t numel, double alpha,
                                        double gain, cudaStream_t stream) {
  if (numel == 0) return nullptr;
  fused_leaky_relu_grad_kernel<T><<<blocks_for(numel), kThreads, 0, stream>>>(
      static_cast<const T*>(dy), static_cast<const T*>(y), static_cast<T*>(dx), numel, alpha, gain);
  return last_error();
}

template <typename T>
const char* filtered_lrelu_act_typed(void* v, const uint8_t* mask_in, uint8_t* mask_out, int64_t numel, double gain,
                                     double slope, double clamp, cudaStream_t stream) {
  if (numel == 0) return nullptr;
  filtered_lrelu_act_kernel<T><<<blocks_for(numel), kThreads, 0, stream>>>(static_cast<T*>(v), mask_in, mask_out,
                                                                            numel, gain, slope, clamp);
  return last_error();
}

}  // namespace

const char* upfirdn2d_cuda_launch(CudaDType dtype, const void* x, const void* f, void* y,
                                  const UpFirDn2dParams& params, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case CudaDType::kHalf: return upfirdn2d_typed<__half>(x, f, y, params, s);
    case CudaDType::kBFloat16: return upfirdn2d_typed<__nv_bfloat16>(x, f, y, params, s);
    case CudaDType::kFloat: return upfirdn2d_typed<float>(x, f, y, params, s);
    case CudaDType::kDouble: return upfirdn2d_typed<double>(x, f, y, params, s);
  }
  return "unsupported dtype";
}

const char* fused_leaky_relu_cuda_launch(CudaDType dtype, const void* x, const void* bias, void* y, int64_t numel,
                                         int64_t channels, int64_t inner, double alpha, double gain, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case CudaDType::kHalf: return fused_leaky_relu_typed<__half>(x, bias, y, numel, channels, inner, alpha, gain, s);
    case CudaDType::kBFloat16:
      return fused_leaky_relu_typed<__nv_bfloat16>(x, bias, y, numel, channels, inner, alpha, gain, s);
    case CudaDType::kFloat: return fused_leaky_relu_typed<float>(x, bias, y, numel, channels, inner, alpha, gain, s);
    case CudaDType::kDouble: return fused_leaky_relu_typed<double>(x, bias, y, numel, channels, inner, alpha, gain, s);
  }
  return "unsupported dtype";
}

const char* fused_leaky_relu_grad_cuda_launch(CudaDType dtype, const void* dy, const void* y, void* dx, int64_t numel,
                                              double alpha, double gain, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case CudaDType::kHalf: return fused_leaky_relu_grad_typed<__half>(dy, y, dx, numel, alpha, gain, s);
    case CudaDType::kBFloat16: return fused_leaky_relu_grad_typed<__nv_bfloat16>(dy, y, dx, numel, alpha, gain, s);
    case CudaDType::kFloat: return fused_leaky_relu_grad_typed<float>(dy, y, dx, numel, alpha, gain, s);
    case CudaDType::kDouble: return fused_leaky_relu_grad_typed<double>(dy, y, dx, numel, alpha, gain, s);
  }
  return "unsupported dtype";
}

const char* filtered_lrelu_act_cuda_launch(CudaDType dtype, void* v, const uint8_t* mask_in, uint8_t* mask_out,
                                           int64_t numel, double gain, double slope, double clamp, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case CudaDType::kHalf: return filtered_lrelu_act_typed<__half>(v, mask_in, mask_out, numel, gain, slope, clamp, s);
    case CudaDType::kBFloat16:
      return filtered_lrelu_act_typed<__nv_bfloat16>(v, mask_in, mask_out, numel, gain, slope, clamp, s);
    case CudaDType::kFloat: return filtered_lrelu_act_typed<float>(v, mask_in, mask_out, numel, gain, slope, clamp, s);
    case CudaDType::kDouble: return filtered_lrelu_act_typed<double>(v, mask_in, mask_out, numel, gain, slope, clamp, s);
  }
  return "unsupported dtype";
}

}  // namespace latentedit
