// Shape of a contiguous [B, C, H, W] batch and the split of a flat element index into
// (b, c, i, j): every kernel runs one thread per flat index.
#pragma once

#include <cstdint>

#include "common.h"

namespace pvf {

struct ImageShape {
  int64_t batch, channels, height, width;

  PVF_HD int64_t plane() const { return height * width; }
  PVF_HD int64_t image() const { return channels * height * width; }
  PVF_HD int64_t numel() const { return batch * image(); }
};

// Position of flat element e = ((b * C + c) * H + i) * W + j.
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

PVF_HD int64_t flat_index(int64_t b, int64_t c, int64_t i, int64_t j, const ImageShape& s) {
  return ((b * s.channels + c) * s.height + i) * s.width + j;
}

}  // namespace pvf
