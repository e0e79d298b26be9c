// The kernel sequence of every op, written once for both executors: the CUDA launcher
// (csrc/cuda/kernels.cuh: one kernel per block program, on the current stream) and the CPU
// emulation (csrc/emulation/: blocks run by the block emulator). A Launch is called as
// launch(work, program) and runs the block program (tile_programs.h) over a grid of at most
// `work` blocks, each launch after the previous one; launch.resident(blocks, program) runs a
// program whose blocks wait on each other over exactly `blocks` blocks, all resident at once,
// and returns false if the device refused it (nothing ran).
// Launches per op: jitter, gaussian_blur, clip_grad 1; normalize_grad 2 per chunk of images (the
// statistic, then the rest; one chunk unless the batch's g outgrows a quarter of the L2 cache);
// fused_ascent_step 2, one pass over g (resident_step.h: the images' tickets, then the step), for
// images whose tiles fit what the device holds at once (resident_step_blocks), else 2 per
// chunk as normalize_grad.
//
// Args hold the images as pointer + element strides (any layout), int64 shifts and float32
// sigma as contiguous arrays, and a contiguous workspace of per-tile partials that the caller
// allocates with partials_needed() entries for a chunk (csrc/cuda/op_frontend.h).
#pragma once

#include "image_shape.h"
#include "storage.h"
#include "resident_step.h"
#include "tile_programs.h"

namespace pvf {

// Entries of the partials workspace of an op on images of this shape (0: the op needs none).
inline int64_t partials_needed(const ImageShape& shape) { return tile_count(shape) * kPartialsPerTile; }

// Images per chunk of a two-launch op on a device with `cache_bytes` of L2 (0: unknown, no
// chunking). Kernel 2 re-reads every tile of g that kernel 1 read; run chunk by chunk, that
// second read finds g in L2 if, between the two reads of a tile, the rest of the chunk's g and
// kernel 2's own traffic (x read, two outputs written: up to 3 x g's bytes) fit in it. A
// chunk's g is therefore at most a quarter of L2. Pure function of the sizes (tested on the CPU).
inline int64_t chunk_images(const ImageShape& shape, int64_t element_bytes, int64_t cache_bytes) {
  if (cache_bytes <= 0) return shape.batch;
  const int64_t fit = cache_bytes / (4 * shape.image() * element_bytes);
  return fit < 1 ? 1 : (fit < shape.batch ? fit : shape.batch);
}

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
  StatsPartial* partials;  // partials_needed() of a chunk of images
  int64_t chunk = 0;  // images per chunk (chunk_images); 0: the whole batch
};

struct ClipArgs {
  Storage storage;
  ImageShape shape;
  ImageIn g;
  float clip;
  ImageOut out;
};

// Blocks of the one-pass step (ResidentStepProgram) for images in tiles `grid` on a device that
// holds `capacity` blocks at once (of that storage type's kernel): every tile's block or the
// capacity, whichever is fewer; 0 (the two-pass step) when an image has more tiles than that.
// Pure (tested on the CPU).
inline int64_t resident_step_blocks(const TileGrid& grid, int64_t capacity) {
  if (capacity < grid.per_image) return 0;
  return capacity < grid.total ? capacity : grid.total;
}

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
  StatsPartial* partials;  // partials_needed() of a chunk of images (of the batch with tickets)
  int64_t chunk = 0;  // images per chunk (chunk_images); 0: the whole batch
  ImageTicket* tickets = nullptr;  // ticket_bytes(): the one-pass step (ImageTicketsProgram, then resident_blocks blocks)
  int64_t resident_blocks = 0;
};

namespace detail {

// The interleaved cut (tile.h) when every image of the op is channels_last-like (channels of a
// pixel adjacent, pixels C apart), else the planar one.
template <class... Images>
bool interleaved(const ImageShape& shape, const Images&... images) {
  return shape.channels > 1 && ((images.strides.c == 1 && images.strides.w == shape.channels) && ...);
}

// The images from image b0 on, as typed pointers and views in the tile cut.
template <class T>
struct Typed {
  const TileGrid& grid;
  int64_t b0;

  const T* in(const ImageIn& image) const { return static_cast<const T*>(image.data) + b0 * image.strides.b; }
  T* out(const ImageOut& image) const { return static_cast<T*>(image.data) + b0 * image.strides.b; }
  template <class Image>
  TileView view(const Image& image) const {
    return tile_view(static_cast<const T*>(image.data) + b0 * image.strides.b, image.strides, grid, sizeof(T));
  }
  TileSource<T> source(const ImageIn& image, const int64_t* shifts = nullptr, bool inverse = false) const {
    return {in(image), view(image), shifts ? shifts + 2 * b0 : nullptr, inverse};
  }
};

// The one launch of an op that stores its (rolled, blurred or clipped) source.
template <class T, class Launch>
void launch_store(Launch& launch, const ImageShape& shape, const ImageIn& x, const int64_t* shifts, bool inverse,
                  const float* sigma, const ImageOut& out, float clip) {
  const TileGrid grid(shape, interleaved(shape, x, out));
  const Typed<T> at{grid, 0};
  launch(grid.total, ApplyProgram<T, StoreEpilogue<T>>{{at.source(x, shifts, inverse), sigma, grid},
                                                       ImageScale{nullptr, kNone, 0.0f}, nullptr,
                                                       StoreEpilogue<T>{at.out(out), at.view(out), clip}});
}

// The statistic's launch: the std's kernel or the one of the other modes (StatsProgram).
template <class T, class Launch>
void launch_stats(Launch& launch, const BlurredTiles<T>& g, StatsPartial* partials, NormMode mode) {
  if (mode == kStd) {
    launch(g.grid.total, StatsProgram<T, true>{g, partials, mode});
  } else {
    launch(g.grid.total, StatsProgram<T, false>{g, partials, mode});
  }
}

// Calls f(b0, shape of images b0 ... b0 + n - 1) for the chunks of a batch.
template <class F>
void each_chunk(const ImageShape& shape, int64_t chunk, F&& f) {
  const int64_t size = chunk > 0 ? chunk : shape.batch;
  for (int64_t b0 = 0; b0 < shape.batch; b0 += size) {
    ImageShape part = shape;
    part.batch = shape.batch - b0 < size ? shape.batch - b0 : size;
    f(b0, part);
  }
}

}  // namespace detail

// The clip bound of the stores that do not clip (jitter, blur).
constexpr float kNoClip = __builtin_huge_valf();

// The sequence of each op for images of storage type T (run_sequence picks T).

template <class T, class Launch>
void run_typed(Launch& launch, const JitterArgs& a) {
  detail::launch_store<T>(launch, a.shape, a.x, a.shifts, true, nullptr, a.out, kNoClip);
}

template <class T, class Launch>
void run_typed(Launch& launch, const BlurArgs& a) {
  detail::launch_store<T>(launch, a.shape, a.x, nullptr, false, a.sigma, a.out, kNoClip);
}

template <class T, class Launch>
void run_typed(Launch& launch, const ClipArgs& a) {
  detail::launch_store<T>(launch, a.shape, a.g, nullptr, false, nullptr, a.out, a.clip);
}

// Per chunk of images (chunk_images): the statistic, then the rest.
template <class T, class Launch>
void run_typed(Launch& launch, const NormalizeArgs& a) {
  const bool cut = detail::interleaved(a.shape, a.g, a.out);
  detail::each_chunk(a.shape, a.chunk, [&](int64_t b0, const ImageShape& shape) {
    const TileGrid grid(shape, cut);
    const detail::Typed<T> at{grid, b0};
    const BlurredTiles<T> g{at.source(a.g), nullptr, grid};
    detail::launch_stats(launch, g, a.partials, a.mode);
    const ScaleEpilogue<T> scale{at.out(a.out), at.view(a.out), a.mode};
    launch(grid.total, ApplyProgram<T, ScaleEpilogue<T>>{g, ImageScale{a.partials, a.mode, a.eps}, nullptr, scale});
  });
}

// The step's tile cut: interleaved when every image of it is channels_last-like.
inline bool step_interleaved(const AscentStepArgs& a) {
  return detail::interleaved(a.shape, a.x, a.grad, a.new_x, a.next_input);
}

// One pass (a.tickets set: resident_step_blocks said the images fit; the tickets, then the step,
// if the device takes its cooperative launch) or, per chunk of images (chunk_images), kernel 1: un-jitter + blur +
// per-tile partials; kernel 2: fold the image's partials, blur again (g mostly from L2), update,
// store the image and the next input. Every chunk reuses the partials workspace (the launches
// are ordered on one stream).
template <class T, class Launch>
void run_typed(Launch& launch, const AscentStepArgs& a) {
  const bool cut = step_interleaved(a);
  // f(mode, grid, g, scale, step) for images b0 ... b0 + shape.batch - 1
  const auto with_step = [&](int64_t b0, const ImageShape& shape, auto&& f) {
    const TileGrid grid(shape, cut);
    const detail::Typed<T> at{grid, b0};
    const BlurredTiles<T> g{at.source(a.grad, a.shifts), a.sigma + b0, grid};
    const ImageScale scale{a.partials, a.params.mode, a.eps};
    const StepEpilogue<T> step{at.in(a.x),         at.view(a.x),           a.next_shifts + 2 * b0,
                               at.out(a.new_x),    at.view(a.new_x),       at.out(a.next_input),
                               at.view(a.next_input), shape,           a.params};
    with_norm_mode(a.params.mode, [&](auto mode) { f(mode, grid, g, scale, step); });
  };
  bool done = false;
  if (a.tickets) {
    with_step(0, a.shape, [&](auto mode, const TileGrid&, const auto& g, const auto& scale, const auto& step) {
      const ImageTicketsProgram<T> tickets{g.src, g.sigma, step, g.grid, a.tickets};
      launch((tickets.work() + kBlockThreads - 1) / kBlockThreads, tickets);
      done = launch.resident(a.resident_blocks, ResidentStepProgram<T, decltype(mode)::value>{
                                                    g, a.partials, scale, a.nonfinite, step, a.tickets,
                                                    tile_places(a.tickets, a.shape.batch)});
    });
  }
  if (done) return;
  detail::each_chunk(a.shape, a.chunk, [&](int64_t b0, const ImageShape& shape) {
    with_step(b0, shape, [&](auto mode, const TileGrid& grid, const auto& g, const auto& scale, const auto& step) {
      detail::launch_stats(launch, g, a.partials, decltype(mode)::value);
      launch(grid.total, ApplyProgram<T, StepEpilogue<T>>{g, scale, a.nonfinite + b0, step});
    });
  });
}

// X(Args, S) for each op's argument type: the files that compile the sequences of one storage
// type S (the CUDA kernels, the emulation) instantiate them for every op.
#define PVF_FOR_EACH_OP_ARGS(X, S) \
  X(pvf::JitterArgs, S) X(pvf::BlurArgs, S) X(pvf::NormalizeArgs, S) X(pvf::ClipArgs, S) X(pvf::AscentStepArgs, S)

// Runs the sequence of op arguments `a` for the storage type of its images.
template <class Launch, class Args>
void run_sequence(Launch& launch, const Args& a) {
  dispatch_storage(a.storage, [&](auto tag) { run_typed<typename decltype(tag)::type>(launch, a); });
}

}  // namespace pvf
