// The per-image scale s_b of a gradient (rms, mean |g|, std, max |g|) from the sums of its
// planes, combined in a fixed order so that the result does not depend on the thread count.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "../kernels/common.h"
#include "row_kernels.h"

namespace pvf::cpu {

// Sums of one image's gradient from the sums of its C planes, added in channel order.
inline GradStats image_stats(const std::vector<GradStats>& plane_stats, int64_t b, int64_t C) {
  GradStats s;
  for (int64_t c = 0; c < C; ++c) s.add(plane_stats[b * C + c]);
  return s;
}

// The per-image scale s_b of a gradient from its sums; NaN when the gradient holds a NaN (as
// a float32 reduction would give).
inline float grad_scale(const GradStats& s, NormMode mode) {
  const double count = static_cast<double>(s.count);
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

// What a gradient is divided by: s + eps in float32, or 1 for mode none.
inline float scale_denominator(float scale, NormMode mode, double eps) {
  return mode == kNone ? 1.0f : scale + static_cast<float>(eps);
}

// The factor that divides a gradient by its scale: 1 / (s + eps), or 1 for mode none.
inline float inverse_scale(float scale, NormMode mode, double eps) {
  return 1.0f / scale_denominator(scale, mode, eps);
}

}  // namespace pvf::cpu
