// The fused step in one pass over g, one kernel (ResidentStepProgram, after ImageTicketsProgram
// writes its tickets), for a batch whose images each have at most as many tiles as the GPU holds
// blocks at once: g is read and blurred once, where the two-pass step (tile_programs.h:
// StatsProgram, then ApplyProgram) does it twice.
//
// The grid is G blocks, all resident at once (a cooperative launch), G >= tiles per image.
// Block j takes tiles j, j + G, j + 2G, ... in order, so it holds at most one tile of an image.
// Per tile it blurs the un-jittered gradient into registers, stores the tile's partials and
// arrives at its image's ticket; the block of the image's last tile to arrive folds the image's
// partials (fold_image, in the two-pass step's order) and publishes the image's scale on the
// ticket; the others wait for it; then each updates its tile from its registers. Results are
// those of the two-pass step bit for bit, whatever G.
//
// No block waits forever: take the first image not yet published. Its tiles are less than G
// apart, so no block holds two of them, and a block's earlier tiles lie in published images;
// every block holding one of its tiles therefore reaches it and arrives, and the last arrival
// publishes it.
#pragma once

#include <cstddef>

#include "tile_programs.h"

namespace pvf {

// An image's un-jitter roll reduced (what TileSource::image reduces once per image in the
// two-pass loops) and the bits of its sigma (two sigmas give the same taps when their bits are
// equal, NaN included), written by the launch before the step's (ImageTicketsProgram): the step
// takes them per tile in one 16-byte load.
struct alignas(16) ImageSource {
  int32_t dy, dx;
  uint32_t sigma_bits;
  int32_t unused;
};

// An image's first element in each image of the step (image_base, StepEpilogue::bases), written
// with its source: a tile takes them in two 16-byte loads, not four 64-bit products. Untyped:
// the tickets' layout is that of every storage.
struct alignas(16) ImageBases {
  const void* source;
  const void* x;
  void* new_x;
  void* next_input;
};

// Per image: its source and bases, then what the block of its last tile publishes for its other
// tiles.
struct alignas(16) ImageTicket {
  ImageSource source;
  int32_t arrived;  // tiles whose partials are stored
  int32_t ready;  // 1 once the rest is written
  int32_t unused[2];
  StepImage image;  // the step's scale of the image (StepEpilogue::image)
  ImageBases bases;
};
static_assert(sizeof(StepImage) == 20 && offsetof(ImageTicket, bases) == 64 && sizeof(ImageTicket) == 96,
              "the ticket's image moves as 16-byte words");

// Each tile's place (tile_at without its in_image) and plan at its image's radius (StoredPlan:
// its loop and halo), written with the tickets, after them: a tile of the step takes them in
// three 16-byte loads, not three divisions by the grid's counts and the plan's tests and sums.
struct alignas(16) TilePlace {
  int32_t b, plane, i0, e0;
  StoredPlan plan;
};

// Bytes of a one-pass step's tickets and tile places (ImageTicketsProgram) for `grid`.
inline int64_t ticket_bytes(const TileGrid& grid) {
  return grid.shape.batch * int64_t(sizeof(ImageTicket)) + int64_t(grid.total) * int64_t(sizeof(TilePlace));
}

// The tile places that follow the tickets of a batch of `batch` images.
PVF_HD TilePlace* tile_places(ImageTicket* tickets, int64_t batch) {
  return reinterpret_cast<TilePlace*>(tickets + batch);
}

// The last tile of image b to arrive: fold the image's partials (fold_image, as the two-pass
// step does), then write its StepImage on the ticket and its flag, and publish the ticket. Out
// of line: one block per image runs it, so the tile loop holds one call instead of its code.
// Scalars and pointers only, so that no argument goes through local memory.
template <class Block>
PVF_HD_NOINLINE void publish_image(Block blk, TileShared* sh, const StatsPartial* partials, NormMode mode, float eps,
                                   int32_t per_image, int32_t per_plane, int32_t last_row, int32_t overlap_warps,
                                   int32_t b, const int64_t* next_shifts, int64_t height, int64_t width,
                                   ImageTicket* ticket, bool* flags) {
  typename Block::template PerThread<TileRegs> regs;
  fold_image(blk, regs, *sh, ImageScale{partials, mode, eps}, ImagePartials(per_image, per_plane, last_row, overlap_warps),
             b);
  blk.each(regs, [&](int thread, TileRegs&) {
    if (thread != 0) return;
    ticket->image = step_image(mode, *sh, next_shifts, b, height, width);
    flags[b] = sh->flag != 0;
  });
  blk.publish(&ticket->ready);
}

// The bits of v (ImageSource::sigma_bits).
PVF_HD uint32_t float_bits(float v) {
  uint32_t bits;
  memcpy(&bits, &v, sizeof bits);
  return bits;
}

// The tickets of a one-pass step, before it: each image's source and bases, the rest zero, one
// thread per image; then each tile's place and plan, one thread per tile.
template <class T>
struct ImageTicketsProgram {
  struct Shared {};
  TileSource<T> src;  // the step's gradient and un-jitter
  const float* sigma;  // [B]
  StepEpilogue<T> epilogue;
  TileGrid grid;
  ImageTicket* tickets;  // [B], then the tile places (tile_places) [grid.total]

  // Its work: the threads that it needs, one per image or tile.
  PVF_HD int64_t work() const { return grid.total > grid.shape.batch ? grid.total : grid.shape.batch; }

  template <class Block>
  PVF_HD void operator()(Block& blk, Shared&) const {
    typename Block::template PerThread<int32_t> regs;
    blk.each(regs, [&](int thread, int32_t&) {
      const int64_t step = int64_t(blk.count()) * kBlockThreads;
      const ImageShape& shape = grid.shape;
      for (int64_t b = int64_t(blk.index()) * kBlockThreads + thread; b < shape.batch; b += step) {
        ImageTicket ticket{};
        ticket.source = {reduced_shift(src.shifts, 2 * b, shape.height, src.inverse),
                         reduced_shift(src.shifts, 2 * b + 1, shape.width, src.inverse), float_bits(sigma[b]), 0};
        const auto at = epilogue.bases(static_cast<int32_t>(b));
        ticket.bases = {image_base(src.data, src.view, static_cast<int32_t>(b)), at.x, at.new_x, at.next_input};
        tickets[b] = ticket;
      }
      TilePlace* const places = tile_places(tickets, shape.batch);
      for (int64_t i = int64_t(blk.index()) * kBlockThreads + thread; i < grid.total; i += step) {
        const int32_t index = static_cast<int32_t>(i);
        const TilePos t = tile_at(grid, grid.by_per_image(index), index);
        // the plan of the planar cut's loops, the only ones that read it (a pixel is an element)
        const auto radius = static_cast<int32_t>(blur_radius(sigma[t.b], shape.height, shape.width));
        places[i] = {t.b, t.plane, t.i0, t.e0, stored_plan(src.image(t.b, grid), t, radius)};
      }
    });
    blk.sync();
  }
};

template <class T, NormMode Mode>
struct ResidentStepProgram {
  using Shared = TileShared;
  static constexpr bool kResident = true;
  BlurredTiles<T> tiles;  // the source and sigma (its run() is not used: the loop below is this program's)
  StatsPartial* partials;  // [grid.total * kPartialsPerTile], written per tile
  ImageScale scale;  // the same partials, read by the fold; mode, eps
  bool* flags;  // [B]
  StepEpilogue<T> epilogue;
  ImageTicket* tickets;  // [B], from ImageTicketsProgram
  const TilePlace* places;  // [grid.total], from ImageTicketsProgram (tile_places)

  // A tile the loop may take next: past the batch, or of an image of another sigma, it stops
  // the tile loops (the taps change).
  struct Next {
    int32_t b;
    ImageTicket* ticket;  // tickets + b, made once (opaque: else re-derived at each of its uses)
    bool same_blur;
    TilePos t;
    PlaneRows<const T> p;
    StoredPlan plan;
  };

  // kPlanar: a loop of the planar cut (the fast paths: one element per pixel), whose roll moves
  // by elements without the grid's step.
  template <bool kPlanar>
  PVF_HD Next next(int32_t index, float sigma) const {
    const TileGrid& grid = tiles.grid;
    // Past the batch: the last tile, not taken (no branch around the rest, no zeroed fields).
    const bool inside = index < grid.total;
    const int32_t i = inside ? index : grid.total - 1;
    const TilePlace place = global_memory(places)[uint32_t(i)];
    Next n;
    n.b = place.b;
    n.ticket = global_memory(opaque(tickets + uint32_t(n.b)));
    const ImageSource source = n.ticket->source;
    n.same_blur = inside && source.sigma_bits == float_bits(sigma);
    n.t = {place.b, place.plane, place.i0, place.e0, i - place.b * grid.per_image};
    n.plan = place.plan;
    const T* image = static_cast<const T*>(n.ticket->bases.source);
    PlaneRows<const T> rows = rows_at(image, tiles.src.view, grid, source.dy, source.dx);
    if constexpr (kPlanar) {
      rows.shift = source.dx;
      rows.step = 1;
    }
    n.p = tiles.src.plane(rows, n.t);
    return n;
  }

  // One tile: blur(p, t) into regs.value, the partials, the image's scale, the update.
  template <class Path, class Block, class Blur>
  PVF_HD void step_tile(Block& blk, typename Block::template PerThread<TileRegs>& regs, TileShared& sh,
                        int32_t index, const Next& n, const TileTaps& taps, Blur&& blur) const {
    const TileGrid& grid = tiles.grid;
    note_tile_path(Path::fast);
    blur(n.p, n.t);
    store_tile_partials<Mode, Path>(blk, regs, n.t, grid, is_finite(taps.sigma) ? 0 : 1,
                                          partials + int64_t(index) * kPartialsPerTile);
    ImageTicket* const ticket = n.ticket;
    if (blk.arrive(&ticket->arrived) == grid.per_image - 1) {
      const ImagePartials of(grid);
      publish_image(blk, &sh, scale.partials, scale.mode, scale.eps, of.per_image, of.per_plane, of.last_row,
                    of.overlap_warps, n.b, epilogue.next_shifts, grid.shape.height, grid.shape.width, ticket, flags);
    } else {
      blk.await(&ticket->ready);
    }
    // Every block reads the ticket, the publishing one too: its thread 0 wrote it before the
    // barrier that begins publish, after which the block's threads see the block's writes.
    const StepImage image = read_image(ticket);
    const ApplyProgram<T, StepEpilogue<T>> apply{tiles, scale, flags, epilogue};
    const ImageBases bases = n.ticket->bases;
    const typename StepEpilogue<T>::Bases at{static_cast<const T*>(bases.x), static_cast<T*>(bases.new_x),
                                             static_cast<T*>(bases.next_input)};
    const PlaneRows<const T> in = epilogue.input(image, at, n.t, grid);
    PlaneRows<T> out[2] = {epilogue.output(0, image, at, n.t, grid), epilogue.output(1, image, at, n.t, grid)};
    if constexpr (Path::fast) out[1].shift = image.next_dx;  // the planar cut: the roll in elements, without the grid's step
    apply.apply(Path{}, blk, regs, sh, image, in, out, n.t);
  }

  static PVF_HD StepImage read_image(const ImageTicket* ticket) {
    struct alignas(16) Words {
      uint32_t w[4];
    };
    const Words* words = reinterpret_cast<const Words*>(&ticket->image);
    const Words first = load_coherent(words), second = load_coherent(words + 1);
    uint32_t all[8];
    memcpy(all, first.w, 16);
    memcpy(all + 4, second.w, 16);
    StepImage image;
    memcpy(&image, all, sizeof image);
    return image;
  }

  template <class Block>
  PVF_HD void operator()(Block& blk, TileShared& sh) const {
    typename Block::template PerThread<TileRegs> regs;
    const TileGrid& grid = tiles.grid;
    int32_t index = blk.index();
    while (index < grid.total) {
      blk.renew_thread_index();  // per run of one sigma: the taps' per-thread values
      const TileTaps taps = prepare_taps(blk, regs, sh, tiles.sigma, grid.by_per_image(index), grid.shape);
      // Tiles of this sigma in turn, each loop while its tiles take its path; more: whether the
      // tile that ended the last loop is of this sigma.
      bool more = false;
      const auto tile_loop = [&](auto path, auto planner, auto blur) {
        blk.renew_thread_index();  // what the loop hoists lives in this loop alone
        for (;; index += blk.count()) {
          const Next n = next<decltype(path)::fast>(index, taps.sigma);
          more = n.same_blur;
          const auto plan = planner(n.p, n.plan);
          if (!n.same_blur || !plan.takes(decltype(path)::loop)) return;
          step_tile<decltype(path)>(blk, regs, sh, index, n, taps,
                                    [&](const PlaneRows<const T>& p, const TilePos& t) { blur(p, t, plan); });
        }
      };
      run_tile_loops<T>(blk, regs, sh, grid, taps, epilogue.vectors() && tiles.src.view.vectors, tile_loop,
                        [&] { return more; });
    }
  }
};

}  // namespace pvf
