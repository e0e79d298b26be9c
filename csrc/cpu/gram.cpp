// gram, gram_times and a style loss's layer (gram_error and its backward) on the CPU, for
// float32 activations whose channels are innermost (channels_last maps, tokens): the rows of
// F^T (F = x as [B, C, P]) are then contiguous, and row kernels (row_kernels.cpp) take the
// products without torch's GEMM, whose packing of these long, thin matrices costs more than the
// products when the data is not in cache (a style loss's backward). The Python layer sends
// every other input to the reference (torch.bmm).
// Semantics: pyviz_fast/ops/reference.py (gram, gram_times, gram_error, gram_error_backward).
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

namespace {

// out = (m F)^T = F^T m^T, row block by row block: m_t holds m^T [B, C, C], contiguous.
at::Tensor rows_times_matrices(const at::Tensor& m_t, const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), P = x.numel() / (B * C);
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

void check_matrices(const at::Tensor& m, const char* name, const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1);
  TORCH_CHECK(m.scalar_type() == at::kFloat && m.dim() == 3 && m.size(0) == B && m.size(1) == C && m.size(2) == C,
              name, " must be float32 [B, C, C] = [", B, ", ", C, ", ", C, "], got ", m.scalar_type(), " ",
              m.sizes());
}

void check_per_image(const at::Tensor& v, const char* name, const at::Tensor& x) {
  TORCH_CHECK(v.scalar_type() == at::kFloat && v.dim() == 1 && v.size(0) == x.size(0), name,
              " must be float32 [B] = [", x.size(0), "], got ", v.scalar_type(), " ", v.sizes());
}

}  // namespace

at::Tensor gram_times_cpu(const at::Tensor& m, const at::Tensor& x) {
  check_rows(x);
  check_matrices(m, "m", x);
  return rows_times_matrices(m.transpose(1, 2).contiguous(), x);
}

std::tuple<at::Tensor, at::Tensor> gram_error_cpu(const at::Tensor& x, const at::Tensor& target,
                                                  const at::Tensor& norms) {
  check_rows(x);
  check_matrices(target, "target", x);
  check_per_image(norms, "norms", x);
  const int64_t B = x.size(0), C = x.size(1), P = x.numel() / (B * C);
  at::Tensor residual = at::empty({B, C, C}, x.options());
  at::Tensor error = at::empty({B}, x.options());
  const at::Tensor t = target.contiguous(), n = norms.contiguous();
  const float* rows = x.const_data_ptr<float>();
  const float* tgt = t.const_data_ptr<float>();
  const float* norm = n.const_data_ptr<float>();
  float* res = residual.mutable_data_ptr<float>();
  float* err = error.mutable_data_ptr<float>();
  const float positions = static_cast<float>(P);
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      float* r = res + b * C * C;
      const float* tb = tgt + b * C * C;
      gram_of_rows(rows + b * P * C, P, C, r);
      for (int64_t k = 0; k < C * C; ++k) r[k] = r[k] / positions - tb[k];
      // C * C squares (a multiple of 256) in double, in kLanes independent sums: one running
      // sum would wait on each add's latency
      constexpr int kLanes = 8;
      double lanes[kLanes] = {};
      for (int64_t k = 0; k < C * C; k += kLanes)
        for (int l = 0; l < kLanes; ++l) lanes[l] += static_cast<double>(r[k + l]) * r[k + l];
      double sum = 0.0;
      for (double lane : lanes) sum += lane;
      err[b] = static_cast<float>(sum) / norm[b];
    }
  });
  return {error, residual};
}

at::Tensor gram_error_backward_cpu(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weights) {
  check_rows(x);
  check_matrices(residual, "residual", x);
  check_per_image(weights, "weights", x);
  const int64_t B = x.size(0), C = x.size(1), P = x.numel() / (B * C);
  // m = (dG + dG^T) / P with dG = 2 w R is symmetric: it serves as the m^T rows_times_matrices takes
  at::Tensor m = at::empty({B, C, C}, x.options());
  const at::Tensor r_all = residual.contiguous(), w_all = weights.contiguous();
  const float* res = r_all.const_data_ptr<float>();
  const float* w = w_all.const_data_ptr<float>();
  float* mat = m.mutable_data_ptr<float>();
  const float positions = static_cast<float>(P);
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float* r = res + b * C * C;
      float* m_b = mat + b * C * C;
      const float scale = 2 * w[b] / positions;
      for (int64_t i = 0; i < C; ++i)
        for (int64_t j = i; j < C; ++j) m_b[i * C + j] = m_b[j * C + i] = scale * (r[i * C + j] + r[j * C + i]);
    }
  });
  return rows_times_matrices(m, x);
}

}  // namespace pvf::cpu
