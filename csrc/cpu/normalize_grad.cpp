// normalize_grad on the CPU: g_b / (s_b + eps) with s_b the per-image rms, mean |g|, std or
// max |g|. Two parallel passes: sums per plane (combined per image in a fixed order, so the
// result does not depend on the thread count), then the division.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/irange.h>

#include <cmath>

#include "../checks.h"
#include "ops_cpu.h"
#include "output_cache.h"
#include "grad_scale.h"
#include "plane.h"
#include "scale_clip.h"

namespace pvf::cpu {
namespace {

template <typename scalar_t>
std::vector<GradStats> plane_stats(const at::Tensor& g) {
  const Geometry in(g);
  const scalar_t* src = g.const_data_ptr<scalar_t>();
  std::vector<GradStats> stats(in.planes());
  at::parallel_for(0, in.planes(), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(in.W);
    for (const auto p : c10::irange(begin, end))
      for (const auto i : c10::irange(in.H))
        accumulate_stats(row_as_float(src + in.plane_offset(p) + i * in.sH, in.sW, in.W, buf.data()), in.W,
                         stats[p]);
  });
  return stats;
}

template <typename scalar_t>
void normalize_grad_impl(const at::Tensor& g, NormMode mode, double eps, at::Tensor& out) {
  const Geometry in(g);
  std::vector<float> denom(in.B, 1.0f), inverse(in.B, 1.0f);
  if (mode != kNone) {
    const auto stats = plane_stats<scalar_t>(g);
    for (const auto b : c10::irange(in.B)) {
      denom[b] = scale_denominator(grad_scale(image_stats(stats, b, in.C), mode), mode, eps);
      inverse[b] = 1.0f / denom[b];
    }
  }
  scale_and_clip_images<scalar_t>(g, inverse, INFINITY, out);
  // A denominator without a finite reciprocal (0, or below ~2.9e-39 with eps = 0) is divided by
  // instead, as the contract says: g * (1 / d) would be inf or NaN where g / d is finite.
  for (const auto b : c10::irange(in.B))
    if (no_reciprocal(mode, denom[b])) out.select(0, b).copy_(g.select(0, b).to(at::kFloat).div(denom[b]));
}

}  // namespace

at::Tensor normalize_grad_cpu(const at::Tensor& g, c10::string_view mode, double eps) {
  check_image(g, "g");
  const NormMode norm = parse_norm_mode(mode);
  check_eps(eps);
  at::Tensor out = empty_output_like(g);
  PVF_DISPATCH_STORAGE_TYPES(g.scalar_type(), "normalize_grad_cpu",
                                  [&] { normalize_grad_impl<scalar_t>(g, norm, eps, out); });
  return out;
}

}  // namespace pvf::cpu
