// Building blocks shared by the CPU kernels: strided views of one (b, c) plane, rotated row
// transfers (jitter), the separable Gaussian blur of a plane into a float32 buffer, and the
// per-image scale of a gradient. Every kernel works plane by plane so that a plane's rows stay
// in L2 while they are filtered, and reads any memory layout (NCHW, channels_last, views)
// through explicit strides instead of copying it first.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <type_traits>

#include <cmath>
#include <cstdint>
#include <vector>

#include "row_kernels.h"
#include "../kernels/common.h"

// Dispatch over the storage dtypes of images (float32, float16, bfloat16); the kernels
// compute in float32 (at::opmath_type of all three).
#define PVF_DISPATCH_STORAGE_TYPES(TYPE, NAME, ...)                                                  \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)                          \
                                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)                        \
                                         AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

namespace pvf::cpu {

// Sizes and element strides of a [B, C, H, W] tensor.
struct Geometry {
  int64_t B, C, H, W;
  int64_t sB, sC, sH, sW;

  explicit Geometry(const at::Tensor& t)
      : B(t.size(0)), C(t.size(1)), H(t.size(2)), W(t.size(3)),
        sB(t.stride(0)), sC(t.stride(1)), sH(t.stride(2)), sW(t.stride(3)) {}

  int64_t planes() const { return B * C; }
  // Offset of plane p = b * C + c.
  int64_t plane_offset(int64_t p) const { return (p / C) * sB + (p % C) * sC; }
};

// A row as float32: the row itself when it already is contiguous float32, else converted into buf.
template <typename T>
const float* row_as_float(const T* row, int64_t col_stride, int64_t W, float* buf) {
  if constexpr (std::is_same_v<T, float>) {
    if (col_stride == 1) return row;
  }
  load_strided(row, col_stride, W, buf);
  return buf;
}

// Runs fn(plane, row) for every row of every plane, in parallel chunks of rows; fn gets a
// per-chunk float32 scratch row of W elements.
template <typename Fn>
void for_each_row(const Geometry& geo, const Fn& fn) {
  const int64_t grain = std::max<int64_t>(1, 16384 / geo.W);
  at::parallel_for(0, geo.planes() * geo.H, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(geo.W);
    for (const auto r : c10::irange(begin, end)) fn(r / geo.H, r % geo.H, scratch.data());
  });
}

// dst[j] = row[(j + shift) mod W] in float32: a row of x read un-rolled by `shift` columns.
template <typename T>
void load_rotated(const T* row, int64_t col_stride, int64_t W, int64_t shift, float* dst) {
  const int64_t s = wrap(shift, W);
  load_strided(row + s * col_stride, col_stride, W - s, dst);
  load_strided(row, col_stride, s, dst + (W - s));
}

// row[(j + shift) mod W] = src[j]: a float32 row stored rolled by `shift` columns.
template <typename T>
void store_rotated(const float* src, int64_t W, int64_t shift, T* row, int64_t col_stride) {
  const int64_t s = wrap(shift, W);
  store_strided(src, W - s, row + s * col_stride, col_stride);
  store_strided(src + (W - s), s, row, col_stride);
}

// Normalized half-window of Gaussian taps of one image: taps[k] is the weight at distance k.
struct GaussianTaps {
  int64_t radius = 0;
  std::vector<float> taps{1.0f};
};

inline GaussianTaps gaussian_taps(float sigma, int64_t H, int64_t W) {
  GaussianTaps g;
  g.radius = blur_radius(sigma, H, W);
  if (g.radius == 0) return g;
  g.taps.resize(g.radius + 1);
  double total = 0.0;
  for (int64_t k = 0; k <= g.radius; ++k) {
    g.taps[k] = gaussian_weight(k, sigma);
    total += (k == 0 ? 1.0 : 2.0) * g.taps[k];
  }
  for (float& w : g.taps) w = static_cast<float>(w / total);
  return g;
}

inline std::vector<GaussianTaps> gaussian_taps(const at::Tensor& sigma, int64_t H, int64_t W) {
  const at::Tensor s = sigma.contiguous();
  const float* values = s.data_ptr<float>();
  std::vector<GaussianTaps> taps;
  taps.reserve(s.numel());
  for (int64_t b = 0; b < s.numel(); ++b) taps.push_back(gaussian_taps(values[b], H, W));
  return taps;
}

// Un-jitter and blur one plane into a contiguous float32 [H, W] buffer. One per thread: it
// owns the scratch (a reflect-padded row and the horizontally blurred plane).
class PlaneBlur {
 public:
  PlaneBlur(int64_t H, int64_t W, int64_t max_radius)
      : H_(H), W_(W), padded_(W + 2 * max_radius), rows_(max_radius > 0 ? H * W : 0),
        sources_(2 * max_radius + 1) {}

  // out[i, j] = blur(g)[i, j] with g[i, j] = plane[(i + dy) mod H, (j + dx) mod W]
  // (dy = dx = 0: a plain blur). plane points at element [0, 0]; strides in elements.
  template <typename T>
  void run(const T* plane, int64_t row_stride, int64_t col_stride, int64_t dy, int64_t dx,
           const GaussianTaps& g, float* out) {
    const int64_t R = g.radius;
    if (R == 0) {
      for (int64_t i = 0; i < H_; ++i)
        load_rotated(plane + wrap(i + dy, H_) * row_stride, col_stride, W_, dx, out + i * W_);
      return;
    }
    float* pad = padded_.data();
    for (int64_t i = 0; i < H_; ++i) {
      load_rotated(plane + wrap(i + dy, H_) * row_stride, col_stride, W_, dx, pad + R);
      for (int64_t k = 1; k <= R; ++k) {  // reflect without repeating the edge
        pad[R - k] = pad[R + k];
        pad[R + W_ - 1 + k] = pad[R + W_ - 1 - k];
      }
      for (int64_t m = 0; m <= 2 * R; ++m) sources_[m] = pad + m;
      symmetric_filter(sources_.data(), W_, g.taps.data(), R, rows_.data() + i * W_);
    }
    for (int64_t i = 0; i < H_; ++i) {
      for (int64_t m = 0; m <= 2 * R; ++m) sources_[m] = rows_.data() + reflect(i - R + m, H_) * W_;
      symmetric_filter(sources_.data(), W_, g.taps.data(), R, out + i * W_);
    }
  }

 private:
  int64_t H_, W_;
  std::vector<float> padded_;
  std::vector<float> rows_;
  std::vector<const float*> sources_;
};

inline int64_t max_radius(const std::vector<GaussianTaps>& taps) {
  int64_t r = 0;
  for (const auto& t : taps) r = std::max(r, t.radius);
  return r;
}

// Sums of one image's gradient from the sums of its C planes, added in channel order.
inline GradStats image_stats(const std::vector<GradStats>& plane_stats, int64_t b, int64_t C) {
  GradStats s;
  for (int64_t c = 0; c < C; ++c) s.add(plane_stats[b * C + c]);
  return s;
}

// The per-image scale s_b of a gradient from its sums over n = C*H*W elements; NaN when the
// gradient holds a NaN (as a float32 reduction would give).
inline float grad_scale(const GradStats& s, NormMode mode, int64_t n) {
  const double count = static_cast<double>(n);
  switch (mode) {
    case kRms:
      return static_cast<float>(std::sqrt(s.sum_sq / count));
    case kMeanAbs:
      return static_cast<float>(s.sum_abs / count);
    case kStd:
      return static_cast<float>(std::sqrt(s.m2 / count));
    case kMaxAbs:
      return std::isnan(s.sum_abs) ? NAN : static_cast<float>(s.max_abs);
    case kNone:
      return 0.0f;
  }
  return 0.0f;
}

// The factor that divides a gradient by its scale: 1 / (s + eps), or 1 for mode none.
inline float inverse_scale(float scale, NormMode mode, double eps) {
  return mode == kNone ? 1.0f : 1.0f / (scale + static_cast<float>(eps));
}

}  // namespace pvf::cpu
