// Index and filter arithmetic shared by the CPU kernels, the CUDA kernels and their CPU
// emulation. Everything here compiles both as host C++ and as CUDA device code.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define PVF_HD __host__ __device__ __forceinline__
#else
#define PVF_HD inline
#endif

namespace pvf {

// Gradient normalization modes, in the order of the Python NORM_MODES.
enum NormMode : int { kRms = 0, kMeanAbs = 1, kStd = 2, kMaxAbs = 3, kNone = 4 };

// i mod n in [0, n) for any sign of i (C++ % truncates toward zero). Indices within one period
// of [0, n) (jittered rows and columns) take no division, which costs more than the pixel.
PVF_HD int64_t wrap(int64_t i, int64_t n) {
  if (i >= 0) {
    if (i < n) return i;
    if (i - n < n) return i - n;
  } else if (i >= -n) {
    return i + n;
  }
  const int64_t r = i % n;
  return r < 0 ? r + n : r;
}

// (i + shift) mod n for 0 <= i < n and any int64 shift (even +-2^63): the shift is reduced
// first so that i + shift cannot overflow. For i - shift use wrap(i - wrap(shift, n), n).
PVF_HD int64_t shifted_index(int64_t i, int64_t shift, int64_t n) { return wrap(i + wrap(shift, n), n); }

// Reflection without repeating the edge (PyTorch 'reflect' padding): -1 -> 1, n -> n - 2.
// Valid for -n < i < 2n - 1, which blur_radius guarantees.
PVF_HD int64_t reflect(int64_t i, int64_t n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

// Half-width of the blur window: ceil(3 sigma), capped at min(H, W) - 1; 0 (identity) for
// sigma <= 0 or NaN. Computed in double so that it agrees with the Python reference exactly.
PVF_HD int64_t blur_radius(float sigma, int64_t height, int64_t width) {
  if (!(sigma > 0.0f)) return 0;
  const int64_t r = static_cast<int64_t>(ceil(3.0 * static_cast<double>(sigma)));
  const int64_t cap = (height < width ? height : width) - 1;
  return r < cap ? r : cap;
}

// Unnormalized Gaussian tap k; divide by the sum over |k| <= radius.
PVF_HD float gaussian_weight(int64_t k, float sigma) {
  const float kf = static_cast<float>(k);
  return expf(-(kf * kf) / (2.0f * sigma * sigma));
}

}  // namespace pvf
