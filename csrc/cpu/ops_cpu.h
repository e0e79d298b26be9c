// CPU entry points of the pyviz_fast ops (registered in register.cpp). Each checks its
// arguments (checks.h), dispatches on the storage dtype and runs a multi-threaded kernel that
// computes in float32. Semantics: pyviz_fast/ops/reference.py.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

namespace pvf::cpu {

at::Tensor jitter_cpu(const at::Tensor& x, const at::Tensor& shifts);
at::Tensor gaussian_blur_cpu(const at::Tensor& x, const at::Tensor& sigma);
at::Tensor normalize_grad_cpu(const at::Tensor& g, c10::string_view mode, double eps);
at::Tensor clip_grad_cpu(const at::Tensor& g, double clip);
std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_ascent_step_cpu(
    const at::Tensor& x, const at::Tensor& grad, const at::Tensor& shifts, const at::Tensor& next_shifts,
    const at::Tensor& sigma, c10::string_view norm, double eps, double clip, double lr, double decay,
    double center, double lo, double hi);

at::Tensor periodic_crops_cpu(const at::Tensor& image, const at::Tensor& boxes, const std::optional<at::Tensor>& noise,
                              double noise_scale);
at::Tensor periodic_crops_backward_cpu(const at::Tensor& grad, const at::Tensor& boxes);

at::Tensor gram_cpu(const at::Tensor& x);
at::Tensor gram_times_cpu(const at::Tensor& m, const at::Tensor& x);
std::tuple<at::Tensor, at::Tensor> gram_error_cpu(const at::Tensor& x, const at::Tensor& target,
                                                  const at::Tensor& norms);
at::Tensor gram_error_backward_cpu(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weights,
                                   const std::optional<at::Tensor>& add);

at::Tensor squared_error_cpu(const at::Tensor& x, const at::Tensor& target, const at::Tensor& norms);
at::Tensor squared_error_backward_cpu(const at::Tensor& x, const at::Tensor& target, const at::Tensor& weights,
                                      const std::optional<at::Tensor>& add);

}  // namespace pvf::cpu
