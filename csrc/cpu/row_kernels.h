// The hot inner loops of the CPU kernels, one row (a contiguous float32 buffer) at a time.
// They are plain functions over float buffers so that row_kernels.cpp can compile each one
// for several instruction sets (SSE2, AVX2, AVX-512) and pick the best at load time: users'
// CPUs differ, and the build does not use -march=native.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pvf::cpu {

// Strided row transfers between storage dtypes and float32 buffers:
// dst[j] = float(src[j * stride]) and dst[j * stride] = T(src[j]) (round to nearest even).
void load_strided(const float* src, int64_t stride, int64_t n, float* dst);
void load_strided(const c10::Half* src, int64_t stride, int64_t n, float* dst);
void load_strided(const c10::BFloat16* src, int64_t stride, int64_t n, float* dst);
void store_strided(const float* src, int64_t n, float* dst, int64_t stride);
void store_strided(const float* src, int64_t n, c10::Half* dst, int64_t stride);
void store_strided(const float* src, int64_t n, c10::BFloat16* dst, int64_t stride);

// dst[j] = src[j] with non-temporal stores (whole 64-byte lines on AVX-512, 16-byte pieces
// otherwise; plain stores at unaligned ends): a large output goes straight to memory without
// first being read into the cache. Call stream_fence() before other threads read dst.
void stream_row(const float* src, int64_t n, float* dst);
void stream_fence();

// Asks for the cache lines of [p, p + bytes) ahead of their use (a hint; no effect on results).
inline void prefetch_bytes(const void* p, int64_t bytes) {
  const char* first = static_cast<const char*>(p);
  for (int64_t i = 0; i < bytes; i += 64) __builtin_prefetch(first + i);
}

// A symmetric filter over 2R+1 source rows (R = radius):
//   out[j] = taps[0] * src[R][j] + sum_{k=1..R} taps[k] * (src[R+k][j] + src[R-k][j]).
// Horizontal blur passes shifted pointers into one padded row (src[m] = row + m); vertical
// blur passes the (reflected) rows i-R..i+R of a plane. taps[k] is the weight at distance k.
void symmetric_filter(const float* const* src, int64_t n, const float* taps, int64_t radius, float* out);

// The horizontal blur's fast path: symmetric_filter of one padded row's shifted copies
// (src[m] = row - R + m, the padding in columns -R..-1 and n..n+R-1), on AVX-512 CPUs for
// radius <= 8 when row is 64-byte aligned and row[-16, round_up(n, 16) + 16) is readable. It
// makes the shifted rows from aligned loads by shuffles (a load at every shift would split
// across cache lines). Returns how many leading outputs it wrote, 0 when it does not apply;
// symmetric_filter does the rest.
int64_t row_filter_vectors(const float* row, int64_t n, const float* taps, int64_t radius, float* out);
// Floats a padded row needs on each side for row_filter_vectors.
constexpr int64_t kRowFilterMargin = 16;

// Running sums of a gradient, filled row by row (each row in float lanes, rows combined in
// double in order, so the result does not depend on how rows are split among threads).
// The spread is kept as the sum of squared deviations from the mean (m2, combined with Chan's
// formula) so that std stays accurate when the mean dwarfs the spread.
struct GradStats {
  int64_t count = 0;
  double sum = 0.0;
  double sum_sq = 0.0;
  double sum_abs = 0.0;
  double max_abs = 0.0;
  double m2 = 0.0;
  bool finite = true;

  void add(const GradStats& other);  // callers add rows and planes in index order
};
void accumulate_stats(const float* g, int64_t n, GradStats& stats);
// Only count, sum_abs and finite (what mean |g| needs), in one quicker pass; the other sums
// stay 0. Its sum_abs equals accumulate_stats' within float32 rounding, not bit for bit (the
// lanes are added in another order).
void accumulate_abs_stats(const float* g, int64_t n, GradStats& stats);

// out[j] = clamp(g[j] * scale, -clip, clip) (in place allowed).
void scale_and_clip(const float* g, int64_t n, float scale, float clip, float* out);

// The ascent update of one row: u = x + lr * clamp(g * scale, -clip, clip);
// out = clamp(u - decay * (u - center), lo, hi).
struct UpdateParams {
  float scale, clip, lr, decay, center, lo, hi;
};
void ascent_update(const float* x, const float* g, int64_t n, const UpdateParams& p, float* out);

// sum_k v[k]^2 in double, in 8 interleaved partial sums added in order (a style or content
// loss's error);
double sum_of_squares(const float* v, int64_t n);
// r[k] = r[k] / divisor - t[k] (a Gram matrix's residual against its target);
void divided_difference(float* r, float divisor, const float* t, int64_t n);
// out[k] = add[k] + scale * (x[k] - t[k]) (add: nullptr for none).
void scaled_difference(const float* x, const float* t, int64_t n, float scale, const float* add, float* out);

// Gram products of position-major rows (an activation whose channels are innermost: row p holds
// the C channels of position p), for C a multiple of kGramChannels. In float32, summed over the
// rows in order; fused multiply-adds where the CPU has them (AVX2, AVX-512), so the last bits
// depend on the instruction set, not on threads.
constexpr int64_t kGramChannels = 16;
// g[i * C + j] = sum_p rows[p * C + i] * rows[p * C + j] over the n rows (g: C x C, written).
void gram_of_rows(const float* rows, int64_t n, int64_t C, float* g);
// out[p * C + j] = add[p * C + j] + sum_i rows[p * C + i] * m[i * C + j]: the n rows times the
// C x C matrix m, plus rows laid out as them (add: nullptr for none) in the same sums.
void rows_times(const float* rows, int64_t n, int64_t C, const float* m, const float* add, float* out);

// The C x C passes of the Gram kernels, by 16 x 16 blocks transposed in registers where the CPU
// has AVX-512 (C a multiple of kGramChannels):
// g's lower triangle made from its upper one (g[i * C + j] = g[j * C + i] for j < i);
void mirror_upper(float* g, int64_t C);
// m = scale * (r + r^T), exactly symmetric.
void symmetric_sum(const float* r, int64_t C, float scale, float* m);

// The instruction sets this CPU runs the explicit-vector loops with (symmetric_filter, the two
// stats, the two Gram products), best first ("avx512", "avx2", "sse2"; "portable" off x86 GCC),
// and the one they use from now on ("": the best), for tests that check each; returns the one
// used before. Their vectors have the set's width, so sums over lanes (the stats) round in
// another order on each.
std::vector<std::string> vector_instruction_sets();
std::string use_vector_instruction_set(const std::string& name);

}  // namespace pvf::cpu
