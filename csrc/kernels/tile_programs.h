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

#include <algorithm>

#include "tile.h"

namespace pvf {

// Partials per tile: one per warp (its 16 x 32 pixels), in warp order.
constexpr int kPartialsPerTile = kBlockWarps;
static_assert(kStatsRows == kRowsPerThread && kMaxWarpCount == kRowsPerThread * kWarpSize,
              "the statistic's tables (stats.h) cover a warp's pixels");

// What a tile's statistic takes, compile-time constants on the paths whose tiles lie inside: the
// rows of the thread's pixels inside the image (first_rows), and for the std, each of the warp's
// pixels' share of their mean (one over their count).
template <class Path>
PVF_HD uint32_t rows_of_stats(const TilePos& t, int thread, const TileGrid& grid) {
  if constexpr (Path::full) {
    return first_rows_bits().of[kRowsPerThread];
  } else {
    return first_rows(Path::inside_rows(t, thread, grid));
  }
}

template <class Path>
PVF_HD float share_of_stats(const TilePos& t, int thread, const TileGrid& grid) {
  if constexpr (Path::full) {
    return 1.0f / (kRowsPerThread * kWarpSize);
  } else {
    return reciprocal_of_count(Path::warp_pixels(t, thread / kWarpSize, grid));
  }
}

// The kPartialsPerTile partials of tile t's blurred values (regs.value) into out, warp w's at
// out[w]; bad_sigma (1: the image's sigma is not finite) flags them. Path: the loop's TilePath,
// which says what to test of a pixel's place. Its last phase is left to the caller's next
// barrier (the one-pass step's is the arrival at its ticket).
template <NormMode Mode, class Path, class Block>
PVF_HD void store_tile_partials(Block& blk, typename Block::template PerThread<TileRegs>& regs, const TilePos& t,
                                const TileGrid& grid, int32_t bad_sigma, StatsPartial* out) {
  // The std: two passes over the warp's pixels, their mean (each value times one over their
  // count, summed over the warp) and their squared deviations from it, where a partial per lane
  // would take Chan's fold at each of the warp's five steps.
  blk.each(regs, [&](int thread, TileRegs& reg) {
    StatsPartial p{0.0f, 0.0f, 0, bad_sigma};
    if constexpr (Mode == kStd) {
      p.a = shared_sum(reg.value, rows_of_stats<Path>(t, thread, grid), share_of_stats<Path>(t, thread, grid));
    } else {
      const uint32_t rows = rows_of_stats<Path>(t, thread, grid);
      PVF_UNROLL
      for (int q = 0; q < kRowsPerThread; ++q) {
        if (has_row(rows, q)) p = fold_element(p, reg.value[q], Mode);
      }
    }
    reg.partial = p;
  });
  if constexpr (Mode == kStd) {
    // a butterfly of sums leaves the same bits in every lane (a + b = b + a): the warp's mean
    blk.warp_fold(regs, &TileRegs::partial, [](StatsPartial a, const StatsPartial& b) {
      a.a += b.a;
      return a;
    });
    blk.each(regs, [&](int thread, TileRegs& reg) {
      reg.partial.b = squared_deviations(reg.value, rows_of_stats<Path>(t, thread, grid), reg.partial.a);
    });
    blk.warp_fold(regs, &TileRegs::partial, [](StatsPartial a, const StatsPartial& b) {
      a.b += b.b;
      return a;
    });
  } else {
    // the other modes fold their value alone ('none' its flag)
    blk.warp_fold(regs, &TileRegs::partial,
                  [](const StatsPartial& a, const StatsPartial& b) { return fold_value(a, b, Mode); });
  }
  // the count is the warp's pixels inside the image, the flag bad_sigma's (or for 'none' folded too)
  blk.each(regs, [&](int thread, TileRegs& reg) {
    if (thread % kWarpSize != 0) return;
    StatsPartial p = reg.partial;
    p.count = Path::warp_pixels(t, thread / kWarpSize, grid);
    out[thread / kWarpSize] = p;
  });
}

// The statistic of one norm mode (`mode`): kStdKernel, the population std's kernel (its warps'
// partials fold by Chan's formula, whose shares are divisions); else the kernel of the other four,
// whose per-element folds are one instruction each, choosing the mode's fold once per tile after
// the blur (a block-uniform choice: no divergence). Five kernels per storage type would cost the
// build five times the blur's code for folds of a few instructions; the one-pass step keeps a
// kernel per mode.
template <class T, bool kStdKernel>
struct StatsProgram {
  using Shared = TileShared;
  BlurredTiles<T> tiles;
  StatsPartial* partials;  // [grid.total * kPartialsPerTile]
  NormMode mode;  // kStd if and only if kStdKernel

  template <class Block>
  PVF_HD void operator()(Block& blk, TileShared& sh) const {
    typename Block::template PerThread<TileRegs> regs;
    // A non-finite sigma (possible only on the GPU: the CPU frontends reject it) flags the image.
    int32_t bad_sigma = 0;
    const auto image = [&](int32_t, int32_t, const TileTaps& taps) {
      bad_sigma = is_finite(taps.sigma) ? 0 : 1;
      return true;
    };
    tiles.run(blk, regs, sh, image, [&](int32_t index, const TilePos& t, auto path) {
      const auto store = [&](auto m) {
        store_tile_partials<decltype(m)::value, decltype(path)>(blk, regs, t, tiles.grid, bad_sigma,
                                                                partials + int64_t(index) * kPartialsPerTile);
      };
      if constexpr (kStdKernel) {
        store(std::integral_constant<NormMode, kStd>{});
      } else {
        with_norm_mode_of<kRms, kMeanAbs, kMaxAbs, kNone>(mode, store);
      }
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

// The partials of an image that its fold takes (kPartialsPerTile per tile, in tile order): all
// but those of the warps of a shifted last tile row whose rows the row above holds
// (TileGrid::overlap_warps). Four scalars: the one-pass step passes them to an outlined call.
struct ImagePartials {
  int32_t per_image, per_plane, last_row, overlap_warps;  // last_row: a plane's first tile of its last row

  PVF_HD explicit ImagePartials(const TileGrid& g)
      : per_image(g.per_image), per_plane(g.per_plane), last_row(g.per_plane - g.tiles_x), overlap_warps(g.overlap_warps) {}
  PVF_HD ImagePartials(int32_t image, int32_t plane, int32_t row, int32_t warps)
      : per_image(image), per_plane(plane), last_row(row), overlap_warps(warps) {}

  PVF_HD int32_t count() const { return per_image * kPartialsPerTile; }
  // Whether partial k of the image is folded (a division per partial: once per image, not per tile).
  PVF_HD bool folds(int32_t k) const {
    return k % kPartialsPerTile >= overlap_warps || k / kPartialsPerTile % per_plane < last_row;
  }
};

// Folds the partials of image b (`of`: thread t: partials t, t + 256, ... that it folds; then
// warps, then the block tree) into sh.denom = s_b + eps and sh.flag = non-finite element,
// non-finite s_b, or a zero denominator of a mode that divides. The same fixed order in every
// block. The partials are read past L1 (load_coherent): in the one-pass step other blocks
// wrote them during the kernel.
template <class Block>
PVF_HD void fold_image(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                       const ImageScale& scale, const ImagePartials& of, int32_t b) {
  const int32_t count = of.count();
  const StatsPartial* row = scale.partials + int64_t(b) * count;
  blk.each(regs, [&](int thread, TileRegs& reg) {
    StatsPartial p{0.0f, 0.0f, 0, 0};
    for (int32_t k = thread; k < count; k += kBlockThreads) {
      if (of.folds(k)) p = fold_partial(p, load_coherent(row + k), scale.mode);
    }
    reg.partial = p;
  });
  fold_block_partials(blk, regs, sh, scale.mode);
  blk.each(regs, [&](int thread, TileRegs&) {
    if (thread != 0) return;
    const StatsPartial p = fold_warp_partials(sh, scale.mode);
    const float s = scale_of(p, scale.mode);
    sh.denom = s + scale.eps;
    sh.flag = p.nonfinite != 0 || !is_finite(s) || no_reciprocal(scale.mode, sh.denom);
  });
  blk.sync();
}

// Epilogues: image(b, sh) once per image (after the image's scale is in sh when kNeedsScale);
// per tile the planes they read (input, when kReadsImage: no roll) and write (output k <
// kOutputs, output kRolledOutput through a roll, the others not: -1 for none); per pixel the
// value to store from the blurred value g and the image's pixel x; vectors(): every view allows
// 16-byte accesses.
// Blur, jitter and clip: out = clamp(g, -clip, clip) (clip = inf: a copy).
template <class T>
struct StoreEpilogue {
  static constexpr bool kNeedsScale = false, kReadsImage = false;
  static constexpr int kOutputs = 1, kRolledOutput = -1;
  T* out;
  TileView view;
  float clip;

  PVF_HD bool vectors() const { return view.vectors; }

  struct Image {};
  PVF_HD Image image(int32_t, const TileShared&) const { return {}; }
  PVF_HD PlaneRows<const T> input(const Image&, const TilePos&, const TileGrid&) const { return {}; }
  PVF_HD PlaneRows<T> output(int, const Image&, const TilePos& t, const TileGrid& g) const {
    return plane_rows(out, view, t, g);
  }
  PVF_HD float operator()(const Image&, float g, float) const { return clamp_keep_nan(g, -clip, clip); }
};

// Normalize: out = g / (s_b + eps); 'none' copies.
template <class T>
struct ScaleEpilogue {
  static constexpr bool kNeedsScale = true, kReadsImage = false;
  static constexpr int kOutputs = 1, kRolledOutput = -1;
  T* out;
  TileView view;
  NormMode mode;

  PVF_HD bool vectors() const { return view.vectors; }

  using Image = float;  // s_b + eps; 1 for 'none'
  PVF_HD Image image(int32_t, const TileShared& sh) const { return mode == kNone ? 1.0f : sh.denom; }
  PVF_HD PlaneRows<const T> input(const Image&, const TilePos&, const TileGrid&) const { return {}; }
  PVF_HD PlaneRows<T> output(int, const Image&, const TilePos& t, const TileGrid& g) const {
    return plane_rows(out, view, t, g);
  }
  PVF_HD float operator()(const Image& denom, float g, float) const { return g / denom; }
};

struct AscentParams {
  NormMode mode;
  float clip, lr, decay, center, lo, hi;
};

// clamp(g / d, -clip, clip) for d > 0 with a finite reciprocal r = 1 / d (an image whose s + eps
// has none is flagged: no_reciprocal) and clip >= 0, in five instructions. The rounded product
// with r plus one fmaf correction is the correctly rounded quotient (what g / d gives) whenever
// no step overflows or goes subnormal; a product that overflows comes out NaN (inf - inf), which
// the clamp turns into clip with g's sign (the quotient's, d being positive): what clamping the
// IEEE quotient's +-inf gives, clip = inf included.
PVF_HD float clipped_quotient(float g, float d, float r, float clip) {
  const float q = g * r;
  return clamp_magnitude(fmaf(fmaf(-q, d, g), r, q), clip, g);
}

// The step's scale of image b: s_b + eps and its reciprocal (1, 1 for 'none'), the flag, and
// the roll of the next input.
struct StepImage {
  float denom, reciprocal;
  uint32_t keep;  // all ones for a flagged image (it keeps its pixels), else 0
  int32_t next_dy, next_dx;
};

// Image b's StepImage from its folded scale (sh.denom, sh.flag: fold_image).
PVF_HD StepImage step_image(NormMode mode, const TileShared& sh, const int64_t* next_shifts, int32_t b,
                            int64_t height, int64_t width) {
  const float denom = mode == kNone ? 1.0f : sh.denom;
  return {denom, 1.0f / denom, opaque(sh.flag != 0 ? ~0u : 0u),
          reduced_shift(next_shifts, 2 * int64_t(b), height, false),
          reduced_shift(next_shifts, 2 * int64_t(b) + 1, width, false)};
}

// The step: scale, clip, update, decay, clamp (a flagged image keeps its pixels), stored in
// place (output 0) and at its rolled position in the next step's input (output 1).
template <class T>
struct StepEpilogue {
  static constexpr bool kNeedsScale = true, kReadsImage = true;
  static constexpr int kOutputs = 2, kRolledOutput = 1;
  const T* x;
  TileView x_view;
  const int64_t* next_shifts;
  T* new_x;
  TileView new_x_view;
  T* next_input;
  TileView next_input_view;
  ImageShape shape;
  AscentParams params;

  PVF_HD bool vectors() const { return x_view.vectors && new_x_view.vectors && next_input_view.vectors; }

  using Image = StepImage;
  PVF_HD Image image(int32_t b, const TileShared& sh) const {
    return step_image(params.mode, sh, next_shifts, b, shape.height, shape.width);
  }

  // Image b's first elements in x, new_x and the next input (image_base); the one-pass step
  // takes them from its tickets.
  struct Bases {
    const T* x;
    T* new_x;
    T* next_input;
  };
  PVF_HD Bases bases(int32_t b) const {
    return {image_base(x, x_view, b), image_base(new_x, new_x_view, b), image_base(next_input, next_input_view, b)};
  }

  PVF_HD PlaneRows<const T> input(const Image& f, const TilePos& t, const TileGrid& g) const {
    return input(f, bases(t.b), t, g);
  }
  PVF_HD PlaneRows<const T> input(const Image&, const Bases& at, const TilePos& t, const TileGrid& g) const {
    return plane_at(at.x, x_view, t, g);
  }

  PVF_HD PlaneRows<T> output(int k, const Image& f, const TilePos& t, const TileGrid& g) const {
    return output(k, f, bases(t.b), t, g);
  }
  PVF_HD PlaneRows<T> output(int k, const Image& f, const Bases& at, const TilePos& t, const TileGrid& g) const {
    if (k == 0) return plane_at(at.new_x, new_x_view, t, g);
    return plane_at(at.next_input, next_input_view, t, g, f.next_dy, f.next_dx);
  }

  PVF_HD float operator()(const Image& f, float g, float old) const {
    return select_bits(f.keep, old, update(f, g, old));
  }

  // The value of an image that is not flagged.
  PVF_HD float update(const Image& f, float g, float old) const {
    g = clipped_quotient(g, f.denom, f.reciprocal, params.clip);
    float v = fmaf(params.lr, g, old);
    v = fmaf(-params.decay, v - params.center, v);
    return clamp_keep_nan(v, params.lo, params.hi);
  }

  // use(rule) with rule(g, old) what operator() gives, chosen once for the image: the pixel
  // itself for a flagged one, else update (a loop over a tile's pixels then holds no select).
  template <class F>
  PVF_HD void choose_pixel_rule(const Image& f, F&& use) const {
    if (f.keep) {
      use([](float, float old) { return old; });
    } else {
      use([&](float g, float old) { return update(f, g, old); });
    }
  }
};

// use(rule) with rule(g, old) the value that epilogue e stores for the pixel `old` of image f and
// its blurred value g: the rule e chooses once per image where it does (choose_pixel_rule), else
// e itself.
template <class Epilogue, class F>
PVF_HD void with_pixel_rule(const Epilogue& e, const typename Epilogue::Image& f, F&& use) {
  if constexpr (requires { e.choose_pixel_rule(f, use); }) {
    e.choose_pixel_rule(f, use);
  } else {
    use([&](float g, float old) { return e(f, g, old); });
  }
}

// After the blur, a tile goes through shared memory so that its loads and stores move as
// vectors whatever the roll, but on the fixed radii's general path, whose rows are mostly
// unaligned (apply_elements: each thread's own pixels, element by element). General path: the
// blurred values and the image x are staged in sh.rows and sh.raw as row runs, the epilogue
// turns them into the values to store (in sh.rows), and each output is written row by row.
// Interior fast path (tiles of blur_tile_fast, every view 16-byte aligned, whole rows inside the
// image): a thread takes groups of kV elements of a row, reads x and writes the unrolled outputs
// as one vector each with no per-item choice; the rolled output, whose groups the roll
// misaligns, goes back to sh.rows and is written a warp per row, a lane per column (coalesced
// 4-byte stores wherever the roll splits the row); kFull (TilePath::full): no row of the tile is
// past the image's last, none is checked.
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
      if (Epilogue::kNeedsScale) fold_image(blk, regs, sh, scale, ImagePartials(grid), b);
      image_state = epilogue.image(b, sh);
      if (Epilogue::kNeedsScale && flags && index == b * grid.per_image) {
        blk.each(regs, [&](int thread, TileRegs&) {
          if (thread == 0) flags[b] = sh.flag != 0;
        });
        blk.sync();
      }
      return epilogue.vectors();
    };
    tiles.run(blk, regs, sh, image, [&](int32_t, const TilePos& t, auto path) {
      const PlaneRows<const T> in = epilogue.input(image_state, t, grid);
      PlaneRows<T> out[Epilogue::kOutputs];
      PVF_UNROLL
      for (int k = 0; k < Epilogue::kOutputs; ++k) out[k] = epilogue.output(k, image_state, t, grid);
      apply(path, blk, regs, sh, image_state, in, out, t);
    });
  }

  // Tile t's values (regs.value) through the epilogue to the outputs, the way its loop's path
  // (TilePath) moves them: vectors on the fast path, element by element on the fixed radii's
  // general path, row runs through shared memory elsewhere.
  template <class Path, class Block>
  PVF_HD void apply(Path, Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                    const typename Epilogue::Image& image_state, const PlaneRows<const T>& in, const PlaneRows<T>* out,
                    const TilePos& t) const {
    if constexpr (Path::fast) {
      apply_fast<Path::full>(blk, regs, sh, image_state, in, out, t);
    } else if constexpr (Path::elements) {
      apply_elements(blk, regs, sh, image_state, in, out, t);
    } else {
      apply_general(blk, regs, sh, image_state, in, out, t);
    }
  }

  // The rolled output's row offset of tile row `thread` into sh.row_offsets (rows past the image
  // clamped to the last: they are never stored): made once per tile, where each of a thread's
  // rows would step a pointer and test it for the roll's wrap.
  PVF_HD void tabulate_rolled_row(TileShared& sh, const PlaneRows<T>& rolled_out, const TilePos& t, int thread) const {
    const int32_t height = static_cast<int32_t>(tiles.grid.shape.height);
    sh.row_offsets[thread] = rolled_out.row_offset(std::min(t.i0 + thread, height - 1));
  }

  // The column of element e in the rolled output, the base its rows' offsets add to (opaque: from
  // base + column + row the compiler makes a 64-bit sum per row, not one wide add).
  static PVF_HD T* rolled_column(const PlaneRows<T>& rolled_out, int32_t e) {
    return plane_pointer(rolled_out.base, rolled_out.offset(e));
  }

  template <class Block>
  PVF_HD void apply_general(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                            const typename Epilogue::Image& image_state, const PlaneRows<const T>& in,
                            const PlaneRows<T>* out, const TilePos& t) const {
    const TileGrid& grid = tiles.grid;
    const RowRuns in_runs = Epilogue::kReadsImage ? tile_runs(in, t) : RowRuns{};
    blk.each(regs, [&](int thread, TileRegs& reg) {
      const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
      PVF_UNROLL
      for (int q = 0; q < kRowsPerThread; ++q) sh.rows[first + q][lane] = reg.value[q];
      if (Epilogue::kReadsImage) load_warp_rows(in, in_runs, t, thread, &sh.raw[0][0], kTileW + 2 * kSharedHalo);
    });
    blk.sync();
    blk.each(regs, [&](int thread, TileRegs&) {
      const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
      const int32_t inside = inside_rows(t, thread, grid);
      PVF_UNROLL
      for (int q = 0; q < kRowsPerThread; ++q) {
        if (q >= inside) continue;
        float& v = sh.rows[first + q][lane];
        v = epilogue(image_state, v, Epilogue::kReadsImage ? sh.raw[first + q][lane] : 0.0f);
      }
    });
    blk.sync();
    RowRuns runs[Epilogue::kOutputs];
    PVF_UNROLL
    for (int k = 0; k < Epilogue::kOutputs; ++k) runs[k] = tile_runs(out[k], t);
    blk.each(regs, [&](int thread, TileRegs&) {
      PVF_UNROLL
      for (int k = 0; k < Epilogue::kOutputs; ++k) {
        store_warp_rows(out[k], runs[k], t, thread, &sh.rows[0][0], kTileW);
      }
    });
    blk.sync();
  }

  // The fixed radii's general path: a thread's own pixels (column e0 + lane of its warp's rows,
  // regs.value) go straight to global memory, x read and the outputs written element by
  // element, a lane per column (coalesced whatever the alignment or the roll), each plane's
  // column placed once per tile and its rows stepped (ColumnRows), the rolled output's rows read
  // from sh.row_offsets (tabulated in a phase of their own).
  template <class Block>
  PVF_HD void apply_elements(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                             const typename Epilogue::Image& image_state, const PlaneRows<const T>& in,
                             const PlaneRows<T>* out, const TilePos& t) const {
    const TileGrid& grid = tiles.grid;
    if constexpr (Epilogue::kRolledOutput >= 0) {
      blk.each(regs, [&](int thread, TileRegs&) { tabulate_rolled_row(sh, out[Epilogue::kRolledOutput], t, thread); });
      blk.sync();
    }
    blk.each(regs, [&](int thread, TileRegs& reg) {
      const int32_t e = t.e0 + thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread, i = t.i0 + first;
      const int32_t inside = inside_rows(t, thread, grid);
      ColumnRows<const T> x{};
      if constexpr (Epilogue::kReadsImage) x = ColumnRows<const T>(in, i, in.offset(e));
      ColumnRows<T> to[Epilogue::kOutputs];
      T* rolled_to = nullptr;
      PVF_UNROLL
      for (int k = 0; k < Epilogue::kOutputs; ++k) {
        if (k == Epilogue::kRolledOutput) {
          rolled_to = rolled_column(out[k], e);
        } else {
          to[k] = ColumnRows<T>(out[k], i, out[k].offset(e));
        }
      }
      // a flagged image's tiles take a loop of their own (with_pixel_rule): this path's is the
      // longest of the step, the one whose instructions per element set the budget (README)
      with_pixel_rule(epilogue, image_state, [&](const auto& rule) PVF_INLINE_LAMBDA {
        PVF_UNROLL
        for (int q = 0; q < kRowsPerThread; ++q) {
          if (q >= inside) break;
          float old = 0.0f;
          if constexpr (Epilogue::kReadsImage) {
            old = load(x.p, 0);
            x.next();
          }
          const float v = rule(reg.value[q], old);
          PVF_UNROLL
          for (int k = 0; k < Epilogue::kOutputs; ++k) {
            if (k == Epilogue::kRolledOutput) {
              store(rolled_to, sh.row_offsets[first + q], v);
            } else {
              store(to[k].p, 0, v);
              to[k].next();
            }
          }
        }
      });
    });
    blk.sync();  // every phase ends with one (block.h)
  }

  template <bool kFull, class Block>
  PVF_HD void apply_fast(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                         const typename Epilogue::Image& image_state, const PlaneRows<const T>& in,
                         const PlaneRows<T>* out, const TilePos& t) const {
    constexpr int kV = kVector<T>, kPerRow = kTileW / kV, kGroups = kTileH * kPerRow;
    static_assert(kGroups % kBlockThreads == 0, "every thread takes the same number of groups");
    const int32_t height = static_cast<int32_t>(tiles.grid.shape.height);
    blk.each(regs, [&](int thread, TileRegs& reg) {
      const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
      PVF_UNROLL
      for (int q = 0; q < kRowsPerThread; ++q) sh.rows[first + q][lane] = reg.value[q];
      if constexpr (Epilogue::kRolledOutput >= 0) tabulate_rolled_row(sh, out[Epilogue::kRolledOutput], t, thread);
    });
    blk.sync();
    blk.each(regs, [&](int thread, TileRegs&) {
      PVF_UNROLL
      for (int s = 0; s < kGroups / kBlockThreads; ++s) {
        // unsigned: a shift and a mask (a signed division by a power of two rounds toward zero)
        const uint32_t group = static_cast<uint32_t>(thread + s * kBlockThreads);
        const int32_t h = static_cast<int32_t>(group / kPerRow), c = static_cast<int32_t>(group % kPerRow) * kV;
        // A group past the image's last row (a cut tile's) computes from that row's x and stores
        // nothing to global memory: no branch around it.
        const bool inside = kFull || t.i0 + h < height;
        const int32_t read_row = kFull ? h : std::min(h, height - 1 - t.i0);
        float g[kV], x[kV] = {}, v[kV];
        PVF_UNROLL
        for (int k = 0; k < kV; k += 4) load4(&sh.rows[h][c + k], g + k);
        if (Epilogue::kReadsImage) load_vector(in.unrolled_at(t.i0 + read_row, t.e0 + c), x);
        PVF_UNROLL
        for (int k = 0; k < kV; ++k) v[k] = epilogue(image_state, g[k], x[k]);
        const VectorWords words = pack_vector<T>(v);
        PVF_UNROLL
        for (int o = 0; o < Epilogue::kOutputs; ++o) {
          if (o != Epilogue::kRolledOutput) {
            if (inside) store_words(out[o].unrolled_at(t.i0 + h, t.e0 + c), words);
          } else {
            store_packed(&sh.rows[h][c], words);  // converted once: its single stores below convert nothing
          }
        }
      }
    });
    blk.sync();
    if constexpr (Epilogue::kRolledOutput >= 0) {
      const PlaneRows<T>& rolled_out = out[Epilogue::kRolledOutput];
      blk.each(regs, [&](int thread, TileRegs&) {
        const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
        // rows past the image (a bottom tile's) are never stored
        const int32_t inside = height - (t.i0 + first);
        T* const column = rolled_column(rolled_out, t.e0 + lane);
        PVF_UNROLL
        for (int q = 0; q < kRowsPerThread; ++q) {
          if (kFull || q < inside) {
            store_element(column + sh.row_offsets[first + q], packed_element<T>(sh.rows[first + q], lane));
          }
        }
      });
      blk.sync();
    }
  }
};

}  // namespace pvf
