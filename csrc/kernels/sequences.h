// The kernel sequence of every op, written once for both executors: the CUDA launcher
// (csrc/cuda/kernels.cu: a grid-stride kernel per body, on the current stream) and the CPU
// emulation (csrc/emulation/: a plain loop over all thread indices). A Launch is called as
// launch(n, body) and runs body(i) for every i in [0, n), each stage after the previous one.
//
// Args hold raw pointers to contiguous tensors and float32 workspaces that the caller
// allocates with the sizes given here (csrc/cuda/op_frontend.h).
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
  StatsPartial* partials;  // [B, stats_threads_per_image]
  float* denom;  // [B]
  bool* nonfinite;  // [B]
};

struct JitterArgs {
  Storage storage;
  ImageShape shape;
  const void* x;
  const int64_t* shifts;
  void* out;
};

struct BlurArgs {
  Storage storage;
  ImageShape shape;
  const void* x;
  const float* sigma;
  void* out;
  BlurWorkspace blur;
};

struct NormalizeArgs {
  Storage storage;
  ImageShape shape;
  const void* g;
  NormMode mode;
  float eps;
  void* out;
  StatsWorkspace stats;
};

struct ClipArgs {
  Storage storage;
  ImageShape shape;
  const void* g;
  float clip;
  void* out;
};

struct AscentStepArgs {
  Storage storage;
  ImageShape shape;
  const void* x;
  const void* grad;
  const int64_t* shifts;
  const int64_t* next_shifts;
  const float* sigma;
  float eps;
  AscentParams params;
  void* new_x;
  void* next_input;
  BlurWorkspace blur;
  StatsWorkspace stats;  // stats.nonfinite is the op's nonfinite output
};

namespace detail {

// Taps, then the row pass of src (un-jittered by shifts unless null); returns the column pass.
template <class T, class Launch>
VerticalBlur launch_row_pass(Launch& launch, const ImageShape& shape, const void* src, const int64_t* shifts,
                             const float* sigma, const BlurWorkspace& ws) {
  const int64_t width = tap_table_width(shape);
  launch(shape.batch, TapTableBody{sigma, ws.taps, ws.radius, shape, width});
  launch(shape.numel(),
         HorizontalBlurBody<T>{static_cast<const T*>(src), shifts, ws.taps, ws.radius, ws.rows, shape, width});
  return VerticalBlur{ws.rows, ws.taps, ws.radius, shape, width};
}

// Stages A and B of the per-image scale of `value`.
template <class Source, class Launch>
void launch_stats(Launch& launch, const ImageShape& shape, const Source& value, NormMode mode, float eps,
                  const StatsWorkspace& ws) {
  const int64_t threads = stats_threads_per_image(shape.image());
  launch(shape.batch * threads, StatsPartialBody<Source>{value, ws.partials, shape, threads, mode});
  launch(shape.batch, StatsCombineBody{ws.partials, ws.denom, ws.nonfinite, threads, mode, eps});
}

}  // namespace detail

template <class Launch>
void run_sequence(Launch& launch, const JitterArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch(a.shape.numel(), JitterBody<T>{static_cast<const T*>(a.x), a.shifts, static_cast<T*>(a.out), a.shape});
  });
}

template <class Launch>
void run_sequence(Launch& launch, const BlurArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const VerticalBlur blurred = detail::launch_row_pass<T>(launch, a.shape, a.x, nullptr, a.sigma, a.blur);
    launch(a.shape.numel(), BlurStoreBody<T>{blurred, static_cast<T*>(a.out)});
  });
}

template <class Launch>
void run_sequence(Launch& launch, const NormalizeArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = static_cast<const T*>(a.g);
    detail::launch_stats(launch, a.shape, LoadSource<T>{g}, a.mode, a.eps, a.stats);
    launch(a.shape.numel(), NormalizeBody<T>{g, a.stats.denom, static_cast<T*>(a.out), a.shape, a.mode});
  });
}

template <class Launch>
void run_sequence(Launch& launch, const ClipArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch(a.shape.numel(), ClipBody<T>{static_cast<const T*>(a.g), static_cast<T*>(a.out), a.clip});
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
           AscentUpdateBody<T>{grad, a.stats.denom, a.stats.nonfinite, static_cast<const T*>(a.x), a.next_shifts,
                               static_cast<T*>(a.new_x), static_cast<T*>(a.next_input), a.shape, a.params});
  });
}

}  // namespace pvf
