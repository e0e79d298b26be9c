// The kernel sequence of every op, written once for both executors: the CUDA launcher
// (csrc/cuda/kernels.cu: one kernel per block program, on the current stream) and the CPU
// emulation (csrc/emulation/: blocks run by the block emulator). A Launch is called as
// launch(work, program) and runs the block program (tile_programs.h) over a grid of at most
// `work` blocks, each launch after the previous one. Launches per op: jitter, gaussian_blur,
// clip_grad 1; normalize_grad and fused_ascent_step 2 (the statistic, then the rest).
//
// Args hold the images as pointer + element strides (any layout), int64 shifts and float32
// sigma as contiguous arrays, and a contiguous workspace of per-tile partials that the caller
// allocates with partials_needed() entries (csrc/cuda/op_frontend.h).
#pragma once

#include "image_shape.h"
#include "storage.h"
#include "tile_programs.h"

namespace pvf {

// Entries of the partials workspace of an op on images of this shape (0: the op needs none).
inline int64_t partials_needed(const ImageShape& shape) { return tile_count(shape) * kPartialsPerTile; }

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
};

struct NormalizeArgs {
  Storage storage;
  ImageShape shape;
  ImageIn g;
  NormMode mode;
  float eps;
  ImageOut out;
  StatsPartial* partials;
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
  bool* nonfinite;  // [B] output
  StatsPartial* partials;
};

// f(std::integral_constant<NormMode, mode>).
template <class F>
void with_norm_mode(NormMode mode, F&& f) {
  switch (mode) {
    case kRms: f(std::integral_constant<NormMode, kRms>{}); break;
    case kMeanAbs: f(std::integral_constant<NormMode, kMeanAbs>{}); break;
    case kStd: f(std::integral_constant<NormMode, kStd>{}); break;
    case kMaxAbs: f(std::integral_constant<NormMode, kMaxAbs>{}); break;
    case kNone: f(std::integral_constant<NormMode, kNone>{}); break;
  }
}

namespace detail {

template <class T>
TileSource<T> source(const ImageIn& image, const int64_t* shifts = nullptr, bool inverse = false) {
  return {static_cast<const T*>(image.data), image.strides, shifts, inverse};
}

template <class T>
T* typed(const ImageOut& image) {
  return static_cast<T*>(image.data);
}

// The one launch of an op that stores its (rolled, blurred or clipped) source.
template <class T, class Launch>
void launch_store(Launch& launch, const ImageShape& shape, const TileSource<T>& src, const float* sigma,
                  const ImageOut& out, float clip) {
  const TileGrid grid(shape);
  launch(grid.total, ApplyProgram<T, StoreEpilogue<T>>{{src, sigma, grid}, ImageScale{nullptr, kNone, 0.0f}, nullptr,
                                                       StoreEpilogue<T>{typed<T>(out), out.strides, clip}});
}

}  // namespace detail

template <class Launch>
void run_sequence(Launch& launch, const JitterArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr float kNoClip = __builtin_huge_valf();
    detail::launch_store<T>(launch, a.shape, detail::source<T>(a.x, a.shifts, true), nullptr, a.out, kNoClip);
  });
}

template <class Launch>
void run_sequence(Launch& launch, const BlurArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr float kNoClip = __builtin_huge_valf();
    detail::launch_store<T>(launch, a.shape, detail::source<T>(a.x), a.sigma, a.out, kNoClip);
  });
}

template <class Launch>
void run_sequence(Launch& launch, const ClipArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    detail::launch_store<T>(launch, a.shape, detail::source<T>(a.g), nullptr, a.out, a.clip);
  });
}

template <class Launch>
void run_sequence(Launch& launch, const NormalizeArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const TileGrid grid(a.shape);
    const BlurredTiles<T> tiles{detail::source<T>(a.g), nullptr, grid};
    with_norm_mode(a.mode, [&](auto mode) {
      launch(grid.total, StatsProgram<T, decltype(mode)::value>{tiles, a.partials});
    });
    launch(grid.total, ApplyProgram<T, ScaleEpilogue<T>>{tiles, ImageScale{a.partials, a.mode, a.eps}, nullptr,
                                                         ScaleEpilogue<T>{detail::typed<T>(a.out), a.out.strides,
                                                                          a.mode}});
  });
}

// Kernel 1: un-jitter + blur + per-tile partials; kernel 2: fold the image's partials, blur
// again, update, store the image and the next input.
template <class Launch>
void run_sequence(Launch& launch, const AscentStepArgs& a) {
  dispatch_storage(a.storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const TileGrid grid(a.shape);
    const BlurredTiles<T> g{detail::source<T>(a.grad, a.shifts), a.sigma, grid};
    with_norm_mode(a.params.mode, [&](auto mode) {
      launch(grid.total, StatsProgram<T, decltype(mode)::value>{g, a.partials});
    });
    const StepEpilogue<T> step{static_cast<const T*>(a.x.data), a.x.strides, a.next_shifts,
                               detail::typed<T>(a.new_x), a.new_x.strides, detail::typed<T>(a.next_input),
                               a.next_input.strides, a.shape, a.params};
    launch(grid.total, ApplyProgram<T, StepEpilogue<T>>{g, ImageScale{a.partials, a.params.mode, a.eps}, a.nonfinite,
                                                        step});
  });
}

}  // namespace pvf
