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

#include <type_traits>

#include "block.h"
#include "image_shape.h"
#include "stats.h"
#include "storage.h"

namespace pvf {

constexpr int kTileW = kWarpSize;  // a warp covers one row segment of the tile: coalesced columns
constexpr int kTileH = 32;
constexpr int kRowsPerThread = kTileH / kBlockWarps;  // warp w owns tile rows 4w ... 4w + 3
constexpr int kSharedHalo = 32;  // horizontal halo held in shared memory, in elements (radius x step)
constexpr int kChunkRows = 48;  // tile rows + vertical halo per chunk: one chunk up to radius 8
constexpr int kSharedTaps = 1024;  // taps beyond are recomputed (radius > 1023 needs images > 1 MP)

struct TileShared {
  float raw[kChunkRows][kTileW + 2 * kSharedHalo];  // source rows; then the image x of a step tile
  float rows[kChunkRows][kTileW];  // horizontal pass; then the tile's values before they are stored
  float taps[kSharedTaps];
  StatsPartial warp_partials[kBlockWarps];
  float denom;  // s_b + eps of the block's current image (apply programs)
  int flag;  // non-finite flag of that image
};

struct TileRegs {
  float value[kRowsPerThread];  // the blurred source at the thread's pixels
  StatsPartial partial;
};

// How a batch is cut into planes of rows, so that a tile row is contiguous in memory:
//   planar (NCHW, and any strides): C planes per image, rows of W elements, one per pixel;
//   interleaved (channels_last: the channels of a pixel adjacent): one plane per image, rows of
//   W x C elements, a pixel being `step` = C consecutive elements. The blur's taps and the roll
//   then move by whole pixels (step elements) and a reflection keeps the channel.
// Tiles of a batch are ordered image by image (then plane, tile row, tile column), so that a
// grid-stride loop takes consecutive tiles of one image and an image's partials are contiguous.
// Tile counts are int32 (the frontend checks the total), as is all index math inside an image.
struct TileGrid {
  ImageShape shape;
  int32_t planes, step, length;  // planes per image, elements per pixel, elements per plane row
  int32_t tiles_x, tiles_y, per_plane, per_image, total;

  TileGrid() = default;
  PVF_HD TileGrid(const ImageShape& s, bool interleaved)
      : shape(s),
        planes(static_cast<int32_t>(interleaved ? 1 : s.channels)),
        step(static_cast<int32_t>(interleaved ? s.channels : 1)),
        length(static_cast<int32_t>(s.width * step)),
        tiles_x((length + kTileW - 1) / kTileW),
        tiles_y(static_cast<int32_t>((s.height + kTileH - 1) / kTileH)),
        per_plane(tiles_x * tiles_y),
        per_image(per_plane * planes),
        total(static_cast<int32_t>(int64_t(per_image) * s.batch)) {}
};

// Tiles of a batch of this shape in the planar cut, in int64: an upper bound of both cuts (what
// the frontend checks against int32 and sizes the partials by).
inline int64_t tile_count(const ImageShape& s) {
  return (s.width + kTileW - 1) / kTileW * ((s.height + kTileH - 1) / kTileH) * s.channels * s.batch;
}

struct TilePos {
  int32_t b, plane;
  int32_t i0, e0;  // first row and first element of the plane row
  int32_t in_image;  // index of the tile within its image
};

PVF_HD TilePos tile_at(const TileGrid& g, int32_t index) {
  TilePos t;
  t.b = index / g.per_image;
  t.in_image = index - t.b * g.per_image;
  t.plane = t.in_image / g.per_plane;
  const int32_t in_plane = t.in_image - t.plane * g.per_plane;
  const int32_t ty = in_plane / g.tiles_x;
  t.i0 = ty * kTileH;
  t.e0 = (in_plane - ty * g.tiles_x) * kTileW;
  return t;
}

// An image in the tile cut: element e of row i of plane p of image b is
// data[b * image + p * plane + i * row + e * element]. `vectors`: element == 1 and the data and
// every stride 16-byte aligned, so that an element's alignment is that of its index e.
struct TileView {
  int64_t image, plane;
  int32_t row, element;
  bool vectors;
};

PVF_HD bool aligned16(int64_t bytes) { return bytes % 16 == 0; }

// The view of an image of strides s (a layout the cut allows: interleaved needs s.c == 1 and
// s.w == C) with elements of `size` bytes.
PVF_HD TileView tile_view(const void* data, const Strides& s, const TileGrid& g, int64_t size) {
  TileView v;
  v.image = s.b;
  v.plane = g.step > 1 ? 0 : s.c;
  v.row = static_cast<int32_t>(s.h);
  v.element = static_cast<int32_t>(g.step > 1 ? 1 : s.w);
  v.vectors = v.element == 1 && aligned16(static_cast<int64_t>(reinterpret_cast<uintptr_t>(data))) &&
              aligned16(v.image * size) && aligned16(v.plane * size) && aligned16(int64_t(v.row) * size);
  return v;
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

PVF_HD int32_t reflect32(int32_t i, int32_t n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

// Element e of a plane row of `length` elements and pixels of `step`, reflected by whole pixels
// (keeping the channel) when it lies in the halo outside the row: -r * step <= e < length + r * step.
PVF_HD int32_t reflect_element(int32_t e, int32_t length, int32_t step) {
  if (e >= 0 && e < length) return e;
  if (step == 1) return reflect32(e, length);
  const int32_t pixel = e >= 0 ? e / step : -((-e - 1) / step) - 1;
  return reflect32(pixel, length / step) * step + (e - pixel * step);
}

// Columns [0, n) of a tile row moved to or from global memory, columns [c1, c2) of them being
// elements first, first + 1, ... of a plane row of `length` elements read through a roll by
// `shift` elements: at most two contiguous runs of memory, split where the roll wraps. Inside
// each run, aligned groups of `width` elements move as one 16-byte access (`vectors` counts
// them); every other column (run ends, the split, reflected or padded columns) moves alone.
struct RowRuns {
  int32_t col[2], at[2], vectors[2];  // per run: first column of its vectors, their first element, count
  int32_t n, width;

  PVF_HD int32_t vector_count() const { return vectors[0] + vectors[1]; }
  PVF_HD int32_t items() const { return vector_count() + n - width * vector_count(); }

  // The m-th column that no vector moves.
  PVF_HD int32_t single(int32_t m) const {
    if (m >= col[0]) m += width * vectors[0];
    if (m >= col[1]) m += width * vectors[1];
    return m;
  }
};

PVF_HD RowRuns plan_row(int32_t n, int32_t c1, int32_t c2, int32_t first, int32_t shift, int32_t length,
                        int32_t width, bool vectors) {
  RowRuns p{{n, n}, {0, 0}, {0, 0}, n, width};
  if (!vectors || c2 <= c1) return p;
  const int32_t start = rolled(first, shift, length);
  const int32_t first_run = c2 - c1 < length - start ? c2 - c1 : length - start;
  const int32_t cols[2] = {c1, c1 + first_run}, ats[2] = {start, 0}, lens[2] = {first_run, c2 - c1 - first_run};
  for (int k = 0; k < 2; ++k) {
    const int32_t head = (width - ats[k] % width) % width;
    p.col[k] = cols[k] + head;
    p.at[k] = ats[k] + head;
    p.vectors[k] = lens[k] > head ? (lens[k] - head) / width : 0;
  }
  return p;
}

// Calls vector(column, element) for every vector and single(column) for every other column of a
// row plan, spread over the lanes of a warp (lane-th item, then every 32nd).
template <class Vector, class Single>
PVF_HD void each_item(const RowRuns& p, int32_t lane, Vector&& vector, Single&& single) {
  const int32_t nv = p.vector_count(), items = p.items();
  for (int32_t k = lane; k < items; k += kWarpSize) {
    if (k < p.vectors[0]) {
      vector(p.col[0] + k * p.width, p.at[0] + k * p.width);
    } else if (k < nv) {
      const int32_t m = k - p.vectors[0];
      vector(p.col[1] + m * p.width, p.at[1] + m * p.width);
    } else {
      single(p.single(k - nv));
    }
  }
}

// The plane of tile t in an image (T const when only read), with a roll: element (i, e) of the
// tile's plane is row (i + dy) mod H, element (e + shift) mod length of the image's plane (the
// source of an un-jitter or a jitter, or the next step's input; no roll: dy = shift = 0).
template <class T>
struct PlaneRows {
  T* base;
  int32_t row, element, dy, shift, height, length, step;
  bool vectors;

  PVF_HD T* row_at(int32_t i) const { return base + rolled(i, dy, height) * row; }
  PVF_HD int32_t offset(int32_t e) const { return rolled(e, shift, length) * element; }
};

// dy, dx: the roll in rows and pixels, both reduced (reduced_shift).
template <class T>
PVF_HD PlaneRows<T> plane_rows(T* data, const TileView& v, const TilePos& t, const TileGrid& g, int32_t dy = 0,
                               int32_t dx = 0) {
  return {data + int64_t(t.b) * v.image + int64_t(t.plane) * v.plane,
          v.row,
          v.element,
          dy,
          dx * g.step,
          static_cast<int32_t>(g.shape.height),
          g.length,
          g.step,
          v.vectors};
}

// A source image of a tile program: data, view, and the roll applied on reading (none when
// shifts is null).
template <class T>
struct TileSource {
  const T* data;
  TileView view;
  const int64_t* shifts;  // int64 [B, 2] or nullptr
  bool inverse;  // roll by -shift (jitter) instead of +shift (un-jitter)

  PVF_HD PlaneRows<const T> plane(const TilePos& t, const TileGrid& g) const {
    return plane_rows(data, view, t, g, reduced_shift(shifts, 2 * t.b, g.shape.height, inverse),
                      reduced_shift(shifts, 2 * t.b + 1, g.shape.width, inverse));
  }
};

// The runs of the tile's own elements e0 ... (at most kTileW, not past the row) in plane p.
template <class T>
PVF_HD RowRuns tile_runs(const PlaneRows<T>& p, const TilePos& t) {
  const int32_t n = p.length - t.e0 < kTileW ? p.length - t.e0 : kTileW;
  return plan_row(n, 0, n, t.e0, p.shift, p.length, kVector<T>, p.vectors);
}

// A lane's part of loading a row plan into shared `out`: the vectors from `row`, and
// single(col) for every other column.
template <class T, class Single>
PVF_HD void load_row(const T* row, const RowRuns& runs, int32_t lane, float* out, Single&& single) {
  each_item(
      runs, lane,
      [&](int32_t col, int32_t at) {
        float v[kVector<T>];
        load_vector(row + at, v);
        PVF_UNROLL
        for (int k = 0; k < kVector<T>; ++k) out[col + k] = v[k];
      },
      [&](int32_t col) { out[col] = single(col); });
}

// Phase bodies: the thread's part of moving the tile rows of its warp (4w ... 4w + 3, inside the
// image) between plane p and shared rows (`pitch` floats apart), vectors where aligned.
template <class T>
PVF_HD void load_warp_rows(const PlaneRows<const T>& p, const RowRuns& runs, const TilePos& t, int thread,
                           float* shared, int32_t pitch) {
  const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
  for (int32_t q = first; q < first + kRowsPerThread && t.i0 + q < p.height; ++q) {
    const T* row = p.row_at(t.i0 + q);
    load_row(row, runs, lane, shared + q * pitch, [&](int32_t col) { return load(row, p.offset(t.e0 + col)); });
  }
}

template <class T>
PVF_HD void store_warp_rows(const PlaneRows<T>& p, const RowRuns& runs, const TilePos& t, int thread,
                            const float* shared, int32_t pitch) {
  const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
  for (int32_t q = first; q < first + kRowsPerThread && t.i0 + q < p.height; ++q) {
    T* row = p.row_at(t.i0 + q);
    const float* in = shared + q * pitch;
    each_item(
        runs, lane, [&](int32_t col, int32_t at) { store_vector(row + at, in + col); },
        [&](int32_t col) { store(row, p.offset(t.e0 + col), in[col]); });
  }
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

// The horizontal sum at row[0] (the window's first element), over k = -r ... r in order; taps
// `step` elements apart.
template <class Tap, class Step>
PVF_HD float horizontal_taps(const Tap& tap, int32_t r, const float* row, Step step) {
  float acc = 0.0f;
  for (int32_t k = 0; k < r; ++k) acc = fmaf(tap(r - k), row[k * step], acc);
  for (int32_t k = 0; k <= r; ++k) acc = fmaf(tap(k), row[(r + k) * step], acc);
  return acc;
}

// Fills regs.value with the blur of `src` at the thread's pixels of tile t (rows i0 + 4w + q,
// element e0 + lane); pixels outside the image get an unspecified finite value.
template <class Block, class T, class Tap>
PVF_HD void blur_tile_with(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                           int32_t r, const Tap& tap, const PlaneRows<const T>& src, const TilePos& t) {
  const int32_t H = src.height, L = src.length, P = src.step, halo = r * P;
  const int32_t halo_rows = kTileH + 2 * r;
  const bool shared_rows = halo <= kSharedHalo;
  // Columns of a chunk row: elements e0 - halo ... e0 + kTileW - 1 + halo; those inside the row
  // [0, L) are read through the roll (vectors where aligned), the halo outside it is reflected,
  // and elements past pixel W - 1 + r feed no pixel of the image (zeros).
  const int32_t width = kTileW + 2 * halo, first = t.e0 - halo;
  const int32_t c1 = first < 0 ? -first : 0, c2 = L - first < width ? L - first : width;
  const int32_t used = L + halo - first < width ? L + halo - first : width;
  const RowRuns runs = plan_row(width, c1, c2, first + c1, src.shift, L, kVector<T>, src.vectors);
  for (int32_t c0 = 0; c0 < halo_rows; c0 += kChunkRows) {
    const int32_t n = halo_rows - c0 < kChunkRows ? halo_rows - c0 : kChunkRows;
    // Logical row of chunk row h: i0 - r + c0 + h; rows past H - 1 + r feed no pixel of the image.
    if (shared_rows) {
      blk.each(regs, [&](int thread, TileRegs&) {
        const int32_t lane = thread % kWarpSize;
        for (int32_t h = thread / kWarpSize; h < n; h += kBlockWarps) {
          float* out = sh.raw[h];
          const int32_t li = t.i0 - r + c0 + h;
          if (li > H - 1 + r) {
            for (int32_t col = lane; col < width; col += kWarpSize) out[col] = 0.0f;
            continue;
          }
          const T* row = src.row_at(reflect32(li, H));
          load_row(row, runs, lane, out, [&](int32_t col) {
            return col < used ? load(row, src.offset(reflect_element(first + col, L, P))) : 0.0f;
          });
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
          } else if (P == 1) {  // planar: neighbouring taps are adjacent, offsets known at compile time
            acc = horizontal_taps(tap, r, row, std::integral_constant<int32_t, 1>{});
          } else {
            acc = horizontal_taps(tap, r, row, P);
          }
        } else {
          const int32_t li = t.i0 - r + c0 + h, e = t.e0 + lane;
          if (li <= H - 1 + r && e < L) {
            const T* row = src.row_at(reflect32(li, H));
            for (int32_t k = -r; k <= r; ++k) {
              acc = fmaf(tap(k < 0 ? -k : k), load(row, src.offset(reflect_element(e + k * P, L, P))), acc);
            }
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
                      const TileTaps& taps, const PlaneRows<const T>& src, const TilePos& t) {
  if (taps.radius < kSharedTaps) {
    blur_tile_with(blk, regs, sh, taps.radius, SharedTap{sh.taps}, src, t);
  } else {
    blur_tile_with(blk, regs, sh, taps.radius, ComputedTap{taps.sigma, taps.total}, src, t);
  }
}

// Pixel q of `thread` in tile t, and whether it lies inside the image.
struct ThreadPixel {
  int32_t i, e;  // row and element of the plane row
  bool inside;
};

PVF_HD ThreadPixel thread_pixel(const TilePos& t, int thread, int q, const TileGrid& g) {
  ThreadPixel p;
  p.i = t.i0 + thread / kWarpSize * kRowsPerThread + q;
  p.e = t.e0 + thread % kWarpSize;
  p.inside = p.i < g.shape.height && p.e < g.length;
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
