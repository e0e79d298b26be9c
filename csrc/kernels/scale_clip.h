// Element-wise bodies of the standalone normalize and clip ops.
#pragma once

#include "image_shape.h"
#include "storage.h"

namespace pvf {

// out = g / denom[b] (denom = s_b + eps from StatsCombineBody); 'none' copies.
template <class T>
struct NormalizeBody {
  const T* g;
  Strides g_strides;
  const float* denom;
  T* out;
  Strides out_strides;
  ImageShape shape;
  NormMode mode;

  PVF_HD void operator()(int64_t e) const {
    const Pixel p = pixel_of(e, shape);
    const float v = load(g, g_strides.offset(p));
    store(out, out_strides.offset(p), mode == kNone ? v : v / denom[p.b]);
  }
};

// out = clamp(g, -clip, clip), NaN kept; clip = inf leaves g as it is.
template <class T>
struct ClipBody {
  const T* g;
  Strides g_strides;
  T* out;
  Strides out_strides;
  ImageShape shape;
  float clip;

  PVF_HD void operator()(int64_t e) const {
    const Pixel p = pixel_of(e, shape);
    store(out, out_strides.offset(p), clamp_keep_nan(load(g, g_strides.offset(p)), -clip, clip));
  }
};

}  // namespace pvf
