// bfloat16 Gram products on AMX tiles or AVX512_BF16 dot products (see bf16_gram.h).
//
// Both sum pairs: a tile product C[16 x 16] += A[16 x 32] B[32 x 16] (float32 C, bfloat16 A and B)
// and a dot product acc[16] += a[32] . b[32] (two bfloat16 products per float32 lane) take B (b)
// with rows k, k + 1 interleaved element by element (16 dwords per pair of rows).
// - A Gram matrix sums over positions: B is two positions' channels interleaved (a pair row per
//   two positions, what the activation gives with one shuffle), staged for a block of positions;
//   then every 16 x 16 block of the matrix's upper triangle runs over them. A tile takes A, channels
//   by positions, as B transposed (a 16 x 16 matrix of dwords); a dot product takes row i of A as
//   one dword of B broadcast to every lane.
// - A product with m sums over channels: A is the activation's rows as they lie (pairs of adjacent
//   channels, one dword each; dot products broadcast them from a block of 16 rows transposed), B
//   is m's rows interleaved in pairs, made once per call.
#include "bf16_gram.h"

#include <c10/util/Exception.h>
#include <c10/util/FunctionRef.h>
#include <c10/util/StringUtil.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define PVF_BF16_GRAM 1
#include "row_kernels.h"
#include "transpose16.h"
#else
#define PVF_BF16_GRAM 0
#endif

namespace pvf::cpu {
namespace {

// A finished 16 x 16 block (ib, jb) of a Gram matrix's upper triangle, as float32 rows of 16.
using BlockSink = c10::function_ref<void(int64_t ib, int64_t jb, const float* block)>;

// The kernels of one instruction set.
struct Bf16Kernels {
  const char* name;
  bool (*runs)();
  // Every upper block of the Gram matrix over the n rows passed to finish; the blocks' partial sums
  // may wait in scratch's upper blocks (C x C float32) between blocks of positions.
  void (*upper_gram)(const c10::BFloat16* rows, int64_t n, int64_t C, float* scratch, BlockSink finish);
  void (*rows_times)(const c10::BFloat16* rows, int64_t n, int64_t C, const uint32_t* pairs, const c10::BFloat16* add,
                     c10::BFloat16* out);
};

}  // namespace

#if PVF_BF16_GRAM
namespace {

#define PVF_AVX512_TARGET gnu::target("avx512f,avx512bw")
#define PVF_AMX_TARGET gnu::target("amx-tile,amx-bf16,avx512f,avx512bw")
#define PVF_DOTS_TARGET gnu::target("avx512bf16,avx512f,avx512bw")

// 16 dwords, each the pair (a[k], b[k]) of bfloat16 (a in the low half).
[[PVF_AVX512_TARGET, gnu::always_inline]] inline __m512i interleave16(const uint16_t* a, const uint16_t* b) {
  alignas(64) static constexpr uint16_t kPairs[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                                      8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  const __m512i low = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a)));
  const __m512i high = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
  return _mm512_permutex2var_epi16(low, _mm512_load_si512(kPairs), high);
}

// One group of 32 positions (count of them valid, the rest zeros) and 16 channels of rows (row
// stride C) as 16 pair rows: dword (k, c) holds channel c of positions 2k and 2k + 1.
[[PVF_AVX512_TARGET, gnu::always_inline]] inline void pair_rows(const uint16_t* rows, int64_t count, int64_t C,
                                                                __m512i pairs[16]) {
  static constexpr uint16_t kZeros[16] = {};
  for (int k = 0; k < 16; ++k) {
    const uint16_t* first = count > 2 * k ? rows + 2 * k * C : kZeros;
    const uint16_t* second = count > 2 * k + 1 ? rows + (2 * k + 1) * C : kZeros;
    pairs[k] = interleave16(first, second);
  }
}

// float32 lanes to bfloat16 bits (in each dword's low half), rounded to nearest even, a NaN to the
// quiet NaN 0x7FC0 (c10's rule).
[[PVF_AVX512_TARGET, gnu::always_inline]] inline __m512i bf16_bits(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16);
  return _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
}

[[PVF_AVX512_TARGET, gnu::always_inline]] inline __m512 load_bf16(const c10::BFloat16* p) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

// rows_times' outputs from a 16 x 16 block of products (rows of 16 float32): its first count rows
// plus add (if given), rounded to bfloat16 once, at out + at with row stride C.
[[PVF_AVX512_TARGET, gnu::always_inline]] inline void store_products(const float* products, int64_t count, int64_t at,
                                                                     int64_t C, const c10::BFloat16* add,
                                                                     c10::BFloat16* out) {
  for (int64_t r = 0; r < count; ++r) {
    const int64_t o = at + r * C;
    const __m512 sum = _mm512_load_ps(products + 16 * r);
    const __m512 v = add == nullptr ? sum : _mm512_add_ps(sum, load_bf16(add + o));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + o), _mm512_cvtepi32_epi16(bf16_bits(v)));
  }
}

// Rows p0 .. p0 + 15 of the n rows: in place, or (the last ones) copied into tail (16 x C values,
// zeros past n).
inline const c10::BFloat16* sixteen_rows(const c10::BFloat16* rows, int64_t p0, int64_t n, int64_t C,
                                         std::vector<c10::BFloat16>& tail) {
  if (n - p0 >= 16) return rows + p0 * C;
  tail.assign(16 * C, c10::BFloat16(0.0f));
  return static_cast<const c10::BFloat16*>(std::memcpy(tail.data(), rows + p0 * C, (n - p0) * C * 2));
}

// ---- AMX tiles ----

// The tile shapes a kernel uses (palette 1): rows and bytes per row of tiles 0, 1, 2.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};

  TileConfig(int accumulator_rows, int a_bytes, int b_rows) {
    rows[0] = static_cast<uint8_t>(accumulator_rows), bytes_per_row[0] = 64;
    rows[1] = 16, bytes_per_row[1] = static_cast<uint16_t>(a_bytes);
    rows[2] = static_cast<uint8_t>(b_rows), bytes_per_row[2] = 64;
  }

  // Tiles 0 .. count - 1, each 16 rows of 64 bytes.
  static TileConfig square(int count) {
    TileConfig config(16, 64, 16);
    for (int t = 3; t < count; ++t) config.rows[t] = 16, config.bytes_per_row[t] = 64;
    return config;
  }
};

// Linux gives a process the tiles' state only when asked (arch_prctl ARCH_REQ_XCOMP_PERM for
// XTILEDATA); torch's oneDNN asks too, and asking again is harmless.
bool os_allows_amx() {
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

bool runs_amx() {
  static const bool runs = [] {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool amx_bf16 = edx & (1u << 22), amx_tile = edx & (1u << 24);
    __builtin_cpu_init();
    return amx_bf16 && amx_tile && __builtin_cpu_supports("avx512bw") && os_allows_amx();
  }();
  return runs;
}

// One group's B tile (pair rows) and A tile (its transpose), 256 dwords each.
[[PVF_AMX_TARGET]] void stage_group(const uint16_t* rows, int64_t count, int64_t C, uint32_t* b, uint32_t* a) {
  __m512i pairs[16];
  pair_rows(rows, count, C, pairs);
  for (int k = 0; k < 16; ++k) _mm512_storeu_si512(b + 16 * k, pairs[k]);
  transpose16(pairs);
  for (int c = 0; c < 16; ++c) _mm512_storeu_si512(a + 16 * c, pairs[c]);
}

// Tile 0 passed to finish as block (ib, jb).
[[PVF_AMX_TARGET]] void finish_tile(int64_t ib, int64_t jb, BlockSink finish) {
  alignas(64) float block[16 * 16];
  _tile_stored(0, block, 64);
  finish(ib, jb, block);
}

// The upper triangle's 16 x 16 tiles of the Gram matrix over the n rows, summed in tile 0. Blocks
// of positions before the last keep their partial sums in scratch's upper tiles.
[[PVF_AMX_TARGET]] void gram_tiles(const c10::BFloat16* rows, int64_t n, int64_t C, float* scratch,
                                   BlockSink finish) {
  constexpr int64_t kGroup = 32, kGroupsPerBlock = 64;  // 2048 positions staged at once
  const int64_t blocks = C / 16;
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(rows);
  // Staging for the most groups a block of positions holds, written before it is read.
  const int64_t staged = std::min(kGroupsPerBlock, (n + kGroup - 1) / kGroup) * blocks * 256;
  const auto a_tiles = std::make_unique_for_overwrite<uint32_t[]>(staged);
  const auto b_tiles = std::make_unique_for_overwrite<uint32_t[]>(staged);
  const TileConfig config(16, 64, 16);
  _tile_loadconfig(&config);
  for (int64_t p0 = 0; p0 < n; p0 += kGroup * kGroupsPerBlock) {
    const int64_t count = std::min(kGroup * kGroupsPerBlock, n - p0), groups = (count + kGroup - 1) / kGroup;
    const bool last = p0 + count == n;
    for (int64_t q = 0; q < groups; ++q)
      for (int64_t cb = 0; cb < blocks; ++cb)
        stage_group(bits + (p0 + q * kGroup) * C + cb * 16, std::min(kGroup, count - q * kGroup), C,
                    b_tiles.get() + (q * blocks + cb) * 256, a_tiles.get() + (q * blocks + cb) * 256);
    for (int64_t ib = 0; ib < blocks; ++ib) {
      for (int64_t jb = ib; jb < blocks; ++jb) {
        float* partial = scratch + ib * 16 * C + jb * 16;
        if (p0 == 0)  // the first block's sums start from zero
          _tile_zero(0);
        else
          _tile_loadd(0, partial, C * 4);
        for (int64_t q = 0; q < groups; ++q) {
          _tile_loadd(1, a_tiles.get() + (q * blocks + ib) * 256, 64);
          _tile_loadd(2, b_tiles.get() + (q * blocks + jb) * 256, 64);
          _tile_dpbf16ps(0, 1, 2);
        }
        if (last)
          finish_tile(ib, jb, finish);
        else
          _tile_stored(0, partial, C * 4);
      }
    }
  }
  _tile_release();
}

// gram_tiles for 16 or 32 channels: the matrix's one or three upper tiles stay in tiles 0-2 through
// every position, and each group of 32 positions is staged in L1 and multiplied at once (tiles 3-4:
// A, 5-6: B), where the general loop writes a block's staging out and loads every tile of it back
// once per tile of the matrix. The same products summed in the same order: the same bits.
[[PVF_AMX_TARGET]] void gram_tiles_resident(const c10::BFloat16* rows, int64_t n, int64_t C, BlockSink finish) {
  constexpr int64_t kGroup = 32;
  const bool two = C == 32;
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(rows);
  alignas(64) uint32_t a[2][256], b[2][256];
  const TileConfig config = TileConfig::square(7);
  _tile_loadconfig(&config);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  for (int64_t p0 = 0; p0 < n; p0 += kGroup) {
    const int64_t count = std::min(kGroup, n - p0);
    stage_group(bits + p0 * C, count, C, b[0], a[0]);
    _tile_loadd(3, a[0], 64);
    _tile_loadd(5, b[0], 64);
    _tile_dpbf16ps(0, 3, 5);
    if (two) {
      stage_group(bits + p0 * C + 16, count, C, b[1], a[1]);
      _tile_loadd(4, a[1], 64);
      _tile_loadd(6, b[1], 64);
      _tile_dpbf16ps(1, 3, 6);
      _tile_dpbf16ps(2, 4, 6);
    }
  }
  finish_tile(0, 0, finish);
  if (two) {  // finish_tile reads tile 0: the other two pass through it
    alignas(64) float sums[256];
    _tile_stored(1, sums, 64);
    finish(0, 1, sums);
    _tile_stored(2, sums, 64);
    finish(1, 1, sums);
  }
  _tile_release();
}

[[PVF_AMX_TARGET]] void upper_gram_tiles(const c10::BFloat16* rows, int64_t n, int64_t C, float* scratch,
                                         BlockSink finish) {
  if (C <= 32)
    gram_tiles_resident(rows, n, C, finish);
  else
    gram_tiles(rows, n, C, scratch, finish);
}

[[PVF_AMX_TARGET]] void rows_times_tiles(const c10::BFloat16* rows, int64_t n, int64_t C, const uint32_t* pairs,
                                         const c10::BFloat16* add, c10::BFloat16* out) {
  const int64_t depth = C % 32 == 0 ? 32 : 16;  // channels summed per tile product
  std::vector<c10::BFloat16> tail;
  alignas(64) float products[16 * 16];
  const TileConfig config(16, static_cast<int>(depth * 2), static_cast<int>(depth / 2));
  _tile_loadconfig(&config);
  for (int64_t p0 = 0; p0 < n; p0 += 16) {
    const int64_t count = std::min<int64_t>(16, n - p0);
    const c10::BFloat16* src = sixteen_rows(rows, p0, n, C, tail);
    for (int64_t j0 = 0; j0 < C; j0 += 16) {
      _tile_zero(0);
      for (int64_t k0 = 0; k0 < C; k0 += depth) {
        _tile_loadd(1, src + k0, C * 2);
        _tile_loadd(2, pairs + k0 / 2 * C + j0, C * 4);
        _tile_dpbf16ps(0, 1, 2);
      }
      _tile_stored(0, products, 64);
      store_products(products, count, p0 * C + j0, C, add, out);
    }
  }
  _tile_release();
}

// ---- AVX512_BF16 dot products ----

bool runs_dots() {
  static const bool runs = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  }();
  return runs;
}

// acc[r][c] += pair r of a (broadcast) . b[c] for rows r < R of a block and N column blocks c (one
// pair row of each); a's R dwords hold the rows' same pair.
template <int R, int N>
[[PVF_DOTS_TARGET, gnu::always_inline]] inline void dot_pairs(__m512 (&acc)[R][N], const uint32_t* a,
                                                              const __m512i (&b)[N]) {
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const __m512bh broadcast = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r]));
    for (int c = 0; c < N; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], broadcast, (__m512bh)b[c]);
  }
}

// The upper triangle's 16 x 16 blocks of the Gram matrix over the n rows, each summed in 16
// registers. Blocks of positions before the last keep their partial sums in scratch's upper blocks.
[[PVF_DOTS_TARGET]] void gram_dots(const c10::BFloat16* rows, int64_t n, int64_t C, float* scratch,
                                   BlockSink finish) {
  constexpr int64_t kGroup = 32;
  const int64_t blocks = C / 16;
  // A block of positions' pair rows stay within about 256 KB (L2) while every block of the matrix
  // reads them: 1,024 positions up to 128 channels, fewer (at least 128) beyond.
  const int64_t groups_per_block = std::clamp<int64_t>(256 / blocks, 4, 32);
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(rows);
  const int64_t staged = std::min(groups_per_block, (n + kGroup - 1) / kGroup) * blocks * 256;
  const auto pair_tiles = std::make_unique_for_overwrite<uint32_t[]>(staged);
  for (int64_t p0 = 0; p0 < n; p0 += kGroup * groups_per_block) {
    const int64_t count = std::min(kGroup * groups_per_block, n - p0), groups = (count + kGroup - 1) / kGroup;
    const bool last = p0 + count == n;
    for (int64_t q = 0; q < groups; ++q)
      for (int64_t cb = 0; cb < blocks; ++cb) {
        __m512i pairs[16];
        pair_rows(bits + (p0 + q * kGroup) * C + cb * 16, std::min(kGroup, count - q * kGroup), C, pairs);
        uint32_t* staged_pairs = pair_tiles.get() + (q * blocks + cb) * 256;
        for (int k = 0; k < 16; ++k) _mm512_storeu_si512(staged_pairs + 16 * k, pairs[k]);
      }
    for (int64_t ib = 0; ib < blocks; ++ib) {
      for (int64_t jb = ib; jb < blocks; ++jb) {
        float* partial = scratch + ib * 16 * C + jb * 16;
        __m512 acc[16][1];
        for (int i = 0; i < 16; ++i)  // the first block's sums start from zero
          acc[i][0] = p0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(partial + i * C);
        for (int64_t q = 0; q < groups; ++q) {
          const uint32_t* a = pair_tiles.get() + (q * blocks + ib) * 256;
          const uint32_t* b = pair_tiles.get() + (q * blocks + jb) * 256;
          for (int k = 0; k < 16; ++k) {
            const __m512i column[1] = {_mm512_loadu_si512(b + 16 * k)};
            dot_pairs<16, 1>(acc, a + 16 * k, column);
          }
        }
        if (last) {
          alignas(64) float block[16 * 16];
          for (int i = 0; i < 16; ++i) _mm512_store_ps(block + 16 * i, acc[i][0]);
          finish(ib, jb, block);
        } else {
          for (int i = 0; i < 16; ++i) _mm512_storeu_ps(partial + i * C, acc[i][0]);
        }
      }
    }
  }
}

// A block of 16 rows' channel pairs transposed for dot_pairs: staged[16 k + r] = dword k of row r
// (channels 2k and 2k + 1), k < C / 2; the pairs of 16 rows broadcast from one cache line.
[[PVF_AVX512_TARGET, gnu::always_inline]] inline void transpose_row_pairs(const uint32_t* words, int64_t C,
                                                                          uint32_t* staged) {
  const int64_t pairs = C / 2;
  for (int64_t k0 = 0; k0 < pairs; k0 += 16) {
    const int64_t valid = std::min<int64_t>(16, pairs - k0);  // 8 for the last pairs when C % 32 == 16
    const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
    __m512i r[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_maskz_loadu_epi32(mask, words + i * pairs + k0);
    transpose16(r);
    for (int64_t k = 0; k < valid; ++k) _mm512_storeu_si512(staged + (k0 + k) * 16, r[k]);
  }
}

// Rows r0 .. r0 + R - 1 of a block of 16 (staged by transpose_row_pairs) times N column blocks of m
// from column j0 on, into products (N blocks of 16 x 16 float32).
template <int R, int N>
[[PVF_DOTS_TARGET, gnu::always_inline]] inline void rows_times_block(const uint32_t* staged, const uint32_t* pairs,
                                                                     int64_t C, int64_t j0, int r0, float* products) {
  __m512 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < N; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < C / 2; ++k) {
    __m512i b[N];
    for (int c = 0; c < N; ++c) b[c] = _mm512_loadu_si512(pairs + k * C + j0 + 16 * c);
    dot_pairs<R, N>(acc, staged + 16 * k + r0, b);
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < N; ++c) _mm512_store_ps(products + 256 * c + 16 * (r0 + r), acc[r][c]);
}

// Blocks of 16 rows times N column blocks at a time, R rows per pass (R x N accumulators).
template <int R, int N>
[[PVF_DOTS_TARGET, gnu::always_inline]] inline void rows_times_blocks(const c10::BFloat16* rows, int64_t n, int64_t C,
                                                                      const uint32_t* pairs, const c10::BFloat16* add,
                                                                      c10::BFloat16* out) {
  std::vector<c10::BFloat16> tail;
  const auto staged = std::make_unique_for_overwrite<uint32_t[]>(C * 8);
  alignas(64) float products[N * 256];
  for (int64_t p0 = 0; p0 < n; p0 += 16) {
    transpose_row_pairs(reinterpret_cast<const uint32_t*>(sixteen_rows(rows, p0, n, C, tail)), C, staged.get());
    for (int64_t j0 = 0; j0 < C; j0 += 16 * N) {
      for (int r0 = 0; r0 < 16; r0 += R) rows_times_block<R, N>(staged.get(), pairs, C, j0, r0, products);
      for (int c = 0; c < N; ++c)
        store_products(products + 256 * c, std::min<int64_t>(16, n - p0), p0 * C + j0 + 16 * c, C, add, out);
    }
  }
}

// Two column blocks at a time where the columns come in 32s: each broadcast serves two dot
// products, 10 loads for 16 of them instead of 17.
[[PVF_DOTS_TARGET]] void rows_times_dots(const c10::BFloat16* rows, int64_t n, int64_t C, const uint32_t* pairs,
                                         const c10::BFloat16* add, c10::BFloat16* out) {
  if (C % 32 == 0)
    rows_times_blocks<8, 2>(rows, n, C, pairs, add, out);
  else
    rows_times_blocks<16, 1>(rows, n, C, pairs, add, out);
}

// ---- the C x C passes (AVX-512 on either instruction set) ----

// A finish for a Gram matrix: each block stored in place (the lower triangle mirrored after).
struct StoreBlock {
  float* g;
  int64_t C;
  [[PVF_AVX512_TARGET]] void operator()(int64_t ib, int64_t jb, const float* block) const {
    for (int i = 0; i < 16; ++i) _mm512_storeu_ps(g + (ib * 16 + i) * C + jb * 16, _mm512_load_ps(block + 16 * i));
  }
};

// Squares of v's lanes added to the eight double lanes of sum (exact products of floats).
[[PVF_AVX512_TARGET, gnu::always_inline]] inline __m512d add_squares(__m512d sum, __m512 v) {
  const __m512d low = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  const __m512d high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  return _mm512_fmadd_pd(high, high, _mm512_fmadd_pd(low, low, sum));
}

// A finish for a style layer's error: each block's Gram values rounded to bfloat16, times 1 / P
// minus the target in one rounding (an explicit fused multiply-subtract: the compiler's own
// contraction of a product and a difference would depend on where this is inlined), stored as the
// residual with the block's mirror below the diagonal (against the target's own lower block); the
// squares summed in double lanes.
struct ResidualBlock {
  const float* target;
  float* residual;
  int64_t C;
  __m512 inv_positions;
  __m512d sum = _mm512_setzero_pd();

  [[PVF_AVX512_TARGET]] void operator()(int64_t ib, int64_t jb, const float* block) {
    __m512i g[16];
    for (int i = 0; i < 16; ++i) g[i] = _mm512_slli_epi32(bf16_bits(_mm512_load_ps(block + 16 * i)), 16);
    store(g, ib * 16 * C + jb * 16);
    if (ib != jb) {
      transpose16(g);
      store(g, jb * 16 * C + ib * 16);
    }
  }

  [[PVF_AVX512_TARGET, gnu::always_inline]] void store(const __m512i g[16], int64_t at) {
    for (int i = 0; i < 16; ++i) {
      const __m512 v = _mm512_fmsub_ps(_mm512_castsi512_ps(g[i]), inv_positions, _mm512_loadu_ps(target + at + i * C));
      _mm512_storeu_ps(residual + at + i * C, v);
      sum = add_squares(sum, v);
    }
  }
};

[[PVF_AVX512_TARGET]] void pairs_of_matrix(const float* m, int64_t C, uint32_t* pairs) {
  for (int64_t i = 0; i < C; i += 2)
    for (int64_t j = 0; j < C; j += 16) {
      const __m512i low = _mm512_srli_epi32(_mm512_loadu_si512(m + i * C + j), 16);
      const __m512i high = _mm512_and_si512(_mm512_loadu_si512(m + (i + 1) * C + j), _mm512_set1_epi32(-65536));
      _mm512_storeu_si512(pairs + i / 2 * C + j, _mm512_or_si512(low, high));
    }
}

// Rows b[0..15] of bfloat16 bits (each dword's low half) as 8 pair rows at pairs (row stride C dwords).
[[PVF_AVX512_TARGET, gnu::always_inline]] inline void store_pairs(const __m512i b[16], int64_t C, uint32_t* pairs) {
  for (int i = 0; i < 16; i += 2)
    _mm512_storeu_si512(pairs + i / 2 * C, _mm512_or_si512(b[i], _mm512_slli_epi32(b[i + 1], 16)));
}

[[PVF_AVX512_TARGET]] void symmetric_pairs_blocks(const float* r, int64_t C, float scale, uint32_t* pairs) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t ib = 0; ib < C; ib += 16)
    for (int64_t jb = ib; jb < C; jb += 16) {
      __m512i m[16];
      load_block16(r + jb * C + ib, C, m);
      transpose16(m);  // r^T's block (ib, jb)
      for (int i = 0; i < 16; ++i) {
        const __m512 sum = _mm512_add_ps(_mm512_loadu_ps(r + (ib + i) * C + jb), _mm512_castsi512_ps(m[i]));
        m[i] = bf16_bits(_mm512_mul_ps(s, sum));
      }
      store_pairs(m, C, pairs + ib / 2 * C + jb);
      if (jb != ib) {  // m is symmetric: its block (jb, ib) is this one transposed
        transpose16(m);
        store_pairs(m, C, pairs + jb / 2 * C + ib);
      }
    }
}

[[PVF_AVX512_TARGET]] void round_floats_to_bf16(float* m, int64_t n) {
  for (int64_t k = 0; k < n; k += 16) {
    const __m512i bits = bf16_bits(_mm512_loadu_ps(m + k));
    _mm512_storeu_si512(m + k, _mm512_slli_epi32(bits, 16));
  }
}

[[PVF_AVX512_TARGET]] void gram_of_rows_blocks(const Bf16Kernels& kernels, const c10::BFloat16* rows, int64_t n,
                                               int64_t C, float* g) {
  StoreBlock finish{g, C};
  kernels.upper_gram(rows, n, C, g, finish);
  mirror_upper(g, C);
}

[[PVF_AVX512_TARGET]] double gram_error_of_rows_blocks(const Bf16Kernels& kernels, const c10::BFloat16* rows,
                                                       int64_t n, int64_t C, float inv_positions,
                                                       const float* target, float* residual) {
  ResidualBlock finish{target, residual, C, _mm512_set1_ps(inv_positions)};
  kernels.upper_gram(rows, n, C, residual, finish);
  return _mm512_reduce_add_pd(finish.sum);
}

constexpr Bf16Kernels kAmx{"amx", runs_amx, upper_gram_tiles, rows_times_tiles};
constexpr Bf16Kernels kDots{"avx512_bf16", runs_dots, gram_dots, rows_times_dots};
constexpr const Bf16Kernels* kBf16Kernels[] = {&kAmx, &kDots};  // best first

}  // namespace
#else
namespace {
constexpr const Bf16Kernels* kBf16Kernels[] = {nullptr};
}  // namespace
#endif

namespace {

const Bf16Kernels* best_bf16_kernels() {
  for (const Bf16Kernels* k : kBf16Kernels)
    if (k != nullptr && k->runs()) return k;
  return nullptr;
}

std::atomic<const Bf16Kernels*> chosen_kernels{best_bf16_kernels()};

// The chosen kernels, for an entry point named name on C channels (or values: what).
const Bf16Kernels& kernels_for(const char* name, int64_t C, const char* what = "channels") {
  const Bf16Kernels* kernels = chosen_kernels.load(std::memory_order_relaxed);
  TORCH_CHECK(kernels != nullptr && C % 16 == 0, name, " needs AMX tiles or AVX512_BF16 (an x86-64 build with GCC, "
              "a CPU that has one of them) and a multiple of 16 ", what, ", got ", C);
  return *kernels;
}

}  // namespace

std::vector<std::string> bf16_gram_instruction_sets() {
  std::vector<std::string> names;
  for (const Bf16Kernels* k : kBf16Kernels)
    if (k != nullptr && k->runs()) names.emplace_back(k->name);
  return names;
}

std::string use_bf16_gram_instruction_set(const std::string& name) {
  const Bf16Kernels* current = chosen_kernels.load();
  const std::string previous = current == nullptr ? "" : current->name;
  const Bf16Kernels* chosen = name.empty() ? best_bf16_kernels() : nullptr;
  for (const Bf16Kernels* k : kBf16Kernels)
    if (k != nullptr && k->name == name && k->runs()) chosen = k;
  TORCH_CHECK_VALUE(chosen != nullptr || name.empty(), "instruction set '", name, "' is not one this CPU runs the "
                    "bfloat16 Gram products with; it runs [", c10::Join(", ", bf16_gram_instruction_sets()), "]");
  chosen_kernels.store(chosen);
  return previous;
}

bool bf16_gram_available() { return chosen_kernels.load(std::memory_order_relaxed) != nullptr; }

#if PVF_BF16_GRAM

void round_to_bf16(float* m, int64_t n) {
  kernels_for("round_to_bf16", n, "values");
  round_floats_to_bf16(m, n);
}

void gram_of_rows_bf16(const c10::BFloat16* rows, int64_t n, int64_t C, float* g) {
  gram_of_rows_blocks(kernels_for("gram_of_rows_bf16", C), rows, n, C, g);
}

double gram_error_of_rows_bf16(const c10::BFloat16* rows, int64_t n, int64_t C, float inv_positions,
                               const float* target, float* residual) {
  return gram_error_of_rows_blocks(kernels_for("gram_error_of_rows_bf16", C), rows, n, C, inv_positions, target,
                                   residual);
}

void pairs_of_matrix_bf16(const float* m, int64_t C, uint32_t* pairs) {
  kernels_for("pairs_of_matrix_bf16", C);
  pairs_of_matrix(m, C, pairs);
}

void symmetric_pairs_bf16(const float* r, int64_t C, float scale, uint32_t* pairs) {
  kernels_for("symmetric_pairs_bf16", C);
  symmetric_pairs_blocks(r, C, scale, pairs);
}

void rows_times_bf16(const c10::BFloat16* rows, int64_t n, int64_t C, const uint32_t* pairs,
                     const c10::BFloat16* add, c10::BFloat16* out) {
  kernels_for("rows_times_bf16", C).rows_times(rows, n, C, pairs, add, out);
}

#else

void round_to_bf16(float*, int64_t n) { kernels_for("round_to_bf16", n, "values"); }

void gram_of_rows_bf16(const c10::BFloat16*, int64_t, int64_t C, float*) { kernels_for("gram_of_rows_bf16", C); }

double gram_error_of_rows_bf16(const c10::BFloat16*, int64_t, int64_t C, float, const float*, float*) {
  kernels_for("gram_error_of_rows_bf16", C);
  return 0.0;
}

void pairs_of_matrix_bf16(const float*, int64_t C, uint32_t*) { kernels_for("pairs_of_matrix_bf16", C); }

void symmetric_pairs_bf16(const float*, int64_t C, float, uint32_t*) { kernels_for("symmetric_pairs_bf16", C); }

void rows_times_bf16(const c10::BFloat16*, int64_t, int64_t C, const uint32_t*, const c10::BFloat16*,
                     c10::BFloat16*) {
  kernels_for("rows_times_bf16", C);
}

#endif

}  // namespace pvf::cpu
