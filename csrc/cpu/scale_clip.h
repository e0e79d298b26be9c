// The elementwise pass shared by clip_grad and normalize_grad on the CPU.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "plane.h"
#include "row_kernels.h"

namespace pvf::cpu {

// out[b] = clamp(g[b] * scale[b], -clip, clip) in float32, row by row in parallel.
template <typename scalar_t>
void scale_and_clip_images(const at::Tensor& g, const std::vector<float>& scale, float clip, at::Tensor& out) {
  const Geometry in(g), to(out);
  const scalar_t* src = g.const_data_ptr<scalar_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  for_each_row(in, [&](int64_t p, int64_t i, float* buf) {
    const float* row = row_as_float(src + in.plane_offset(p) + i * in.sH, in.sW, in.W, buf);
    scalar_t* target = dst + to.plane_offset(p) + i * to.sH;
    float* result = row_target(target, to.sW, buf);
    scale_and_clip(row, in.W, scale[p / in.C], clip, result);
    store_row(result, in.W, target, to.sW);
  });
}

}  // namespace pvf::cpu
