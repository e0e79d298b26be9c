// The CPU executor of the portable block layer (csrc/kernels/block.h): a grid of `blocks`
// thread blocks run one after another; inside a block, each phase runs for all kBlockThreads
// threads before the next phase starts, in the configured thread order; warp folds are
// computed lane by lane exactly as the GPU's butterfly does. Shared memory starts every block
// filled with 0xFF bytes (NaN floats), so a read before a write shows in the results.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../kernels/block.h"
#include "../kernels/storage.h"
#include "../kernels/tile.h"

namespace pvf::emulation {

enum class ThreadOrder : int { kNatural = 0, kReversed = 1, kShuffled = 2 };

// How the emulation schedules threads and sizes grids; tests change it (emulation_config()).
struct Config {
  ThreadOrder order = ThreadOrder::kNatural;
  int64_t max_blocks = 5;  // grid = min(work items, max_blocks): results must not depend on it
  uint64_t seed = 1;  // of the shuffled orders
  int64_t launches = 0;  // kernel launches emulated since the last configure()
  bool trace = false;  // measure each launch's distinct global bytes read and written
  int64_t cache_bytes = 0;  // emulated L2 size: sets the two-launch ops' chunks (0: no chunking)
  int64_t resident_blocks = 0;  // blocks the emulated device holds at once (0: no one-pass step)
  bool refuse_cooperative = false;  // refuse the one-pass step's launch (it falls back to two passes)
  std::vector<std::pair<int64_t, int64_t>> traffic;  // per traced launch: (bytes read, bytes written)
  std::vector<std::map<int64_t, int64_t>> widths;  // per traced launch: bytes moved per access width
  std::vector<std::pair<int64_t, int64_t>> tile_paths;  // per traced launch: (fast path tiles, other tiles)
};

inline Config& config() {
  static Config c;
  return c;
}

class EmulatedBlock {
 public:
  template <class Regs>
  struct PerThread {
    std::array<Regs, kBlockThreads> self;
  };

  EmulatedBlock(int index, int count, std::mt19937_64& rng) : index_(index), count_(count), rng_(rng) {}

  int index() const { return index_; }
  int count() const { return count_; }

  template <class Regs, class F>
  void each(PerThread<Regs>& regs, F&& f) {
    if (open_phase_) throw std::logic_error("emulation: two phases without a barrier between them");
    open_phase_ = true;
    for (int t : order()) f(t, regs.self[t]);
  }

  void sync() { open_phase_ = false; }

  // The image tickets of resident programs: the blocks run as threads (run_grid), so these are
  // real atomics; a block waiting on one that failed gives up (aborted()).
  int arrive(int* counter) {
    open_phase_ = false;
    return std::atomic_ref<int>(*counter).fetch_add(1, std::memory_order_acq_rel);
  }

  void publish(int* flag) {
    open_phase_ = false;
    std::atomic_ref<int>(*flag).store(1, std::memory_order_release);
  }

  void await(const int* flag) {
    open_phase_ = false;
    while (std::atomic_ref<int>(*const_cast<int*>(flag)).load(std::memory_order_acquire) == 0) {
      if (aborted().load()) throw std::runtime_error("emulation: another block of the grid failed");
      std::this_thread::yield();
    }
  }

  static std::atomic<bool>& aborted() {
    static std::atomic<bool> flag{false};
    return flag;
  }

  void renew_thread_index() {}  // nothing is hoisted here (see block.h)

  template <class Regs, class V, class Fold>
  void warp_fold(PerThread<Regs>& regs, V Regs::*member, Fold fold) {
    open_phase_ = false;
    for (int warp = 0; warp < kBlockWarps; ++warp) {
      std::array<V, kWarpSize> v, next;
      for (int lane = 0; lane < kWarpSize; ++lane) v[lane] = regs.self[warp * kWarpSize + lane].*member;
      for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        for (int lane = 0; lane < kWarpSize; ++lane) next[lane] = fold(v[lane], v[lane ^ offset]);
        v = next;
      }
      for (int lane = 0; lane < kWarpSize; ++lane) regs.self[warp * kWarpSize + lane].*member = v[lane];
    }
  }

 private:
  const std::array<int, kBlockThreads>& order() {
    std::iota(order_.begin(), order_.end(), 0);
    if (config().order == ThreadOrder::kReversed) std::reverse(order_.begin(), order_.end());
    if (config().order == ThreadOrder::kShuffled) std::shuffle(order_.begin(), order_.end(), rng_);
    return order_;
  }

  int index_, count_;
  std::mt19937_64& rng_;
  bool open_phase_ = false;
  std::array<int, kBlockThreads> order_;
};

// The image elements (storage.h load / store, one element or a 16-byte vector) that one launch
// touches, each counted once: the global traffic of a launch whose every element is fetched
// from DRAM once (halos re-read by neighbouring tiles are L2 hits on the GPU). Also the bytes
// moved by each access width (2, 4 or 16), repeats included, and the tiles of each path.
class TrafficTrace {
 public:
  TrafficTrace() {
    current() = this;
    global_access_hook = &note;
    tile_path_hook = &note_tile;
  }
  ~TrafficTrace() {
    global_access_hook = nullptr;
    tile_path_hook = nullptr;
    current() = nullptr;
    config().traffic.emplace_back(read_, written_);
    config().widths.push_back(widths_);
    config().tile_paths.emplace_back(fast_tiles_, other_tiles_);
  }

 private:
  static TrafficTrace*& current() {
    static TrafficTrace* t = nullptr;
    return t;
  }
  static void note(const void* address, int element_bytes, int count, bool write) {
    TrafficTrace& t = *current();
    const std::lock_guard<std::mutex> lock(t.mutex_);  // a resident program's blocks are threads
    t.widths_[int64_t(element_bytes) * count] += int64_t(element_bytes) * count;
    for (int k = 0; k < count; ++k) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(address) + uintptr_t(k) * element_bytes;
      if ((write ? t.writes_ : t.reads_).insert(a).second) (write ? t.written_ : t.read_) += element_bytes;
    }
  }
  static void note_tile(bool fast) {
    const std::lock_guard<std::mutex> lock(current()->mutex_);
    ++(fast ? current()->fast_tiles_ : current()->other_tiles_);
  }
  std::mutex mutex_;
  std::unordered_set<uintptr_t> reads_, writes_;
  int64_t read_ = 0, written_ = 0, fast_tiles_ = 0, other_tiles_ = 0;
  std::map<int64_t, int64_t> widths_;
};

// Whether blocks of Program wait on each other (Program::kResident; block.h).
template <class Program, class = void>
struct Resident : std::false_type {};
template <class Program>
struct Resident<Program, std::void_t<decltype(Program::kResident)>> : std::bool_constant<Program::kResident> {};

// Runs `program` over a grid of min(work, max_blocks) blocks (work >= 1: the program's items),
// one after another; a resident program's grid is `work` blocks exactly (its launch sized it to
// what the device holds at once), run as concurrent threads since they wait on each other.
template <class Program>
void run_grid(const Program& program, int64_t work) {
  using Shared = typename Program::Shared;
  ++config().launches;
  std::unique_ptr<TrafficTrace> trace;
  if (config().trace) trace = std::make_unique<TrafficTrace>();
  if constexpr (Resident<Program>::value) {
    const int blocks = static_cast<int>(std::max<int64_t>(1, work));
    std::exception_ptr first_error;  // the cause: blocks that then give up waiting fail after it
    std::mutex error_mutex;
    std::vector<std::thread> threads;
    EmulatedBlock::aborted() = false;
    for (int b = 0; b < blocks; ++b) {
      threads.emplace_back([&, b] {
        try {
          auto shared = std::make_unique<Shared>();
          std::memset(static_cast<void*>(shared.get()), 0xFF, sizeof(Shared));
          std::mt19937_64 rng(config().seed + uint64_t(b));
          EmulatedBlock blk(b, blocks, rng);
          program(blk, *shared);
        } catch (...) {
          const std::lock_guard<std::mutex> lock(error_mutex);
          if (!first_error) first_error = std::current_exception();
          EmulatedBlock::aborted() = true;
        }
      });
    }
    for (std::thread& t : threads) t.join();
    if (first_error) std::rethrow_exception(first_error);
  } else {
    const int blocks = static_cast<int>(std::max<int64_t>(1, std::min(work, config().max_blocks)));
    std::mt19937_64 rng(config().seed);
    auto shared = std::make_unique<Shared>();
    for (int b = 0; b < blocks; ++b) {
      std::memset(static_cast<void*>(shared.get()), 0xFF, sizeof(Shared));
      EmulatedBlock blk(b, blocks, rng);
      program(blk, *shared);
    }
  }
}

}  // namespace pvf::emulation
