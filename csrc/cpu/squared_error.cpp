// A content loss's layer (squared_error and its backward) on the CPU: one pass over the
// activation each way, where torch's ops take five (widen, subtract, square, sum; scale, add the
// gradient from the rest of the model, narrow). Each image's elements are one contiguous block
// in any dense layout whose batch dimension is outermost (NCHW, channels_last, tokens), and
// target shares x's strides, so both are read as flat runs. Sums per image in double, in a fixed
// order whatever the threads.
// Semantics: pyviz_fast/ops/reference.py (squared_error, squared_error_backward).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <optional>
#include <type_traits>

#include "loss_kernels.h"
#include "ops_cpu.h"
#include "row_kernels.h"

namespace pvf::cpu {
namespace {

constexpr int64_t kRun = 2048;  // elements widened to float32 at a time (8 KB per buffer, on the stack)

void check_images(const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 2 && x.numel() > 0, "x must be a non-empty [B, ...] activation, got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "x must be float32 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK(x.is_non_overlapping_and_dense() && x.stride(0) == x.numel() / x.size(0),
              "x must be dense with its batch dimension outermost, got strides ", x.strides());
}

void check_laid_out_as_x(const at::Tensor& t, const char* name, at::ScalarType dtype, const at::Tensor& x) {
  TORCH_CHECK(t.scalar_type() == dtype && t.sizes() == x.sizes() && t.strides() == x.strides(), name, " must be ",
              dtype, " with x's shape and strides (", x.sizes(), ", strides ", x.strides(), "), got ",
              t.scalar_type(), " ", t.sizes(), ", strides ", t.strides());
}

// n elements of x as float32: x itself, or widened into buffer.
const float* as_floats(const float* x, int64_t, float*) { return x; }
const float* as_floats(const c10::BFloat16* x, int64_t n, float* buffer) {
  load_strided(x, 1, n, buffer);
  return buffer;
}

template <typename F>
void for_each_image(const at::Tensor& x, F&& f) {
  const int64_t B = x.size(0), n = x.numel() / B;
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) f(b, b * n, n);
  });
}

}  // namespace

at::Tensor squared_error_cpu(const at::Tensor& x, const at::Tensor& target, const at::Tensor& norms) {
  check_images(x);
  check_laid_out_as_x(target, "target", at::kFloat, x);
  check_per_image(norms, "norms", x);
  at::Tensor error = at::empty({x.size(0)}, norms.options());
  const at::Tensor n_all = norms.contiguous();
  const float* norm = n_all.const_data_ptr<float>();
  float* err = error.mutable_data_ptr<float>();
  const float* t = target.const_data_ptr<float>();
  dispatch_float_or_bf16(x, [&](auto tag) {
    using T = decltype(tag);
    const T* values = x.const_data_ptr<T>();
    for_each_image(x, [&](int64_t b, int64_t offset, int64_t n) {
      float x_run[kRun], diff[kRun];
      double sum = 0.0;
      for (int64_t k = 0; k < n; k += kRun) {
        const int64_t count = std::min(kRun, n - k), at = offset + k;
        scaled_difference(as_floats(values + at, count, x_run), t + at, count, 1.0f, nullptr, diff);  // x - t
        sum += sum_of_squares(diff, count);
      }
      err[b] = static_cast<float>(sum) / norm[b];
    });
  });
  return error;
}

at::Tensor squared_error_backward_cpu(const at::Tensor& x, const at::Tensor& target, const at::Tensor& weights,
                                      const std::optional<at::Tensor>& add) {
  check_images(x);
  check_laid_out_as_x(target, "target", at::kFloat, x);
  check_per_image(weights, "weights", x);
  if (add) check_laid_out_as_x(*add, "add", x.scalar_type(), x);
  at::Tensor out = at::empty_like(x);  // x's strides
  const at::Tensor w_all = weights.contiguous();
  const float* w = w_all.const_data_ptr<float>();
  const float* t = target.const_data_ptr<float>();
  dispatch_float_or_bf16(x, [&](auto tag) {
    using T = decltype(tag);
    const T* values = x.const_data_ptr<T>();
    const T* addend = add ? add->const_data_ptr<T>() : nullptr;
    T* dst = out.mutable_data_ptr<T>();
    for_each_image(x, [&](int64_t b, int64_t offset, int64_t n) {
      float x_run[kRun], add_run[kRun], out_run[kRun];
      for (int64_t k = 0; k < n; k += kRun) {
        const int64_t count = std::min(kRun, n - k), at = offset + k;
        const float* more = addend == nullptr ? nullptr : as_floats(addend + at, count, add_run);
        if constexpr (std::is_same_v<T, float>) {
          scaled_difference(values + at, t + at, count, 2 * w[b], more, dst + at);
        } else {
          scaled_difference(as_floats(values + at, count, x_run), t + at, count, 2 * w[b], more, out_run);
          store_strided(out_run, count, dst + at, 1);
        }
      }
    });
  });
  return out;
}

}  // namespace pvf::cpu
