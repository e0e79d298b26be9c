// Index and filter arithmetic shared by the CPU kernels, the CUDA kernels and their CPU
// emulation. Everything here compiles both as host C++ and as CUDA device code.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#ifdef __CUDACC__
#define PVF_HD __host__ __device__ __forceinline__
// Work a loop rarely does: one CALL in the loop (inline: defined once in each nvcc file that uses it).
#define PVF_HD_NOINLINE __host__ __device__ __noinline__ inline
#define PVF_UNROLL _Pragma("unroll")
// A lambda inlined however large (device lambdas are not __forceinline__): one whose captures
// would otherwise go through the stack of an outlined call.
#define PVF_INLINE_LAMBDA __attribute__((always_inline))
#else
#define PVF_HD inline
#define PVF_HD_NOINLINE inline
#define PVF_UNROLL _Pragma("GCC unroll 8")
#define PVF_INLINE_LAMBDA
#endif

namespace pvf {

// Gradient normalization modes, in the order of the Python NORM_MODES.
enum NormMode : int { kRms = 0, kMeanAbs = 1, kStd = 2, kMaxAbs = 3, kNone = 4 };

// f(std::integral_constant<NormMode, m>) for the m of Modes equal to mode (none if it is not
// among them): code specialized per mode, chosen at run time.
template <NormMode... Modes, class F>
PVF_HD void with_norm_mode_of(NormMode mode, F&& f) {
  (void)((mode == Modes ? (f(std::integral_constant<NormMode, Modes>{}), true) : false) || ...);
}

template <class F>
PVF_HD void with_norm_mode(NormMode mode, F&& f) {
  with_norm_mode_of<kRms, kMeanAbs, kStd, kMaxAbs, kNone>(mode, f);
}

PVF_HD bool is_finite(float v) {
#ifdef __CUDA_ARCH__
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

// A step cannot normalize an image whose scale plus eps has no finite reciprocal: 0 (eps = 0 and
// an all-zero gradient, or a constant one for std) or, with eps = 0, a scale below about 2.9e-39,
// where g * (1 / d) is inf or NaN while g / d is finite. Like a non-finite one, the image is
// flagged and left unchanged, on every backend whatever its way of dividing.
PVF_HD bool no_reciprocal(NormMode mode, float denom) { return mode != kNone && !is_finite(1.0f / denom); }

// wrap for i outside [0, n), out of line on the GPU: the loops that wrap a shift per tile then
// hold a compare and a call, not the 64-bit compares and remainder of every case.
PVF_HD_NOINLINE int64_t wrap_outside(int64_t i, int64_t n) {
  if (i >= n && i - n < n) return i - n;
  if (i < 0 && i >= -n) return i + n;
  const int64_t r = i % n;
  return r < 0 ? r + n : r;
}

// i mod n in [0, n) for any sign of i (C++ % truncates toward zero). Indices within one period
// of [0, n) (jittered rows and columns) take no division, which costs more than the pixel.
PVF_HD int64_t wrap(int64_t i, int64_t n) { return i >= 0 && i < n ? i : wrap_outside(i, n); }

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
// sigma <= 0 or not finite (the callers reject or flag a non-finite sigma). Compared in double
// before any integer conversion, so a huge sigma is simply capped (a box blur), never undefined.
PVF_HD int64_t blur_radius(float sigma, int64_t height, int64_t width) {
  const int64_t cap = (height < width ? height : width) - 1;
  if (!(sigma > 0.0f) || !(sigma <= 3.4028235e38f)) return 0;
  const double r = ceil(3.0 * static_cast<double>(sigma));
  return r < static_cast<double>(cap) ? static_cast<int64_t>(r) : cap;
}

// Unnormalized Gaussian tap k, in double: 2 sigma^2 neither underflows for a tiny sigma (the
// taps are then 1, 0, 0, ...: the identity, never 0/0) nor overflows for a huge one (all 1: a box).
// Host and device round these alike unless exp's last double bit differs on a float rounding
// boundary of the normalized tap.
PVF_HD double gaussian_weight(int64_t k, float sigma) {
  const double s = static_cast<double>(sigma);
  const double kd = static_cast<double>(k);
  return exp(-(kd * kd) / (2.0 * s * s));
}

// Sum of the unnormalized taps over |k| <= radius, in order k = 0, 1, ..., radius.
PVF_HD double gaussian_total(int64_t radius, float sigma) {
  double total = 1.0;
  for (int64_t k = 1; k <= radius; ++k) total += 2.0 * gaussian_weight(k, sigma);
  return total;
}

// Normalized tap k of a window of the given total (gaussian_total).
PVF_HD float gaussian_tap(int64_t k, float sigma, double total) {
  return static_cast<float>(gaussian_weight(k, sigma) / total);
}

}  // namespace pvf
