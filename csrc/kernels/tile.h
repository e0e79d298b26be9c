// The tile machinery of every CUDA kernel (csrc/kernels/block.h programs): a block takes tiles
// of kTileH x kTileW pixels of one (image, channel) plane and computes, per thread, the
// separable Gaussian blur of the (optionally un-jittered) source at its kRowsPerThread pixels
// (one column, consecutive rows). Two implementations, bit for bit the same sums:
//   blur_tile_fixed<R>  the common radii (FixedRadii, compile time): the tile plus its halo is
//                       loaded into shared memory once; horizontal pass shared -> shared with
//                       each thread computing 4 consecutive outputs of a row from vector loads;
//                       vertical pass from shared into the thread's 8 outputs of a column. Tap
//                       loops are fully unrolled with the taps in registers.
//   blur_tile_runtime   any other radius: chunks of up to kChunkRows rows of the tile plus its
//                       halo, loops over the run-time radius, taps read from shared memory;
//                       a radius beyond kSharedRadius reads its rows from global memory.
// Every sum runs over k = -r ... r in order, with fmaf, so the GPU and the emulation round alike.
// Taps (double exp, see common.h) live in shared memory, recomputed when the tile's image changes.
// Index math inside an image is int32 (the frontend checks that every offset fits).
#pragma once

#include <utility>

#include "block.h"
#include "image_shape.h"
#include "stats.h"
#include "storage.h"

namespace pvf {

constexpr int kTileW = kWarpSize;  // a warp covers one row segment of the tile: coalesced columns
constexpr int kTileH = 64;
constexpr int kRowsPerThread = kTileH / kBlockWarps;  // warp w owns tile rows 8w ... 8w + 7
constexpr int kSharedRadius = 16;  // horizontal halo held in shared memory
constexpr int kChunkRows = 80;  // tile rows + vertical halo per chunk: one chunk up to radius 8
constexpr int kSharedTaps = 1024;  // taps beyond are recomputed (radius > 1023 needs images > 1 MP)

// Radii with a compile-time blur (sigma 2 gives 6); others take the run-time loops.
using FixedRadii = std::integer_sequence<int, 0, 1, 2, 3, 4, 5, 6>;

struct TileShared {
  alignas(16) float raw[kChunkRows][kTileW + 2 * kSharedRadius];
  alignas(16) float rows[kChunkRows][kTileW];
  alignas(16) float taps[kSharedTaps];
  int64_t row_bytes[kChunkRows];  // byte offsets of the halo rows (blur_tile_fixed)
  StatsPartial warp_partials[kBlockWarps];
  float denom;  // s_b + eps of the block's current image (apply programs)
  int flag;  // non-finite flag of that image
};

struct TileRegs {
  float value[kRowsPerThread];  // the blurred source at the thread's pixels
  StatsPartial partial;
};

// n / d for 0 <= n < 2^31 and 1 <= d < 2^31 by a multiply-high and a shift (Granlund and
// Montgomery): a division by a run-time divisor is a long instruction sequence on the GPU.
struct FastDiv {
  uint32_t multiplier;
  int32_t shift;

  FastDiv() = default;
  PVF_HD explicit FastDiv(int32_t d) : multiplier(0), shift(0) {
    while ((int64_t(1) << shift) < d) ++shift;
    multiplier = static_cast<uint32_t>((uint64_t(1) << 32) * ((uint64_t(1) << shift) - uint64_t(d)) / uint64_t(d) + 1);
  }
  PVF_HD int32_t operator()(int32_t n) const {
#ifdef __CUDA_ARCH__
    const uint32_t high = __umulhi(static_cast<uint32_t>(n), multiplier);
#else
    const uint32_t high = static_cast<uint32_t>((uint64_t(static_cast<uint32_t>(n)) * multiplier) >> 32);
#endif
    return static_cast<int32_t>((high + static_cast<uint32_t>(n)) >> shift);
  }
};

// Tiles of a batch, ordered image by image (then channel, tile row, tile column), so that a
// grid-stride loop takes consecutive tiles of one image and an image's partials are contiguous.
// Tile counts are int32 (the frontend checks the total), as is all index math inside an image.
struct TileGrid {
  ImageShape shape;
  int32_t tiles_x, tiles_y, per_plane, per_image, total;
  FastDiv by_tiles_x, by_per_plane, by_per_image;

  TileGrid() = default;
  PVF_HD explicit TileGrid(const ImageShape& s)
      : shape(s),
        tiles_x(static_cast<int32_t>((s.width + kTileW - 1) / kTileW)),
        tiles_y(static_cast<int32_t>((s.height + kTileH - 1) / kTileH)),
        per_plane(tiles_x * tiles_y),
        per_image(static_cast<int32_t>(int64_t(per_plane) * s.channels)),
        total(static_cast<int32_t>(int64_t(per_image) * s.batch)),
        by_tiles_x(tiles_x),
        by_per_plane(per_plane),
        by_per_image(per_image) {}
};

// Tiles of a batch of this shape, in int64 (what the frontend checks against int32).
inline int64_t tile_count(const ImageShape& s) {
  return (s.width + kTileW - 1) / kTileW * ((s.height + kTileH - 1) / kTileH) * s.channels * s.batch;
}

struct TilePos {
  int32_t b, c;
  int32_t i0, j0;  // first row and column
  int32_t in_image;  // index of the tile within its image
};

PVF_HD TilePos tile_at(const TileGrid& g, int32_t index) {
  TilePos t;
  t.b = g.by_per_image(index);
  t.in_image = index - t.b * g.per_image;
  t.c = g.by_per_plane(t.in_image);
  const int32_t in_plane = t.in_image - t.c * g.per_plane;
  const int32_t ty = g.by_tiles_x(in_plane);
  t.i0 = ty * kTileH;
  t.j0 = (in_plane - ty * g.tiles_x) * kTileW;
  return t;
}

// Logical row / column i of the roll of a plane: source index (i + shift) mod n, shift in [0, n).
PVF_HD int32_t rolled(int32_t i, int32_t shift, int32_t n) {
  const int32_t s = i + shift;
  return s >= n ? s - n : s;
}

// A shift of image b reduced to [0, n): un-jitter reads (i + dy) mod n; `inverse` reads (i - dy).
PVF_HD int32_t reduced_shift(const int64_t* shifts, int64_t index, int64_t n, bool inverse) {
  if (shifts == nullptr) return 0;
  const int64_t s = wrap(shifts[index], n);
  return static_cast<int32_t>(inverse ? wrap(-s, n) : s);
}

// The plane of one tile of a source image, read through the roll: value(i, j) =
// plane[(i + dy) mod H, (j + dx) mod W], with (i, j) already reflected into the image. row(i)
// and col(j) are the offsets of a row and a column, so that loops resolve each once.
template <class T>
struct RolledPlane {
  const T* base;
  int32_t stride_h, stride_w, dy, dx, height, width;

  PVF_HD int32_t row(int32_t i) const { return rolled(i, dy, height) * stride_h; }
  PVF_HD int32_t col(int32_t j) const { return rolled(j, dx, width) * stride_w; }
  PVF_HD float value(int32_t offset) const { return load(base, offset); }
  PVF_HD float at(int32_t i, int32_t j) const { return value(row(i) + col(j)); }
};

// A source image of a tile program: data, strides, and the roll applied on reading (none when
// shifts is null).
template <class T>
struct TileSource {
  const T* data;
  Strides strides;
  const int64_t* shifts;  // int64 [B, 2] or nullptr
  bool inverse;  // roll by -shift (jitter) instead of +shift (un-jitter)

  // The roll of image b, once per image; plane() then places a tile's channel.
  PVF_HD RolledPlane<T> image(int32_t b, const ImageShape& s) const {
    return {data + int64_t(b) * strides.b,
            static_cast<int32_t>(strides.h),
            static_cast<int32_t>(strides.w),
            reduced_shift(shifts, 2 * int64_t(b), s.height, inverse),
            reduced_shift(shifts, 2 * int64_t(b) + 1, s.width, inverse),
            static_cast<int32_t>(s.height),
            static_cast<int32_t>(s.width)};
  }

  PVF_HD RolledPlane<T> plane(RolledPlane<T> image, const TilePos& t) const {
    image.base += int64_t(t.c) * strides.c;
    return image;
  }
};

// p advanced by `bytes` (a 64-bit add; an element index would be scaled first).
template <class T>
PVF_HD const T* byte_offset(const T* p, int64_t bytes) {
  return reinterpret_cast<const T*>(reinterpret_cast<const char*>(p) + bytes);
}

PVF_HD int32_t reflect32(int32_t i, int32_t n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

// The blur of the block's current image: its radius and taps (block-uniform state).
struct TileTaps {
  int32_t radius = 0;
  float sigma = 0.0f;
  double total = 1.0;
};

// Tap k of the current image: from shared memory (radius < kSharedTaps, the loops' fast path),
// or recomputed (larger radii: an image over 1,024 pixels high and wide and sigma > 341).
struct SharedTap {
  const float* taps;
  PVF_HD float operator()(int32_t k) const { return taps[k]; }
};

struct ComputedTap {
  float sigma;
  double total;
  PVF_HD float operator()(int32_t k) const { return gaussian_tap(k, sigma, total); }
};

// The taps of image b (sigma null: no blur), stored in sh.taps; ends with a barrier.
template <class Block>
PVF_HD TileTaps prepare_taps(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                             const float* sigma, int32_t b, const ImageShape& s) {
  TileTaps t;
  t.sigma = sigma ? sigma[b] : 0.0f;
  t.radius = static_cast<int32_t>(blur_radius(t.sigma, s.height, s.width));
  t.total = t.radius > 0 ? gaussian_total(t.radius, t.sigma) : 1.0;
  const int32_t stored = t.radius < kSharedTaps ? t.radius + 1 : kSharedTaps;
  blk.each(regs, [&](int thread, TileRegs&) {
    for (int32_t k = thread; k < stored; k += kBlockThreads) {
      sh.taps[k] = t.radius == 0 ? 1.0f : gaussian_tap(k, t.sigma, t.total);
    }
  });
  blk.sync();
  return t;
}

// Four consecutive floats of shared memory at a 16-byte boundary: one vector access on the GPU.
PVF_HD void load4(const float* p, float* v) {
#ifdef __CUDA_ARCH__
  const float4 f = *reinterpret_cast<const float4*>(p);
  v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
#else
  std::memcpy(v, p, 4 * sizeof(float));
#endif
}

PVF_HD void store4(float* p, const float* v) {
#ifdef __CUDA_ARCH__
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
#else
  std::memcpy(p, v, 4 * sizeof(float));
#endif
}

// sum over k = 0 ... 2R of w[|k - R|] * v[k], in order: the window of one output.
template <int R>
PVF_HD float window_sum(const float* w, const float* v) {
  float acc = 0.0f;
  PVF_UNROLL
  for (int k = 0; k <= 2 * R; ++k) acc = fmaf(w[k < R ? R - k : k - R], v[k], acc);
  return acc;
}

// Fills regs.value with the blur of `src` at the thread's pixels of tile t (rows i0 + 8w + q,
// column j0 + lane) for radius R known at compile time; pixels outside the image get an
// unspecified value (never used). Rows and columns past H - 1 + R (W - 1 + R) feed no pixel of the
// image.
template <int R, class Block, class T>
PVF_HD void blur_tile_fixed(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                            const RolledPlane<T>& src, const TilePos& t) {
  constexpr int kRows = kTileH + 2 * R, kWidth = kTileW + 2 * R;
  static_assert(kRows <= kChunkRows && kWidth <= kTileW + 2 * kSharedRadius, "the halo must fit the shared tile");
  const int32_t H = src.height, W = src.width;
  if constexpr (R == 0) {  // a copy: straight into registers
    blk.each(regs, [&](int thread, TileRegs& reg) {
      const int32_t j = t.j0 + thread % kWarpSize, first = t.i0 + thread / kWarpSize * kRowsPerThread;
      const int32_t col = j < W ? src.col(j) : 0;
      PVF_UNROLL
      for (int q = 0; q < kRowsPerThread; ++q) {
        const int32_t i = first + q;
        reg.value[q] = i < H && j < W ? src.value(src.row(i) + col) : 0.0f;
      }
    });
    blk.sync();
    return;
  } else {
    // The taps, loaded into registers by each pass (not held across barriers: registers).
    const auto taps = [&](float* w) {
      PVF_UNROLL
      for (int k = 0; k <= R; k += 4) load4(&sh.taps[k], w + k);
    };
    // Load: the offsets of the halo rows first; then warp w takes halo rows w, w + 8, ..., lane
    // the columns lane and lane + 32. Rows and columns past H - 1 + R (W - 1 + R) feed no pixel
    // of the image: they are clamped there (read, never used), so that no load is conditional.
    blk.each(regs, [&](int thread, TileRegs&) {
      const int32_t li = t.i0 - R + thread, last_i = H - 1 + R;
      if (thread < kRows) sh.row_bytes[thread] = int64_t(src.row(reflect32(li < last_i ? li : last_i, H))) * sizeof(T);
    });
    blk.sync();
    blk.each(regs, [&](int thread, TileRegs&) {
      const int32_t lane = thread % kWarpSize, warp = thread / kWarpSize, last_j = W - 1 + R;
      const int32_t lj0 = t.j0 - R + lane, lj1 = lj0 + kWarpSize;
      const T* col0 = src.base + src.col(reflect32(lj0 < last_j ? lj0 : last_j, W));
      const T* col1 = src.base + src.col(reflect32(lj1 < last_j ? lj1 : last_j, W));
      PVF_UNROLL
      for (int s = 0; s < (kRows + kBlockWarps - 1) / kBlockWarps; ++s) {
        const int32_t h = warp + s * kBlockWarps;
        if (s * kBlockWarps + kBlockWarps <= kRows || h < kRows) {
          const int64_t row = sh.row_bytes[h];
          sh.raw[h][lane] = load(byte_offset(col0, row), 0);
          if (lane < 2 * R) sh.raw[h][lane + kWarpSize] = load(byte_offset(col1, row), 0);
        }
      }
    });
    blk.sync();
    // Horizontal: task = (halo row, run of 4 outputs); 4 + 2R inputs in vector loads (the last
    // load may read past the halo: those values are unused).
    constexpr int kRuns = kTileW / 4, kTasks = kRows * kRuns, kLoads = (4 + 2 * R + 3) / 4;
    blk.each(regs, [&](int thread, TileRegs&) {
      float w[(R + 4) / 4 * 4];
      taps(w);
      PVF_UNROLL
      for (int s = 0; s < (kTasks + kBlockThreads - 1) / kBlockThreads; ++s) {
        const int32_t task = thread + s * kBlockThreads;
        if (task < kTasks) {
          const int32_t h = task / kRuns, c = task % kRuns * 4;
          float v[4 * kLoads], out[4];
          PVF_UNROLL
          for (int l = 0; l < kLoads; ++l) load4(&sh.raw[h][c + 4 * l], &v[4 * l]);
          PVF_UNROLL
          for (int q = 0; q < 4; ++q) out[q] = window_sum<R>(w, v + q);
          store4(&sh.rows[h][c], out);
        }
      }
    });
    blk.sync();
    // Vertical: the thread's pixels are tile rows first ... first + 7; pixel q sums halo rows
    // first + q ... first + q + 2R (logical rows i - R ... i + R).
    blk.each(regs, [&](int thread, TileRegs& reg) {
      const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
      float w[(R + 4) / 4 * 4], v[kRowsPerThread + 2 * R];
      taps(w);
      PVF_UNROLL
      for (int h = 0; h < kRowsPerThread + 2 * R; ++h) v[h] = sh.rows[first + h][lane];
      PVF_UNROLL
      for (int q = 0; q < kRowsPerThread; ++q) reg.value[q] = window_sum<R>(w, v + q);
    });
    blk.sync();
  }
}

// As blur_tile_fixed, for any radius r (taps from `tap`).
template <class Block, class T, class Tap>
PVF_HD void blur_tile_runtime(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                              int32_t r, const Tap& tap, const RolledPlane<T>& src, const TilePos& t) {
  const int32_t H = src.height, W = src.width;
  const int32_t halo_rows = kTileH + 2 * r;
  const bool shared_rows = r <= kSharedRadius;
  for (int32_t c0 = 0; c0 < halo_rows; c0 += kChunkRows) {
    const int32_t n = halo_rows - c0 < kChunkRows ? halo_rows - c0 : kChunkRows;
    // Logical row of chunk row h: i0 - r + c0 + h; rows past H - 1 + r feed no pixel of the image.
    if (shared_rows) {
      blk.each(regs, [&](int thread, TileRegs&) {
        const int32_t lane = thread % kWarpSize, width = kTileW + 2 * r;
        for (int32_t h = thread / kWarpSize; h < n; h += kBlockWarps) {
          const int32_t li = t.i0 - r + c0 + h;
          const bool row_ok = li <= H - 1 + r;
          const int32_t i = row_ok ? reflect32(li, H) : 0;
          for (int32_t col = lane; col < width; col += kWarpSize) {
            const int32_t lj = t.j0 - r + col;
            sh.raw[h][col] = row_ok && lj <= W - 1 + r ? src.at(i, reflect32(lj, W)) : 0.0f;
          }
        }
      });
      blk.sync();
    }
    blk.each(regs, [&](int thread, TileRegs&) {
      const int32_t lane = thread % kWarpSize;
      for (int32_t h = thread / kWarpSize; h < n; h += kBlockWarps) {
        float acc = 0.0f;
        if (shared_rows) {
          const float* row = &sh.raw[h][lane];
          if (r == 0) {
            acc = row[0];
          } else {
            for (int32_t k = 0; k < r; ++k) acc = fmaf(tap(r - k), row[k], acc);
            for (int32_t k = 0; k <= r; ++k) acc = fmaf(tap(k), row[r + k], acc);
          }
        } else {
          const int32_t li = t.i0 - r + c0 + h, j = t.j0 + lane;
          if (li <= H - 1 + r && j < W) {
            const int32_t i = reflect32(li, H);
            for (int32_t k = -r; k <= r; ++k) acc = fmaf(tap(k < 0 ? -k : k), src.at(i, reflect32(j + k, W)), acc);
          }
        }
        sh.rows[h][lane] = acc;
      }
    });
    blk.sync();
    // Vertical: the thread's pixels are rows first ... first + 3 of the tile; pixel q sums chunk
    // rows first + q ... first + q + 2r (logical rows i - r ... i + r). Each row is read once.
    blk.each(regs, [&](int thread, TileRegs& reg) {
      const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
      if (c0 == 0) {
        PVF_UNROLL
        for (int q = 0; q < kRowsPerThread; ++q) reg.value[q] = 0.0f;
      }
      if (r == 0) {  // one chunk of the tile's own rows
        PVF_UNROLL
        for (int q = 0; q < kRowsPerThread; ++q) reg.value[q] = sh.rows[first + q][lane];
        return;
      }
      const int32_t lo = first > c0 ? first : c0;
      const int32_t end = first + kRowsPerThread + 2 * r, hi = end < c0 + n ? end : c0 + n;
      for (int32_t h = lo; h < hi; ++h) {
        const float v = sh.rows[h - c0][lane];
        PVF_UNROLL
        for (int q = 0; q < kRowsPerThread; ++q) {
          const int32_t k = h - first - q - r;  // tap offset of this row for pixel q
          if (k >= -r && k <= r) reg.value[q] = fmaf(tap(k < 0 ? -k : k), v, reg.value[q]);
        }
      }
    });
    blk.sync();
  }
}

// f(std::integral_constant<int, R>) for the R of FixedRadii equal to r; false when none is.
template <class F, int... Rs>
PVF_HD bool with_fixed_radius(int32_t r, std::integer_sequence<int, Rs...>, F&& f) {
  return ((r == Rs ? (f(std::integral_constant<int, Rs>{}), true) : false) || ...);
}

// The blurred source of a program: its tiles, run image by image in a grid-stride loop over the
// tile indices (the grid size changes only who computes a tile, never a result):
//   image(b, index, taps)  block-uniform, once per image and block, after the image's taps;
//   tile(index, t)         per tile, once the tile's blur is in regs.value.
// Each radius of FixedRadii gets a tile loop of its own (straight-line code inside); the others
// share the run-time loop.
template <class T>
struct BlurredTiles {
  TileSource<T> src;
  const float* sigma;  // [B] or nullptr (no blur)
  TileGrid grid;

  template <class Block, class Image, class Tile>
  PVF_HD void run(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh, Image&& image,
                  Tile&& tile) const {
    for (int32_t index = blk.index(); index < grid.total;) {
      const int32_t b = grid.by_per_image(index), end = (b + 1) * grid.per_image;
      const TileTaps taps = prepare_taps(blk, regs, sh, sigma, b, grid.shape);
      image(b, index, taps);
      const RolledPlane<T> rolled_image = src.image(b, grid.shape);
      const auto tiles_of_image = [&](auto blur) {
        for (; index < end; index += blk.count()) {
          const TilePos t = tile_at(grid, index);
          blur(src.plane(rolled_image, t), t);
          tile(index, t);
        }
      };
      const bool fixed = with_fixed_radius(taps.radius, FixedRadii{}, [&](auto radius) {
        tiles_of_image([&](const RolledPlane<T>& p, const TilePos& t) {
          blur_tile_fixed<decltype(radius)::value>(blk, regs, sh, p, t);
        });
      });
      if (fixed) continue;
      if (taps.radius < kSharedTaps) {
        tiles_of_image([&](const RolledPlane<T>& p, const TilePos& t) {
          blur_tile_runtime(blk, regs, sh, taps.radius, SharedTap{sh.taps}, p, t);
        });
      } else {
        tiles_of_image([&](const RolledPlane<T>& p, const TilePos& t) {
          blur_tile_runtime(blk, regs, sh, taps.radius, ComputedTap{taps.sigma, taps.total}, p, t);
        });
      }
    }
  }
};

// Rows of the thread's pixels in tile t that lie inside the image (its pixels q < inside_rows).
PVF_HD int32_t inside_rows(const TilePos& t, int thread, const ImageShape& s) {
  const int32_t rows = static_cast<int32_t>(s.height) - (t.i0 + thread / kWarpSize * kRowsPerThread);
  if (t.j0 + thread % kWarpSize >= s.width || rows <= 0) return 0;
  return rows < kRowsPerThread ? rows : kRowsPerThread;
}

// Folds the warps' partials (sh.warp_partials, written by each warp's lane 0) in order.
PVF_HD StatsPartial fold_warp_partials(const TileShared& sh, NormMode mode) {
  StatsPartial p{0.0f, 0.0f, 0, 0};
  for (int w = 0; w < kBlockWarps; ++w) p = fold_partial(p, sh.warp_partials[w], mode);
  return p;
}

// regs.partial of every thread -> one block partial, returned (block-uniform) after a barrier
// through sh.warp_partials: butterfly within each warp, then the warps in order.
template <class Block>
PVF_HD void fold_block_partials(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                                NormMode mode) {
  blk.warp_fold(regs, &TileRegs::partial,
                [mode](const StatsPartial& a, const StatsPartial& b) { return fold_partial(a, b, mode); });
  blk.each(regs, [&](int thread, TileRegs& reg) {
    if (thread % kWarpSize == 0) sh.warp_partials[thread / kWarpSize] = reg.partial;
  });
  blk.sync();
}

}  // namespace pvf
