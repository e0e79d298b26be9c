// clip_grad on the CPU: clamp every element to [-clip, clip] in float32.
#include <ATen/core/Tensor.h>

#include <vector>

#include "../checks.h"
#include "ops_cpu.h"
#include "output_cache.h"
#include "scale_clip.h"

namespace pvf::cpu {

at::Tensor clip_grad_cpu(const at::Tensor& g, double clip) {
  check_image(g, "g");
  check_clip(clip);
  at::Tensor out = empty_output_like(g);
  const std::vector<float> unit(g.size(0), 1.0f);
  PVF_DISPATCH_STORAGE_TYPES(g.scalar_type(), "clip_grad_cpu",
                             [&] { scale_and_clip_images<scalar_t>(g, unit, static_cast<float>(clip), out); });
  return out;
}

}  // namespace pvf::cpu
