// Index arithmetic shared by the CPU and CUDA kernels of latentedit's custom ops.
//
// This header includes nothing from PyTorch so that the CUDA kernels compile with nvcc alone.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LATENTEDIT_HOST_DEVICE __host__ __device__
#else
#define LATENTEDIT_HOST_DEVICE
#endif

namespace latentedit {

// The filter taps that meet real (non-inserted, non-padded) input samples for one output sample
// along one axis of upfirdn2d:
//
//   out[o] = sum_{s < count} f[taps - 1 - (k_first + s * up)] * x[i_first + s]
//
// Output sample o covers positions o*down .. o*down + taps - 1 of the zero-inserted, padded signal;
// position j holds x[(j - pad0) / up] when (j - pad0) is a non-negative multiple of up below
// in_size * up, and zero otherwise. Because consecutive real samples are `up` positions apart, the
// matching taps are k_first, k_first + up, ... . A negative pad0 simply shifts the window right
// (cropping); a negative pad1 never needs a check because the output length already excludes it.
struct AxisTaps {
  int k_first;
  int i_first;
  int count;
};

LATENTEDIT_HOST_DEVICE inline AxisTaps axis_taps(int o, int in_size, int up, int down, int pad0, int taps) {
  const int start = o * down - pad0;  // position of tap 0 relative to x[0] in the zero-inserted signal
  int k = start < 0 ? -start : 0;
  const int phase = (start + k) % up;
  if (phase != 0) k += up - phase;
  AxisTaps result;
  result.k_first = k;
  result.i_first = (start + k) / up;
  result.count = 0;
  if (k < taps && result.i_first < in_size) {
    int count = (taps - 1 - k) / up + 1;
    if (result.i_first + count > in_size) count = in_size - result.i_first;
    result.count = count;
  }
  return result;
}

// Output length of one axis: (in*up + pad0 + pad1 - taps + down) / down (floor; callers reject < 1).
LATENTEDIT_HOST_DEVICE inline int64_t upfirdn_out_size(int64_t in_size, int up, int down, int pad0, int pad1,
                                                       int taps) {
  const int64_t span = in_size * up + pad0 + pad1 - taps + down;
  return span >= 0 ? span / down : -1;
}

}  // namespace latentedit
