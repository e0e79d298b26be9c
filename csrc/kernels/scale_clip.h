// Element-wise bodies of the standalone normalize and clip ops.
#pragma once

#include "image_shape.h"
#include "storage.h"

namespace pvf {

// out = g / denom[b] (denom = s_b + eps from StatsCombineBody); 'none' copies.
template <class T>
struct NormalizeBody {
  const T* g;
  const float* denom;
  T* out;
  ImageShape shape;
  NormMode mode;

  PVF_HD void operator()(int64_t e) const {
    const float v = load(g, e);
    store(out, e, mode == kNone ? v : v / denom[e / shape.image()]);
  }
};

// out = clamp(g, -clip, clip), NaN kept; clip = inf leaves g as it is.
template <class T>
struct ClipBody {
  const T* g;
  T* out;
  float clip;

  PVF_HD void operator()(int64_t e) const { store(out, e, clamp_keep_nan(load(g, e), -clip, clip)); }
};

}  // namespace pvf
