// The block programs of every op (csrc/kernels/block.h), built on the tile machinery (tile.h).
// Each takes tiles in a grid-stride loop, so the grid size changes only who computes a tile,
// never a result: partials are stored per tile and folded in tile order.
//   StatsProgram  (kernel 1 of the step and of normalize): per tile, the blur of the source
//                 and one partial of the norm statistic (warp butterflies, then warps in
//                 order); the blurred values are not written.
//   ApplyProgram  (kernel 2, and the one kernel of jitter, blur and clip): per tile, the blur
//                 again, then an epilogue that stores it; epilogues that need the image's
//                 scale first fold all of the image's tile partials in a fixed order.
#pragma once

#include "tile.h"

namespace pvf {

template <class T>
struct StatsProgram {
  using Shared = TileShared;
  TileSource<T> src;
  const float* sigma;  // [B] or nullptr (no blur)
  StatsPartial* partials;  // [grid.total]
  TileGrid grid;
  NormMode mode;

  template <class Block>
  PVF_HD void operator()(Block& blk, TileShared& sh) const {
    typename Block::template PerThread<TileRegs> regs;
    TileTaps taps;
    for (int32_t index = blk.index(); index < grid.total; index += blk.count()) {
      const TilePos t = tile_at(grid, index);
      prepare_taps(blk, regs, sh, taps, sigma, t.b, grid.shape);
      blur_tile(blk, regs, sh, taps, src.plane(t, grid.shape), t);
      // A non-finite sigma (possible only on the GPU: the CPU frontends reject it) flags the image.
      const bool bad_sigma = !is_finite(taps.sigma);
      blk.each(regs, [&](int thread, TileRegs& reg) {
        StatsPartial p{0.0f, 0.0f, 0, bad_sigma ? 1 : 0};
        for (int q = 0; q < kRowsPerThread; ++q) {
          if (thread_pixel(t, thread, q, grid.shape).inside) p = fold_element(p, reg.value[q], mode);
        }
        reg.partial = p;
      });
      fold_block_partials(blk, regs, sh, mode);
      blk.each(regs, [&](int thread, TileRegs&) {
        if (thread == 0) partials[index] = fold_warp_partials(sh, mode);
      });
      blk.sync();
    }
  }
};

// The image's scale: denominators and flags from its partials (frontends pass eps).
struct ImageScale {
  const StatsPartial* partials;  // [grid.total] from StatsProgram
  NormMode mode;
  float eps;
};

// Folds the partials of image b (thread t: tiles t, t + 256, ...; then warps, then the block
// tree) into sh.denom = s_b + eps and sh.flag = non-finite element, non-finite s_b, or a zero
// denominator of a mode that divides. The same fixed order in every block.
template <class Block>
PVF_HD void fold_image(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                       const ImageScale& scale, const TileGrid& grid, int32_t b) {
  const StatsPartial* row = scale.partials + int64_t(b) * grid.per_image;
  blk.each(regs, [&](int thread, TileRegs& reg) {
    StatsPartial p{0.0f, 0.0f, 0, 0};
    for (int32_t k = thread; k < grid.per_image; k += kBlockThreads) p = fold_partial(p, row[k], scale.mode);
    reg.partial = p;
  });
  fold_block_partials(blk, regs, sh, scale.mode);
  blk.each(regs, [&](int thread, TileRegs&) {
    if (thread != 0) return;
    const StatsPartial p = fold_warp_partials(sh, scale.mode);
    const float s = scale_of(p, scale.mode);
    sh.denom = s + scale.eps;
    sh.flag = p.nonfinite != 0 || !is_finite(s) || zero_denominator(scale.mode, sh.denom);
  });
  blk.sync();
}

// A plane of an image in the tile's (image, channel): its base (int64 math once per tile) and
// int32 offsets inside it.
template <class T>
struct PlaneOut {
  T* base;
  int32_t stride_h, stride_w;

  PVF_HD void put(int32_t i, int32_t j, float v) const { store(base, i * stride_h + j * stride_w, v); }
};

template <class T>
PVF_HD PlaneOut<T> plane_out(T* data, const Strides& s, const TilePos& t) {
  return {data + int64_t(t.b) * s.b + int64_t(t.c) * s.c, static_cast<int32_t>(s.h), static_cast<int32_t>(s.w)};
}

// Epilogues: plane(t) once per tile, then (plane, pixel, blurred value, shared) per pixel.
// Blur, jitter and clip: out = clamp(value, -clip, clip) (clip = inf: a copy).
template <class T>
struct StoreEpilogue {
  static constexpr bool kNeedsScale = false;
  T* out;
  Strides out_strides;
  float clip;

  PVF_HD PlaneOut<T> plane(const TilePos& t) const { return plane_out(out, out_strides, t); }

  PVF_HD void operator()(const PlaneOut<T>& o, const ThreadPixel& p, float value, const TileShared&) const {
    o.put(p.i, p.j, clamp_keep_nan(value, -clip, clip));
  }
};

// Normalize: out = value / (s_b + eps); 'none' copies.
template <class T>
struct ScaleEpilogue {
  static constexpr bool kNeedsScale = true;
  T* out;
  Strides out_strides;
  NormMode mode;

  PVF_HD PlaneOut<T> plane(const TilePos& t) const { return plane_out(out, out_strides, t); }

  PVF_HD void operator()(const PlaneOut<T>& o, const ThreadPixel& p, float value, const TileShared& sh) const {
    o.put(p.i, p.j, mode == kNone ? value : value / sh.denom);
  }
};

struct AscentParams {
  NormMode mode;
  float clip, lr, decay, center, lo, hi;
};

// The planes a step tile reads and writes, and its next roll.
template <class T>
struct StepPlanes {
  const T* x;
  int32_t x_stride_h, x_stride_w;
  PlaneOut<T> image, next;
  int32_t next_dy, next_dx;
};

// The step: scale, clip, update, decay, clamp (a flagged image keeps its pixels), stored in
// place and at its rolled position in the next step's input.
template <class T>
struct StepEpilogue {
  static constexpr bool kNeedsScale = true;
  const T* x;
  Strides x_strides;
  const int64_t* next_shifts;
  T* new_x;
  Strides new_x_strides;
  T* next_input;
  Strides next_input_strides;
  ImageShape shape;
  AscentParams params;

  PVF_HD StepPlanes<T> plane(const TilePos& t) const {
    return {x + int64_t(t.b) * x_strides.b + int64_t(t.c) * x_strides.c,
            static_cast<int32_t>(x_strides.h),
            static_cast<int32_t>(x_strides.w),
            plane_out(new_x, new_x_strides, t),
            plane_out(next_input, next_input_strides, t),
            reduced_shift(next_shifts, 2 * t.b, shape.height, false),
            reduced_shift(next_shifts, 2 * t.b + 1, shape.width, false)};
  }

  PVF_HD void operator()(const StepPlanes<T>& o, const ThreadPixel& p, float g, const TileShared& sh) const {
    const float old = load(o.x, p.i * o.x_stride_h + p.j * o.x_stride_w);
    float v = old;
    if (!sh.flag) {
      if (params.mode != kNone) g = g / sh.denom;
      g = clamp_keep_nan(g, -params.clip, params.clip);
      v = fmaf(params.lr, g, old);
      v = fmaf(-params.decay, v - params.center, v);
      v = clamp_keep_nan(v, params.lo, params.hi);
    }
    o.image.put(p.i, p.j, v);
    const int32_t H = static_cast<int32_t>(shape.height), W = static_cast<int32_t>(shape.width);
    o.next.put(rolled(p.i, o.next_dy, H), rolled(p.j, o.next_dx, W), v);
  }
};

template <class T, class Epilogue>
struct ApplyProgram {
  using Shared = TileShared;
  TileSource<T> src;
  const float* sigma;  // [B] or nullptr (no blur)
  ImageScale scale;  // used when Epilogue::kNeedsScale
  bool* flags;  // [B] or nullptr: each image's sh.flag, written by the block of its first tile
  TileGrid grid;
  Epilogue epilogue;

  template <class Block>
  PVF_HD void operator()(Block& blk, TileShared& sh) const {
    typename Block::template PerThread<TileRegs> regs;
    TileTaps taps;
    int32_t scaled_image = -1;
    for (int32_t index = blk.index(); index < grid.total; index += blk.count()) {
      const TilePos t = tile_at(grid, index);
      if (Epilogue::kNeedsScale && scaled_image != t.b) {
        fold_image(blk, regs, sh, scale, grid, t.b);
        scaled_image = t.b;
      }
      prepare_taps(blk, regs, sh, taps, sigma, t.b, grid.shape);
      blur_tile(blk, regs, sh, taps, src.plane(t, grid.shape), t);
      const auto out = epilogue.plane(t);
      blk.each(regs, [&](int thread, TileRegs& reg) {
        for (int q = 0; q < kRowsPerThread; ++q) {
          const ThreadPixel p = thread_pixel(t, thread, q, grid.shape);
          if (p.inside) epilogue(out, p, reg.value[q], sh);
        }
        if (flags && thread == 0 && t.in_image == 0) flags[t.b] = sh.flag != 0;
      });
      blk.sync();
    }
  }
};

}  // namespace pvf
