// Storage types of the images and their conversion to float32, the math type of every kernel.
// Under nvcc the half types are CUDA's __half / __nv_bfloat16; in host C++ (the CPU emulation)
// they are c10::Half / c10::BFloat16. torch's nvcc flags define __CUDA_NO_HALF_CONVERSIONS__,
// so conversions go through the explicit round-to-nearest-even intrinsics.
#pragma once

#include <cmath>
#include <cstdint>

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

#ifdef __CUDACC__
using half_t = __half;
using bfloat16_t = __nv_bfloat16;

PVF_HD float load(const __half* p, int64_t i) { return __half2float(p[i]); }
PVF_HD void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }
PVF_HD float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
PVF_HD void store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
PVF_HD float load(const float* p, int64_t i) { return p[i]; }
PVF_HD void store(float* p, int64_t i, float v) { p[i] = v; }
#else
using half_t = c10::Half;
using bfloat16_t = c10::BFloat16;

// Set while the CPU emulation measures the kernels' global memory traffic (tests); else null.
inline void (*global_access_hook)(const void* address, int bytes, bool write) = nullptr;

template <class T>
inline const T* noted(const T* p, bool write) {
  if (global_access_hook) global_access_hook(p, sizeof(T), write);
  return p;
}

inline float load(const c10::Half* p, int64_t i) { return static_cast<float>(*noted(p + i, false)); }
inline void store(c10::Half* p, int64_t i, float v) { *const_cast<c10::Half*>(noted(p + i, true)) = c10::Half(v); }
inline float load(const c10::BFloat16* p, int64_t i) { return static_cast<float>(*noted(p + i, false)); }
inline void store(c10::BFloat16* p, int64_t i, float v) {
  *const_cast<c10::BFloat16*>(noted(p + i, true)) = c10::BFloat16(v);
}
inline float load(const float* p, int64_t i) { return *noted(p + i, false); }
inline void store(float* p, int64_t i, float v) { *const_cast<float*>(noted(p + i, true)) = v; }
#endif

PVF_HD bool is_finite(float v) {
#ifdef __CUDA_ARCH__
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

// Clamp that lets NaN through, as torch.clamp does (fminf/fmaxf would drop it).
PVF_HD float clamp_keep_nan(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

template <class T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) with T the storage type named by `storage`.
template <class F>
void dispatch_storage(Storage storage, F&& f) {
  switch (storage) {
    case Storage::kFloat32: f(TypeTag<float>{}); break;
    case Storage::kFloat16: f(TypeTag<half_t>{}); break;
    case Storage::kBFloat16: f(TypeTag<bfloat16_t>{}); break;
  }
}

}  // namespace pvf
