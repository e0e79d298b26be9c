// What the style and content losses' activation kernels share (gram.cpp, squared_error.cpp): the
// two element types they take, and the check of a per-image argument.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>

namespace pvf::cpu {

// f called with a value of x's element type: float or c10::BFloat16 (x is one of the two).
template <typename F>
decltype(auto) dispatch_float_or_bf16(const at::Tensor& x, F&& f) {
  if (x.scalar_type() == at::kBFloat16) return f(c10::BFloat16{});
  return f(float{});
}

// v must be float32 [B], one value per image of x.
inline void check_per_image(const at::Tensor& v, const char* name, const at::Tensor& x) {
  TORCH_CHECK(v.scalar_type() == at::kFloat && v.dim() == 1 && v.size(0) == x.size(0), name,
              " must be float32 [B] = [", x.size(0), "], got ", v.scalar_type(), " ", v.sizes());
}

}  // namespace pvf::cpu
