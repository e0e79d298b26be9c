// Last kernel of the fused ascent step, one thread per element: scale and clip the blurred
// gradient, update, decay and clamp the pixel, keep the old pixel for a non-finite image, and
// write it both in place and at its position in the next step's jittered input.
#pragma once

#include "blur.h"
#include "image_shape.h"
#include "storage.h"

namespace pvf {

struct AscentParams {
  NormMode mode;
  float clip, lr, decay, center, lo, hi;
};

template <class T>
struct AscentUpdateBody {
  VerticalBlur grad;  // the un-jittered, blurred gradient
  const float* denom;  // [B] s_b + eps
  const bool* nonfinite;  // [B]
  const T* x;
  Strides x_strides;
  const int64_t* next_shifts;  // int64 [B, 2]
  T* new_x;
  Strides new_x_strides;
  T* next_input;  // new_x rolled by next_shifts
  Strides next_input_strides;
  ImageShape shape;
  AscentParams params;

  PVF_HD void operator()(int64_t e) const {
    const Pixel p = pixel_of(e, shape);
    const float old = load(x, x_strides.offset(p));
    float v = old;
    if (!nonfinite[p.b]) {
      float g = grad(p.b, e);
      if (params.mode != kNone) g = g / denom[p.b];
      g = clamp_keep_nan(g, -params.clip, params.clip);
      v = old + params.lr * g;
      v = v - params.decay * (v - params.center);
      v = clamp_keep_nan(v, params.lo, params.hi);
    }
    store(new_x, new_x_strides.offset(p), v);
    const int64_t i = shifted_index(p.i, next_shifts[2 * p.b], shape.height);
    const int64_t j = shifted_index(p.j, next_shifts[2 * p.b + 1], shape.width);
    store(next_input, next_input_strides.offset(p.b, p.c, i, j), v);
  }
};

}  // namespace pvf
