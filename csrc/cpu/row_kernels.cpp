// Row loops of the CPU kernels, compiled for several x86 instruction sets at once, so users
// get AVX2 / AVX-512 code without a -march=native build. Plain loops are target clones (GCC
// emits one copy per target and an ifunc resolver picks the best at the first call). Loops
// written in explicit vectors are compiled once per instruction set with vectors of its own
// register width (VectorKernels below) and picked once at load time. Other compilers or CPUs
// get the portable loops. Half precision rows use the F16C instructions when a runtime check
// finds them.
#include "row_kernels.h"

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include "transpose16.h"
#if defined(__GNUC__) && !defined(__clang__)
// Rows are short (a few hundred floats): a call to memcpy / memset, which GCC would make of the
// copy and fill loops here, costs about as much as the row's work itself.
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PVF_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#define PVF_X86_GCC 1
// GCC warns that passing a Vec (below) by value has another ABI without AVX-512: its helpers
// are inlined into each clone, so no call ever passes one.
#pragma GCC diagnostic ignored "-Wpsabi"
#else
#define PVF_CLONES
#define PVF_X86_GCC 0
#endif

namespace pvf::cpu {
namespace {

// A vector of L floats in GCC's generic vector extension, aligned to 4 bytes (rows start
// anywhere). Each instruction set uses its register's width: 16 on AVX-512, 8 on AVX2, 4 on
// SSE2. A wider type does not fit a register, and GCC then keeps it in memory: AVX-512's
// 16-float vectors ran the blur and the Gram products 5-30x slower on an AVX2-only CPU.
// (Spelled out per width: not every compiler takes a vector_size that depends on a template
// parameter.)
template <int L>
struct Lanes;
#define PVF_LANES(L)                                                    \
  template <>                                                           \
  struct Lanes<L> {                                                     \
    typedef float Vec __attribute__((vector_size(4 * L), aligned(4))); \
  };
PVF_LANES(1)
PVF_LANES(2)
PVF_LANES(4)
PVF_LANES(8)
PVF_LANES(16)
#undef PVF_LANES

template <int L>
[[gnu::always_inline]] inline typename Lanes<L>::Vec load_vec(const float* p) {
  typename Lanes<L>::Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <int L>
[[gnu::always_inline]] inline void store_vec(float* p, typename Lanes<L>::Vec v) {
  std::memcpy(p, &v, sizeof v);
}

template <typename V>
[[gnu::always_inline]] inline V abs_vec(V v) { return v < 0 ? -v : v; }

// op over a vector's lanes as a tree of halves (log2 L vector steps, not L - 1 in a chain).
template <int L, typename Op>
[[gnu::always_inline]] inline float reduce_lanes(typename Lanes<L>::Vec v, const Op& op) {
  if constexpr (L == 1) {
    return v[0];
  } else {
    typename Lanes<L / 2>::Vec low, high;
    std::memcpy(&low, &v, sizeof low);
    std::memcpy(&high, reinterpret_cast<const char*>(&v) + sizeof low, sizeof high);
    return reduce_lanes<L / 2>(op(low, high), op);
  }
}

template <int L>
[[gnu::always_inline]] inline float sum_lanes(typename Lanes<L>::Vec v) {
  return reduce_lanes<L>(v, [](auto a, auto b) { return a + b; });
}

// The largest lane (a NaN lane never wins: the rows' NaN probe finds those).
template <int L>
[[gnu::always_inline]] inline float max_lanes(typename Lanes<L>::Vec v) {
  return reduce_lanes<L>(v, [](auto a, auto b) { return a > b ? a : b; });
}

#if PVF_X86_GCC
// Storage of c10::Half read as the compiler's native half type (scalar F16C on v3/v4).
typedef _Float16 half_alias __attribute__((may_alias));

// Contiguous half <-> float, 8 at a time, with the F16C instructions (GCC does not vectorize
// _Float16 conversions by itself); used where the CPU has them.
const bool kHasF16C = (__builtin_cpu_init(), __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx"));

__attribute__((target("avx,f16c"))) void half_to_float_f16c(const c10::Half* src, int64_t n, float* dst) {
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(src);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bits + j))));
  for (; j < n; ++j) dst[j] = _cvtsh_ss(bits[j]);
}

__attribute__((target("avx,f16c"))) void float_to_half_f16c(const float* src, int64_t n, c10::Half* dst) {
  uint16_t* bits = reinterpret_cast<uint16_t*>(dst);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(bits + j),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + j), _MM_FROUND_TO_NEAREST_INT));
  for (; j < n; ++j) bits[j] = _cvtss_sh(src[j], _MM_FROUND_TO_NEAREST_INT);
}
#endif

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, NaN to the canonical quiet NaN (as c10::BFloat16 does).
inline uint16_t bfloat16_bits(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace

// Each transfer compiles its loop for stride 1 (NCHW rows) and stride 3 (rows of RGB
// channels_last tensors) apart, so that both vectorize; other strides take a general loop.
// `body` indexes with the constant s.
#define PVF_STRIDED_LOOP(n, stride, body)              \
  if (stride == 1) {                                   \
    constexpr int64_t s = 1;                           \
    for (int64_t j = 0; j < n; ++j) body;              \
  } else if (stride == 3) {                            \
    constexpr int64_t s = 3;                           \
    for (int64_t j = 0; j < n; ++j) body;              \
  } else {                                             \
    const int64_t s = stride;                          \
    for (int64_t j = 0; j < n; ++j) body;              \
  }

// A contiguous float copy, inline (see the pragma at the top), vectorized by each clone.
inline void copy_floats(const float* __restrict src, int64_t n, float* __restrict dst) {
  for (int64_t j = 0; j < n; ++j) dst[j] = src[j];
}

PVF_CLONES void load_strided(const float* src, int64_t stride, int64_t n, float* __restrict dst) {
  if (stride == 1) return copy_floats(src, n, dst);
  PVF_STRIDED_LOOP(n, stride, dst[j] = src[j * s])
}

PVF_CLONES void load_strided(const c10::Half* src, int64_t stride, int64_t n, float* __restrict dst) {
#if PVF_X86_GCC
  if (stride == 1 && kHasF16C) return half_to_float_f16c(src, n, dst);
  const half_alias* h = reinterpret_cast<const half_alias*>(src);
  PVF_STRIDED_LOOP(n, stride, dst[j] = static_cast<float>(h[j * s]))
#else
  PVF_STRIDED_LOOP(n, stride, dst[j] = static_cast<float>(src[j * s]))
#endif
}

PVF_CLONES void load_strided(const c10::BFloat16* src, int64_t stride, int64_t n, float* __restrict dst) {
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(src);
  PVF_STRIDED_LOOP(n, stride, dst[j] = bits_float(static_cast<uint32_t>(bits[j * s]) << 16))
}

PVF_CLONES void store_strided(const float* __restrict src, int64_t n, float* dst, int64_t stride) {
  if (stride == 1) return copy_floats(src, n, dst);
  PVF_STRIDED_LOOP(n, stride, dst[j * s] = src[j])
}

PVF_CLONES void store_strided(const float* __restrict src, int64_t n, c10::Half* dst, int64_t stride) {
#if PVF_X86_GCC
  if (stride == 1 && kHasF16C) return float_to_half_f16c(src, n, dst);
  half_alias* h = reinterpret_cast<half_alias*>(dst);
  PVF_STRIDED_LOOP(n, stride, h[j * s] = static_cast<_Float16>(src[j]))
#else
  PVF_STRIDED_LOOP(n, stride, dst[j * s] = c10::Half(src[j]))
#endif
}

PVF_CLONES void store_strided(const float* __restrict src, int64_t n, c10::BFloat16* dst, int64_t stride) {
  uint16_t* bits = reinterpret_cast<uint16_t*>(dst);
  PVF_STRIDED_LOOP(n, stride, bits[j * s] = bfloat16_bits(src[j]))
}

#if PVF_X86_GCC
// Streams whole cache lines from dst's first 64-byte boundary, one AVX-512 store per line.
__attribute__((target("avx512f"))) int64_t stream_lines_avx512(const float* src, int64_t n, float* dst) {
  int64_t j = 0;
  for (; j < n && reinterpret_cast<uintptr_t>(dst + j) % 64 != 0; ++j) dst[j] = src[j];
  for (; j + 16 <= n; j += 16) _mm512_stream_ps(dst + j, _mm512_loadu_ps(src + j));
  return j;
}
const bool kHasAVX512 = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f"));
#endif

void stream_row(const float* __restrict src, int64_t n, float* __restrict dst) {
  // Lines written whole and in order leave the write-combining buffers complete; the unaligned
  // ends are plain stores.
  int64_t j = 0;
#if PVF_X86_GCC
  if (kHasAVX512) j = stream_lines_avx512(src, n, dst);
#endif
#if defined(__x86_64__)
  for (; j < n && reinterpret_cast<uintptr_t>(dst + j) % 16 != 0; ++j) dst[j] = src[j];
  for (; j + 4 <= n; j += 4) _mm_stream_ps(dst + j, _mm_loadu_ps(src + j));
#endif
  for (; j < n; ++j) dst[j] = src[j];
}

void stream_fence() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

namespace {

template <int L>
[[gnu::always_inline]] inline void symmetric_filter_lanes(const float* const* src, int64_t n, const float* taps,
                                                          int64_t radius, float* __restrict out) {
  using Vec = typename Lanes<L>::Vec;
  // Two vectors of outputs at a time accumulate over all taps in registers and are stored once.
  const float* center = src[radius];
  int64_t j = 0;
  for (; j + 2 * L <= n; j += 2 * L) {
    Vec acc0 = taps[0] * load_vec<L>(center + j), acc1 = taps[0] * load_vec<L>(center + j + L);
    for (int64_t k = 1; k <= radius; ++k) {
      const float* after = src[radius + k] + j;
      const float* before = src[radius - k] + j;
      acc0 += taps[k] * (load_vec<L>(after) + load_vec<L>(before));
      acc1 += taps[k] * (load_vec<L>(after + L) + load_vec<L>(before + L));
    }
    store_vec<L>(out + j, acc0);
    store_vec<L>(out + j + L, acc1);
  }
  for (; j < n; ++j) {
    float acc = taps[0] * center[j];
    for (int64_t k = 1; k <= radius; ++k) acc += taps[k] * (src[radius + k][j] + src[radius - k][j]);
    out[j] = acc;
  }
}

}  // namespace

#if PVF_X86_GCC
// row_filter_vectors for one radius: per 16 outputs one aligned load, the shifted rows made from it and
// its neighbours (valignd), and symmetric_filter's sums in its order (GCC contracts its
// multiply-adds). Returns where it stopped.
template <int R>
__attribute__((target("avx512f"))) int64_t row_filter_avx512(const float* row, int64_t n, const float* taps,
                                                              float* __restrict out) {
  static_assert(R >= 1 && R <= 8);
  __m512 t[R + 1];
  for (int k = 0; k <= R; ++k) t[k] = _mm512_set1_ps(taps[k]);
  __m512i before = _mm512_castps_si512(_mm512_load_ps(row - 16)), center = _mm512_castps_si512(_mm512_load_ps(row));
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512i after = _mm512_castps_si512(_mm512_load_ps(row + j + 16));
    __m512 acc = _mm512_mul_ps(t[0], _mm512_castsi512_ps(center));
    [&]<int... k>(std::integer_sequence<int, k...>) {
      ((acc = _mm512_fmadd_ps(t[k + 1],
                              _mm512_add_ps(_mm512_castsi512_ps(_mm512_alignr_epi32(after, center, k + 1)),
                                            _mm512_castsi512_ps(_mm512_alignr_epi32(center, before, 15 - k))),
                              acc)),
       ...);
    }(std::make_integer_sequence<int, R>{});
    _mm512_storeu_ps(out + j, acc);
    before = center;
    center = after;
  }
  return j;
}

using RowFilterKernel = int64_t (*)(const float*, int64_t, const float*, float*);
const RowFilterKernel kRowFilters[] = {nullptr,
                                       row_filter_avx512<1>,
                                       row_filter_avx512<2>,
                                       row_filter_avx512<3>,
                                       row_filter_avx512<4>,
                                       row_filter_avx512<5>,
                                       row_filter_avx512<6>,
                                       row_filter_avx512<7>,
                                       row_filter_avx512<8>};
#endif

int64_t row_filter_vectors(const float* row, int64_t n, const float* taps, int64_t radius, float* out) {
#if PVF_X86_GCC
  if (kHasAVX512 && radius >= 1 && radius <= 8 && reinterpret_cast<uintptr_t>(row) % 64 == 0)
    return kRowFilters[radius](row, n, taps, out);
#endif
  return 0;
}

void GradStats::add(const GradStats& other) {
  if (other.count == 0) return;
  if (count > 0) {
    const double delta = other.sum / other.count - sum / count;
    m2 += delta * delta * (static_cast<double>(count) * other.count / (count + other.count));
  }
  count += other.count;
  sum += other.sum;
  sum_sq += other.sum_sq;
  sum_abs += other.sum_abs;
  max_abs = std::max(max_abs, other.max_abs);
  m2 += other.m2;
  finite = finite && other.finite;
}

namespace {

template <int L>
[[gnu::always_inline]] inline void accumulate_stats_lanes(const float* __restrict g, int64_t n, GradStats& stats) {
  using Vec = typename Lanes<L>::Vec;
  // Each sum in one vector of lanes, reduced as a tree at the end of the row. v - v is 0 for
  // finite v and NaN for inf / NaN: one NaN-propagating sum (the probe) finds them all.
  Vec sum = {}, sum_sq = {}, sum_abs = {}, max_abs = {}, probe = {};
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const Vec v = load_vec<L>(g + j), a = abs_vec(v);
    sum += v;
    sum_sq += v * v;
    sum_abs += a;
    max_abs = a > max_abs ? a : max_abs;
    probe += v - v;
  }
  const int64_t whole = j;
  float row_sum = sum_lanes<L>(sum), row_sq = sum_lanes<L>(sum_sq), row_abs = sum_lanes<L>(sum_abs);
  float row_max = max_lanes<L>(max_abs), row_probe = sum_lanes<L>(probe);
  for (; j < n; ++j) {
    const float v = g[j], a = std::fabs(v);
    row_sum += v;
    row_sq += v * v;
    row_abs += a;
    row_max = a > row_max ? a : row_max;
    row_probe += v - v;
  }
  // Second look at the row (in L1): squared deviations from its own mean.
  const float mean = row_sum / static_cast<float>(n);
  Vec m2 = {};
  for (j = 0; j < whole; j += L) {
    const Vec d = load_vec<L>(g + j) - mean;
    m2 += d * d;
  }
  float row_m2 = sum_lanes<L>(m2);
  for (; j < n; ++j) row_m2 += (g[j] - mean) * (g[j] - mean);
  GradStats row;
  row.count = n;
  row.sum = row_sum;
  row.sum_sq = row_sq;
  row.sum_abs = row_abs;
  row.max_abs = row_max;
  row.m2 = row_m2;
  row.finite = row_probe == 0.0f;
  stats.add(row);
}

template <int L>
[[gnu::always_inline]] inline void accumulate_abs_stats_lanes(const float* __restrict g, int64_t n,
                                                              GradStats& stats) {
  using Vec = typename Lanes<L>::Vec;
  // Two vectors of lanes, so that consecutive additions do not wait on each other, summed as a
  // tree at the end of the row. A sum of |g| cannot cancel: it is finite exactly when every
  // element is (or when it overflows float32, as the reference's float32 mean would).
  Vec sum0 = {}, sum1 = {};
  int64_t j = 0;
  for (; j + 2 * L <= n; j += 2 * L) {
    sum0 += abs_vec(load_vec<L>(g + j));
    sum1 += abs_vec(load_vec<L>(g + j + L));
  }
  if (j + L <= n) {
    sum0 += abs_vec(load_vec<L>(g + j));
    j += L;
  }
  float row = sum_lanes<L>(sum0 + sum1);
  for (; j < n; ++j) row += std::fabs(g[j]);
  stats.count += n;
  stats.sum_abs += row;
  stats.finite = stats.finite && std::isfinite(row);
}

}  // namespace

PVF_CLONES void scale_and_clip(const float* g, int64_t n, float scale, float clip, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = std::min(std::max(g[j] * scale, -clip), clip);
}

PVF_CLONES void ascent_update(const float* __restrict x, const float* __restrict g, int64_t n,
                              const UpdateParams& p, float* __restrict out) {
  const float scale = p.scale, clip = p.clip, lr = p.lr, decay = p.decay, center = p.center;
  const float lo = p.lo, hi = p.hi;
  for (int64_t j = 0; j < n; ++j) {
    const float step = std::min(std::max(g[j] * scale, -clip), clip);
    float u = x[j] + lr * step;
    u = u - decay * (u - center);
    out[j] = std::min(std::max(u, lo), hi);
  }
}

PVF_CLONES double sum_of_squares(const float* v, int64_t n) {
  constexpr int kLanes = 8;  // independent sums: one running sum would wait on each add's latency
  double lanes[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += static_cast<double>(v[k + l]) * v[k + l];
  for (int l = 0; k < n; ++k, ++l) lanes[l] += static_cast<double>(v[k]) * v[k];
  double sum = 0.0;
  for (double lane : lanes) sum += lane;
  return sum;
}

PVF_CLONES void divided_difference(float* __restrict r, float divisor, const float* __restrict t, int64_t n) {
  for (int64_t k = 0; k < n; ++k) r[k] = r[k] / divisor - t[k];
}

PVF_CLONES void scaled_difference(const float* __restrict x, const float* __restrict t, int64_t n, float scale,
                                  const float* __restrict add, float* __restrict out) {
  if (add == nullptr)
    for (int64_t k = 0; k < n; ++k) out[k] = scale * (x[k] - t[k]);
  else
    for (int64_t k = 0; k < n; ++k) out[k] = add[k] + scale * (x[k] - t[k]);
}

namespace {

// A block of I x (L J) accumulators of the Gram matrix, rows i0.., columns j0.., over the n
// rows: J vector loads per row and a broadcast per row index, read once per tile.
template <int L, int I, int J>
[[gnu::always_inline]] inline void gram_tile(const float* rows, int64_t n, int64_t C, int64_t i0, int64_t j0,
                                             float* g) {
  using Vec = typename Lanes<L>::Vec;
  Vec acc[I][J];
  for (int a = 0; a < I; ++a)
    for (int b = 0; b < J; ++b) acc[a][b] = load_vec<L>(g + (i0 + a) * C + j0 + b * L);
  for (int64_t p = 0; p < n; ++p) {
    const float* row = rows + p * C;
    Vec v[J];
    for (int b = 0; b < J; ++b) v[b] = load_vec<L>(row + j0 + b * L);
    for (int a = 0; a < I; ++a) {
      const float s = row[i0 + a];
      for (int b = 0; b < J; ++b) acc[a][b] += s * v[b];
    }
  }
  for (int a = 0; a < I; ++a)
    for (int b = 0; b < J; ++b) store_vec<L>(g + (i0 + a) * C + j0 + b * L, acc[a][b]);
}

// Tiles of I rows and J vectors where the channels divide into them, else of kGramChannels.
template <int L, int I, int J>
[[gnu::always_inline]] inline void gram_of_rows_lanes(const float* rows, int64_t n, int64_t C, float* g) {
  constexpr int kNarrow = kGramChannels / L;
  static_assert(kGramChannels % L == 0 && J >= kNarrow, "tiles of whole vectors, at least kGramChannels wide");
  std::fill(g, g + C * C, 0.0f);
  // Blocks of rows (256 KB) that stay in L2 while every tile of the block reads them.
  const int64_t block = std::max<int64_t>(64, 65536 / C);
  const bool wide = C % (J * L) == 0;
  const int64_t width = wide ? J * L : kGramChannels;
  for (int64_t p0 = 0; p0 < n; p0 += block) {
    const int64_t count = std::min(block, n - p0);
    for (int64_t i0 = 0; i0 < C; i0 += I) {
      // Tiles from the one holding the diagonal; the rest is mirrored below.
      for (int64_t j0 = i0 / width * width; j0 < C; j0 += width) {
        if (wide)
          gram_tile<L, I, J>(rows + p0 * C, count, C, i0, j0, g);
        else
          gram_tile<L, I, kNarrow>(rows + p0 * C, count, C, i0, j0, g);
      }
    }
  }
  mirror_upper(g, C);
}

// Rows p0.. (R of them) times m plus add's rows (if any), columns j0.. (L J): R x J
// accumulators, one load of m's row piece per channel for all R rows.
template <int L, int R, int J>
[[gnu::always_inline]] inline void times_tile(const float* rows, int64_t C, const float* m, const float* add,
                                              int64_t j0, float* out) {
  using Vec = typename Lanes<L>::Vec;
  Vec acc[R][J] = {};
  if (add != nullptr)
    for (int r = 0; r < R; ++r)
      for (int b = 0; b < J; ++b) acc[r][b] = load_vec<L>(add + r * C + j0 + b * L);
  for (int64_t i = 0; i < C; ++i) {
    Vec w[J];
    for (int b = 0; b < J; ++b) w[b] = load_vec<L>(m + i * C + j0 + b * L);
    for (int r = 0; r < R; ++r) {
      const float s = rows[r * C + i];
      for (int b = 0; b < J; ++b) acc[r][b] += s * w[b];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < J; ++b) store_vec<L>(out + r * C + j0 + b * L, acc[r][b]);
}

template <int L, int R, int J>
[[gnu::always_inline]] inline void rows_times_lanes(const float* rows, int64_t n, int64_t C, const float* m,
                                                    const float* add, float* out) {
  constexpr int kNarrow = kGramChannels / L;
  static_assert(kGramChannels % L == 0 && J >= kNarrow, "tiles of whole vectors, at least kGramChannels wide");
  const bool wide = C % (J * L) == 0;
  const auto added = [add](int64_t offset) { return add == nullptr ? nullptr : add + offset; };
  int64_t p = 0;
  for (; p + R <= n; p += R) {
    const int64_t at = p * C;
    if (wide) {
      for (int64_t j0 = 0; j0 < C; j0 += J * L) times_tile<L, R, J>(rows + at, C, m, added(at), j0, out + at);
    } else {
      for (int64_t j0 = 0; j0 < C; j0 += kGramChannels)
        times_tile<L, R, kNarrow>(rows + at, C, m, added(at), j0, out + at);
    }
  }
  for (; p < n; ++p)
    for (int64_t j0 = 0; j0 < C; j0 += L) times_tile<L, 1, 1>(rows + p * C, C, m, added(p * C), j0, out + p * C);
}

// The explicit-vector loops, compiled per instruction set. The tiles of the Gram products
// follow each set's registers: their accumulators and loads must fit in 32 zmm (AVX-512), 16
// ymm (AVX2) or 16 xmm (SSE2) registers, or they spill.
struct VectorKernels {
  const char* name;
  void (*symmetric_filter)(const float* const*, int64_t, const float*, int64_t, float*);
  void (*accumulate_stats)(const float*, int64_t, GradStats&);
  void (*accumulate_abs_stats)(const float*, int64_t, GradStats&);
  void (*gram_of_rows)(const float*, int64_t, int64_t, float*);
  void (*rows_times)(const float*, int64_t, int64_t, const float*, const float*, float*);
};

// Functions of one instruction set: TARGET (a gnu::target attribute, or nothing), L lanes, Gram
// tiles of GI rows x GJ vectors, products of TR rows x TJ vectors.
#define PVF_VECTOR_KERNELS(NAME, TARGET, L, GI, GJ, TR, TJ)                                                   \
  TARGET void symmetric_filter_##NAME(const float* const* src, int64_t n, const float* taps, int64_t radius,   \
                                      float* out) {                                                            \
    symmetric_filter_lanes<L>(src, n, taps, radius, out);                                                      \
  }                                                                                                            \
  TARGET void accumulate_stats_##NAME(const float* g, int64_t n, GradStats& stats) {                           \
    accumulate_stats_lanes<L>(g, n, stats);                                                                    \
  }                                                                                                            \
  TARGET void accumulate_abs_stats_##NAME(const float* g, int64_t n, GradStats& stats) {                       \
    accumulate_abs_stats_lanes<L>(g, n, stats);                                                                \
  }                                                                                                            \
  TARGET void gram_of_rows_##NAME(const float* rows, int64_t n, int64_t C, float* g) {                         \
    gram_of_rows_lanes<L, GI, GJ>(rows, n, C, g);                                                              \
  }                                                                                                            \
  TARGET void rows_times_##NAME(const float* rows, int64_t n, int64_t C, const float* m, const float* add,     \
                                float* out) {                                                                  \
    rows_times_lanes<L, TR, TJ>(rows, n, C, m, add, out);                                                      \
  }                                                                                                            \
  constexpr VectorKernels k_##NAME{#NAME,           symmetric_filter_##NAME, accumulate_stats_##NAME,          \
                                   accumulate_abs_stats_##NAME, gram_of_rows_##NAME, rows_times_##NAME};

#if PVF_X86_GCC
PVF_VECTOR_KERNELS(avx512, [[gnu::target("arch=x86-64-v4")]], 16, 8, 2, 8, 2)  // 16 accumulators
PVF_VECTOR_KERNELS(avx2, [[gnu::target("arch=x86-64-v3")]], 8, 4, 2, 6, 2)     // 8 and 12
PVF_VECTOR_KERNELS(sse2, , 4, 2, 4, 2, 4)                                        // 8 and 8
constexpr const VectorKernels* kVectorKernels[] = {&k_avx512, &k_avx2, &k_sse2};
bool cpu_runs(const VectorKernels* k) {
  __builtin_cpu_init();
  if (k == &k_avx512) return __builtin_cpu_supports("x86-64-v4");
  if (k == &k_avx2) return __builtin_cpu_supports("x86-64-v3");
  return true;
}
#else
PVF_VECTOR_KERNELS(portable, , 4, 2, 4, 2, 4)
constexpr const VectorKernels* kVectorKernels[] = {&k_portable};
bool cpu_runs(const VectorKernels*) { return true; }
#endif
#undef PVF_VECTOR_KERNELS

const VectorKernels* best_vector_kernels() {
  for (const VectorKernels* k : kVectorKernels)
    if (cpu_runs(k)) return k;
  return kVectorKernels[std::size(kVectorKernels) - 1];
}
std::atomic<const VectorKernels*> vector_kernels{best_vector_kernels()};

}  // namespace

void symmetric_filter(const float* const* src, int64_t n, const float* taps, int64_t radius, float* out) {
  vector_kernels.load(std::memory_order_relaxed)->symmetric_filter(src, n, taps, radius, out);
}
void accumulate_stats(const float* g, int64_t n, GradStats& stats) {
  vector_kernels.load(std::memory_order_relaxed)->accumulate_stats(g, n, stats);
}
void accumulate_abs_stats(const float* g, int64_t n, GradStats& stats) {
  vector_kernels.load(std::memory_order_relaxed)->accumulate_abs_stats(g, n, stats);
}
void gram_of_rows(const float* rows, int64_t n, int64_t C, float* g) {
  vector_kernels.load(std::memory_order_relaxed)->gram_of_rows(rows, n, C, g);
}
void rows_times(const float* rows, int64_t n, int64_t C, const float* m, const float* add, float* out) {
  vector_kernels.load(std::memory_order_relaxed)->rows_times(rows, n, C, m, add, out);
}

std::vector<std::string> vector_instruction_sets() {
  std::vector<std::string> names;
  for (const VectorKernels* k : kVectorKernels)
    if (cpu_runs(k)) names.emplace_back(k->name);
  return names;
}

std::string use_vector_instruction_set(const std::string& name) {
  const std::string previous = vector_kernels.load()->name;
  const VectorKernels* chosen = name.empty() ? best_vector_kernels() : nullptr;
  for (const VectorKernels* k : kVectorKernels)
    if (k->name == name && cpu_runs(k)) chosen = k;
  TORCH_CHECK_VALUE(chosen != nullptr, "instruction set '", name, "' is not one this CPU runs; it runs ",
                    c10::Join(", ", vector_instruction_sets()));
  vector_kernels.store(chosen);
  return previous;
}

#if PVF_X86_GCC
namespace {

__attribute__((target("avx512f"))) void mirror_blocks_avx512(float* g, int64_t C) {
  for (int64_t ib = 0; ib < C; ib += 16)
    for (int64_t jb = ib + 16; jb < C; jb += 16) {
      __m512i block[16];
      load_block16(g + ib * C + jb, C, block);
      transpose16(block);
      store_block16(g + jb * C + ib, C, block);
    }
}

__attribute__((target("avx512f"))) void symmetric_sum_avx512(const float* r, int64_t C, float scale, float* m) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t ib = 0; ib < C; ib += 16)
    for (int64_t jb = ib; jb < C; jb += 16) {
      __m512i mirrored[16];
      load_block16(r + jb * C + ib, C, mirrored);
      transpose16(mirrored);
      for (int i = 0; i < 16; ++i) {
        const __m512 sum = _mm512_add_ps(_mm512_loadu_ps(r + (ib + i) * C + jb), _mm512_castsi512_ps(mirrored[i]));
        mirrored[i] = _mm512_castps_si512(_mm512_mul_ps(s, sum));
      }
      store_block16(m + ib * C + jb, C, mirrored);
      transpose16(mirrored);
      store_block16(m + jb * C + ib, C, mirrored);
    }
}

}  // namespace
#endif

namespace {
// The C x C passes take AVX-512 when the explicit-vector loops do (use_vector_instruction_set).
bool blocks_in_registers() {
#if PVF_X86_GCC
  return vector_kernels.load(std::memory_order_relaxed) == &k_avx512;
#else
  return false;
#endif
}
}  // namespace

void mirror_upper(float* g, int64_t C) {
  int64_t block = 0;  // the vectors mirror every 16 x 16 block off the diagonal
#if PVF_X86_GCC
  if (blocks_in_registers() && C % 16 == 0) {
    mirror_blocks_avx512(g, C);
    block = 16;
  }
#endif
  for (int64_t i = 1; i < C; ++i)
    for (int64_t j = block == 0 ? 0 : i / block * block; j < i; ++j) g[i * C + j] = g[j * C + i];
}

void symmetric_sum(const float* r, int64_t C, float scale, float* m) {
#if PVF_X86_GCC
  if (blocks_in_registers() && C % 16 == 0) return symmetric_sum_avx512(r, C, scale, m);
#endif
  for (int64_t i = 0; i < C; ++i)
    for (int64_t j = i; j < C; ++j) m[i * C + j] = m[j * C + i] = scale * (r[i * C + j] + r[j * C + i]);
}

}  // namespace pvf::cpu
