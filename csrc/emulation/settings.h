// How the CUDA emulation schedules threads and sizes its grids (for tests; see block_emulator.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pvf::emulation {

// order: "natural", "reversed" or "shuffled" (seeded by seed); max_blocks: the grid-size cap.
// trace: record each launch's distinct global bytes read and written (slow; for tests).
void configure(const std::string& order, int64_t max_blocks, uint64_t seed, bool trace);

// Kernel launches emulated since the last configure() (the CUDA path launches the same).
int64_t launches();

// Per traced launch since the last configure(): (bytes read, bytes written).
std::vector<std::pair<int64_t, int64_t>> traffic();

}  // namespace pvf::emulation
