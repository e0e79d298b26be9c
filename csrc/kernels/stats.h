// Per-image gradient scale s_b (rms, mean |g|, population std, max |g|) and non-finite flag,
// reduced in float32: elements fold into partials (fold_element), partials into partials
// (fold_partial, Chan et al. for the std), and a fully folded partial gives s_b (scale_of).
// The tile programs (tile_programs.h) fix the order of every fold, so results are reproducible.
#pragma once

#include "image_shape.h"
#include "storage.h"

namespace pvf {

// One thread's fold. a, b per mode: rms (sum g^2, -), mean_abs (sum |g|, -), max_abs (max |g|, -),
// std (mean, sum of squared deviations from it), none (-, -). count: elements folded.
struct alignas(16) StatsPartial {  // 16-byte aligned: one vector load (load_coherent)
  float a;
  float b;
  int32_t count;
  int32_t nonfinite;  // 1 if a non-finite element was folded (noted by 'none'; see fold_element) or flagged
};

// Folds element v into p, in every mode but the std, whose partial a warp makes from all of its
// elements at once (shared_sum, squared_deviations). A non-finite element makes a (and so s_b)
// non-finite in every mode but 'none', which flags the image (fold_image): only 'none' notes it in
// `nonfinite`.
PVF_HD StatsPartial fold_element(StatsPartial p, float v, NormMode mode) {
  p.count += 1;
  if (mode == kNone && !is_finite(v)) p.nonfinite = 1;
  switch (mode) {
    case kRms: p.a = fmaf(v, v, p.a); break;
    case kMeanAbs: p.a += fabsf(v); break;
    case kMaxAbs: p.a = maximum_nan(p.a, fabsf(v)); break;
    case kStd: break;  // a warp's two passes
    case kNone: break;
  }
  return p;
}

// Every mode's warps fold a thread's kStatsRows values, of which the first n (0 <= n <= kStatsRows)
// lie inside the image; the std's also share 1 / (the warp's count of such values, at most
// kMaxWarpCount).
constexpr int kStatsRows = 16, kMaxWarpCount = kStatsRows * 32;

// Which of the values are inside, as a word with value q at bit row_bit(q): six to a byte, at
// bits 1-6, where ptxas's R2P moves a byte's bits into predicates P1-P6 in one instruction (with
// q < n tested value by value, a compare each).
constexpr int row_bit(int q) { return 8 * (q / 6) + 1 + q % 6; }
PVF_HD constexpr bool has_row(uint32_t rows, int q) { return rows & (1u << row_bit(q)); }

// Two tables indexed by n that the GPU reads from constant memory (one load for the warp when n
// is warp-uniform), where computing their entries costs more: first_rows(n), the bits of the
// first n values; reciprocal_of_count(n), 1 / n in float32 (1 for n = 0), the very quotient of
// the IEEE division that it replaces on the GPU (a reciprocal, a Newton step, a range test and a
// call to a slow path) and that the emulation still does, so both give the same bits.
template <class V, int N>
struct Table {
  V of[N];
};
constexpr Table<uint32_t, kStatsRows + 1> first_rows_bits() {
  Table<uint32_t, kStatsRows + 1> t{};
  for (int n = 1; n <= kStatsRows; ++n) t.of[n] = t.of[n - 1] | (1u << row_bit(n - 1));
  return t;
}
constexpr Table<float, kMaxWarpCount + 1> count_reciprocals() {
  Table<float, kMaxWarpCount + 1> t{};
  t.of[0] = 1.0f;
  for (int n = 1; n <= kMaxWarpCount; ++n) t.of[n] = 1.0f / static_cast<float>(n);
  return t;
}
#ifdef __CUDACC__
static __constant__ Table<uint32_t, kStatsRows + 1> kFirstRowsBits = first_rows_bits();
static __constant__ Table<float, kMaxWarpCount + 1> kCountReciprocals = count_reciprocals();
#endif

PVF_HD uint32_t first_rows(int32_t n) {
#ifdef __CUDA_ARCH__
  return kFirstRowsBits.of[n];
#else
  static constexpr auto table = first_rows_bits();
  return table.of[n];
#endif
}

PVF_HD float reciprocal_of_count(int32_t n) {
#ifdef __CUDA_ARCH__
  return kCountReciprocals.of[n];
#else
  return 1.0f / static_cast<float>(n > 0 ? n : 1);
#endif
}

// The sum of v[q] x share over the rows of `rows` (first_rows): with share one over the count of
// values summed (here and by others: a warp's), their mean; exactly v / count for a power-of-two
// count; no sum overflows where the values do not, and a non-finite value makes it non-finite. No
// division per element, as Welford's fold would take.
PVF_HD float shared_sum(const float (&v)[kStatsRows], uint32_t rows, float share) {
  float sum = 0.0f;
  PVF_UNROLL
  for (int q = 0; q < kStatsRows; ++q) {
    if (has_row(rows, q)) sum = fmaf(v[q], share, sum);
  }
  return sum;
}

// The sum of (v[q] - mean)^2 over the rows of `rows` (first_rows).
PVF_HD float squared_deviations(const float (&v)[kStatsRows], uint32_t rows, float mean) {
  float sum = 0.0f;
  PVF_UNROLL
  for (int q = 0; q < kStatsRows; ++q) {
    const float d = v[q] - mean;
    if (has_row(rows, q)) sum = fmaf(d, d, sum);
  }
  return sum;
}

// The fold of partials whose counts are known without folding them (every mode but std, which
// needs them: fold_partial): only the mode's value moves (a; for 'none' the non-finite flag). An
// empty partial (a = +0) then folds too, which changes no sum or max of the non-negative values
// these modes hold: the values equal fold_partial's.
PVF_HD StatsPartial fold_value(StatsPartial p, const StatsPartial& q, NormMode mode) {
  switch (mode) {
    case kRms:
    case kMeanAbs: p.a += q.a; break;
    case kMaxAbs: p.a = maximum_nan(p.a, q.a); break;
    case kNone: p.nonfinite |= q.nonfinite; break;
    case kStd: break;
  }
  return p;
}

// Folds partial q into p (Chan et al. for the std's mean and squared deviations).
PVF_HD StatsPartial fold_partial(StatsPartial p, const StatsPartial& q, NormMode mode) {
  if (q.count == 0) return p;
  const int32_t count = p.count + q.count;
  if (mode == kStd) {
    const float delta = q.a - p.a;
    const float share = static_cast<float>(q.count) / static_cast<float>(count);
    p.a = fmaf(delta, share, p.a);
    p.b += fmaf(delta * delta, static_cast<float>(p.count) * share, q.b);
  } else {
    p = fold_value(p, q, mode);
  }
  p.count = count;
  p.nonfinite |= q.nonfinite;
  return p;
}

// The scale s_b of a fully folded image (0 for 'none').
PVF_HD float scale_of(const StatsPartial& p, NormMode mode) {
  const float n = static_cast<float>(p.count);
  switch (mode) {
    case kRms: return sqrtf(p.a / n);
    case kMeanAbs: return p.a / n;
    case kMaxAbs: return p.a;
    case kStd: return sqrtf(p.b / n);
    case kNone: return 0.0f;
  }
  return 0.0f;
}

}  // namespace pvf
