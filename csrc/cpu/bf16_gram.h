// bfloat16 Gram products for activations whose channels are innermost (row p of [n, C] holds the
// C channels of position p; C a multiple of 16), on one of two instruction sets:
// - "amx": AMX tiles (Intel Sapphire Rapids and later);
// - "avx512_bf16": AVX512_BF16 dot products of pairs (AMD Zen 4 and later, Intel Cooper Lake),
//   the same pairs the tiles take, 16 lanes at a time.
// A bf16 execution runs its convolutions in bfloat16; the style loss's products, widened to
// float32 for AVX-512 or run through torch's GEMM, then cost more than the model itself. Products
// accumulate in float32 (as torch.bmm's do); like both instruction sets, a denormal input or
// product counts as zero.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pvf::cpu {

// The instruction sets this CPU (and its OS) runs these kernels with, best first; empty when none.
std::vector<std::string> bf16_gram_instruction_sets();

// Run the kernels with this one from now on ('' for the best); returns the previous one.
std::string use_bf16_gram_instruction_set(const std::string& name);

// True when the kernels run on this CPU (bf16_gram_instruction_sets() is not empty).
bool bf16_gram_available();

// m[k] rounded to the nearest bfloat16 (ties to even, a NaN to c10's quiet NaN), kept as float32;
// n a multiple of 16.
void round_to_bf16(float* m, int64_t n);

// g[i * C + j] = sum_p rows[p * C + i] * rows[p * C + j] over the n rows (g: C x C float32, written).
void gram_of_rows_bf16(const c10::BFloat16* rows, int64_t n, int64_t C, float* g);

// One style layer's error: residual = G / P - target with G the rows' Gram matrix as bfloat16 holds
// it (products rounded once) and 1 / P = inv_positions (G times it minus target rounded once, a fused
// multiply-subtract); returns ||residual||^2 (in double). The C x C values are made 16 x 16 at a
// time as the products finish, in one pass (target, residual: C x C float32).
double gram_error_of_rows_bf16(const c10::BFloat16* rows, int64_t n, int64_t C, float inv_positions,
                               const float* target, float* residual);

// A C x C factor m as the products take it: pairs (C / 2 x C dwords), dword (i / 2, j) holding the
// bfloat16 bits of m[i][j] (low half) and m[i + 1][j] (high half).
// - pairs_of_matrix_bf16: of m (float32 holding bfloat16 values);
// - symmetric_pairs_bf16: of m = scale (r + r^T) rounded to bfloat16, in one pass over r (the
//   style loss's backward factor).
void pairs_of_matrix_bf16(const float* m, int64_t C, uint32_t* pairs);
void symmetric_pairs_bf16(const float* r, int64_t C, float scale, uint32_t* pairs);

// out[p * C + j] = add[p * C + j] + sum_i rows[p * C + i] * m[i * C + j], rounded to bfloat16 once
// (add: nullptr for none); m given as its pairs.
void rows_times_bf16(const c10::BFloat16* rows, int64_t n, int64_t C, const uint32_t* pairs, const c10::BFloat16* add,
                     c10::BFloat16* out);

}  // namespace pvf::cpu
