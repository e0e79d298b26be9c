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
      blur_tile(blk, regs, sh, taps, src.plane(t, grid), t);
      // A non-finite sigma (possible only on the GPU: the CPU frontends reject it) flags the image.
      const bool bad_sigma = !is_finite(taps.sigma);
      blk.each(regs, [&](int thread, TileRegs& reg) {
        StatsPartial p{0.0f, 0.0f, 0, bad_sigma ? 1 : 0};
        for (int q = 0; q < kRowsPerThread; ++q) {
          if (thread_pixel(t, thread, q, grid).inside) p = fold_element(p, reg.value[q], mode);
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

// Epilogues: per pixel, the value to store from the blurred value g and (kReadsImage) the pixel
// of the image x; the planes they read (input) and write (output k < kOutputs) for tile t.
// Blur, jitter and clip: out = clamp(g, -clip, clip) (clip = inf: a copy).
template <class T>
struct StoreEpilogue {
  static constexpr bool kNeedsScale = false, kReadsImage = false;
  static constexpr int kOutputs = 1;
  T* out;
  TileView view;
  float clip;

  PVF_HD PlaneRows<const T> input(const TilePos&, const TileGrid&) const { return {}; }
  PVF_HD PlaneRows<T> output(int, const TilePos& t, const TileGrid& g) const { return plane_rows(out, view, t, g); }
  PVF_HD float operator()(float g, float, const TileShared&) const { return clamp_keep_nan(g, -clip, clip); }
};

// Normalize: out = g / (s_b + eps); 'none' copies.
template <class T>
struct ScaleEpilogue {
  static constexpr bool kNeedsScale = true, kReadsImage = false;
  static constexpr int kOutputs = 1;
  T* out;
  TileView view;
  NormMode mode;

  PVF_HD PlaneRows<const T> input(const TilePos&, const TileGrid&) const { return {}; }
  PVF_HD PlaneRows<T> output(int, const TilePos& t, const TileGrid& g) const { return plane_rows(out, view, t, g); }
  PVF_HD float operator()(float g, float, const TileShared& sh) const { return mode == kNone ? g : g / sh.denom; }
};

struct AscentParams {
  NormMode mode;
  float clip, lr, decay, center, lo, hi;
};

// The step: scale, clip, update, decay, clamp (a flagged image keeps its pixels), stored in
// place (output 0) and at its rolled position in the next step's input (output 1).
template <class T>
struct StepEpilogue {
  static constexpr bool kNeedsScale = true, kReadsImage = true;
  static constexpr int kOutputs = 2;
  const T* x;
  TileView x_view;
  const int64_t* next_shifts;
  T* new_x;
  TileView new_x_view;
  T* next_input;
  TileView next_input_view;
  AscentParams params;

  PVF_HD PlaneRows<const T> input(const TilePos& t, const TileGrid& g) const { return plane_rows(x, x_view, t, g); }

  PVF_HD PlaneRows<T> output(int k, const TilePos& t, const TileGrid& g) const {
    if (k == 0) return plane_rows(new_x, new_x_view, t, g);
    return plane_rows(next_input, next_input_view, t, g, reduced_shift(next_shifts, 2 * t.b, g.shape.height, false),
                      reduced_shift(next_shifts, 2 * t.b + 1, g.shape.width, false));
  }

  PVF_HD float operator()(float g, float old, const TileShared& sh) const {
    if (sh.flag) return old;
    if (params.mode != kNone) g = g / sh.denom;
    g = clamp_keep_nan(g, -params.clip, params.clip);
    float v = fmaf(params.lr, g, old);
    v = fmaf(-params.decay, v - params.center, v);
    return clamp_keep_nan(v, params.lo, params.hi);
  }
};

// After the blur, a tile goes through shared memory so that its loads and stores move whole
// row runs (vectors where aligned) whatever the roll: the blurred values and the image x are
// staged in sh.rows and sh.raw, the epilogue turns them into the values to store (in sh.rows),
// and each output is written row by row.
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
      blur_tile(blk, regs, sh, taps, src.plane(t, grid), t);
      const PlaneRows<const T> in = epilogue.input(t, grid);
      const RowRuns in_runs = Epilogue::kReadsImage ? tile_runs(in, t) : RowRuns{};
      blk.each(regs, [&](int thread, TileRegs& reg) {
        const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
        PVF_UNROLL
        for (int q = 0; q < kRowsPerThread; ++q) sh.rows[first + q][lane] = reg.value[q];
        if (Epilogue::kReadsImage) load_warp_rows(in, in_runs, t, thread, &sh.raw[0][0], kTileW + 2 * kSharedHalo);
      });
      blk.sync();
      blk.each(regs, [&](int thread, TileRegs&) {
        const int32_t lane = thread % kWarpSize;
        for (int q = 0; q < kRowsPerThread; ++q) {
          const ThreadPixel p = thread_pixel(t, thread, q, grid);
          if (!p.inside) continue;
          float& v = sh.rows[p.i - t.i0][lane];
          v = epilogue(v, Epilogue::kReadsImage ? sh.raw[p.i - t.i0][lane] : 0.0f, sh);
        }
      });
      blk.sync();
      PlaneRows<T> out[Epilogue::kOutputs];
      RowRuns runs[Epilogue::kOutputs];
      PVF_UNROLL
      for (int k = 0; k < Epilogue::kOutputs; ++k) {
        out[k] = epilogue.output(k, t, grid);
        runs[k] = tile_runs(out[k], t);
      }
      blk.each(regs, [&](int thread, TileRegs&) {
        PVF_UNROLL
        for (int k = 0; k < Epilogue::kOutputs; ++k) {
          store_warp_rows(out[k], runs[k], t, thread, &sh.rows[0][0], kTileW);
        }
        if (flags && thread == 0 && t.in_image == 0) flags[t.b] = sh.flag != 0;
      });
      blk.sync();
    }
  }
};

}  // namespace pvf
