// The tile machinery of every CUDA kernel (csrc/kernels/block.h programs): a block takes tiles
// of kTileH x kTileW pixels of one (image, channel) plane and computes, per thread, the
// separable Gaussian blur of the (optionally un-jittered) source at its kRowsPerThread pixels:
//   for each chunk of up to kChunkRows rows of the tile plus its vertical halo:
//     load:       the chunk's rows, columns j0 - r ... j0 + kTileW - 1 + r, into shared memory
//                 (reflect and roll resolved once per row and per column; r <= kSharedRadius);
//     horizontal: shared -> shared, one row segment of kTileW per warp at a time;
//     vertical:   each thread adds the chunk's rows to its pixels' sums, in registers.
// Every sum runs over k = -r ... r in order, with fmaf, so the GPU and the emulation round alike.
// Radius 0 (no blur, or jitter / clip / normalize) copies through the same path.
// Taps (double exp, see common.h) live in shared memory, recomputed when the tile's image changes;
// a radius beyond kSharedRadius reads its rows from global memory instead of the shared tile.
// Index math inside an image is int32 (the frontend checks that every offset fits).
#pragma once

#include "block.h"
#include "image_shape.h"
#include "stats.h"
#include "storage.h"

namespace pvf {

constexpr int kTileW = kWarpSize;  // a warp covers one row segment of the tile: coalesced columns
constexpr int kTileH = 32;
constexpr int kRowsPerThread = kTileH / kBlockWarps;  // warp w owns tile rows 4w ... 4w + 3
constexpr int kSharedRadius = 16;  // horizontal halo held in shared memory
constexpr int kChunkRows = 48;  // tile rows + vertical halo per chunk: one chunk up to radius 8
constexpr int kSharedTaps = 1024;  // taps beyond are recomputed (radius > 1023 needs images > 1 MP)

struct TileShared {
  float raw[kChunkRows][kTileW + 2 * kSharedRadius];
  float rows[kChunkRows][kTileW];
  float taps[kSharedTaps];
  StatsPartial warp_partials[kBlockWarps];
  float denom;  // s_b + eps of the block's current image (apply programs)
  int flag;  // non-finite flag of that image
};

struct TileRegs {
  float value[kRowsPerThread];  // the blurred source at the thread's pixels
  StatsPartial partial;
};

// Tiles of a batch, ordered image by image (then channel, tile row, tile column), so that a
// grid-stride loop takes consecutive tiles of one image and an image's partials are contiguous.
// Tile counts are int32 (the frontend checks the total), as is all index math inside an image.
struct TileGrid {
  ImageShape shape;
  int32_t tiles_x, tiles_y, per_plane, per_image, total;

  TileGrid() = default;
  PVF_HD explicit TileGrid(const ImageShape& s)
      : shape(s),
        tiles_x(static_cast<int32_t>((s.width + kTileW - 1) / kTileW)),
        tiles_y(static_cast<int32_t>((s.height + kTileH - 1) / kTileH)),
        per_plane(tiles_x * tiles_y),
        per_image(static_cast<int32_t>(int64_t(per_plane) * s.channels)),
        total(static_cast<int32_t>(int64_t(per_image) * s.batch)) {}
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
  t.b = index / g.per_image;
  t.in_image = index - t.b * g.per_image;
  t.c = t.in_image / g.per_plane;
  const int32_t in_plane = t.in_image - t.c * g.per_plane;
  const int32_t ty = in_plane / g.tiles_x;
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
// plane[(i + dy) mod H, (j + dx) mod W], with (i, j) already reflected into the image.
template <class T>
struct RolledPlane {
  const T* base;
  int32_t stride_h, stride_w, dy, dx, height, width;

  PVF_HD float at(int32_t i, int32_t j) const {
    return load(base, rolled(i, dy, height) * stride_h + rolled(j, dx, width) * stride_w);
  }
};

// A source image of a tile program: data, strides, and the roll applied on reading (none when
// shifts is null).
template <class T>
struct TileSource {
  const T* data;
  Strides strides;
  const int64_t* shifts;  // int64 [B, 2] or nullptr
  bool inverse;  // roll by -shift (jitter) instead of +shift (un-jitter)

  PVF_HD RolledPlane<T> plane(const TilePos& t, const ImageShape& s) const {
    return {data + int64_t(t.b) * strides.b + int64_t(t.c) * strides.c,
            static_cast<int32_t>(strides.h),
            static_cast<int32_t>(strides.w),
            reduced_shift(shifts, 2 * t.b, s.height, inverse),
            reduced_shift(shifts, 2 * t.b + 1, s.width, inverse),
            static_cast<int32_t>(s.height),
            static_cast<int32_t>(s.width)};
  }
};

PVF_HD int32_t reflect32(int32_t i, int32_t n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

// The blur of the block's current image: its radius and taps (block-uniform state).
struct TileTaps {
  int32_t image = -1;
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

// Makes `taps` those of image b (sigma null: no blur). Ends with a barrier when it changes them.
template <class Block>
PVF_HD void prepare_taps(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                         TileTaps& taps, const float* sigma, int32_t b, const ImageShape& s) {
  if (taps.image == b) return;
  taps.image = b;
  taps.sigma = sigma ? sigma[b] : 0.0f;
  taps.radius = static_cast<int32_t>(blur_radius(taps.sigma, s.height, s.width));
  taps.total = taps.radius > 0 ? gaussian_total(taps.radius, taps.sigma) : 1.0;
  const TileTaps t = taps;
  const int32_t stored = t.radius < kSharedTaps ? t.radius + 1 : kSharedTaps;
  blk.each(regs, [&](int thread, TileRegs&) {
    for (int32_t k = thread; k < stored; k += kBlockThreads) {
      sh.taps[k] = t.radius == 0 ? 1.0f : gaussian_tap(k, t.sigma, t.total);
    }
  });
  blk.sync();
}

// Fills regs.value with the blur of `src` at the thread's pixels of tile t (rows i0 + 4w + q,
// column j0 + lane); pixels outside the image get an unspecified finite value.
template <class Block, class T, class Tap>
PVF_HD void blur_tile_with(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
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

template <class Block, class T>
PVF_HD void blur_tile(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                      const TileTaps& taps, const RolledPlane<T>& src, const TilePos& t) {
  if (taps.radius < kSharedTaps) {
    blur_tile_with(blk, regs, sh, taps.radius, SharedTap{sh.taps}, src, t);
  } else {
    blur_tile_with(blk, regs, sh, taps.radius, ComputedTap{taps.sigma, taps.total}, src, t);
  }
}

// Pixel q of `thread` in tile t, and whether it lies inside the image.
struct ThreadPixel {
  int32_t i, j;
  bool inside;
};

PVF_HD ThreadPixel thread_pixel(const TilePos& t, int thread, int q, const ImageShape& s) {
  ThreadPixel p;
  p.i = t.i0 + thread / kWarpSize * kRowsPerThread + q;
  p.j = t.j0 + thread % kWarpSize;
  p.inside = p.i < s.height && p.j < s.width;
  return p;
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
