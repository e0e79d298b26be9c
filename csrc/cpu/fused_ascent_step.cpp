// fused_ascent_step on the CPU: un-jitter -> blur -> normalize -> clip -> update, decay,
// clamp -> jitter with the next shifts, writing the new image and the next input in one go.
//
// The blurred gradient lives only in per-thread float32 buffers (in L2 for common sizes): with
// at least one image per thread, each image is processed whole by one thread (blur its C
// planes, take its scale, update), the update of one image interleaved with the blur of the
// next; with fewer images than threads (or huge images), planes are spread over the threads
// and blurred twice (once for the sums, once for the update) instead of going through a
// batch-sized workspace in memory. Both orders compute the same sums in the same order, so the
// result is the same whatever the thread count.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/irange.h>

#include <cmath>
#include <type_traits>
#include <utility>

#include "../checks.h"
#include "ops_cpu.h"
#include "output_cache.h"
#include "grad_scale.h"
#include "plane.h"
#include "plane_blur.h"

namespace pvf::cpu {
namespace {

// Largest blurred image a thread keeps whole, two at a time (beyond it, planes go one at a time).
constexpr size_t kImageScratchBytes = size_t{8} << 20;
// Outputs at least this large (far beyond the caches) are written with streaming stores:
// the next reader finds them in memory anyway, and plain stores would read each line first.
constexpr size_t kStreamBytes = size_t{4} << 20;

struct StepOptions {
  NormMode norm;
  double eps;
  float clip, lr, decay, center, lo, hi;
};

template <typename scalar_t>
class FusedStep {
 public:
  FusedStep(const at::Tensor& x, const at::Tensor& grad, const at::Tensor& shifts, const at::Tensor& next_shifts,
            const at::Tensor& sigma, const StepOptions& opt, at::Tensor& image, at::Tensor& next_input,
            at::Tensor& nonfinite)
      : xg_(x), gg_(grad), og_(image), ng_(next_input), opt_(opt),
        x_(x.const_data_ptr<scalar_t>()), grad_(grad.const_data_ptr<scalar_t>()),
        image_(image.mutable_data_ptr<scalar_t>()), next_(next_input.mutable_data_ptr<scalar_t>()),
        shifts_(shifts.const_data_ptr<int64_t>()), next_shifts_(next_shifts.const_data_ptr<int64_t>()),
        flags_(nonfinite.mutable_data_ptr<bool>()), taps_(gaussian_taps(sigma, x.size(2), x.size(3))),
        radius_(max_radius(taps_)), pitch_(row_pitch(xg_.W)), plane_floats_(xg_.H * pitch_),
        stream_(std::is_same_v<scalar_t, float> && og_.sW == 1 && ng_.sW == 1 &&
                static_cast<size_t>(x.numel()) * sizeof(float) >= kStreamBytes) {}

  void run() {
    const size_t image_bytes = static_cast<size_t>(xg_.C * plane_floats_) * sizeof(float);
    if (xg_.B >= at::get_num_threads() && image_bytes <= kImageScratchBytes)
      run_per_image();
    else
      run_per_plane();
  }

 private:
  // Per-thread scratch: the blur's buffers, blurred planes (rows row_pitch apart), a row of x,
  // a row of the update and that row rotated for the next input.
  struct Scratch {
    PlaneBlur blur;
    FloatBuffer planes;
    std::vector<float> x_row, new_row, rotated_row;
    Scratch(const Geometry& g, int64_t radius, int64_t plane_floats, int64_t planes_kept)
        : blur(g.H, g.W, radius), planes(float_buffer(planes_kept * plane_floats)), x_row(g.W), new_row(g.W),
          rotated_row(g.W) {}
  };

  // Un-jittered, blurred gradient of plane p into out [H, pitch]; returns its sums, taken row by
  // row as the blur finishes each (in L1). after_row() runs after each finished row.
  template <typename AfterRow>
  GradStats blur_plane(int64_t p, Scratch& s, float* out, const AfterRow& after_row) {
    const int64_t b = p / gg_.C;
    const auto accumulate = opt_.norm == kMeanAbs ? accumulate_abs_stats : accumulate_stats;
    GradStats stats;
    s.blur.run(grad_ + gg_.plane_offset(p), gg_.sH, gg_.sW, shifts_[2 * b], shifts_[2 * b + 1], taps_[b], out,
               [&](int64_t, const float* row) {
                 accumulate(row, gg_.W, stats);
                 after_row();
               });
    return stats;
  }

  GradStats blur_plane(int64_t p, Scratch& s, float* out) {
    return blur_plane(p, s, out, [] {});
  }

  // Scale and flag of image b from its sums; returns the update of its pixels.
  UpdateParams finish_image(int64_t b, const GradStats& stats) {
    const float scale = grad_scale(stats, opt_.norm);
    flags_[b] = !stats.finite || !std::isfinite(scale) ||
                no_reciprocal(opt_.norm, scale_denominator(scale, opt_.norm, opt_.eps));
    return {inverse_scale(scale, opt_.norm, opt_.eps), opt_.clip, opt_.lr, opt_.decay, opt_.center, opt_.lo, opt_.hi};
  }

  // Update row i of plane p from its blurred gradient row g and write it to both outputs (a
  // flagged image keeps its pixels). Float32 outputs with contiguous rows are finished in L1
  // (updated, then rotated) and streamed whole to memory.
  void update_row(int64_t p, int64_t i, const float* g, const UpdateParams& params, Scratch& s) {
    const int64_t b = p / xg_.C, H = xg_.H, W = xg_.W, dx = next_shifts_[2 * b + 1];
    const scalar_t* x = x_ + xg_.plane_offset(p) + i * xg_.sH;
    scalar_t* image = image_ + og_.plane_offset(p) + i * og_.sH;
    scalar_t* next = next_ + ng_.plane_offset(p) + shifted_index(i, next_shifts_[2 * b], H) * ng_.sH;
    constexpr int64_t kAhead = 4;  // rows of x requested ahead: the hardware alone keeps too few in flight
    if (i + kAhead < H && xg_.sW == 1) prefetch_bytes(x + kAhead * xg_.sH, W * sizeof(scalar_t));
    const float* row = row_as_float(x, xg_.sW, W, s.x_row.data());
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (stream_) {
        if (!flags_[b]) {
          ascent_update(row, g, W, params, s.new_row.data());
          row = s.new_row.data();
        }
        stream_row(row, W, image);
        load_rotated(row, 1, W, -dx, s.rotated_row.data());
        stream_row(s.rotated_row.data(), W, next);
        return;
      }
    }
    if (!flags_[b]) {
      float* updated = row_target(image, og_.sW, s.new_row.data());
      ascent_update(row, g, W, params, updated);
      row = updated;
    }
    store_row(row, W, image, og_.sW);
    store_rotated(row, W, dx, next, ng_.sW);
  }

  // Each thread takes whole images, in a two-stage pipeline: image b is blurred while image
  // b - 1, blurred the round before, is updated one row per blurred row, so that the update's
  // memory traffic (x in, two outputs out) overlaps the blur's arithmetic instead of following it.
  void run_per_image() {
    const int64_t C = xg_.C, H = xg_.H;
    at::parallel_for(0, xg_.B, 1, [&](int64_t begin, int64_t end) {
      Scratch s(xg_, radius_, plane_floats_, 2 * C);
      float* blurring = s.planes.get();
      float* updating = blurring + C * plane_floats_;
      int64_t updating_image = -1, next_row = 0;  // next_row counts over the image's C planes
      UpdateParams params{};
      const auto update_next_row = [&] {
        if (updating_image < 0 || next_row == C * H) return;
        const int64_t c = next_row / H, i = next_row % H;
        update_row(updating_image * C + c, i, updating + c * plane_floats_ + i * pitch_, params, s);
        ++next_row;
      };
      for (const auto b : c10::irange(begin, end)) {
        GradStats stats;
        for (const auto c : c10::irange(C))
          stats.add(blur_plane(b * C + c, s, blurring + c * plane_floats_, update_next_row));
        params = finish_image(b, stats);
        std::swap(blurring, updating);
        updating_image = b;
        next_row = 0;
      }
      while (next_row < C * H) update_next_row();
      stream_fence();
    });
  }

  // Planes spread over the threads, each blurred twice: once for the sums, once for the update.
  void run_per_plane() {
    std::vector<GradStats> stats(xg_.planes());
    at::parallel_for(0, xg_.planes(), 1, [&](int64_t begin, int64_t end) {
      Scratch s(xg_, radius_, plane_floats_, 1);
      for (const auto p : c10::irange(begin, end)) stats[p] = blur_plane(p, s, s.planes.get());
    });
    std::vector<UpdateParams> params;
    for (const auto b : c10::irange(xg_.B)) params.push_back(finish_image(b, image_stats(stats, b, xg_.C)));
    at::parallel_for(0, xg_.planes(), 1, [&](int64_t begin, int64_t end) {
      Scratch s(xg_, radius_, plane_floats_, 1);
      for (const auto p : c10::irange(begin, end)) {
        if (!flags_[p / xg_.C]) blur_plane(p, s, s.planes.get());
        for (const auto i : c10::irange(xg_.H)) update_row(p, i, s.planes.get() + i * pitch_, params[p / xg_.C], s);
      }
      stream_fence();
    });
  }

  const Geometry xg_, gg_, og_, ng_;
  const StepOptions opt_;
  const scalar_t* x_;
  const scalar_t* grad_;
  scalar_t* image_;
  scalar_t* next_;
  const int64_t* shifts_;
  const int64_t* next_shifts_;
  bool* flags_;
  const std::vector<GaussianTaps> taps_;
  const int64_t radius_, pitch_, plane_floats_;
  const bool stream_;
};

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_ascent_step_cpu(
    const at::Tensor& x, const at::Tensor& grad, const at::Tensor& shifts, const at::Tensor& next_shifts,
    const at::Tensor& sigma, c10::string_view norm, double eps, double clip, double lr, double decay,
    double center, double lo, double hi) {
  check_image(x, "x");
  check_like(grad, x, "grad");
  check_shifts(shifts, x, "shifts");
  check_shifts(next_shifts, x, "next_shifts");
  check_sigma(sigma, x);
  check_step_scalars(eps, clip, lr, decay, center, lo, hi);
  const StepOptions opt{parse_norm_mode(norm), eps, static_cast<float>(clip), static_cast<float>(lr),
                        static_cast<float>(decay), static_cast<float>(center), static_cast<float>(lo),
                        static_cast<float>(hi)};
  const at::Tensor s = shifts.contiguous(), ns = next_shifts.contiguous();
  at::Tensor image = empty_output_like(x), next_input = empty_output_like(x);
  at::Tensor nonfinite = at::empty({x.size(0)}, x.options().dtype(at::kBool));
  PVF_DISPATCH_STORAGE_TYPES(x.scalar_type(), "fused_ascent_step_cpu", [&] {
    FusedStep<scalar_t>(x, grad, s, ns, sigma, opt, image, next_input, nonfinite).run();
  });
  return {image, next_input, nonfinite};
}

}  // namespace pvf::cpu
