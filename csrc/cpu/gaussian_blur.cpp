// gaussian_blur on the CPU: separable, one sigma per image, reflect borders; a plane per task.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/irange.h>

#include "../checks.h"
#include "ops_cpu.h"
#include "output_cache.h"
#include "plane.h"
#include "plane_blur.h"

namespace pvf::cpu {
namespace {

template <typename scalar_t>
void gaussian_blur_impl(const at::Tensor& x, const std::vector<GaussianTaps>& taps, at::Tensor& out) {
  const Geometry in(x), to(out);
  const scalar_t* src = x.const_data_ptr<scalar_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  const int64_t radius = max_radius(taps);
  at::parallel_for(0, in.planes(), 1, [&](int64_t begin, int64_t end) {
    PlaneBlur blur(in.H, in.W, radius);
    const FloatBuffer plane = float_buffer(in.H * row_pitch(in.W));
    for (const auto p : c10::irange(begin, end)) {
      scalar_t* target = dst + to.plane_offset(p);
      blur.run(src + in.plane_offset(p), in.sH, in.sW, 0, 0, taps[p / in.C], plane.get(),
               [&](int64_t i, const float* row) { store_strided(row, in.W, target + i * to.sH, to.sW); });
    }
  });
}

}  // namespace

at::Tensor gaussian_blur_cpu(const at::Tensor& x, const at::Tensor& sigma) {
  check_image(x, "x");
  check_sigma(sigma, x);
  const auto taps = gaussian_taps(sigma, x.size(2), x.size(3));
  at::Tensor out = empty_output_like(x);
  PVF_DISPATCH_STORAGE_TYPES(x.scalar_type(), "gaussian_blur_cpu",
                                  [&] { gaussian_blur_impl<scalar_t>(x, taps, out); });
  return out;
}

}  // namespace pvf::cpu
