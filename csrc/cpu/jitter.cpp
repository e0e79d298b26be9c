// jitter on the CPU: per-image roll, out[b,c,i,j] = x[b,c,(i-dy)%H,(j-dx)%W].
#include <ATen/core/Tensor.h>

#include "../checks.h"
#include "ops_cpu.h"
#include "output_cache.h"
#include "plane.h"

namespace pvf::cpu {
namespace {

template <typename scalar_t>
void jitter_impl(const at::Tensor& x, const at::Tensor& shifts, at::Tensor& out) {
  const Geometry in(x), to(out);
  const scalar_t* src = x.const_data_ptr<scalar_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  const int64_t* shift = shifts.const_data_ptr<int64_t>();
  // Row i of the input lands, rotated by dx, on row (i + dy) mod H of the output.
  for_each_row(in, [&](int64_t p, int64_t i, float* buf) {
    const int64_t b = p / in.C;
    const float* row = row_as_float(src + in.plane_offset(p) + i * in.sH, in.sW, in.W, buf);
    scalar_t* target = dst + to.plane_offset(p) + shifted_index(i, shift[2 * b], in.H) * to.sH;
    store_rotated(row, in.W, shift[2 * b + 1], target, to.sW);
  });
}

}  // namespace

at::Tensor jitter_cpu(const at::Tensor& x, const at::Tensor& shifts) {
  check_image(x, "x");
  check_shifts(shifts, x, "shifts");
  const at::Tensor s = shifts.contiguous();
  at::Tensor out = empty_output_like(x);
  PVF_DISPATCH_STORAGE_TYPES(x.scalar_type(), "jitter_cpu",
                                  [&] { jitter_impl<scalar_t>(x, s, out); });
  return out;
}

}  // namespace pvf::cpu
