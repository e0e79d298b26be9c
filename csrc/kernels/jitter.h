// Per-image roll: one thread per output element gathers its source element.
#pragma once

#include "image_shape.h"

namespace pvf {

// out[b, c, i, j] = x[b, c, (i - dy_b) mod H, (j - dx_b) mod W]; shifts is int64 [B, 2].
// A plain copy of the storage type: rolling needs no arithmetic on the values.
template <class T>
struct JitterBody {
  const T* x;
  Strides x_strides;
  const int64_t* shifts;
  T* out;
  Strides out_strides;
  ImageShape shape;

  PVF_HD void operator()(int64_t e) const {
    const Pixel p = pixel_of(e, shape);
    const int64_t i = wrap(p.i - wrap(shifts[2 * p.b], shape.height), shape.height);
    const int64_t j = wrap(p.j - wrap(shifts[2 * p.b + 1], shape.width), shape.width);
    out[out_strides.offset(p)] = x[x_strides.offset(p.b, p.c, i, j)];
  }
};

}  // namespace pvf
