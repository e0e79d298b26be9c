// How the CPU kernels walk a [B, C, H, W] tensor: plane (b, c) by plane and row by row, in any
// memory layout (NCHW, channels_last, strided views) through explicit strides instead of a
// copy, with rows converted to float32 buffers (rotated for jitter) on the way in and out.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../kernels/common.h"
#include "row_kernels.h"

// Dispatch over the storage dtypes of images (float32, float16, bfloat16); the kernels
// compute in float32 (at::opmath_type of all three).
#define PVF_DISPATCH_STORAGE_TYPES(TYPE, NAME, ...)                                                  \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)                          \
                                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)                        \
                                         AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

namespace pvf::cpu {

// Sizes and element strides of a [B, C, H, W] tensor.
struct Geometry {
  int64_t B, C, H, W;
  int64_t sB, sC, sH, sW;

  explicit Geometry(const at::Tensor& t)
      : B(t.size(0)), C(t.size(1)), H(t.size(2)), W(t.size(3)),
        sB(t.stride(0)), sC(t.stride(1)), sH(t.stride(2)), sW(t.stride(3)) {}

  int64_t planes() const { return B * C; }
  // Offset of plane p = b * C + c.
  int64_t plane_offset(int64_t p) const { return (p / C) * sB + (p % C) * sC; }
};

// A row as float32: the row itself when it already is contiguous float32, else converted into buf.
template <typename T>
const float* row_as_float(const T* row, int64_t col_stride, int64_t W, float* buf) {
  if constexpr (std::is_same_v<T, float>) {
    if (col_stride == 1) return row;
  }
  load_strided(row, col_stride, W, buf);
  return buf;
}

// Where to compute a float32 row bound for `row`: the row itself when it is contiguous float32
// (no copy), else buf, to be stored with store_row.
template <typename T>
float* row_target(T* row, int64_t col_stride, float* buf) {
  if constexpr (std::is_same_v<T, float>) {
    if (col_stride == 1) return row;
  }
  return buf;
}

// Stores a computed float32 row into `row` unless it was computed there (see row_target).
template <typename T>
void store_row(const float* computed, int64_t W, T* row, int64_t col_stride) {
  if (static_cast<const void*>(computed) != static_cast<const void*>(row)) store_strided(computed, W, row, col_stride);
}

// Runs fn(plane, row) for every row of every plane, in parallel chunks of rows; fn gets a
// per-chunk float32 scratch row of W elements.
template <typename Fn>
void for_each_row(const Geometry& geo, const Fn& fn) {
  const int64_t grain = std::max<int64_t>(1, 16384 / geo.W);
  at::parallel_for(0, geo.planes() * geo.H, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(geo.W);
    for (const auto r : c10::irange(begin, end)) fn(r / geo.H, r % geo.H, scratch.data());
  });
}

// dst[j] = row[(j + shift) mod W] in float32: a row of x read un-rolled by `shift` columns.
template <typename T>
void load_rotated(const T* row, int64_t col_stride, int64_t W, int64_t shift, float* dst) {
  const int64_t s = wrap(shift, W);
  load_strided(row + s * col_stride, col_stride, W - s, dst);
  load_strided(row, col_stride, s, dst + (W - s));
}

// row[(j + shift) mod W] = src[j]: a float32 row stored rolled by `shift` columns.
template <typename T>
void store_rotated(const float* src, int64_t W, int64_t shift, T* row, int64_t col_stride) {
  const int64_t s = wrap(shift, W);
  store_strided(src, W - s, row + s * col_stride, col_stride);
  store_strided(src + (W - s), s, row, col_stride);
}

}  // namespace pvf::cpu
