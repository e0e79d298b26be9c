// Argument checks shared by every C++ entry point (CPU, CUDA, emulation). The Python layer
// checks the same things first; these keep direct torch.ops callers from reaching a kernel
// with bad input.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

#include "kernels/common.h"

namespace pvf {

inline void check_image(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 4, name, " must be a 4-D tensor [B, C, H, W], got ", x.sizes());
  TORCH_CHECK(x.numel() > 0, name, " must hold at least one image with C, H, W >= 1, got ", x.sizes());
  const auto t = x.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kHalf || t == at::kBFloat16, name,
              " must be float32, float16 or bfloat16, got ", t);
}

inline void check_like(const at::Tensor& other, const at::Tensor& x, const char* name) {
  check_image(other, name);
  TORCH_CHECK(other.sizes() == x.sizes(), name, " must have the shape of x ", x.sizes(), ", got ", other.sizes());
  TORCH_CHECK(other.scalar_type() == x.scalar_type(), name, " must have the dtype of x (", x.scalar_type(),
              "), got ", other.scalar_type());
  TORCH_CHECK(other.device() == x.device(), name, " must be on the device of x (", x.device(), "), got ",
              other.device());
}

inline void check_shifts(const at::Tensor& shifts, const at::Tensor& x, const char* name) {
  TORCH_CHECK(shifts.scalar_type() == at::kLong, name, " must be int64 (dy, dx) pairs, got ", shifts.scalar_type());
  TORCH_CHECK(shifts.dim() == 2 && shifts.size(0) == x.size(0) && shifts.size(1) == 2, name,
              " must have shape [B, 2] = [", x.size(0), ", 2], got ", shifts.sizes());
  TORCH_CHECK(shifts.device() == x.device(), name, " must be on the device of x (", x.device(), "), got ",
              shifts.device());
}

inline void check_sigma(const at::Tensor& sigma, const at::Tensor& x) {
  TORCH_CHECK(sigma.scalar_type() == at::kFloat, "sigma must be float32, got ", sigma.scalar_type());
  TORCH_CHECK(sigma.dim() == 1 && sigma.size(0) == x.size(0), "sigma must hold one value per image (B=",
              x.size(0), "), got shape ", sigma.sizes());
  TORCH_CHECK(sigma.device() == x.device(), "sigma must be on the device of x (", x.device(), "), got ",
              sigma.device());
}

// A non-finite sigma of image b: ValueError, as the reference raises (CPU backends; a CUDA
// kernel cannot check without a host sync and flags the image instead).
inline void check_sigma_value(float sigma, int64_t b) {
  TORCH_CHECK_VALUE(std::isfinite(sigma), "sigma must be finite, got ", sigma, " for image ", b);
}

// The tiled CUDA kernels (and their emulation) index inside one image in int32.
inline void check_int32_image_offsets(const at::Tensor& x, const char* name) {
  int64_t last = 0;
  for (int d = 1; d < 4; ++d) last += (x.size(d) - 1) * x.stride(d);
  TORCH_CHECK(last <= std::numeric_limits<int32_t>::max(), name,
              " must address each image within 2^31 - 1 elements (strides ", x.strides(), ")");
}

// Crop boxes [B, k, 3] of (size, centre y, centre x) in image fractions: float32 on the CPU
// (read by the host), finite, 0 < size <= kMaxCropExtent and |centre| <= kMaxCropExtent, so a
// sample's pixel position stays far inside int64.
constexpr double kMaxCropExtent = 1e6;

inline void check_crop_boxes(const at::Tensor& boxes) {
  TORCH_CHECK(boxes.scalar_type() == at::kFloat, "boxes must be float32, got ", boxes.scalar_type());
  TORCH_CHECK(boxes.dim() == 3 && boxes.size(1) >= 1 && boxes.size(2) == 3,
              "boxes must have shape [B, k, 3] (size, centre y, centre x) with k >= 1, got ", boxes.sizes());
  TORCH_CHECK(boxes.device().is_cpu(), "boxes must be on the CPU (they are read by the host), got ", boxes.device());
  const at::Tensor b = boxes.contiguous();
  const float* v = b.const_data_ptr<float>();
  for (int64_t q = 0; q < b.numel() / 3; ++q) {
    TORCH_CHECK_VALUE(std::isfinite(v[3 * q]) && v[3 * q] > 0.0f && v[3 * q] <= kMaxCropExtent,
                      "crop sizes must be in (0, ", kMaxCropExtent, "], got ", v[3 * q], " for box ", q);
    for (int a = 1; a < 3; ++a)
      TORCH_CHECK_VALUE(std::isfinite(v[3 * q + a]) && std::abs(v[3 * q + a]) <= kMaxCropExtent,
                        "crop centres must be finite and within +-", kMaxCropExtent, ", got ", v[3 * q + a],
                        " for box ", q);
  }
}

inline void check_eps(double eps) {
  TORCH_CHECK(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got ", eps);
}

inline void check_clip(double clip) {
  TORCH_CHECK(clip >= 0.0, "clip must be >= 0 (inf disables clipping), got ", clip);
}

inline void check_step_scalars(double eps, double clip, double lr, double decay, double center, double lo,
                               double hi) {
  check_eps(eps);
  check_clip(clip);
  TORCH_CHECK(std::isfinite(lr), "lr must be finite, got ", lr);
  TORCH_CHECK(decay >= 0.0 && decay <= 1.0, "decay must be in [0, 1], got ", decay);
  TORCH_CHECK(std::isfinite(center), "center must be finite, got ", center);
  TORCH_CHECK(lo <= hi, "lo must not exceed hi, got lo=", lo, ", hi=", hi);
}

inline NormMode parse_norm_mode(std::string_view mode) {
  if (mode == "rms") return kRms;
  if (mode == "mean_abs") return kMeanAbs;
  if (mode == "std") return kStd;
  if (mode == "max_abs") return kMaxAbs;
  if (mode == "none") return kNone;
  TORCH_CHECK(false, "norm mode must be one of rms, mean_abs, std, max_abs, none; got '", mode, "'");
}

}  // namespace pvf
