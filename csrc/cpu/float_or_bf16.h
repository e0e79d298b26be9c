// The two element types of the activation kernels (the style and content losses' ops).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>

namespace pvf::cpu {

// Calls f with a value of x's element type: float or c10::BFloat16 (x is one of the two).
template <typename F>
void dispatch_float_or_bf16(const at::Tensor& x, F&& f) {
  if (x.scalar_type() == at::kBFloat16)
    f(c10::BFloat16{});
  else
    f(float{});
}

}  // namespace pvf::cpu
