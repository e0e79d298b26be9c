// The tile machinery of every CUDA kernel (csrc/kernels/block.h programs): a block takes tiles
// of kTileH rows x kTileW elements of a plane (one channel, or for channels_last the whole image
// with rows of W x C elements: TileGrid) and computes, per thread, the separable Gaussian blur of
// the (optionally un-jittered) source at its kRowsPerThread pixels (one column, consecutive
// rows). Two implementations, bit for bit the same sums:
//   blur_tile_fixed<R>  the common radii (FixedRadii, compile time) of the planar cut, and no
//                       blur in both: the tile plus its halo is loaded into shared memory once;
//                       horizontal pass shared -> shared with each thread computing 4 consecutive
//                       outputs of a row from vector loads; vertical pass from shared into the
//                       thread's 16 outputs of a column. Tap loops are fully unrolled with the taps
//                       in registers.
//   blur_tile_runtime   any other radius or cut: chunks of up to kChunkRows rows of the tile plus
//                       its halo, loops over the run-time radius, taps read from shared memory;
//                       a halo beyond kSharedHalo elements reads its rows from global memory.
// Global memory moves as 16-byte vectors on the fast paths (16-byte aligned rows); on the fixed
// radii's general path element by element, each row and column of a tile reflected and rolled
// once (row_offsets, load_halo_elements, ColumnRows); elsewhere as row runs (RowRuns: 16-byte
// vectors where aligned, single elements at the run ends, the roll's split and the reflected
// halo). Stores go the same ways (tile_programs.h).
// Every sum runs over k = -r ... r in order, with fmaf, so the GPU and the emulation round alike.
// Taps (double exp, see common.h) live in shared memory, recomputed when the tile's image changes.
// Index math inside an image is int32 (the frontend checks that every offset fits).
#pragma once

#include <type_traits>
#include <utility>

#include "block.h"
#include "image_shape.h"
#include "stats.h"
#include "storage.h"

namespace pvf {

constexpr int kTileW = kWarpSize;  // a warp covers one row segment of the tile: coalesced columns
constexpr int kTileH = 64;
constexpr int kRowsPerThread = kTileH / kBlockWarps;  // warp w owns tile rows 16w ... 16w + 15
constexpr int kSharedHalo = 32;  // horizontal halo held in shared memory, in elements (radius x step)
constexpr int kChunkRows = 80;  // tile rows + vertical halo per chunk: one chunk up to radius 8
constexpr int kSharedTaps = 1024;  // taps beyond are recomputed (radius > 1023 needs images > 1 MP)

// Radii with a compile-time blur (sigma 2 gives 6); others take the run-time loops.
using FixedRadii = std::integer_sequence<int, 0, 1, 2, 3, 4, 5, 6>;
constexpr int kMaxFixedRadius = 6;

struct TileShared {
  alignas(16) float raw[kChunkRows][kTileW + 2 * kSharedHalo];  // source rows; then the image x of a step tile
  alignas(16) float rows[kChunkRows][kTileW];  // horizontal pass; then the tile's values before they are stored
  alignas(16) float taps[kSharedTaps];
  // Row offsets (PlaneRows::row_offset), one per thread (those past the rows used: no branch around
  // them): of a tile's halo rows at a fixed radius (tabulate_halo), read by the fast and the
  // general halo loads; then, in a step's apply, of its rolled output's rows (ApplyProgram).
  int32_t row_offsets[kBlockThreads];
  StatsPartial warp_partials[kBlockWarps];
  float denom;  // s_b + eps of the block's current image (apply programs)
  int flag;  // non-finite flag of that image
  // Column offsets (PlaneRows::offset) of a tile's halo columns at a fixed radius, for the general
  // halo loads (tabulate_halo with columns; up to a vector of slack past the widest halo).
  alignas(16) int32_t column_offsets[kTileW + 2 * kMaxFixedRadius + 4];
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

// How a batch is cut into planes of rows, so that a tile row is contiguous in memory:
//   planar (NCHW, and any strides): C planes per image, rows of W elements, one per pixel;
//   interleaved (channels_last: the channels of a pixel adjacent): one plane per image, rows of
//   W x C elements, a pixel being `step` = C consecutive elements. The blur's taps and the roll
//   then move by whole pixels (step elements) and a reflection keeps the channel.
// Tiles of a batch are ordered image by image (then plane, tile row, tile column), so that a
// grid-stride loop takes consecutive tiles of one image and an image's partials are contiguous.
// Tile counts are int32 (the frontend checks the total), as is all index math inside an image.
// A plane whose height is a multiple of kRowsPerThread, above kTileH and not a multiple of it
// has its last tile row start at H - kTileH (shifts_last_row), overlapping the row above by whole
// warps' rows: its tiles then lie inside the image (the fast paths' loops that test no row
// against its height), they write the overlap's values a second time (the same bits, to outputs
// that are tensors of their own), and the fold of an image's partials leaves out those of their
// overlapping warps (ImagePartials).
PVF_HD bool shifts_last_row(int64_t height) {
  return height > kTileH && height % kTileH != 0 && height % kRowsPerThread == 0;
}

struct TileGrid {
  ImageShape shape;
  int32_t planes, step, length;  // planes per image, elements per pixel, elements per plane row
  int32_t tiles_x, tiles_y, per_plane, per_image, total;
  int32_t last_i0, overlap_warps;  // the last tile row's first row; its tiles' warps that the row above holds
  FastDiv by_tiles_x, by_per_plane, by_per_image;

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
        total(static_cast<int32_t>(int64_t(per_image) * s.batch)),
        last_i0(shifts_last_row(s.height) ? static_cast<int32_t>(s.height) - kTileH : (tiles_y - 1) * kTileH),
        overlap_warps(((tiles_y - 1) * kTileH - last_i0) / kRowsPerThread),
        by_tiles_x(tiles_x),
        by_per_plane(per_plane),
        by_per_image(per_image) {}
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

// Tile `index` of the batch, which lies in image b (the tile loops know it: no division for it).
PVF_HD TilePos tile_at(const TileGrid& g, int32_t b, int32_t index) {
  TilePos t;
  t.b = b;
  t.in_image = index - t.b * g.per_image;
  t.plane = g.by_per_plane(t.in_image);
  const int32_t in_plane = t.in_image - t.plane * g.per_plane;
  const int32_t ty = g.by_tiles_x(in_plane);
  t.i0 = ty + 1 == g.tiles_y ? g.last_i0 : ty * kTileH;
  t.e0 = (in_plane - ty * g.tiles_x) * kTileW;
  return t;
}

// An image in the tile cut: element e of row i of plane p of image b is
// data[b * image + p * plane + i * row + e * element]. `vectors`: element == 1 and the data and
// every stride 16-byte aligned, so that an element's alignment is that of its index e.
struct TileView {
  int64_t image;
  int32_t plane, row, element;  // plane: 0 when unused (one plane per image, or one channel)
  bool vectors;
};

PVF_HD bool aligned16(int64_t bytes) { return bytes % 16 == 0; }

// The view of an image of strides s (a layout the cut allows: interleaved needs s.c == 1 and
// s.w == C) with elements of `size` bytes.
PVF_HD TileView tile_view(const void* data, const Strides& s, const TileGrid& g, int64_t size) {
  TileView v;
  v.image = s.b;
  // s.c fits int32 when there are several planes: the frontends check that an image's offsets do
  // (check_int32_image_offsets)
  v.plane = static_cast<int32_t>(g.step > 1 || g.shape.channels == 1 ? 0 : s.c);
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
  return static_cast<int32_t>(inverse && s != 0 ? n - s : s);  // -s mod n without a second wrap
}

// reflect in int32 for -n < i < 2n - 1: the nearer of |i| and its mirror at n - 1 (an absolute
// value and a minimum, not two branches).
PVF_HD int32_t reflect32(int32_t i, int32_t n) {
  const int32_t a = i < 0 ? -i : i, mirrored = 2 * (n - 1) - a;
  return a < mirrored ? a : mirrored;
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
    // ats[k] >= 0: an unsigned remainder (a mask for the power-of-two widths), not a signed one
    const int32_t head = static_cast<int32_t>((uint32_t(width) - uint32_t(ats[k]) % uint32_t(width)) % uint32_t(width));
    p.col[k] = cols[k] + head;
    p.at[k] = ats[k] + head;
    p.vectors[k] = lens[k] > head ? (lens[k] - head) / width : 0;
  }
  return p;
}

// Calls vector(column, element) for every vector and single(column) for every other column of a
// row plan of at most kColumns columns, spread over the lanes of a warp (lane-th item, then every
// 32nd; unrolled, so that a tile loop holds no inner loop).
template <int kColumns, class Vector, class Single>
PVF_HD void each_item(const RowRuns& p, int32_t lane, Vector&& vector, Single&& single) {
  const int32_t nv = p.vector_count(), items = p.items();
  PVF_UNROLL
  for (int s = 0; s < (kColumns + kWarpSize - 1) / kWarpSize; ++s) {
    const int32_t k = lane + s * kWarpSize;
    if (k >= items) break;
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

#ifndef __CUDACC__
// Set while the CPU emulation counts the tiles of each path (tests); else null.
inline void (*tile_path_hook)(bool fast) = nullptr;
#endif

// Called once per tile computed, with the path that computes it (nothing on the GPU).
PVF_HD void note_tile_path(bool fast) {
#ifndef __CUDACC__
  if (tile_path_hook) tile_path_hook(fast);
#endif
}

// The plane of tile t in an image (T const when only read), with a roll: element (i, e) of the
// tile's plane is row (i + dy) mod H, element (e + shift) mod length of the image's plane (the
// source of an un-jitter or a jitter, or the next step's input; no roll: dy = shift = 0).
template <class T>
struct PlaneRows {
  T* base;
  int32_t row, element, dy, shift, height, length, step;
  bool vectors;

  PVF_HD T* row_at(int32_t i) const { return base + row_offset(i); }
  // Element e (no roll) of row i (rolled) in one int32 offset: a single wide add to the base.
  PVF_HD T* at(int32_t i, int32_t e) const { return base + (row_offset(i) + e); }
  // The same for a plane without a roll (dy = 0) and a row inside it (i < height): no wrap to test.
  PVF_HD T* unrolled_at(int32_t i, int32_t e) const { return base + (i * row + e); }
  PVF_HD int32_t row_offset(int32_t i) const { return rolled(i, dy, height) * row; }
  PVF_HD int32_t offset(int32_t e) const { return rolled(e, shift, length) * element; }
};

// base + elements (an image's first plane, or a tile's plane in it) as a pointer of its own
// (opaque): each access is then one wide multiply-add from it, not a 64-bit add of the plane's
// index and a scaled add to the argument (4 instructions), and a tile's plane is one int32
// product and a wide add from its image's pointer, not a 64-bit product. It is still known to
// be global memory, so the accesses stay LDG / STG rather than generic LD / ST.
template <class T>
PVF_HD T* plane_pointer(T* base, int64_t elements) {
  return global_memory(opaque(base + elements));
}

// b x stride for an index b >= 0, b zero-extended: the GPU then multiplies b's low word alone
// (a sign-extended b adds a shift and a multiply of its high word).
PVF_HD int64_t index_offset(int32_t b, int64_t stride) { return int64_t(uint32_t(b)) * stride; }

// Image b's first element.
template <class T>
PVF_HD T* image_base(T* data, const TileView& v, int32_t b) {
  return plane_pointer(data, index_offset(b, v.image));
}

// Plane 0 of the image whose first element is `image`; dy, dx: the roll in rows and pixels,
// both reduced (reduced_shift).
template <class T>
PVF_HD PlaneRows<T> rows_at(T* image, const TileView& v, const TileGrid& g, int32_t dy = 0, int32_t dx = 0) {
  return {image, v.row, v.element, dy, dx * g.step, static_cast<int32_t>(g.shape.height), g.length, g.step, v.vectors};
}

// Plane 0 of image b.
template <class T>
PVF_HD PlaneRows<T> image_rows(T* data, const TileView& v, int32_t b, const TileGrid& g, int32_t dy = 0,
                               int32_t dx = 0) {
  return rows_at(image_base(data, v, b), v, g, dy, dx);
}

// The plane of tile t in the image whose first element is `image`.
template <class T>
PVF_HD PlaneRows<T> plane_at(T* image, const TileView& v, const TilePos& t, const TileGrid& g, int32_t dy = 0,
                             int32_t dx = 0) {
  PlaneRows<T> p = rows_at(image, v, g, dy, dx);
  p.base = plane_pointer(p.base, t.plane * v.plane);
  return p;
}

// The plane of tile t.
template <class T>
PVF_HD PlaneRows<T> plane_rows(T* data, const TileView& v, const TilePos& t, const TileGrid& g, int32_t dy = 0,
                               int32_t dx = 0) {
  return plane_at(image_base(data, v, t.b), v, t, g, dy, dx);
}

// A source image of a tile program: data, view, and the roll applied on reading (none when
// shifts is null).
template <class T>
struct TileSource {
  const T* data;
  TileView view;
  const int64_t* shifts;  // int64 [B, 2] or nullptr
  bool inverse;  // roll by -shift (jitter) instead of +shift (un-jitter)

  // The roll of image b, once per image; plane() then places a tile's plane.
  PVF_HD PlaneRows<const T> image(int32_t b, const TileGrid& g) const {
    return image_rows(data, view, b, g, reduced_shift(shifts, 2 * int64_t(b), g.shape.height, inverse),
                      reduced_shift(shifts, 2 * int64_t(b) + 1, g.shape.width, inverse));
  }

  PVF_HD PlaneRows<const T> plane(PlaneRows<const T> image, const TilePos& t) const {
    image.base = plane_pointer(image.base, t.plane * view.plane);
    return image;
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
template <int kColumns, class T, class Single>
PVF_HD void load_row(const T* row, const RowRuns& runs, int32_t lane, float* out, Single&& single) {
  each_item<kColumns>(
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
  PVF_UNROLL
  for (int32_t q = first; q < first + kRowsPerThread; ++q) {
    if (t.i0 + q >= p.height) break;
    const T* row = p.row_at(t.i0 + q);
    load_row<kTileW>(row, runs, lane, shared + q * pitch, [&](int32_t col) { return load(row, p.offset(t.e0 + col)); });
  }
}

template <class T>
PVF_HD void store_warp_rows(const PlaneRows<T>& p, const RowRuns& runs, const TilePos& t, int thread,
                            const float* shared, int32_t pitch) {
  const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
  PVF_UNROLL
  for (int32_t q = first; q < first + kRowsPerThread; ++q) {
    if (t.i0 + q >= p.height) break;
    T* row = p.row_at(t.i0 + q);
    const float* in = shared + q * pitch;
    each_item<kTileW>(
        runs, lane, [&](int32_t col, int32_t at) { store_vector(row + at, in + col); },
        [&](int32_t col) { store(row, p.offset(t.e0 + col), in[col]); });
  }
}

// A thread's pixels in one column of a plane without a roll of its rows (dy = 0), rows i, i + 1,
// ...: a pointer stepped row by row (one wide add), not a product and an address per row.
// column: the element's offset in its row (PlaneRows::offset). Rolled rows: sh.row_offsets.
template <class T>
struct ColumnRows {
  T* p;
  int32_t down;

  ColumnRows() = default;
  PVF_HD ColumnRows(const PlaneRows<T>& rows, int32_t i, int32_t column)
      : p(rows.at(i, column)), down(rows.row) {}

  PVF_HD void next() { p += down; }
};

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

// N = 2 or 4 consecutive floats of shared memory at an N x 4-byte boundary: one vector access on
// the GPU.
#ifdef __CUDACC__
template <int N>
struct SharedVector;
template <>
struct SharedVector<2> {
  using type = float2;
};
template <>
struct SharedVector<4> {
  using type = float4;
};
#endif

template <int N>
PVF_HD void load_shared(const float* p, float* v) {
#ifdef __CUDA_ARCH__
  const typename SharedVector<N>::type f = *reinterpret_cast<const typename SharedVector<N>::type*>(p);
  memcpy(v, &f, sizeof f);
#else
  std::memcpy(v, p, N * sizeof(float));
#endif
}

template <int N>
PVF_HD void store_shared(float* p, const float* v) {
#ifdef __CUDA_ARCH__
  typename SharedVector<N>::type f;
  memcpy(&f, v, sizeof f);
  *reinterpret_cast<typename SharedVector<N>::type*>(p) = f;
#else
  std::memcpy(p, v, N * sizeof(float));
#endif
}

PVF_HD void load4(const float* p, float* v) { load_shared<4>(p, v); }
PVF_HD void store4(float* p, const float* v) { store_shared<4>(p, v); }

// A shared row of floats in groups of kVector<T> (16 bytes of T, 4 * kVector<T> bytes of
// floats) that hold their elements as they lie in memory, at the group's start: a group's
// elements take no more room than its floats did (float32's the same room), so each group can
// overwrite its own values. store_packed writes a group, packed_element reads element k.
PVF_HD void store_packed(float* group, const VectorWords& words) {
  float f[4];
  memcpy(f, words.w, sizeof f);
  store4(group, f);
}
template <class T>
PVF_HD T packed_element(const float* row, int32_t k) {
  constexpr int32_t kV = kVector<T>;
  const unsigned char* group = reinterpret_cast<const unsigned char*>(row + k / kV * kV);
  T v;
  memcpy(static_cast<void*>(&v), group + k % kV * static_cast<int32_t>(sizeof(T)), sizeof v);
  return v;
}

// f(item) for items thread, thread + kBlockThreads, ... below kItems: the rounds that every
// thread takes carry no bounds check.
template <int kItems, class F>
PVF_HD void each_task(int thread, F&& f) {
  PVF_UNROLL
  for (int s = 0; s < kItems / kBlockThreads; ++s) f(thread + s * kBlockThreads);
  if constexpr (kItems % kBlockThreads != 0) {
    if (thread + kItems / kBlockThreads * kBlockThreads < kItems) f(thread + kItems / kBlockThreads * kBlockThreads);
  }
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

// The halo rows of a tile's source for radius r: elements e0 - r * step ... e0 + kTileW - 1 +
// r * step of each row; those inside the plane row are read through the roll (vectors where
// aligned), the halo outside it is reflected by whole pixels, and elements past pixel W - 1 + r
// (which feed no pixel of the image) are zeros, as are rows past H - 1 + r.
struct SourceRows {
  RowRuns runs;
  int32_t r, width, first, used;

  template <class T>
  PVF_HD SourceRows(const PlaneRows<const T>& src, const TilePos& t, int32_t radius)
      : r(radius), width(kTileW + 2 * radius * src.step), first(t.e0 - radius * src.step) {
    const int32_t L = src.length, c1 = first < 0 ? -first : 0, c2 = L - first < width ? L - first : width;
    used = L + radius * src.step - first < width ? L + radius * src.step - first : width;
    runs = plan_row(width, c1, c2, first + c1, src.shift, L, kVector<T>, src.vectors);
  }

  // A lane's part of loading the plane's logical row li (i0 - r <= li) into out[0, width), a
  // width of at most kColumns.
  template <int kColumns, class T>
  PVF_HD void fill(const PlaneRows<const T>& src, int32_t lane, int32_t li, float* out) const {
    if (li > src.height - 1 + r) {
      PVF_UNROLL
      for (int s = 0; s < (kColumns + kWarpSize - 1) / kWarpSize; ++s) {
        if (lane + s * kWarpSize < width) out[lane + s * kWarpSize] = 0.0f;
      }
      return;
    }
    const T* row = src.row_at(reflect32(li, src.height));
    load_row<kColumns>(row, runs, lane, out, [&](int32_t col) {
      return col < used ? load(row, src.offset(reflect_element(first + col, src.length, src.step))) : 0.0f;
    });
  }
};

// sum over k = 0 ... 2R of w[|k - R|] * v[k], in order: the window of one output.
template <int R>
PVF_HD float window_sum(const float* w, const float* v) {
  float acc = 0.0f;
  PVF_UNROLL
  for (int k = 0; k <= 2 * R; ++k) acc = fmaf(w[k < R ? R - k : k - R], v[k], acc);
  return acc;
}

// The taps 0 ... R of the current image from shared memory into registers (each pass loads
// them: not held across barriers, which would cost registers).
template <int R>
PVF_HD void load_taps(const TileShared& sh, float* w) {
  PVF_UNROLL
  for (int k = 0; k <= R; k += 4) load4(&sh.taps[k], w + k);
}

// The horizontal pass of radius R: halo row h of the source at raw + h * pitch (16-byte
// aligned, kTileW + 2R columns and room for 3 more) -> sh.rows[h]. Rounds of tasks of 4 outputs
// (a halo row, a run of 4 columns: 4 + 2R inputs in vector loads, the last of which may read
// past the halo: those values are unused) cover 32 rows each; the rows left (2R + kTileH mod
// 32) take one round of tasks of 2 outputs (R + 1 8-byte loads) when they fit, so that no thread
// does a whole extra task that most threads skip.
template <int R, class Block>
PVF_HD void horizontal_pass(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                            const float* raw, int32_t pitch) {
  constexpr int kRows = kTileH + 2 * R, kRuns = kTileW / 4, kLoads = (4 + 2 * R + 3) / 4;
  constexpr int kRoundRows = kBlockThreads / kRuns, kQuadRows = kRows / kRoundRows * kRoundRows;
  constexpr int kPairTasks = (kRows - kQuadRows) * (kTileW / 2);
  constexpr int kQuadTasks = kPairTasks <= kBlockThreads ? kQuadRows * kRuns : kRows * kRuns;
  blk.each(regs, [&](int thread, TileRegs&) {
    float w[(R + 4) / 4 * 4];
    load_taps<R>(sh, w);
    each_task<kQuadTasks>(thread, [&](int32_t task) {
      const int32_t h = task / kRuns, c = task % kRuns * 4;
      float v[4 * kLoads], out[4];
      PVF_UNROLL
      for (int l = 0; l < kLoads; ++l) load4(raw + h * pitch + c + 4 * l, &v[4 * l]);
      PVF_UNROLL
      for (int q = 0; q < 4; ++q) out[q] = window_sum<R>(w, v + q);
      store4(&sh.rows[h][c], out);
    });
    if constexpr (kPairTasks <= kBlockThreads) {
      each_task<kPairTasks>(thread, [&](int32_t task) {
        const int32_t h = kQuadRows + task / (kTileW / 2), c = task % (kTileW / 2) * 2;
        float v[2 * R + 2], out[2];
        PVF_UNROLL
        for (int l = 0; l <= R; ++l) load_shared<2>(raw + h * pitch + c + 2 * l, &v[2 * l]);
        PVF_UNROLL
        for (int q = 0; q < 2; ++q) out[q] = window_sum<R>(w, v + q);
        store_shared<2>(&sh.rows[h][c], out);
      });
    }
  });
  blk.sync();
}

// The vertical pass of radius R: the thread's pixels are tile rows first ... first + 7; pixel q
// sums rows first + q ... first + q + 2R of sh.rows (logical rows i - R ... i + R).
template <int R, class Block>
PVF_HD void vertical_pass(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh) {
  blk.each(regs, [&](int thread, TileRegs& reg) {
    const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
    float w[(R + 4) / 4 * 4], v[kRowsPerThread + 2 * R];
    load_taps<R>(sh, w);
    PVF_UNROLL
    for (int h = 0; h < kRowsPerThread + 2 * R; ++h) v[h] = sh.rows[first + h][lane];
    PVF_UNROLL
    for (int q = 0; q < kRowsPerThread; ++q) reg.value[q] = window_sum<R>(w, v + q);
  });
  blk.sync();
}

// The source index of logical halo index li (a row from i0 - R, a column from e0 - R) along an
// extent of n rows or columns: reflected; indices past n - 1 + R feed no pixel of the image and
// read the last one that does.
PVF_HD int32_t halo_index(int32_t li, int32_t n, int32_t r) {
  return reflect32(li < n - 1 + r ? li : n - 1 + r, n);
}

// sh.row_offsets: the source row offsets (PlaneRows::row_offset) of tile t's halo rows at radius
// R, each row reflected and rolled once, one per thread; with kColumns, also sh.column_offsets:
// the source offsets (PlaneRows::offset) of its first kColumns halo columns, each reflected at
// the row's ends and rolled once (columns past W - 1 + R, which feed no pixel of the image, read
// the last one that does). Ends with a barrier.
template <int R, int kColumns = 0, class Block, class T>
PVF_HD void tabulate_halo(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                          const PlaneRows<const T>& src, const TilePos& t) {
  static_assert(kColumns <= kBlockThreads && kColumns <= int(sizeof sh.column_offsets / sizeof(int32_t)),
                "a thread tabulates each column");
  blk.each(regs, [&](int thread, TileRegs&) {
    sh.row_offsets[thread] = src.row_offset(halo_index(t.i0 - R + thread, src.height, R));
    if constexpr (kColumns > 0) {  // (the compiler cannot know the thread index is not negative)
      if (thread < kColumns) sh.column_offsets[thread] = src.offset(halo_index(t.e0 - R + thread, src.length, R));
    }
  });
  blk.sync();
}

// The halo of radius R >= 1 of any tile of the planar cut, rows at any alignment (the general
// path), element by element into sh.raw: thread k takes kColumns consecutive columns, from column
// kColumns (k mod kThreadsPerRow), of the halo rows k / kThreadsPerRow, + kRowsPerRound, ..., so
// that its columns' source offsets (reflected at the row's ends and rolled: the split costs
// nothing per element), tabulated once per tile a thread per column, are one shared load and each
// element is one load at row offset + column offset, a row's offset read once for its kColumns
// loads. Columns past W - 1 + R, like rows past H - 1 + R (halo_index), feed no pixel of the image
// and read the last one that does; a row's last thread may take columns past the halo's width,
// which land in the shared row's slack.
template <int R, class Block, class T>
PVF_HD void load_halo_elements(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                               const PlaneRows<const T>& src, const TilePos& t) {
  constexpr int kRows = kTileH + 2 * R, kWidth = kTileW + 2 * R, kPitch = kTileW + 2 * kSharedHalo;
  constexpr int kColumns = 4;  // at radius 6: 11 threads a row, 11 rows a round, 7 rounds
  constexpr int kThreadsPerRow = (kWidth + kColumns - 1) / kColumns, kRowsPerRound = kBlockThreads / kThreadsPerRow;
  constexpr int kRounds = (kRows + kRowsPerRound - 1) / kRowsPerRound;
  static_assert(kRows <= kBlockThreads, "a thread tabulates each halo row");
  static_assert(kThreadsPerRow * kColumns <= kPitch, "a row's last thread stays in its shared row");
  tabulate_halo<R, kThreadsPerRow * kColumns>(blk, regs, sh, src, t);
  blk.each(regs, [&](int thread, TileRegs&) {
    const int32_t c0 = thread % kThreadsPerRow * kColumns, first_row = thread / kThreadsPerRow;
    if (first_row >= kRowsPerRound) return;  // past kRowsPerRound x kThreadsPerRow: their rows are the others'
    int32_t column[kColumns];
    PVF_UNROLL
    for (int q = 0; q < kColumns; ++q) column[q] = sh.column_offsets[c0 + q];
    float* const out = &sh.raw[first_row][c0];
    PVF_UNROLL
    for (int s = 0; s < kRounds; ++s) {
      const int32_t h = first_row + s * kRowsPerRound;
      if ((s + 1) * kRowsPerRound > kRows && h >= kRows) break;  // the last round alone checks
      // the row's address made once (opaque: else the compiler adds each column's offset to the
      // row's first in 64 bits, several instructions a load, not one wide multiply-add)
      const T* const row = opaque(src.base + sh.row_offsets[h]);
      PVF_UNROLL
      for (int q = 0; q < kColumns; ++q) out[s * kRowsPerRound * kPitch + q] = load(row, column[q]);
    }
  });
  blk.sync();
}

// Fills regs.value with the blur of `src` at the thread's pixels of tile t (rows i0 + 16w + q,
// column j0 + lane) for radius R known at compile time; pixels outside the image get an
// unspecified value (never used). Rows and columns past H - 1 + R (W - 1 + R) feed no pixel of the
// image.
template <int R, class Block, class T>
PVF_HD void blur_tile_fixed(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                            const PlaneRows<const T>& src, const TilePos& t) {
  constexpr int kRows = kTileH + 2 * R, kWidth = kTileW + 2 * R;
  static_assert(kRows <= kChunkRows && kWidth <= kTileW + 2 * kSharedHalo, "the halo must fit the shared tile");
  if constexpr (R == 0) {  // a copy: the tile's rows through shared memory (vectors), any cut
    const RowRuns runs = tile_runs(src, t);
    blk.each(regs, [&](int thread, TileRegs&) {
      load_warp_rows(src, runs, t, thread, &sh.rows[0][0], kTileW);
    });
    blk.sync();
    blk.each(regs, [&](int thread, TileRegs& reg) {
      const int32_t lane = thread % kWarpSize, first = thread / kWarpSize * kRowsPerThread;
      PVF_UNROLL
      for (int q = 0; q < kRowsPerThread; ++q) reg.value[q] = sh.rows[first + q][lane];
    });
    blk.sync();
    return;
  } else {
    load_halo_elements<R>(blk, regs, sh, src, t);
    horizontal_pass<R>(blk, regs, sh, &sh.raw[0][0], kTileW + 2 * kSharedHalo);
    vertical_pass<R>(blk, regs, sh);
  }
}

// The thread whose work `thread` takes when the block's threads split into rounds of `workers`
// (a multiple of a task's threads): itself, or for the kBlockThreads - workers threads past them,
// one of the first, whose stores it repeats with the same values (no branch around them).
PVF_HD int32_t repeated_thread(int thread, int32_t workers) { return thread < workers ? thread : thread - workers; }

// The interior fast path of radius R >= 1 (planar cut, 16-byte aligned rows): a tile whose halo
// columns e0 - R ... e0 + kTileW - 1 + R lie inside the plane row and, through the roll, inside
// kVectors aligned vectors of one run (fits). Every global load is then a 16-byte vector with
// no per-item choice: the halo rows as a flat list of (row, vector) tasks over all threads, each
// row reflected once. Row h sits at kLead + h * kPitch floats of sh.raw, so that the halo's
// misalignment a (< kV) only moves the shared stores and the horizontal pass reads aligned.
template <int R, class T>
struct FastHalo {
  static constexpr int kV = kVector<T>, kRows = kTileH + 2 * R;
  // kTileW + 2 kMaxFixedRadius elements at any misalignment: the same (row, vector) split of the
  // tasks for every radius, whose per-thread parts the compiler computes once per kernel.
  static constexpr int kVectors = (kTileW + 2 * kMaxFixedRadius + 2 * kV - 2) / kV;
  static constexpr int kLead = kV;
  static constexpr int kPitch = (kLead + kVectors * kV + 3) / 4 * 4;
  // Thread k loads vector k mod kVectors of halo rows k / kVectors, + kRowsPerRound, ...: its
  // vector, and so where that vector comes from and goes, is the same in every row it loads.
  // The threads past kRowsPerRound x kVectors (kBlockThreads mod kVectors) repeat the first
  // threads' loads, storing the same values to the same places: no branch around them in every
  // tile, and no shared memory of their own.
  static constexpr int kRowsPerRound = kBlockThreads / kVectors;
  static constexpr int kRounds = (kRows + kRowsPerRound - 1) / kRowsPerRound;
  static_assert(R <= kMaxFixedRadius, "kVectors covers the halo of the fixed radii");
  static_assert(kLead + kRows * kPitch <= kChunkRows * (kTileW + 2 * kSharedHalo), "the halo must fit sh.raw");

  // First halo element through the roll.
  static PVF_HD int32_t start(const PlaneRows<const T>& p, const TilePos& t) {
    return rolled(t.e0 - R, p.shift, p.length);
  }

  // The start's place in its vector (start >= 0 where the fast path runs: a mask, not a signed
  // remainder).
  static PVF_HD int32_t misalignment(int32_t start) { return static_cast<int32_t>(static_cast<uint32_t>(start) % kV); }

  // Whether the tile's halo allows the fast path, in a plane that does (16-byte aligned rows of
  // the planar cut: run_tile_loops's `vectors` and fixed radius). The tests joined by bitwise
  // ands, not branches (a branch leaves a bool that the GPU moves through byte permutes); start()
  // is defined whatever the tile.
  static PVF_HD bool fits(const PlaneRows<const T>& p, const TilePos& t) {
    const int32_t s = start(p, t);
    return (t.e0 >= R) & (t.e0 + kTileW + R <= p.length) & (s - misalignment(s) + kVectors * kV <= p.length);
  }
};

// Where the halo's vector j of each row comes from and goes: source element source + j kV of the
// row, shared column column + j kV.
struct VectorOrigin {
  int32_t source, column;
};

// The halo's vectors that take(j) accepts, j = 0 ... kVectors - 1 of each halo row, each from and
// to where origin(j) says (a source element 16-byte aligned; a column at any misalignment, which
// moves only the shared stores). A thread takes one j in every round (FastHalo::kRowsPerRound),
// so take(j) and origin(j) are made once per tile, not once per vector.
template <int R, class Block, class T, class Take, class Origin>
PVF_HD void load_halo_vectors(Block& blk, typename Block::template PerThread<TileRegs>& regs, const TileShared& sh,
                              const PlaneRows<const T>& src, float* raw, Take&& take, Origin&& origin) {
  using F = FastHalo<R, T>;
  blk.each(regs, [&](int thread, TileRegs&) {
    const int32_t task = repeated_thread(thread, F::kRowsPerRound * F::kVectors), j = task % F::kVectors,
                  first_row = task / F::kVectors;
    if (!take(j)) return;
    const VectorOrigin o = origin(j);
    const int32_t source = o.source + j * F::kV, place = first_row * F::kPitch;
    // the tile's shared base plus the thread's byte offset, which depends on the thread alone (made
    // once per kernel; left visible, the compiler re-adds the tile's misalignment into it)
    float* const out = reinterpret_cast<float*>(reinterpret_cast<char*>(raw + o.column) +
                                                opaque(int32_t(sizeof(float)) * (place + j * F::kV)));
    PVF_UNROLL
    for (int s = 0; s < F::kRounds; ++s) {
      const int32_t h = first_row + s * F::kRowsPerRound;
      if ((s + 1) * F::kRowsPerRound > F::kRows && h >= F::kRows) break;  // the last round alone checks
      float v[F::kV];
      load_vector(src.base + (sh.row_offsets[h] + source), v);
      PVF_UNROLL
      for (int k = 0; k < F::kV; ++k) out[s * F::kRowsPerRound * F::kPitch + k] = v[k];
    }
  });
}

// The columns of an edge tile's halo (EdgeHalo): a function of the tile, its plane row's length
// and roll, and the radius alone.
struct EdgeColumns {
  int32_t first, end;  // columns inside the row
  int32_t source, column, vectors, split;  // vector 0's source and column, vectors, the first past the split
};

// An edge tile's halo (a tile whose columns lie inside the row, but whose halo crosses one of
// the row's ends or the roll's split), in a row whose length is a multiple of kV (EdgeHalo::fits).
// Its columns inside the row, [first, end), lie in memory from source element `start` to the
// row's end (the roll's split) and on from element 0: aligned vectors from the one holding
// `start` cover them, the columns of vector j being first - a + j kV ... (a: start's
// misalignment) and its source start - a + j kV, less the row's length past the split (no vector
// straddles it: the length is a multiple of kV). The first vector may begin before `first`, the
// last end past `end`: on the reflected columns or the shared row's lead and slack. The reflected
// columns (the R at the row's start, or those of the R past the tile at its end) are then copies
// of columns inside the halo's row: column c < first of column 2 first - c, column c >= end of
// column 2 (end - 1) - c; R threads per halo row. A tile whose halo crosses both ends (a row
// narrower than kTileW + R) takes the general path.
template <int R, class T>
struct EdgeHalo : EdgeColumns {
  using F = FastHalo<R, T>;
  static constexpr int kWidth = kTileW + 2 * R;
  static constexpr int kLanes = R;  // threads per halo row: one per column of the reflected end
  static constexpr int kRowsPerRound = kBlockThreads / kLanes;
  static constexpr int kRounds = (F::kRows + kRowsPerRound - 1) / kRowsPerRound;
  static_assert(F::kLead >= F::kV - 1 && F::kPitch - F::kLead >= kWidth + F::kV - 1,
                "a vector that passes the columns inside the row stays in its shared row");
  // Whether the copies run whole rounds, untested (load_halo_edge): where their last round's rows
  // past the halo stay in sh.raw (junk rows that nothing reads); the small radii's many rows per
  // round do not.
  static constexpr bool kWholeRounds =
      F::kLead + kRounds * kRowsPerRound * F::kPitch <= kChunkRows * (kTileW + 2 * kSharedHalo);
  int32_t length;

  PVF_HD EdgeHalo(const EdgeColumns& columns, int32_t row_length) : EdgeColumns(columns), length(row_length) {}

  // Tile t's columns in plane p.
  static PVF_HD EdgeColumns columns(const PlaneRows<const T>& p, const TilePos& t) {
    EdgeColumns c;
    c.first = t.e0 < R ? R - t.e0 : 0;
    c.end = p.length - (t.e0 - R) < kWidth ? p.length - (t.e0 - R) : kWidth;
    const int32_t start = rolled(t.e0 - R + c.first, p.shift, p.length), a = F::misalignment(start);
    c.source = start - a;
    c.column = c.first - a;
    c.vectors = static_cast<int32_t>((uint32_t(c.end - c.column) + F::kV - 1) / F::kV);
    c.split = static_cast<int32_t>(uint32_t(p.length - c.source) / F::kV);
    return c;
  }

  // Whether tile t (its columns inside the row) takes this halo: rows of a length that is a
  // multiple of kV, and a halo that crosses at most one of the row's ends.
  static PVF_HD bool fits(const PlaneRows<const T>& p, const TilePos& t) {
    return (F::misalignment(p.length) == 0) & ((t.e0 >= R) | (t.e0 + kTileW + R <= p.length));
  }

  PVF_HD VectorOrigin origin(int32_t j) const { return {j < split ? source : source - length, column}; }

  // The column that lane k < R of a row's group takes and the column that it copies (itself where
  // the row holds the column: nothing to copy): at the row's start (first > 0, then first = R:
  // tiles start at multiples of kTileW > R) column k, from column 2R - k; else column
  // kTileW + R + k, from as far before the row's last column as it lies past it (no branch).
  PVF_HD int32_t reflected(int32_t k, int32_t& copied) const {
    const int32_t at_end = kTileW + R + k, past = at_end - (end - 1);
    copied = first > 0 ? 2 * R - k : at_end - 2 * (past > 0 ? past : 0);
    return first > 0 ? k : at_end;
  }
};

// The halo of an edge tile (EdgeHalo): its vectors, then the reflected columns copied in shared
// memory, each of the thread's rows (its group's rows, kRowsPerRound apart) from the same column.
template <int R, class Block, class T>
PVF_HD void load_halo_edge(Block& blk, typename Block::template PerThread<TileRegs>& regs, const TileShared& sh,
                           const PlaneRows<const T>& src, const EdgeHalo<R, T>& edge, float* raw) {
  using F = FastHalo<R, T>;
  using E = EdgeHalo<R, T>;
  load_halo_vectors<R>(
      blk, regs, sh, src, raw, [&](int32_t j) { return j < edge.vectors; },
      [&](int32_t j) { return edge.origin(j); });
  blk.sync();  // the copies read the vectors' columns; the vectors' ends land on the reflected ones
  blk.each(regs, [&](int thread, TileRegs&) {
    int32_t copied = 0;
    const int32_t task = repeated_thread(thread, E::kRowsPerRound * E::kLanes), first_row = task / E::kLanes;
    const int32_t c = edge.reflected(task % E::kLanes, copied);
    PVF_UNROLL
    for (int s = 0; s < E::kRounds; ++s) {
      const int32_t h = first_row + s * E::kRowsPerRound;
      if (!E::kWholeRounds && s + 1 == E::kRounds && h >= F::kRows) break;  // the last round alone checks
      if (c != copied) raw[h * F::kPitch + c] = raw[h * F::kPitch + copied];
    }
  });
}

// Which of a fixed radius's tile loops (run_tile_loops) takes a tile: the interior and the edge
// tiles of kTileH rows inside the image, the tiles of either kind that the image's last row
// cuts, the rest; every tile of an image whose rows are not all 16-byte aligned; or, in a loop
// of any other radius or cut, every tile.
enum TileLoop : int32_t { kInteriorTiles, kEdgeTiles, kCutTiles, kGeneralTiles, kUnalignedTiles, kEveryTile };

// A tile's loop and fast-path halo at radius R, made where a loop meets the tile, from the tile
// and its plane (the two-pass programs): each part made only where it is used. It holds them by
// value: the compiler then shares their sums between the loop's test and the blur.
template <int R, class T>
struct ComputedPlan {
  PlaneRows<const T> p;
  TilePos t;

  PVF_HD bool fits() const { return FastHalo<R, T>::fits(p, t); }
  PVF_HD bool whole() const { return (t.e0 + kTileW <= p.length) & EdgeHalo<R, T>::fits(p, t); }
  PVF_HD bool tall() const { return t.i0 + kTileH <= p.height; }
  // Whether `loop` takes the tile: each tile is taken by one loop.
  PVF_HD bool takes(TileLoop loop) const {
    switch (loop) {
      case kInteriorTiles: return fits() & tall();
      case kEdgeTiles: return whole() & !fits() & tall();
      case kCutTiles: return whole() & !tall();
      case kGeneralTiles: return !whole() & !(fits() & tall());
      case kUnalignedTiles:
      case kEveryTile: break;
    }
    return true;
  }
  PVF_HD TileLoop loop() const {
    return takes(kInteriorTiles) ? kInteriorTiles
           : takes(kEdgeTiles)   ? kEdgeTiles
           : takes(kCutTiles)    ? kCutTiles
                                 : kGeneralTiles;
  }
  // Vector 0 of the interior halo (where it fits).
  PVF_HD VectorOrigin interior() const {
    const int32_t start = FastHalo<R, T>::start(p, t), a = FastHalo<R, T>::misalignment(start);
    return {start - a, -a};
  }
  PVF_HD EdgeHalo<R, T> edge() const { return {EdgeHalo<R, T>::columns(p, t), p.length}; }
};

// A ComputedPlan made once per step and stored (the one-pass step's tile places: resident_step.h),
// so that the step's tiles load their plan in two 16-byte words instead of making it.
struct alignas(16) StoredPlan {
  int32_t loop;  // TileLoop
  int32_t fits;  // ComputedPlan::fits
  EdgeColumns halo;  // the edge halo's columns; where the interior's fits, its vector 0 in source and column

  template <int R, class T>
  static PVF_HD StoredPlan of(const ComputedPlan<R, T>& plan) {
    StoredPlan s{plan.loop(), plan.fits(), EdgeHalo<R, T>::columns(plan.p, plan.t)};
    if (s.fits) {
      const VectorOrigin o = plan.interior();
      s.halo.source = o.source;
      s.halo.column = o.column;
    }
    return s;
  }
};
static_assert(sizeof(StoredPlan) == 32, "a stored plan moves as two 16-byte words");

// A StoredPlan read back, with ComputedPlan's interface.
template <int R, class T>
struct LoadedPlan {
  const StoredPlan& s;
  int32_t length;  // the plane row's

  PVF_HD bool fits() const { return s.fits != 0; }
  PVF_HD bool takes(TileLoop loop) const { return s.loop == loop; }
  PVF_HD VectorOrigin interior() const { return {s.halo.source, s.halo.column}; }
  PVF_HD EdgeHalo<R, T> edge() const { return {s.halo, length}; }
};

// The plans of radius R's tiles: made from the tile and its plane, or loaded from a stored one.
template <int R, class T>
struct TilePlanner {
  PVF_HD ComputedPlan<R, T> operator()(const PlaneRows<const T>& p, const TilePos& t) const { return {p, t}; }
  PVF_HD LoadedPlan<R, T> operator()(const PlaneRows<const T>& p, const StoredPlan& s) const { return {s, p.length}; }
};

// The plan of a tile in a loop that takes every tile (kEveryTile): nothing to make or load.
struct EveryTilePlan {
  PVF_HD bool takes(TileLoop) const { return true; }
};
struct EveryTilePlanner {
  template <class Rows, class Place>
  PVF_HD EveryTilePlan operator()(const Rows&, const Place&) const { return {}; }
};

// The fast path's blur of a tile whose columns lie inside the row: its halo rows' offsets in a
// table (each row reflected and rolled once), the halo as vectors when it fits them (`fits`:
// FastHalo::fits), else as an edge tile's (load_halo_edge), both placed by the tile's plan
// (ComputedPlan, LoadedPlan), then the passes.
template <int R, class Block, class T, class Plan>
PVF_HD void blur_tile_fast(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                           const PlaneRows<const T>& src, const TilePos& t, const Plan& plan, bool fits) {
  using F = FastHalo<R, T>;
  float* const raw = &sh.raw[0][0] + F::kLead;
  tabulate_halo<R>(blk, regs, sh, src, t);
  if (fits) {
    const VectorOrigin o = plan.interior();
    load_halo_vectors<R>(
        blk, regs, sh, src, raw, [](int32_t) { return true; }, [&](int32_t) { return o; });
  } else {
    load_halo_edge<R>(blk, regs, sh, src, plan.edge(), raw);
  }
  blk.sync();
  horizontal_pass<R>(blk, regs, sh, raw, F::kPitch);
  vertical_pass<R>(blk, regs, sh);
}

// As blur_tile_fixed, for any radius r (taps from `tap`) and either cut (taps `step` elements
// apart); a halo beyond kSharedHalo elements reads its rows from global memory.
template <class Block, class T, class Tap>
PVF_HD void blur_tile_runtime(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                              int32_t r, const Tap& tap, const PlaneRows<const T>& src, const TilePos& t) {
  const int32_t H = src.height, L = src.length, P = src.step;
  const int32_t halo_rows = kTileH + 2 * r;
  const bool shared_rows = r * P <= kSharedHalo;
  const SourceRows rows(src, t, r);
  for (int32_t c0 = 0; c0 < halo_rows; c0 += kChunkRows) {
    const int32_t n = halo_rows - c0 < kChunkRows ? halo_rows - c0 : kChunkRows;
    // Logical row of chunk row h: i0 - r + c0 + h; rows past H - 1 + r feed no pixel of the image.
    if (shared_rows) {
      blk.each(regs, [&](int thread, TileRegs&) {
        for (int32_t h = thread / kWarpSize; h < n; h += kBlockWarps) {
          rows.fill<kTileW + 2 * kSharedHalo>(src, thread % kWarpSize, t.i0 - r + c0 + h, sh.raw[h]);
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

// f(std::integral_constant<int, R>) for the R of FixedRadii equal to r; false when none is.
template <class F, int... Rs>
PVF_HD bool with_fixed_radius(int32_t r, std::integer_sequence<int, Rs...>, F&& f) {
  return ((r == Rs ? (f(std::integral_constant<int, Rs>{}), true) : false) || ...);
}

// Rows of the pixels of tile t that thread `thread` owns lying inside an image of `height` rows,
// whatever their column (0 ... kRowsPerThread: its pixels q < the count).
PVF_HD int32_t rows_inside(const TilePos& t, int thread, int64_t height) {
  const int32_t rows = static_cast<int32_t>(height) - (t.i0 + thread / kWarpSize * kRowsPerThread);
  return rows <= 0 ? 0 : (rows < kRowsPerThread ? rows : kRowsPerThread);
}

// Rows of the thread's pixels in tile t that lie inside the image (its pixels q < inside_rows).
PVF_HD int32_t inside_rows(const TilePos& t, int thread, const TileGrid& g) {
  return t.e0 + thread % kWarpSize >= g.length ? 0 : rows_inside(t, thread, g.shape.height);
}

// Pixels of tile t inside the image that warp w owns (its kRowsPerThread rows, 32 columns).
PVF_HD int32_t warp_pixels(const TilePos& t, int warp, const TileGrid& g) {
  const int32_t columns = g.length - t.e0;
  return rows_inside(t, warp * kWarpSize, g.shape.height) * (columns < kWarpSize ? columns : kWarpSize);
}

// The path of a tile loop's tiles: `loop`, the loop (TileLoop); `fast`, the interior fast path
// (blur_tile_fast) rather than the general one; `full`, every row of the tile inside the image (a
// fast tile's columns are), so that its statistic and stores check no row against the image's
// height. Its counts of a thread's and a warp's pixels inside the image test nothing (full), the
// rows alone (the cut fast tiles, whose columns lie inside the row), or rows and columns.
template <TileLoop kLoop>
struct TilePath {
  static constexpr TileLoop loop = kLoop;
  static constexpr bool fast = kLoop == kInteriorTiles || kLoop == kEdgeTiles || kLoop == kCutTiles;
  static constexpr bool full = kLoop == kInteriorTiles || kLoop == kEdgeTiles;
  // The fixed radii's general path, whose halo moves element by element (load_halo_elements):
  // its tile's values are stored so as well.
  static constexpr bool elements = kLoop == kGeneralTiles || kLoop == kUnalignedTiles;

  static PVF_HD int32_t inside_rows(const TilePos& t, int thread, const TileGrid& g) {
    if constexpr (full) return kRowsPerThread;
    if constexpr (fast) return rows_inside(t, thread, g.shape.height);
    return pvf::inside_rows(t, thread, g);
  }
  static PVF_HD int32_t warp_pixels(const TilePos& t, int warp, const TileGrid& g) {
    if constexpr (full) return kRowsPerThread * kWarpSize;
    if constexpr (fast) return rows_inside(t, warp * kWarpSize, g.shape.height) * kWarpSize;
    return pvf::warp_pixels(t, warp, g);
  }
};

// The tile loops of one blur (taps): loop(path, planner, blur) runs a loop over the tiles that
// path's loop takes (plan.takes(path.loop), the plan from planner(p, t): TilePlanner or
// EveryTilePlanner), computing each one's blur by blur(p, t, plan); path is a TilePath. Each
// radius of FixedRadii has loops of its own (straight-line code inside): for R >= 1 (the planar
// cut) and vector views (`vectors`: the source's and the program's) one over the interior tiles
// of kTileH rows inside the image, one over the edge tiles of kTileH rows inside it (the row's
// ends or the roll's split in their halo: load_halo_edge, in rows of a length that is a multiple
// of kV: EdgeHalo::fits), one over the tiles of either kind that the image's last row cuts (their
// rows checked against its height), and one over the rest (a row's last tile cut by its end, or
// any tile but those of the first loop in rows of other lengths, which only views with padded
// rows have), run again while more() (a program whose next tiles may take any path); for R >= 1
// and other views one over every tile (kUnalignedTiles, the general path: element by element);
// for R = 0 one over every tile. The other radii share the run-time loop. A tile's results do
// not depend on the loop that computes it.
template <class T, class Block, class Loop, class More>
PVF_HD void run_tile_loops(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                           const TileGrid& grid, const TileTaps& taps, bool vectors, Loop&& loop, More&& more) {
  using Rows = PlaneRows<const T>;
  const TilePath<kEveryTile> every;
  // The fixed radii's horizontal pass takes adjacent taps: the planar cut, or no blur. Each
  // radius's loops inlined: an outlined one takes the captures through the stack.
  const auto fixed_loops = [&](auto radius) PVF_INLINE_LAMBDA {
    constexpr int R = decltype(radius)::value;
    const auto blur_fixed = [&](const Rows& p, const TilePos& t, const auto&) { blur_tile_fixed<R>(blk, regs, sh, p, t); };
    if constexpr (R > 0) {
      if (vectors) {
        const TilePlanner<R, T> plans;
        do {
          loop(TilePath<kInteriorTiles>{}, plans, [&](const Rows& p, const TilePos& t, const auto& plan) {
            blur_tile_fast<R>(blk, regs, sh, p, t, plan, true);
          });
          loop(TilePath<kEdgeTiles>{}, plans, [&](const Rows& p, const TilePos& t, const auto& plan) {
            blur_tile_fast<R>(blk, regs, sh, p, t, plan, false);
          });
          loop(TilePath<kCutTiles>{}, plans, [&](const Rows& p, const TilePos& t, const auto& plan) {
            blur_tile_fast<R>(blk, regs, sh, p, t, plan, plan.fits());
          });
          loop(TilePath<kGeneralTiles>{}, plans, blur_fixed);
        } while (more());
      } else {
        loop(TilePath<kUnalignedTiles>{}, EveryTilePlanner{}, blur_fixed);
      }
      return;
    }
    loop(every, EveryTilePlanner{}, blur_fixed);
  };
  if ((grid.step == 1 || taps.radius == 0) && with_fixed_radius(taps.radius, FixedRadii{}, fixed_loops)) return;
  if (taps.radius < kSharedTaps) {
    loop(every, EveryTilePlanner{}, [&](const Rows& p, const TilePos& t, const auto&) {
      blur_tile_runtime(blk, regs, sh, taps.radius, SharedTap{sh.taps}, p, t);
    });
  } else {
    loop(every, EveryTilePlanner{}, [&](const Rows& p, const TilePos& t, const auto&) {
      blur_tile_runtime(blk, regs, sh, taps.radius, ComputedTap{taps.sigma, taps.total}, p, t);
    });
  }
}

// Tile t's plan (StoredPlan) at radius r in plane p, for the loops of that radius; any plan for a
// radius without them (they take every tile, whatever their plans).
template <class T>
PVF_HD StoredPlan stored_plan(const PlaneRows<const T>& p, const TilePos& t, int32_t r) {
  StoredPlan s{kEveryTile, 0, {}};
  with_fixed_radius(r, FixedRadii{}, [&](auto radius) {
    constexpr int R = decltype(radius)::value;
    if constexpr (R > 0) s = StoredPlan::of(TilePlanner<R, T>{}(p, t));
  });
  return s;
}

// The blurred source of a program: its tiles, run image by image in a grid-stride loop over the
// tile indices (the grid size changes only who computes a tile, never a result), each image's
// by the tile loops of its blur (run_tile_loops):
//   image(b, index, taps)  block-uniform, once per image and block, after the image's taps;
//                          returns whether the program's own accesses allow the fast path;
//   tile(index, t, path)   per tile, once the tile's blur is in regs.value; path: the loop's
//                          TilePath.
template <class T>
struct BlurredTiles {
  TileSource<T> src;
  const float* sigma;  // [B] or nullptr (no blur)
  TileGrid grid;

  template <class Block, class Image, class Tile>
  PVF_HD void run(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh, Image&& image,
                  Tile&& tile) const {
    for (int32_t index = blk.index(); index < grid.total;) {
      blk.renew_thread_index();  // per image: the taps' per-thread values
      const int32_t b = grid.by_per_image(index), end = (b + 1) * grid.per_image;
      const TileTaps taps = prepare_taps(blk, regs, sh, sigma, b, grid.shape);
      const bool fast_image = image(b, index, taps) && src.view.vectors;
      const PlaneRows<const T> rolled_image = src.image(b, grid);
      // blur(p, t, plan) and tile(i, t, path) for the block's tiles i of the image that path's loop takes.
      const auto tiles_of_image = [&](auto path, auto planner, auto blur) {
        blk.renew_thread_index();  // what the loop hoists lives in this loop alone
        for (int32_t i = index; i < end; i += blk.count()) {
          const TilePos t = tile_at(grid, b, i);
          const PlaneRows<const T> p = src.plane(rolled_image, t);
          const auto plan = planner(p, t);
          if (!plan.takes(decltype(path)::loop)) continue;
          note_tile_path(decltype(path)::fast);
          blur(p, t, plan);
          tile(i, t, path);
        }
      };
      run_tile_loops<T>(blk, regs, sh, grid, taps, fast_image, tiles_of_image, [] { return false; });
      index += (end - index + blk.count() - 1) / blk.count() * blk.count();  // the first tile past the image
    }
  }
};

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
