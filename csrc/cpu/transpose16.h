// A 16 x 16 matrix of 32-bit values held in 16 AVX-512 registers, transposed in registers: the
// C x C passes of the Gram kernels (mirroring, symmetrizing) and the AMX kernels' staging.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

namespace pvf::cpu {

// r[j] becomes column j of the 16 x 16 dword matrix whose rows were r[0..15].
[[gnu::target("avx512f"), gnu::always_inline]] inline void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {  // dwords of row pairs, per 128-bit lane
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // lane L of u[i + e]: column 4L + e of rows i .. i + 3
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int e = 0; e < 4; ++e) {  // the 4 x 4 lanes of u[e], u[4 + e], u[8 + e], u[12 + e], transposed
    const __m512i a0 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x44), a1 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xEE);
    const __m512i a2 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x44);
    const __m512i a3 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xEE);
    r[e] = _mm512_shuffle_i32x4(a0, a2, 0x88);
    r[4 + e] = _mm512_shuffle_i32x4(a0, a2, 0xDD);
    r[8 + e] = _mm512_shuffle_i32x4(a1, a3, 0x88);
    r[12 + e] = _mm512_shuffle_i32x4(a1, a3, 0xDD);
  }
}

// The 16 x 16 block of floats at m (row stride C) into / from 16 registers.
[[gnu::target("avx512f"), gnu::always_inline]] inline void load_block16(const float* m, int64_t C, __m512i r[16]) {
  for (int i = 0; i < 16; ++i) r[i] = _mm512_castps_si512(_mm512_loadu_ps(m + i * C));
}
[[gnu::target("avx512f"), gnu::always_inline]] inline void store_block16(float* m, int64_t C, const __m512i r[16]) {
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(m + i * C, _mm512_castsi512_ps(r[i]));
}

}  // namespace pvf::cpu

#endif
