// The block programs of every op (csrc/kernels/block.h), built on the tile machinery (tile.h):
// each runs its BlurredTiles (the source, its blur and the grid-stride tile loop) and adds what
// it does per image and per tile. Partials are stored per tile and folded in tile order, so the
// grid size never changes a result.
//   StatsProgram  (kernel 1 of the step and of normalize): per tile, one partial of the norm
//                 statistic of the blurred source (warp butterflies, then warps in order); the
//                 blurred values are not written.
//   ApplyProgram  (kernel 2, and the one kernel of jitter, blur and clip): per tile, the blur
//                 again, then an epilogue that stores it; epilogues that need the image's
//                 scale first fold all of the image's tile partials in a fixed order.
#pragma once

#include "tile.h"

namespace pvf {

// Partials per tile: one per warp (its 8 x 32 pixels), in warp order.
constexpr int kPartialsPerTile = kBlockWarps;

// The norm mode is a template argument: the per-element fold of the tile loop is that mode's
// alone (run_sequence dispatches it on the host).
template <class T, NormMode Mode>
struct StatsProgram {
  using Shared = TileShared;
  BlurredTiles<T> tiles;
  StatsPartial* partials;  // [grid.total * kPartialsPerTile]

  template <class Block>
  PVF_HD void operator()(Block& blk, TileShared& sh) const {
    typename Block::template PerThread<TileRegs> regs;
    const ImageShape& shape = tiles.grid.shape;
    // A non-finite sigma (possible only on the GPU: the CPU frontends reject it) flags the image.
    int32_t bad_sigma = 0;
    const auto image = [&](int32_t, int32_t, const TileTaps& taps) { bad_sigma = is_finite(taps.sigma) ? 0 : 1; };
    tiles.run(blk, regs, sh, image, [&](int32_t index, const TilePos& t) {
      blk.each(regs, [&](int thread, TileRegs& reg) {
        const int32_t inside = inside_rows(t, thread, shape);
        StatsPartial p{0.0f, 0.0f, 0, bad_sigma};
        PVF_UNROLL
        for (int q = 0; q < kRowsPerThread; ++q) {
          if (q < inside) p = fold_element(p, reg.value[q], Mode);
        }
        reg.partial = p;
      });
      blk.warp_fold(regs, &TileRegs::partial,
                    [](const StatsPartial& a, const StatsPartial& b) { return fold_partial(a, b, Mode); });
      blk.each(regs, [&](int thread, TileRegs& reg) {
        if (thread % kWarpSize == 0) partials[int64_t(index) * kPartialsPerTile + thread / kWarpSize] = reg.partial;
      });
      blk.sync();
    });
  }
};

// The image's scale: denominators and flags from its partials (frontends pass eps).
struct ImageScale {
  const StatsPartial* partials;  // [grid.total * kPartialsPerTile] from StatsProgram
  NormMode mode;
  float eps;
};

// Folds the partials of image b (thread t: partials t, t + 256, ...; then warps, then the block
// tree) into sh.denom = s_b + eps and sh.flag = non-finite element, non-finite s_b, or a zero
// denominator of a mode that divides. The same fixed order in every block.
template <class Block>
PVF_HD void fold_image(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                       const ImageScale& scale, const TileGrid& grid, int32_t b) {
  const int32_t count = grid.per_image * kPartialsPerTile;
  const StatsPartial* row = scale.partials + int64_t(b) * count;
  blk.each(regs, [&](int thread, TileRegs& reg) {
    StatsPartial p{0.0f, 0.0f, 0, 0};
    for (int32_t k = thread; k < count; k += kBlockThreads) p = fold_partial(p, row[k], scale.mode);
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
// int32 strides inside it.
template <class T>
struct PlaneOut {
  T* base;
  int32_t stride_h, stride_w;

  // Row i of column j; the next row is at + stride_h.
  PVF_HD T* at(int32_t i, int32_t j) const { return base + (i * stride_h + j * stride_w); }
};

template <class T>
PVF_HD PlaneOut<T> plane_out(T* data, const Strides& s, const TilePos& t) {
  return {data + int64_t(t.b) * s.b + int64_t(t.c) * s.c, static_cast<int32_t>(s.h), static_cast<int32_t>(s.w)};
}

// The thread's pixels of a tile: rows i ... i + kRowsPerThread - 1 of column j, the first
// `inside` of them inside the image.
struct ThreadColumn {
  int32_t i, j, inside;
};

PVF_HD ThreadColumn thread_column(const TilePos& t, int thread, const ImageShape& s) {
  return {t.i0 + thread / kWarpSize * kRowsPerThread, t.j0 + thread % kWarpSize, inside_rows(t, thread, s)};
}

// Epilogues: image(b, sh) once per image (after the image's scale is in sh when kNeedsScale),
// plane(image, t) once per tile, then (plane, thread's column, its blurred values) per thread.
// Blur, jitter and clip: out = clamp(value, -clip, clip) (clip = inf: a copy).
template <class T>
struct StoreEpilogue {
  static constexpr bool kNeedsScale = false;
  T* out;
  Strides out_strides;
  float clip;

  struct Image {};
  PVF_HD Image image(int32_t, const TileShared&) const { return {}; }
  PVF_HD PlaneOut<T> plane(const Image&, const TilePos& t) const { return plane_out(out, out_strides, t); }

  PVF_HD void operator()(const PlaneOut<T>& o, const ThreadColumn& c, const float* value) const {
    T* p = o.at(c.i, c.j);
    PVF_UNROLL
    for (int q = 0; q < kRowsPerThread; ++q, p += o.stride_h) {
      if (q < c.inside) store(p, 0, clamp_keep_nan(value[q], -clip, clip));
    }
  }
};

// Normalize: out = value / (s_b + eps); 'none' copies.
template <class T>
struct ScaleEpilogue {
  static constexpr bool kNeedsScale = true;
  T* out;
  Strides out_strides;
  NormMode mode;

  struct Planes {
    PlaneOut<T> out;
    float denom;  // s_b + eps; 1 for 'none'
  };
  using Image = float;
  PVF_HD Image image(int32_t, const TileShared& sh) const { return mode == kNone ? 1.0f : sh.denom; }
  PVF_HD Planes plane(const Image& denom, const TilePos& t) const { return {plane_out(out, out_strides, t), denom}; }

  PVF_HD void operator()(const Planes& o, const ThreadColumn& c, const float* value) const {
    T* p = o.out.at(c.i, c.j);
    PVF_UNROLL
    for (int q = 0; q < kRowsPerThread; ++q, p += o.out.stride_h) {
      if (q < c.inside) store(p, 0, value[q] / o.denom);
    }
  }
};

struct AscentParams {
  NormMode mode;
  float clip, lr, decay, center, lo, hi;
};

// g / d as the rounded product with the rounded reciprocal r = 1 / d plus one fmaf correction:
// the correctly rounded quotient (what g / d gives) whenever no step overflows or goes
// subnormal, in three instructions instead of a division. An infinite product is kept as is.
PVF_HD float divide_by(float g, float d, float r) {
  const float q = g * r;
  return is_finite(q) ? fmaf(fmaf(-q, d, g), r, q) : q;
}

// The step's scale of image b: s_b + eps and its reciprocal (1, 1 for 'none'), the flag, and
// the roll of the next input.
struct StepImage {
  float denom, reciprocal;
  bool flag;
  int32_t next_dy, next_dx;
};

// The planes a step tile reads and writes.
template <class T>
struct StepPlanes {
  PlaneOut<const T> x;
  PlaneOut<T> image, next;
  StepImage scale;
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

  using Image = StepImage;
  PVF_HD Image image(int32_t b, const TileShared& sh) const {
    const float denom = params.mode == kNone ? 1.0f : sh.denom;
    return {denom, 1.0f / denom, sh.flag != 0, reduced_shift(next_shifts, 2 * int64_t(b), shape.height, false),
            reduced_shift(next_shifts, 2 * int64_t(b) + 1, shape.width, false)};
  }

  PVF_HD StepPlanes<T> plane(const Image& image, const TilePos& t) const {
    return {plane_out(x, x_strides, t), plane_out(new_x, new_x_strides, t),
            plane_out(next_input, next_input_strides, t), image};
  }

  PVF_HD void operator()(const StepPlanes<T>& o, const ThreadColumn& c, const float* value) const {
    const int32_t H = static_cast<int32_t>(shape.height), W = static_cast<int32_t>(shape.width);
    const StepImage& f = o.scale;
    const T* x_at = o.x.at(c.i, c.j);
    T* image_at = o.image.at(c.i, c.j);
    T* next_col = o.next.at(0, rolled(c.j, f.next_dx, W));
    PVF_UNROLL
    for (int q = 0; q < kRowsPerThread; ++q, x_at += o.x.stride_h, image_at += o.image.stride_h) {
      if (q >= c.inside) continue;
      const float old = load(x_at, 0);
      const float g = clamp_keep_nan(divide_by(value[q], f.denom, f.reciprocal), -params.clip, params.clip);
      float v = fmaf(params.lr, g, old);
      v = fmaf(-params.decay, v - params.center, v);
      v = f.flag ? old : clamp_keep_nan(v, params.lo, params.hi);
      store(image_at, 0, v);
      store(next_col, rolled(c.i + q, f.next_dy, H) * o.next.stride_h, v);
    }
  }
};

template <class T, class Epilogue>
struct ApplyProgram {
  using Shared = TileShared;
  BlurredTiles<T> tiles;
  ImageScale scale;  // used when Epilogue::kNeedsScale
  bool* flags;  // [B] or nullptr: each image's sh.flag, written by the block of its first tile
  Epilogue epilogue;

  template <class Block>
  PVF_HD void operator()(Block& blk, TileShared& sh) const {
    typename Block::template PerThread<TileRegs> regs;
    const TileGrid& grid = tiles.grid;
    typename Epilogue::Image image_state{};
    const auto image = [&](int32_t b, int32_t index, const TileTaps&) {
      if (Epilogue::kNeedsScale) fold_image(blk, regs, sh, scale, grid, b);
      image_state = epilogue.image(b, sh);
      if (!Epilogue::kNeedsScale) return;
      if (flags && index == b * grid.per_image) {
        blk.each(regs, [&](int thread, TileRegs&) {
          if (thread == 0) flags[b] = sh.flag != 0;
        });
        blk.sync();
      }
    };
    tiles.run(blk, regs, sh, image, [&](int32_t, const TilePos& t) {
      const auto out = epilogue.plane(image_state, t);
      blk.each(regs, [&](int thread, TileRegs& reg) {
        epilogue(out, thread_column(t, thread, grid.shape), reg.value);
      });
      blk.sync();
    });
  }
};

}  // namespace pvf
