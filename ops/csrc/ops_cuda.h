// Interface between the CUDA kernels (ops_cuda_kernels.cu, compiled by nvcc without any PyTorch
// header, which keeps the nvcc step short) and the PyTorch bindings (ops_cuda.cpp).
//
// Every launcher returns nullptr on success or the CUDA error string. Pointers are device pointers to
// contiguous data of the given dtype; `stream` is a cudaStream_t.
#pragma once

#include <cstdint>

namespace latentedit {

enum class CudaDType : int { kHalf = 0, kBFloat16 = 1, kFloat = 2, kDouble = 3 };

struct UpFirDn2dParams {
  int64_t planes;  // N * C
  int in_h, in_w, out_h, out_w;
  int taps_y, taps_x;
  int up_x, up_y, down_x, down_y;
  int pad_x0, pad_y0;
};

const char* upfirdn2d_cuda_launch(CudaDType dtype, const void* x, const void* f, void* y,
                                  const UpFirDn2dParams& params, void* stream);

// y = leaky_relu(x + bias[(i / inner) % channels], alpha) * gain; bias may be nullptr.
const char* fused_leaky_relu_cuda_launch(CudaDType dtype, const void* x, const void* bias, void* y, int64_t numel,
                                         int64_t channels, int64_t inner, double alpha, double gain, void* stream);

// dx = dy * gain * (y > 0 ? 1 : alpha)
const char* fused_leaky_relu_grad_cuda_launch(CudaDType dtype, const void* dy, const void* y, void* dx, int64_t numel,
                                              double alpha, double gain, void* stream);

// filtered_lrelu's activation, in place on v [numel]. With mask_in == nullptr ("compute"):
// v = clamp(gain * leaky_relu(v, slope), -clamp, clamp) (clamp < 0: none), writing 0 (v <= 0), 1 (v > 0) or
// 2 (clamped) to mask_out when it is not nullptr. Otherwise ("apply"): v *= {gain * slope, gain, 0}[mask_in].
const char* filtered_lrelu_act_cuda_launch(CudaDType dtype, void* v, const uint8_t* mask_in, uint8_t* mask_out,
                                           int64_t numel, double gain, double slope, double clamp, void* stream);

}  // namespace latentedit
