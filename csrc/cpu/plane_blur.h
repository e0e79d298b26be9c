// The separable Gaussian blur of one plane on the CPU: reflect-padded rows filtered as shifted
// sums, then columns filtered as sums of rows, into a float32 buffer; the gradient may be
// un-jittered on the way in. Semantics: gaussian_blur in pyviz_fast/ops/reference.py.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../kernels/common.h"
#include "plane.h"
#include "row_kernels.h"

namespace pvf::cpu {

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
  const float* values = s.const_data_ptr<float>();
  std::vector<GaussianTaps> taps;
  taps.reserve(s.numel());
  for (int64_t b = 0; b < s.numel(); ++b) {
    TORCH_CHECK(std::isfinite(values[b]), "sigma must be finite, got ", values[b], " for image ", b);
    taps.push_back(gaussian_taps(values[b], H, W));
  }
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
        load_rotated(plane + shifted_index(i, dy, H_) * row_stride, col_stride, W_, dx, out + i * W_);
      return;
    }
    // Each output row follows as soon as its last source row is filtered, so that the column
    // pass reads rows just written (in L1) instead of a whole plane back from L2.
    int64_t next_out = 0;
    for (int64_t r = 0; r < H_; ++r) {
      filter_row(plane + shifted_index(r, dy, H_) * row_stride, col_stride, dx, g, rows_.data() + r * W_);
      for (; next_out < H_ && std::min(next_out + R, H_ - 1) <= r; ++next_out) {
        for (int64_t m = 0; m <= 2 * R; ++m) sources_[m] = rows_.data() + reflect(next_out - R + m, H_) * W_;
        symmetric_filter(sources_.data(), W_, g.taps.data(), R, out + next_out * W_);
      }
    }
  }

 private:
  // Horizontal blur of one row of the plane, rotated by dx, into out [W].
  template <typename T>
  void filter_row(const T* row, int64_t col_stride, int64_t dx, const GaussianTaps& g, float* out) {
    const int64_t R = g.radius;
    float* pad = padded_.data();
    load_rotated(row, col_stride, W_, dx, pad + R);
    for (int64_t k = 1; k <= R; ++k) {  // reflect without repeating the edge
      pad[R - k] = pad[R + k];
      pad[R + W_ - 1 + k] = pad[R + W_ - 1 - k];
    }
    for (int64_t m = 0; m <= 2 * R; ++m) sources_[m] = pad + m;
    symmetric_filter(sources_.data(), W_, g.taps.data(), R, out);
  }

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

}  // namespace pvf::cpu
