// Shape of a [B, C, H, W] batch, the split of a logical (contiguous-order) element index into
// (b, c, i, j) -- every element kernel runs one thread per logical index -- and the element
// strides that place (b, c, i, j) in a tensor of any layout (contiguous, channels_last, views).
#pragma once

#include <cstdint>

#include "common.h"

namespace pvf {

struct ImageShape {
  int64_t batch, channels, height, width;

  PVF_HD int64_t image() const { return channels * height * width; }
  PVF_HD int64_t numel() const { return batch * image(); }
};

// Position of logical element e = ((b * C + c) * H + i) * W + j.
struct Pixel {
  int64_t b, c, i, j;
};

PVF_HD Pixel pixel_of(int64_t e, const ImageShape& s) {
  Pixel p;
  p.j = e % s.width;
  const int64_t rows = e / s.width;
  p.i = rows % s.height;
  const int64_t planes = rows / s.height;
  p.c = planes % s.channels;
  p.b = planes / s.channels;
  return p;
}

struct Strides {
  int64_t b, c, h, w;

  PVF_HD int64_t offset(int64_t b_, int64_t c_, int64_t i, int64_t j) const { return b_ * b + c_ * c + i * h + j * w; }
  PVF_HD int64_t offset(const Pixel& p) const { return offset(p.b, p.c, p.i, p.j); }
};

}  // namespace pvf
