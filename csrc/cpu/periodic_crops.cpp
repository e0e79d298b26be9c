// periodic_crops on the CPU: resized axis-aligned crops of periodic images (MaCo's views), and
// their backward. Bilinear sampling is separable for an axis-aligned box, so a crop row is one
// blend of two source rows followed by a two-tap gather along it, and the backward is the same
// two steps transposed: a two-tap scatter into a source-width row, then that row added into
// the two source rows. Semantics: pyviz_fast/ops/reference.py (periodic_crops).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cmath>
#include <optional>
#include <vector>

#include "../checks.h"
#include "../kernels/common.h"
#include "ops_cpu.h"
#include "plane.h"

namespace pvf::cpu {
namespace {

// The two source indices and the far one's weight for each of a crop's n samples along an axis
// of n pixels: sample i sits at centre * n - 0.5 + size * (i + 0.5 - n / 2) pixels (pixel
// centres at integers), wrapped around the image.
struct AxisTaps {
  std::vector<int64_t> near, far;
  std::vector<float> far_weight;

  AxisTaps(float centre, float size, int64_t n) : near(n), far(n), far_weight(n) {
    const float start = centre * static_cast<float>(n) - 0.5f;
    for (int64_t i = 0; i < n; ++i) {
      const float offset = static_cast<float>(i) + 0.5f - 0.5f * static_cast<float>(n);
      const float at = start + size * offset;
      const float below = std::floor(at);
      far_weight[i] = at - below;
      near[i] = wrap(static_cast<int64_t>(below), n);
      far[i] = near[i] + 1 == n ? 0 : near[i] + 1;
    }
  }
};

// Every crop's taps along both axes, crop q = b * k + j.
struct CropTaps {
  std::vector<AxisTaps> rows, cols;

  CropTaps(const at::Tensor& boxes, int64_t H, int64_t W) {
    const float* box = boxes.const_data_ptr<float>();
    const int64_t crops = boxes.size(0) * boxes.size(1);
    rows.reserve(crops);
    cols.reserve(crops);
    for (int64_t q = 0; q < crops; ++q) {  // box = (size, centre y, centre x)
      rows.emplace_back(box[3 * q + 1], box[3 * q], H);
      cols.emplace_back(box[3 * q + 2], box[3 * q], W);
    }
  }
};

template <typename scalar_t>
void crops_impl(const at::Tensor& image, const at::Tensor& boxes, const std::optional<at::Tensor>& noise,
                float noise_scale, at::Tensor& out) {
  const Geometry in(image), to(out);
  const int64_t k = boxes.size(1);
  const CropTaps taps(boxes, in.H, in.W);
  const scalar_t* src = image.const_data_ptr<scalar_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  const std::optional<Geometry> shake = noise ? std::optional<Geometry>(*noise) : std::nullopt;
  const scalar_t* shakes = noise ? noise->const_data_ptr<scalar_t>() : nullptr;
  const int64_t grain = std::max<int64_t>(1, 16384 / in.W);
  at::parallel_for(0, to.planes() * to.H, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> near_row(in.W), far_row(in.W), blend(in.W), crop(to.W), jolt(to.W);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t p = r / to.H, i = r % to.H, q = p / to.C, c = p % to.C;
      const AxisTaps &rows = taps.rows[q], &cols = taps.cols[q];
      const scalar_t* plane = src + (q / k) * in.sB + c * in.sC;
      const float* a = row_as_float(plane + rows.near[i] * in.sH, in.sW, in.W, near_row.data());
      const float* b = row_as_float(plane + rows.far[i] * in.sH, in.sW, in.W, far_row.data());
      const float wb = rows.far_weight[i], wa = 1.0f - wb;
      for (int64_t u = 0; u < in.W; ++u) blend[u] = wa * a[u] + wb * b[u];
      for (int64_t w = 0; w < to.W; ++w) {
        const float t = cols.far_weight[w];
        crop[w] = (1.0f - t) * blend[cols.near[w]] + t * blend[cols.far[w]];
      }
      if (shake) {
        const float* n = row_as_float(shakes + shake->plane_offset(p) + i * shake->sH, shake->sW, to.W, jolt.data());
        for (int64_t w = 0; w < to.W; ++w) crop[w] += noise_scale * n[w];
      }
      store_strided(crop.data(), to.W, dst + to.plane_offset(p) + i * to.sH, to.sW);
    }
  });
}

template <typename scalar_t>
void crops_backward_impl(const at::Tensor& grad, const at::Tensor& boxes, at::Tensor& out) {
  const Geometry from(grad), to(out);
  const int64_t k = boxes.size(1);
  const CropTaps taps(boxes, to.H, to.W);
  const scalar_t* src = grad.const_data_ptr<scalar_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  // One thread per image plane: it alone adds into that plane, crop after crop and row after
  // row, so the sums run in one fixed order whatever the thread count.
  at::parallel_for(0, to.planes(), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> sums(to.H * to.W), buf(from.W), spread(to.W);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t b = p / to.C, c = p % to.C;
      std::fill(sums.begin(), sums.end(), 0.0f);
      for (int64_t j = 0; j < k; ++j) {
        const int64_t q = b * k + j;
        const AxisTaps &rows = taps.rows[q], &cols = taps.cols[q];
        const scalar_t* plane = src + q * from.sB + c * from.sC;
        for (int64_t i = 0; i < from.H; ++i) {
          const float* g = row_as_float(plane + i * from.sH, from.sW, from.W, buf.data());
          std::fill(spread.begin(), spread.end(), 0.0f);
          for (int64_t w = 0; w < from.W; ++w) {
            const float t = cols.far_weight[w];
            spread[cols.near[w]] += (1.0f - t) * g[w];
            spread[cols.far[w]] += t * g[w];
          }
          const float wb = rows.far_weight[i], wa = 1.0f - wb;
          float* a = sums.data() + rows.near[i] * to.W;
          float* z = sums.data() + rows.far[i] * to.W;
          for (int64_t u = 0; u < to.W; ++u) a[u] += wa * spread[u];
          for (int64_t u = 0; u < to.W; ++u) z[u] += wb * spread[u];
        }
      }
      scalar_t* target = dst + to.plane_offset(p);
      for (int64_t i = 0; i < to.H; ++i) store_strided(sums.data() + i * to.W, to.W, target + i * to.sH, to.sW);
    }
  });
}

}  // namespace

at::Tensor periodic_crops_cpu(const at::Tensor& image, const at::Tensor& boxes, const std::optional<at::Tensor>& noise,
                              double noise_scale) {
  check_image(image, "image");
  check_crop_boxes(boxes);
  TORCH_CHECK(boxes.size(0) == image.size(0), "boxes must hold the crops of each of the ", image.size(0),
              " images, got shape ", boxes.sizes());
  const int64_t crops = boxes.size(0) * boxes.size(1);
  at::Tensor out = at::empty({crops, image.size(1), image.size(2), image.size(3)}, image.options());
  if (noise.has_value()) check_like(*noise, out, "noise");
  TORCH_CHECK(std::isfinite(noise_scale), "noise_scale must be finite, got ", noise_scale);
  const at::Tensor b = boxes.contiguous();
  PVF_DISPATCH_STORAGE_TYPES(image.scalar_type(), "periodic_crops_cpu", [&] {
    crops_impl<scalar_t>(image, b, noise, static_cast<float>(noise_scale), out);
  });
  return out;
}

at::Tensor periodic_crops_backward_cpu(const at::Tensor& grad, const at::Tensor& boxes) {
  check_image(grad, "grad");
  check_crop_boxes(boxes);
  TORCH_CHECK(boxes.size(0) * boxes.size(1) == grad.size(0), "grad must hold one row per box (",
              boxes.size(0) * boxes.size(1), "), got shape ", grad.sizes());
  at::Tensor out = at::empty({boxes.size(0), grad.size(1), grad.size(2), grad.size(3)}, grad.options());
  const at::Tensor b = boxes.contiguous();
  PVF_DISPATCH_STORAGE_TYPES(grad.scalar_type(), "periodic_crops_backward_cpu",
                             [&] { crops_backward_impl<scalar_t>(grad, b, out); });
  return out;
}

}  // namespace pvf::cpu
