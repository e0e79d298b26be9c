// The kernel sequence of every op, written once for both executors: the CUDA launcher
// (csrc/cuda/kernels.cu: a grid-stride kernel per body, on the current stream) and the CPU
// emulation (csrc/emulation/: a plain loop over all thread indices). A Launch is called as
// launch(n, body) and runs body(i) for every i in [0, n), each stage after the previous one.
//
// Args hold the images as pointer + element strides (any layout), int64 shifts and float32
// sigma as contiguous arrays, and contiguous workspaces that the caller allocates with the
// sizes given here (csrc/cuda/op_frontend.h).
#pragma once

#include "ascent.h"
#include "blur.h"
#include "image_shape.h"
#include "jitter.h"
#include "scale_clip.h"
#include "stats.h"
#include "storage.h"

namespace pvf {

struct BlurWorkspace {
  float* taps;  // [B, tap_table_width]
  int32_t* radius;  // [B]
  float* rows;  // [B, C, H, W] the row pass
};

struct StatsWorkspace {
  StatsPartial* partials;  // [B * stats_partials_per_image]: every stage's partials
  float* denom;  // [B]
  bool* nonfinite;  // [B]
};

// An image tensor of the op's storage type, read or written.
struct ImageIn {
  const void* data;
  Strides strides;
};

struct ImageOut {
  void* data;
  Strides strides;
};

struct JitterArgs {
  Storage storage;
  ImageShape shape;
  ImageIn x;
  const int64_t* shifts;
  ImageOut out;
};

struct BlurArgs {
  Storage storage;
  ImageShape shape;
  ImageIn x;
  const float* sigma;
  ImageOut out;
  BlurWorkspace blur;
};

struct NormalizeArgs {
  Storage storage;
  ImageShape shape;
  ImageIn g;
  NormMode mode;
  float eps;
  ImageOut out;
  StatsWorkspace stats;
};

struct ClipArgs {
  Storage storage;
  ImageShape shape;
  ImageIn g;
  float clip;
  ImageOut out;
};

struct AscentStepArgs {
  Storage storage;
  ImageShape shape;
  ImageIn x;
  ImageIn grad;
  const int64_t* shifts;
  const int64_t* next_shifts;
  const float* sigma;
  float eps;
  AscentParams params;
  ImageOut new_x;
  ImageOut next_input;
  BlurWorkspace blur;
  StatsWorkspace stats;  // stats.nonfinite is the op's nonfinite output
};

namespace detail {

template <class T>
const T* typed(const ImageIn& image) {
  return static_cast<const T*>(image.data);
}

template <class T>
T* typed(const ImageOut& image) {
  return static_cast<T*>(image.data);
}

// Taps, then the row pass of src (un-jittered by shifts unless null); returns the column pass.
template <class T, class Launch>
VerticalBlur launch_row_pass(Launch& launch, const ImageShape& shape, const ImageIn& src, const int64_t* shifts,
                             const float* sigma, const BlurWorkspace& ws) {
  const int64_t width = tap_table_width(shape);
  launch(shape.batch, TapTableBody{sigma, ws.taps, ws.radius, shape, width});
  launch(shape.numel(),
         HorizontalBlurBody<T>{typed<T>(src), src.strides, shifts, ws.taps, ws.radius, ws.rows, shape, width});
  return VerticalBlur{ws.rows, ws.taps, ws.radius, shape, width};
}

// Stages A, F... and C of the per-image scale of `value` (see stats.h).
template <class Source, class Launch>
void launch_stats(Launch& launch, const ImageShape& shape, const Source& value, NormMode mode, float eps,
                  const StatsWorkspace& ws) {
  int64_t count = stats_threads_per_image(shape.image());
  StatsPartial* level = ws.partials;
  launch(shape.batch * count, StatsPartialBody<Source>{value, level, shape, count, mode});
  while (count > kStatsFold) {
    const int64_t folded = stats_folded_count(count);
    StatsPartial* next = level + shape.batch * count;
    launch(shape.batch * folded, StatsFoldBody{level, next, count, folded, mode});
    level = next;
    count = folded;
  }
  launch(shape.batch, StatsCombineBody{level, ws.denom, ws.nonfinite, count, mode, eps});
}

}  // namespace detail

template <class Launch>
void run_sequence(Launch& launch, const JitterArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch(a.shape.numel(), JitterBody<T>{detail::typed<T>(a.x), a.x.strides, a.shifts, detail::typed<T>(a.out),
                                          a.out.strides, a.shape});
  });
}

template <class Launch>
void run_sequence(Launch& launch, const BlurArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const VerticalBlur blurred = detail::launch_row_pass<T>(launch, a.shape, a.x, nullptr, a.sigma, a.blur);
    launch(a.shape.numel(), BlurStoreBody<T>{blurred, detail::typed<T>(a.out), a.out.strides});
  });
}

template <class Launch>
void run_sequence(Launch& launch, const NormalizeArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = detail::typed<T>(a.g);
    detail::launch_stats(launch, a.shape, LoadSource<T>{g, a.g.strides, a.shape}, a.mode, a.eps, a.stats);
    launch(a.shape.numel(), NormalizeBody<T>{g, a.g.strides, a.stats.denom, detail::typed<T>(a.out), a.out.strides,
                                             a.shape, a.mode});
  });
}

template <class Launch>
void run_sequence(Launch& launch, const ClipArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch(a.shape.numel(), ClipBody<T>{detail::typed<T>(a.g), a.g.strides, detail::typed<T>(a.out), a.out.strides,
                                        a.shape, a.clip});
  });
}

// un-jitter + row pass -> stats of the column pass -> update (column pass recomputed per element).
template <class Launch>
void run_sequence(Launch& launch, const AscentStepArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const VerticalBlur grad = detail::launch_row_pass<T>(launch, a.shape, a.grad, a.shifts, a.sigma, a.blur);
    detail::launch_stats(launch, a.shape, grad, a.params.mode, a.eps, a.stats);
    launch(a.shape.numel(),
           AscentUpdateBody<T>{grad, a.stats.denom, a.stats.nonfinite, detail::typed<T>(a.x), a.x.strides,
                               a.next_shifts, detail::typed<T>(a.new_x), a.new_x.strides,
                               detail::typed<T>(a.next_input), a.next_input.strides, a.shape, a.params});
  });
}

}  // namespace pvf
