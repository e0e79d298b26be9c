// gram and gram_times on the CPU, for float32 activations whose channels are innermost
// (channels_last maps, tokens): the rows of F^T (F = x as [B, C, P]) are then contiguous, and
// row kernels (row_kernels.cpp) take the products without torch's GEMM, whose packing of these
// long, thin matrices costs more than the products when the data is not in cache (a style
// loss's backward). The Python layer sends every other input to the reference (torch.bmm).
// Semantics: pyviz_fast/ops/reference.py (gram, gram_times).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include "../checks.h"
#include "ops_cpu.h"
#include "row_kernels.h"

namespace pvf::cpu {
namespace {

void check_rows(const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 2 && x.numel() > 0, "x must be a non-empty [B, C, *positions], got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat, "x must be float32, got ", x.scalar_type());
  TORCH_CHECK(x.movedim(1, -1).is_contiguous(), "x must have its channels innermost and dense (channels_last, "
              "tokens), got strides ", x.strides());
  TORCH_CHECK(x.size(1) % kGramChannels == 0, "x must have a multiple of ", kGramChannels, " channels, got ",
              x.size(1));
}

}  // namespace

at::Tensor gram_cpu(const at::Tensor& x) {
  check_rows(x);
  const int64_t B = x.size(0), C = x.size(1), P = x.numel() / (B * C);
  at::Tensor g = at::empty({B, C, C}, x.options());
  const float* rows = x.const_data_ptr<float>();
  float* out = g.mutable_data_ptr<float>();
  // One image per task: each Gram matrix sums its rows in one fixed order, whatever the threads.
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) gram_of_rows(rows + b * P * C, P, C, out + b * C * C);
  });
  return g;
}

at::Tensor gram_times_cpu(const at::Tensor& m, const at::Tensor& x) {
  check_rows(x);
  const int64_t B = x.size(0), C = x.size(1), P = x.numel() / (B * C);
  TORCH_CHECK(m.scalar_type() == at::kFloat && m.dim() == 3 && m.size(0) == B && m.size(1) == C && m.size(2) == C,
              "m must be float32 [B, C, C] = [", B, ", ", C, ", ", C, "], got ", m.scalar_type(), " ", m.sizes());
  // (m F)^T = F^T m^T: the rows of F^T times m^T
  const at::Tensor m_t = m.transpose(1, 2).contiguous();
  at::Tensor out = at::empty_like(x);  // x's strides: channels innermost, dense
  const float* rows = x.const_data_ptr<float>();
  const float* mat = m_t.const_data_ptr<float>();
  float* dst = out.mutable_data_ptr<float>();
  constexpr int64_t kRowsPerTask = 64;
  const int64_t tasks_per_image = (P + kRowsPerTask - 1) / kRowsPerTask;
  at::parallel_for(0, B * tasks_per_image, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tasks_per_image, p0 = task % tasks_per_image * kRowsPerTask;
      const int64_t offset = (b * P + p0) * C;
      rows_times(rows + offset, std::min(kRowsPerTask, P - p0), C, mat + b * C * C, dst + offset);
    }
  });
  return out;
}

}  // namespace pvf::cpu
