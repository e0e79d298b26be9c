// The CPU kernels of every op, registered with the dispatcher (schemas: csrc/ops.cpp).
#include <torch/library.h>

#include "ops_cpu.h"

TORCH_LIBRARY_IMPL(pyviz_fast, CPU, m) {
  m.impl("jitter", &pvf::cpu::jitter_cpu);
  m.impl("gaussian_blur", &pvf::cpu::gaussian_blur_cpu);
  m.impl("normalize_grad", &pvf::cpu::normalize_grad_cpu);
  m.impl("clip_grad", &pvf::cpu::clip_grad_cpu);
  m.impl("fused_ascent_step", &pvf::cpu::fused_ascent_step_cpu);
  m.impl("periodic_crops", &pvf::cpu::periodic_crops_cpu);
  m.impl("periodic_crops_backward", &pvf::cpu::periodic_crops_backward_cpu);
  m.impl("gram", &pvf::cpu::gram_cpu);
  m.impl("gram_times", &pvf::cpu::gram_times_cpu);
  m.impl("gram_error", &pvf::cpu::gram_error_cpu);
  m.impl("gram_error_backward", &pvf::cpu::gram_error_backward_cpu);
  m.impl("squared_error", &pvf::cpu::squared_error_cpu);
  m.impl("squared_error_backward", &pvf::cpu::squared_error_backward_cpu);
}
