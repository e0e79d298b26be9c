// How the CUDA emulation schedules threads and sizes its grids (for tests; see block_emulator.h).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace pvf::emulation {

// order: "natural", "reversed" or "shuffled" (seeded by seed); max_blocks: the grid-size cap.
// trace: record each launch's distinct global bytes read and written (slow; for tests).
// cache_bytes: the L2 size that sets the chunks of the two-launch ops (0: no chunking).
// resident_blocks: the blocks the emulated device holds at once, the one-pass step's grid
// when an image's tiles fit it (0: the step always takes two passes). refuse_cooperative: the
// device refuses that cooperative launch at run time (the step then takes two passes).
void configure(const std::string& order, int64_t max_blocks, uint64_t seed, bool trace, int64_t cache_bytes,
               int64_t resident_blocks, bool refuse_cooperative);

// Kernel launches emulated since the last configure() (the CUDA path launches the same).
int64_t launches();

// Per traced launch since the last configure(): (bytes read, bytes written).
std::vector<std::pair<int64_t, int64_t>> traffic();

// Per traced launch: global bytes moved (read or written, repeats included) by access width.
std::vector<std::map<int64_t, int64_t>> access_widths();

// Per traced launch: (tiles computed by the interior fast path, tiles computed otherwise).
std::vector<std::pair<int64_t, int64_t>> tile_paths();

}  // namespace pvf::emulation
