// clip_grad on the CPU: clamp every element to [-clip, clip] in float32.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

#include "../checks.h"
#include "ops_cpu.h"
#include "plane.h"

namespace pvf::cpu {
namespace {

template <typename scalar_t>
void clip_grad_impl(const at::Tensor& g, float clip, at::Tensor& out) {
  const Geometry in(g), to(out);
  const scalar_t* src = g.const_data_ptr<scalar_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  for_each_row(in, [&](int64_t p, int64_t i, float* buf) {
    const float* row = row_as_float(src + in.plane_offset(p) + i * in.sH, in.sW, in.W, buf);
    scalar_t* target = dst + to.plane_offset(p) + i * to.sH;
    float* out = row_target(target, to.sW, buf);
    scale_and_clip(row, in.W, 1.0f, clip, out);
    store_row(out, in.W, target, to.sW);
  });
}

}  // namespace

at::Tensor clip_grad_cpu(const at::Tensor& g, double clip) {
  check_image(g, "g");
  TORCH_CHECK(clip >= 0.0, "clip must be >= 0 (inf disables clipping), got ", clip);
  at::Tensor out = at::empty_like(g);
  PVF_DISPATCH_STORAGE_TYPES(g.scalar_type(), "clip_grad_cpu",
                                  [&] { clip_grad_impl<scalar_t>(g, static_cast<float>(clip), out); });
  return out;
}

}  // namespace pvf::cpu
