// gram, gram_times and a style loss's layer (gram_error and its backward) on the CPU, for
// activations whose channels are innermost (channels_last maps, tokens): the rows of F^T (F = x
// as [B, C, P]) are then contiguous, and row kernels take the products without torch's GEMM,
// whose packing of these long, thin matrices costs more than the products when the data is not
// in cache (a style loss's backward). float32 rows run the vector loops of row_kernels.cpp,
// bfloat16 rows AMX tiles or AVX512_BF16 dot products (bf16_gram.cpp) where the CPU has either.
// The Python layer sends every other input to the reference (torch.bmm). Where the reference
// rounds a bfloat16 product's C x C result before using it (a Gram matrix, the backward's
// factor), so do these; the products themselves accumulate in float32, as torch.bmm's do.
// Semantics: pyviz_fast/ops/reference.py (gram, gram_times, gram_error, gram_error_backward).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <optional>
#include <type_traits>

#include "../checks.h"
#include "bf16_gram.h"
#include "loss_kernels.h"
#include "ops_cpu.h"
#include "row_kernels.h"

namespace pvf::cpu {
namespace {

void check_rows(const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 2 && x.numel() > 0, "x must be a non-empty [B, C, *positions], got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || (x.scalar_type() == at::kBFloat16 && bf16_gram_available()),
              "x must be float32 (or bfloat16 on a CPU with AMX or AVX512_BF16), got ", x.scalar_type());
  TORCH_CHECK(x.movedim(1, -1).is_contiguous(), "x must have its channels innermost and dense (channels_last, "
              "tokens), got strides ", x.strides());
  TORCH_CHECK(x.size(1) % kGramChannels == 0, "x must have a multiple of ", kGramChannels, " channels, got ",
              x.size(1));
}

// A C x C matrix in float32 as x's dtype would hold it (bfloat16: rounded, then widened back).
template <typename T>
void round_as(float* m, int64_t n) {
  if constexpr (!std::is_same_v<T, float>) round_to_bf16(m, n);
}

void products_of_rows(const float* rows, int64_t n, int64_t C, float* g) { gram_of_rows(rows, n, C, g); }
void products_of_rows(const c10::BFloat16* rows, int64_t n, int64_t C, float* g) { gram_of_rows_bf16(rows, n, C, g); }

// Each image's Gram products into g [B, C, C] float32, rounded as x's dtype holds them.
template <typename T>
void grams_of_images(const at::Tensor& x, float* g) {
  const int64_t B = x.size(0), C = x.size(1), P = x.numel() / (B * C);
  const T* rows = x.const_data_ptr<T>();
  // One image per task: each Gram matrix sums its rows in one fixed order, whatever the threads.
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      products_of_rows(rows + b * P * C, P, C, g + b * C * C);
      round_as<T>(g + b * C * C, C * C);
    }
  });
}

}  // namespace

at::Tensor gram_cpu(const at::Tensor& x) {
  check_rows(x);
  const int64_t B = x.size(0), C = x.size(1);
  at::Tensor g = at::empty({B, C, C}, x.options().dtype(at::kFloat));
  dispatch_float_or_bf16(x, [&](auto tag) { grams_of_images<decltype(tag)>(x, g.mutable_data_ptr<float>()); });
  return g.to(x.scalar_type());
}

namespace {

// The backward's C x C factor per image as the row kernels take it: m^T (float32 [B, C, C]) for
// float32 rows, its pairs of rows (int32 [B, C / 2, C], bf16_gram.h) for bfloat16 rows.
template <typename T>
using FactorOf = std::conditional_t<std::is_same_v<T, float>, float, int32_t>;

template <typename T>
at::Tensor empty_factors(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1);
  return std::is_same_v<T, float> ? at::empty({B, C, C}, x.options()) : at::empty({B, C / 2, C}, x.options().dtype(at::kInt));
}

void rows_times_factor(const float* rows, int64_t n, int64_t C, const float* m_t, const float* add, float* out) {
  rows_times(rows, n, C, m_t, add, out);
}
void rows_times_factor(const c10::BFloat16* rows, int64_t n, int64_t C, const int32_t* pairs,
                       const c10::BFloat16* add, c10::BFloat16* out) {
  rows_times_bf16(rows, n, C, reinterpret_cast<const uint32_t*>(pairs), add, out);
}

// out = (m F)^T + add = F^T m^T + add, row block by row block, with m^T given as
// factors (empty_factors); add (if given) is laid out as x.
template <typename T>
at::Tensor rows_times_factors(const at::Tensor& factors, const at::Tensor& x, const std::optional<at::Tensor>& add) {
  const int64_t B = x.size(0), C = x.size(1), P = x.numel() / (B * C), per_image = factors.numel() / B;
  at::Tensor out = at::empty_like(x);  // x's strides: channels innermost, dense
  const T* rows = x.const_data_ptr<T>();
  const T* addend = add ? add->const_data_ptr<T>() : nullptr;
  const FactorOf<T>* factor = factors.const_data_ptr<FactorOf<T>>();
  T* dst = out.mutable_data_ptr<T>();
  // A task is at least 16K channels of rows: each call pays a fixed cost (AMX tiles configured and
  // released, a tail buffer), which 64-row tasks of a 16-channel layer paid 16 times as often
  // (bf16 C=16 over 8 x 64², 1 thread: 217-402 -> 147 us).
  const int64_t rows_per_task = std::max<int64_t>(64, 16384 / C);
  const int64_t tasks_per_image = (P + rows_per_task - 1) / rows_per_task;
  at::parallel_for(0, B * tasks_per_image, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tasks_per_image, p0 = task % tasks_per_image * rows_per_task;
      const int64_t offset = (b * P + p0) * C;
      rows_times_factor(rows + offset, std::min(rows_per_task, P - p0), C, factor + b * per_image,
                        addend == nullptr ? nullptr : addend + offset, dst + offset);
    }
  });
  return out;
}

// The factors of m^T per image: make(b, factor) writes image b's.
template <typename T, typename Make>
at::Tensor factors_of_images(const at::Tensor& x, Make&& make) {
  at::Tensor factors = empty_factors<T>(x);
  const int64_t per_image = factors.numel() / x.size(0);
  FactorOf<T>* f = factors.mutable_data_ptr<FactorOf<T>>();
  at::parallel_for(0, x.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) make(b, f + b * per_image);
  });
  return factors;
}

void check_matrices(const at::Tensor& m, const char* name, const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1);
  TORCH_CHECK(m.scalar_type() == at::kFloat && m.dim() == 3 && m.size(0) == B && m.size(1) == C && m.size(2) == C,
              name, " must be float32 [B, C, C] = [", B, ", ", C, ", ", C, "], got ", m.scalar_type(), " ",
              m.sizes());
}

void check_addend(const std::optional<at::Tensor>& add, const at::Tensor& x) {
  TORCH_CHECK(!add || (add->scalar_type() == x.scalar_type() && add->sizes() == x.sizes() &&
                       add->strides() == x.strides()),
              "add must have x's dtype, shape and strides (", x.scalar_type(), " ", x.sizes(), ", strides ",
              x.strides(), "), got ", add->scalar_type(), " ", add->sizes(), ", strides ", add->strides());
}

}  // namespace

at::Tensor gram_times_cpu(const at::Tensor& m, const at::Tensor& x) {
  check_rows(x);
  TORCH_CHECK(m.scalar_type() == x.scalar_type(), "m must have x's dtype ", x.scalar_type(), ", got ",
              m.scalar_type());
  const at::Tensor m_float = m.to(at::kFloat);
  check_matrices(m_float, "m", x);
  const at::Tensor m_t = m_float.transpose(1, 2).contiguous();
  const int64_t C = x.size(1);
  const float* mat = m_t.const_data_ptr<float>();
  return dispatch_float_or_bf16(x, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float>) {
      return rows_times_factors<T>(m_t, x, std::nullopt);
    } else {
      const at::Tensor pairs = factors_of_images<T>(x, [&](int64_t b, int32_t* f) {
        pairs_of_matrix_bf16(mat + b * C * C, C, reinterpret_cast<uint32_t*>(f));
      });
      return rows_times_factors<T>(pairs, x, std::nullopt);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> gram_error_cpu(const at::Tensor& x, const at::Tensor& target,
                                                  const at::Tensor& norms) {
  check_rows(x);
  check_matrices(target, "target", x);
  check_per_image(norms, "norms", x);
  const int64_t B = x.size(0), C = x.size(1), P = x.numel() / (B * C);
  at::Tensor residual = at::empty({B, C, C}, target.options());
  at::Tensor error = at::empty({B}, target.options());
  const at::Tensor t = target.contiguous(), n = norms.contiguous();
  const float* tgt = t.const_data_ptr<float>();
  const float* norm = n.const_data_ptr<float>();
  float* res = residual.mutable_data_ptr<float>();
  float* err = error.mutable_data_ptr<float>();
  if (x.scalar_type() == at::kBFloat16) {  // the residual made as each 16 x 16 block of products finishes
    const c10::BFloat16* rows = x.const_data_ptr<c10::BFloat16>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        err[b] = static_cast<float>(gram_error_of_rows_bf16(rows + b * P * C, P, C, 1.0f / static_cast<float>(P),
                                                           tgt + b * C * C, res + b * C * C)) / norm[b];
    });
    return {error, residual};
  }
  const float positions = static_cast<float>(P);
  grams_of_images<float>(x, res);
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      float* r = res + b * C * C;
      divided_difference(r, positions, tgt + b * C * C, C * C);
      err[b] = static_cast<float>(sum_of_squares(r, C * C)) / norm[b];
    }
  });
  return {error, residual};
}

at::Tensor gram_error_backward_cpu(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weights,
                                   const std::optional<at::Tensor>& add) {
  check_rows(x);
  check_matrices(residual, "residual", x);
  check_per_image(weights, "weights", x);
  check_addend(add, x);
  const int64_t C = x.size(1), P = x.numel() / (x.size(0) * C);
  // m = (dG + dG^T) / P with dG = 2 w R is symmetric: it serves as the m^T the product takes
  const at::Tensor r_all = residual.contiguous(), w_all = weights.contiguous();
  const float* res = r_all.const_data_ptr<float>();
  const float* w = w_all.const_data_ptr<float>();
  const float positions = static_cast<float>(P);
  return dispatch_float_or_bf16(x, [&](auto tag) {
    using T = decltype(tag);
    const at::Tensor factors = factors_of_images<T>(x, [&](int64_t b, auto* f) {
      if constexpr (std::is_same_v<T, float>)
        symmetric_sum(res + b * C * C, C, 2 * w[b] / positions, f);
      else  // rounded to bfloat16 as it is paired
        symmetric_pairs_bf16(res + b * C * C, C, 2 * w[b] / positions, reinterpret_cast<uint32_t*>(f));
    });
    return rows_times_factors<T>(factors, x, add);
  });
}

}  // namespace pvf::cpu
