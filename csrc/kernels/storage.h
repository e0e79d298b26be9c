// Storage types of the images and their conversion to float32, the math type of every kernel.
// Under nvcc the half types are CUDA's __half / __nv_bfloat16; in host C++ (the CPU emulation)
// they are c10::Half / c10::BFloat16. torch's nvcc flags define __CUDA_NO_HALF_CONVERSIONS__,
// so conversions go through the explicit round-to-nearest-even intrinsics.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common.h"

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#else
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#endif

namespace pvf {

enum class Storage : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Scalar conversions between a storage type and float32, the same for one element and for the
// elements of a vector access.
#ifdef __CUDACC__
using half_t = __half;
using bfloat16_t = __nv_bfloat16;

PVF_HD float to_float(__half v) { return __half2float(v); }
PVF_HD float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
PVF_HD float to_float(float v) { return v; }
template <class T>
PVF_HD T from_float(float v);
template <>
PVF_HD __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
PVF_HD __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
PVF_HD float from_float<float>(float v) { return v; }

// Global accesses: one element, or kVector<T> elements (16 bytes, p 16-byte aligned) at once.
template <class T>
PVF_HD void note_access(const T*, int, bool) {}
#else
using half_t = c10::Half;
using bfloat16_t = c10::BFloat16;

inline float to_float(c10::Half v) { return static_cast<float>(v); }
inline float to_float(c10::BFloat16 v) { return static_cast<float>(v); }
inline float to_float(float v) { return v; }
template <class T>
inline T from_float(float v) {
  return T(v);
}

// Set while the CPU emulation measures the kernels' global memory traffic (tests); else null.
// One call per access instruction: its first element, element size, element count, direction.
inline void (*global_access_hook)(const void* address, int element_bytes, int count, bool write) = nullptr;

template <class T>
inline void note_access(const T* p, int count, bool write) {
  if (global_access_hook) global_access_hook(p, sizeof(T), count, write);
}
#endif

// Elements of T in one 16-byte access.
template <class T>
constexpr int kVector = 16 / static_cast<int>(sizeof(T));

// p, said again to be global memory where it is accessed: the GPU compiler loses what it knew
// of a pointer that went through a struct or a loop-carried value, and then makes its accesses
// generic (LD / ST) instead of LDG / STG. p itself in the emulation.
template <class T>
PVF_HD T* global_memory(T* p) {
#ifdef __CUDA_ARCH__
  __builtin_assume(__isGlobal(p));
#endif
  return p;
}

template <class T>
PVF_HD float load(const T* p, int64_t i) {
  note_access(p + i, 1, false);
  return to_float(global_memory(p + i)[0]);
}

// p[0] = v, already of the storage type.
template <class T>
PVF_HD void store_element(T* p, T v) {
  note_access(p, 1, true);
  global_memory(p)[0] = v;
}

template <class T>
PVF_HD void store(T* p, int64_t i, float v) {
  store_element(p + i, from_float<T>(v));
}

#ifdef __CUDA_ARCH__
// The 16 bytes of kVector<T> elements as four 32-bit words, packed and unpacked in registers
// (the device side of load_vector / store_vector; the host side, the emulation, copies bytes).
__device__ __forceinline__ uint32_t word_of(float a) { return __float_as_uint(a); }
__device__ __forceinline__ uint32_t word_of(__half a, __half b) {
  return __half_as_ushort(a) | uint32_t(__half_as_ushort(b)) << 16;
}
__device__ __forceinline__ uint32_t word_of(__nv_bfloat16 a, __nv_bfloat16 b) {
  return __bfloat16_as_ushort(a) | uint32_t(__bfloat16_as_ushort(b)) << 16;
}
__device__ __forceinline__ void unpack(uint32_t w, float* out, float*) { out[0] = __uint_as_float(w); }
__device__ __forceinline__ void unpack(uint32_t w, float* out, __half*) {
  out[0] = __half2float(__ushort_as_half(static_cast<unsigned short>(w)));
  out[1] = __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
}
// A bfloat16's bits are its float32's high half (as __bfloat162float places them): one shift or
// one mask per element, where taking the high element out first cost a shift each way.
__device__ __forceinline__ void unpack(uint32_t w, float* out, __nv_bfloat16*) {
  out[0] = __uint_as_float(w << 16);
  out[1] = __uint_as_float(w & 0xffff0000u);
}
#endif

// out[k] = p[k] for k < kVector<T>, in one 16-byte load (p 16-byte aligned).
template <class T>
PVF_HD void load_vector(const T* p, float* out) {
  note_access(p, kVector<T>, false);
#ifdef __CUDA_ARCH__
  const uint4 bits = *reinterpret_cast<const uint4*>(global_memory(p));
  constexpr int kPerWord = kVector<T> / 4;
  unpack(bits.x, out, static_cast<T*>(nullptr));
  unpack(bits.y, out + kPerWord, static_cast<T*>(nullptr));
  unpack(bits.z, out + 2 * kPerWord, static_cast<T*>(nullptr));
  unpack(bits.w, out + 3 * kPerWord, static_cast<T*>(nullptr));
#else
  T v[kVector<T>];
  memcpy(static_cast<void*>(v), p, 16);
  for (int k = 0; k < kVector<T>; ++k) out[k] = to_float(v[k]);
#endif
}

// kVector<T> elements as the 16 bytes they occupy in memory: converted once, then stored
// (store_words), or also staged in shared memory for single stores that then convert nothing
// (the one-pass step's rolled output: tile_programs.h apply_fast).
struct VectorWords {
  uint32_t w[4];
};

template <class T>
PVF_HD VectorWords pack_vector(const float* in) {
  VectorWords words;
#ifdef __CUDA_ARCH__
  PVF_UNROLL
  for (int k = 0; k < 4; ++k) {
    if constexpr (kVector<T> == 4) {
      words.w[k] = word_of(in[k]);
    } else {
      words.w[k] = word_of(from_float<T>(in[2 * k]), from_float<T>(in[2 * k + 1]));
    }
  }
#else
  T v[kVector<T>];
  for (int k = 0; k < kVector<T>; ++k) v[k] = from_float<T>(in[k]);
  memcpy(words.w, static_cast<const void*>(v), 16);
#endif
  return words;
}

// p[0 .. kVector<T>) = the elements of `words`, in one 16-byte store (p 16-byte aligned, in
// global memory: the GPU store is a PTX st.global).
template <class T>
PVF_HD void store_words(T* p, const VectorWords& words) {
  note_access(p, kVector<T>, true);
#ifdef __CUDA_ARCH__
  // In PTX: from a base pointer made opaque (tile.h plane_pointer) the compiler would split a
  // plain uint4 store into four 4-byte ones.
  asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(words.w[0]), "r"(words.w[1]),
               "r"(words.w[2]), "r"(words.w[3])
               : "memory");
#else
  memcpy(static_cast<void*>(p), words.w, 16);
#endif
}

// p[k] = in[k] for k < kVector<T>, in one 16-byte store (p as store_words).
template <class T>
PVF_HD void store_vector(T* p, const float* in) {
  store_words(p, pack_vector<T>(in));
}

// IEEE 754-2019 maximum and minimum, as PTX max.NaN / min.NaN (sm_80 and later) give them: the
// canonical NaN when an input is NaN, and -0 below +0, so that a tie of zeros has one answer. One
// FMNMX each on the GPU, which also takes an operand's |v| as a modifier; the CPU spells them out.
#ifdef __CUDA_ARCH__
PVF_HD float maximum_nan(float a, float b) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
PVF_HD float minimum_nan(float a, float b) {
  float r;
  asm("min.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
#else
inline float canonical_nan() {
  constexpr uint32_t kBits = 0x7fffffffu;
  float r;
  memcpy(&r, &kBits, sizeof r);
  return r;
}
inline float maximum_nan(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return canonical_nan();
  return a == b ? (std::signbit(a) ? b : a) : (a > b ? a : b);
}
inline float minimum_nan(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return canonical_nan();
  return a == b ? (std::signbit(a) ? a : b) : (a < b ? a : b);
}
#endif

// Clamp to [lo, hi] (never NaN) that lets a NaN v through, as torch.clamp does (fminf / fmaxf
// would drop it): maximum with lo, then minimum with hi, NaN-propagating and with -0 below +0
// (clamping -0 to lo = +0 gives +0). Two instructions on the GPU where comparisons and selects
// take four.
PVF_HD float clamp_keep_nan(float v, float lo, float hi) { return minimum_nan(maximum_nan(v, lo), hi); }

// clamp_keep_nan(v, -clip, clip) with the sign of `sign` (v's own, or one it is known to share)
// for clip > 0 or +0.0, bit for bit (signed zeros too), for every v but NaN, which becomes clip
// with that sign: two instructions (the minimum of |v| and clip, the abs a modifier of its FMNMX,
// then the sign), where a NaN stands for a value known to be out of range (clipped_quotient) or
// cannot matter (a NaN gradient flags its image, which then keeps its pixels). The sign is set
// because min and max may return either zero of a +-0 tie.
PVF_HD float clamp_magnitude(float v, float clip, float sign) {
#ifdef __CUDA_ARCH__
  return copysignf(fminf(fabsf(v), clip), sign);
#else
  return std::copysign(std::fmin(std::fabs(v), clip), sign);
#endif
}

// v unchanged, through a move the GPU compiler cannot see through, for a value whose origin
// makes it emit worse code: a mask it knows to be 0 or ~0 turns select_bits back into a branch
// over the whole update; a step it knows to be one of two products becomes a choice of factor
// and a multiply at each use; a base pointer it knows to be an argument plus a 64-bit index is
// re-derived in every access (4 instructions instead of 1).
template <class V>
PVF_HD V opaque(V v) {
#ifdef __CUDA_ARCH__
  static_assert(sizeof(V) == 4 || sizeof(V) == 8, "opaque moves 32- or 64-bit values");
  if constexpr (sizeof(V) == 8) {
    asm("mov.b64 %0, %0;" : "+l"(v));
  } else {
    asm("mov.b32 %0, %0;" : "+r"(v));
  }
#endif
  return v;
}

// `a` where `mask` is all ones, `b` where it is 0, bit for bit, as one bitwise select (mask
// opaque: see there).
PVF_HD float select_bits(uint32_t mask, float a, float b) {
  uint32_t ua, ub;
  memcpy(&ua, &a, sizeof ua);
  memcpy(&ub, &b, sizeof ub);
  const uint32_t u = (ua & mask) | (ub & ~mask);
  float r;
  memcpy(&r, &u, sizeof r);
  return r;
}

// The element type of storage S.
template <Storage S>
using StorageType = std::conditional_t<S == Storage::kFloat32, float,
                                       std::conditional_t<S == Storage::kFloat16, half_t, bfloat16_t>>;

template <Storage S>
struct TypeTag {
  using type = StorageType<S>;
  static constexpr Storage storage = S;
};

// Calls f(TypeTag<S>{}) with S = `storage`.
template <class F>
void dispatch_storage(Storage storage, F&& f) {
  switch (storage) {
    case Storage::kFloat32: f(TypeTag<Storage::kFloat32>{}); break;
    case Storage::kFloat16: f(TypeTag<Storage::kFloat16>{}); break;
    case Storage::kBFloat16: f(TypeTag<Storage::kBFloat16>{}); break;
  }
}

}  // namespace pvf
