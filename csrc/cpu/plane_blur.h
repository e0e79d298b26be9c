// The separable Gaussian blur of one plane on the CPU: reflect-padded rows filtered as shifted
// sums, then columns filtered as sums of rows, into a float32 buffer; the gradient may be
// un-jittered on the way in. Semantics: gaussian_blur in pyviz_fast/ops/reference.py.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <new>
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
  const double total = gaussian_total(g.radius, sigma);
  for (int64_t k = 0; k <= g.radius; ++k) g.taps[k] = gaussian_tap(k, sigma, total);
  return g;
}

inline std::vector<GaussianTaps> gaussian_taps(const at::Tensor& sigma, int64_t H, int64_t W) {
  const at::Tensor s = sigma.contiguous();
  const float* values = s.const_data_ptr<float>();
  std::vector<GaussianTaps> taps;
  taps.reserve(s.numel());
  for (int64_t b = 0; b < s.numel(); ++b) {
    check_sigma_value(values[b], b);
    taps.push_back(gaussian_taps(values[b], H, W));
  }
  return taps;
}

// Float32 scratch whose rows start on 64-byte boundaries (a cache line, one AVX-512 vector):
// the vertical pass then reads whole, aligned vectors instead of loads split across two lines.
struct AlignedFree {
  void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
};
using FloatBuffer = std::unique_ptr<float[], AlignedFree>;

inline FloatBuffer float_buffer(int64_t n) { return FloatBuffer(new (std::align_val_t{64}) float[n]); }

// Floats from one scratch row to the next: W rounded up to a whole number of cache lines.
inline int64_t row_pitch(int64_t W) { return (W + 15) / 16 * 16; }

// Un-jitter and blur one plane into a float32 [H, row_pitch(W)] buffer. One per thread: it
// owns the scratch (two reflect-padded rows and a ring of the last 2R + 1 horizontally blurred
// rows).
class PlaneBlur {
 public:
  PlaneBlur(int64_t H, int64_t W, int64_t max_radius)
      : H_(H), W_(W), pitch_(row_pitch(W)),
        margin_(row_pitch(std::max(max_radius, kRowFilterMargin))), padded_row_(margin_ + pitch_ + margin_),
        padded_(float_buffer(2 * padded_row_)),
        ring_(float_buffer((2 * max_radius + 1) * pitch_)), slot_(H), sources_(2 * max_radius + 1) {}

  // out[i, j] = blur(g)[i, j] with g[i, j] = plane[(i + dy) mod H, (j + dx) mod W]
  // (dy = dx = 0: a plain blur). plane points at element [0, 0]; strides in elements; out comes
  // from float_buffer (rows aligned). on_row(i, row) is called with each output row in order as
  // soon as it is done, while it is still in L1.
  template <typename T, typename OnRow>
  void run(const T* plane, int64_t row_stride, int64_t col_stride, int64_t dy, int64_t dx,
           const GaussianTaps& g, float* out, const OnRow& on_row) {
    const int64_t R = g.radius, ring_rows = 2 * R + 1;
    const auto source_row = [&](int64_t r) { return plane + shifted_index(r, dy, H_) * row_stride; };
    if (R == 0) {
      for (int64_t r = 0; r < H_; ++r) {
        load_rotated(source_row(r), col_stride, W_, dx, out + r * pitch_);
        on_row(r, static_cast<const float*>(out + r * pitch_));
      }
      return;
    }
    // Ring slot of each row (a table: a division per tap would cost more than the tap).
    for (int64_t r = 0, slot = 0; r < H_; ++r, slot = slot + 1 == ring_rows ? 0 : slot + 1) slot_[r] = slot;
    // Rows are padded one ahead of their filtering, in two buffers: the filter's shifted loads
    // would otherwise wait for the padding's stores to reach the cache.
    float* pads[2] = {padded_.get() + margin_, padded_.get() + padded_row_ + margin_};
    pad_row(source_row(0), col_stride, dx, R, pads[0]);
    int64_t next_out = 0;
    for (int64_t r = 0; r < H_; ++r) {
      if (r + 1 < H_) pad_row(source_row(r + 1), col_stride, dx, R, pads[(r + 1) % 2]);
      filter_row(pads[r % 2], g, ring_.get() + slot_[r] * pitch_);
      // Output row i needs filtered rows i - R .. i + R (reflected at the edges): it follows
      // as soon as the last of them is done, and the ring still holds the first.
      for (; next_out < H_ && std::min(next_out + R, H_ - 1) <= r; ++next_out) {
        for (int64_t m = 0; m <= 2 * R; ++m)
          sources_[m] = ring_.get() + slot_[reflect(next_out - R + m, H_)] * pitch_;
        float* row = out + next_out * pitch_;
        symmetric_filter(sources_.data(), W_, g.taps.data(), R, row);
        on_row(next_out, static_cast<const float*>(row));
      }
    }
  }

 private:
  // Horizontal blur of a padded row into out [W]: the vector fast path where it applies, the
  // table of shifted rows for the rest.
  void filter_row(const float* pad, const GaussianTaps& g, float* out) {
    const int64_t R = g.radius, done = row_filter_vectors(pad, W_, g.taps.data(), R, out);
    if (done == W_) return;
    for (int64_t m = 0; m <= 2 * R; ++m) sources_[m] = pad + done - R + m;
    symmetric_filter(sources_.data(), W_ - done, g.taps.data(), R, out + done);
  }

  // A row of the plane un-jittered by dx into pad[0, W), reflected into R columns on each side
  // (without repeating the edge). The reflected columns are read from the source row, not from
  // pad, so that they need not wait for the stores just made.
  template <typename T>
  void pad_row(const T* row, int64_t col_stride, int64_t dx, int64_t R, float* pad) {
    load_rotated(row, col_stride, W_, dx, pad);
    const int64_t shift = wrap(dx, W_);
    const auto column = [&](int64_t j) { return static_cast<float>(row[wrap(j + shift, W_) * col_stride]); };
    for (int64_t k = 1; k <= R; ++k) {
      pad[-k] = column(k);
      pad[W_ - 1 + k] = column(W_ - 1 - k);
    }
  }

  int64_t H_, W_, pitch_;
  // Two padded rows, padded_row_ apart, each starting margin_ floats into its slot (at least R
  // and kRowFilterMargin, in whole cache lines): aligned for row_filter_vectors, with room on both sides.
  int64_t margin_, padded_row_;
  FloatBuffer padded_;
  FloatBuffer ring_;
  std::vector<int64_t> slot_;
  std::vector<const float*> sources_;
};

inline int64_t max_radius(const std::vector<GaussianTaps>& taps) {
  int64_t r = 0;
  for (const auto& t : taps) r = std::max(r, t.radius);
  return r;
}

}  // namespace pvf::cpu
