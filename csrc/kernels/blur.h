// Separable Gaussian blur with per-image sigma and reflect borders, in three steps:
//   1. TapTableBody, one thread per image: its radius and normalized taps w_0..w_r;
//   2. HorizontalBlurBody, one thread per element: (optionally un-jittered) row pass into a
//      float32 workspace `rows`;
//   3. VerticalBlur: the column pass over `rows`, evaluated per element by whichever kernel
//      consumes the blurred value (BlurStoreBody here, the stats and update kernels of the
//      fused step), so the blurred gradient is never written to memory.
#pragma once

#include "image_shape.h"
#include "storage.h"

namespace pvf {

// Taps per image in the table (its row width): radius <= min(H, W) - 1, so w_0..w_{min(H, W) - 1} fit.
inline int64_t tap_table_width(const ImageShape& s) { return s.height < s.width ? s.height : s.width; }

// taps[b, k] = w_k / sum_{|k'| <= r} w_k' for k = 0..r_b (the window is symmetric); radius[b] = r_b.
struct TapTableBody {
  const float* sigma;
  float* taps;  // [B, taps_per_image]
  int32_t* radius;  // [B]
  ImageShape shape;
  int64_t taps_per_image;

  PVF_HD void operator()(int64_t b) const {
    const float s = sigma[b];
    const int64_t r = blur_radius(s, shape.height, shape.width);
    float* w = taps + b * taps_per_image;
    radius[b] = static_cast<int32_t>(r);
    if (r == 0) {
      w[0] = 1.0f;
      return;
    }
    float sum = gaussian_weight(0, s);
    for (int64_t k = 1; k <= r; ++k) sum += 2.0f * gaussian_weight(k, s);
    for (int64_t k = 0; k <= r; ++k) w[k] = gaussian_weight(k, s) / sum;
  }
};

// rows[b, c, i, j] = sum_{|k| <= r_b} w_|k| * U[b, c, i, reflect(j + k)], where
// U[b, c, i, j] = src[b, c, (i + dy_b) mod H, (j + dx_b) mod W] un-jitters src (shifts may be
// null: no shift). Taps are summed from k = -r to r.
template <class T>
struct HorizontalBlurBody {
  const T* src;
  Strides src_strides;
  const int64_t* shifts;  // int64 [B, 2] or nullptr
  const float* taps;
  const int32_t* radius;
  float* rows;
  ImageShape shape;
  int64_t taps_per_image;

  PVF_HD void operator()(int64_t e) const {
    const Pixel p = pixel_of(e, shape);
    const int64_t dy = shifts ? shifts[2 * p.b] : 0;
    const int64_t dx = shifts ? wrap(shifts[2 * p.b + 1], shape.width) : 0;
    const T* row = src + src_strides.offset(p.b, p.c, shifted_index(p.i, dy, shape.height), 0);
    const float* w = taps + p.b * taps_per_image;
    const int64_t r = radius[p.b];
    float acc = 0.0f;
    for (int64_t k = -r; k <= r; ++k) {
      int64_t j = reflect(p.j + k, shape.width) + dx;  // < 2W: one subtraction wraps it
      if (j >= shape.width) j -= shape.width;
      acc += w[k < 0 ? -k : k] * load(row, j * src_strides.w);
    }
    rows[e] = acc;
  }
};

// The column pass at logical element e (of image b): sum_{|k| <= r_b} w_|k| * rows[b, c, reflect(i + k), j].
struct VerticalBlur {
  const float* rows;
  const float* taps;
  const int32_t* radius;
  ImageShape shape;
  int64_t taps_per_image;

  PVF_HD float operator()(int64_t b, int64_t e) const {
    const int64_t i = (e / shape.width) % shape.height;
    const float* w = taps + b * taps_per_image;
    const int64_t r = radius[b];
    float acc = 0.0f;
    for (int64_t k = -r; k <= r; ++k) {
      acc += w[k < 0 ? -k : k] * rows[e + (reflect(i + k, shape.height) - i) * shape.width];
    }
    return acc;
  }
};

// out[b, c, i, j] = the blurred value, in the storage type.
template <class T>
struct BlurStoreBody {
  VerticalBlur blurred;
  T* out;
  Strides out_strides;

  PVF_HD void operator()(int64_t e) const {
    const Pixel p = pixel_of(e, blurred.shape);
    store(out, out_strides.offset(p), blurred(p.b, e));
  }
};

}  // namespace pvf
