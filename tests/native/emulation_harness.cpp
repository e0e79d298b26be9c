// Runs every op's CUDA block programs through the CPU block emulator, for a test suite build
// under AddressSanitizer and UndefinedBehaviorSanitizer (tests/test_emulation.py compiles it).
// Cases: odd, tiny and wide shapes; contiguous and channels_last strides; blur radii 0 to
// beyond the shared halo; huge sigmas; NaN items; every storage type and norm mode. Each case
// runs in natural thread order on 7 blocks, reversed on 1 and shuffled on 7, and the step also
// in its one launch (blocks as threads); the program prints one line per case and exits 1 when
// any schedule changed a result bit or the two step designs differ. `emulation_harness K N` runs
// the cases whose index is K modulo N (each with the seed it has in the whole run), so that N
// processes share the cases between a machine's cores.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "emulation/launch.h"

namespace {

using pvf::ImageShape;
using pvf::Strides;

struct Layout {
  const char* name;
  Strides (*strides)(const ImageShape&);
};

Strides contiguous(const ImageShape& s) { return {s.channels * s.height * s.width, s.height * s.width, s.width, 1}; }
Strides channels_last(const ImageShape& s) { return {s.channels * s.height * s.width, 1, s.width * s.channels, s.channels}; }

int design_differences = 0;  // cases whose one-launch step differs from the two-launch one

template <class T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// All outputs of every op on one case, as bytes.
template <class T>
std::vector<uint8_t> run_ops(const ImageShape& shape, Strides strides, pvf::Storage storage, float sigma_value,
                             pvf::NormMode mode, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  const int64_t n = shape.numel();
  std::vector<T> x(n), g(n), out(n), new_x(n), next(n);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = T(normal(rng));
    g[i] = T(normal(rng));
  }
  if (shape.batch > 1) g[shape.channels * shape.height * shape.width + n / (2 * shape.batch)] = T(NAN);  // image 1
  std::vector<int64_t> shifts(2 * shape.batch), next_shifts(2 * shape.batch);
  for (auto& s : shifts) s = static_cast<int64_t>(rng() % 1001) - 500;
  for (auto& s : next_shifts) s = static_cast<int64_t>(rng() % 1001) - 500;
  std::vector<float> sigma(shape.batch, sigma_value);
  std::vector<pvf::StatsPartial> partials(pvf::partials_needed(shape));
  std::vector<uint8_t> flags(shape.batch);
  auto* flag_ptr = reinterpret_cast<bool*>(flags.data());
  const pvf::ImageIn xin{x.data(), strides}, gin{g.data(), strides};
  const pvf::ImageOut o{out.data(), strides};
  pvf::emulation::Launch launch;
  std::vector<uint8_t> result;
  auto keep = [&](const std::vector<uint8_t>& b) { result.insert(result.end(), b.begin(), b.end()); };

  pvf::run_sequence(launch, pvf::JitterArgs{storage, shape, xin, shifts.data(), o});
  keep(bytes_of(out));
  pvf::run_sequence(launch, pvf::BlurArgs{storage, shape, gin, sigma.data(), o});
  keep(bytes_of(out));
  pvf::run_sequence(launch, pvf::ClipArgs{storage, shape, gin, 0.7f, o});
  keep(bytes_of(out));
  pvf::run_sequence(launch, pvf::NormalizeArgs{storage, shape, gin, mode, 1e-6f, o, partials.data()});
  keep(bytes_of(out));
  const pvf::AscentParams params{mode, 2.0f, 0.1f, 0.01f, 0.5f, -3.0f, 3.0f};
  pvf::run_sequence(launch, pvf::AscentStepArgs{storage, shape, xin, gin, shifts.data(), next_shifts.data(),
                                                sigma.data(), 1e-6f, params, pvf::ImageOut{new_x.data(), strides},
                                                pvf::ImageOut{next.data(), strides}, flag_ptr, partials.data()});
  keep(bytes_of(new_x));
  keep(bytes_of(next));
  keep(flags);
  // The one-pass step (blocks as threads waiting on each other) on a device holding one more
  // block than an image has tiles: the same bits.
  pvf::AscentStepArgs one{storage, shape, xin, gin, shifts.data(), next_shifts.data(), sigma.data(), 1e-6f, params,
                          pvf::ImageOut{new_x.data(), strides}, pvf::ImageOut{next.data(), strides}, flag_ptr,
                          partials.data()};
  const pvf::TileGrid grid(shape, pvf::step_interleaved(one));
  // the tickets, then the tile places (pvf::ticket_bytes)
  const auto ticket_size = static_cast<int64_t>(sizeof(pvf::ImageTicket));
  std::vector<pvf::ImageTicket> tickets((pvf::ticket_bytes(grid) + ticket_size - 1) / ticket_size);
  one.resident_blocks = pvf::resident_step_blocks(grid, grid.per_image + 1);
  one.tickets = tickets.data();
  std::fill(new_x.begin(), new_x.end(), T(0.0f));
  std::fill(next.begin(), next.end(), T(0.0f));
  pvf::run_sequence(launch, one);
  std::vector<uint8_t> resident = bytes_of(new_x), part = bytes_of(next);
  resident.insert(resident.end(), part.begin(), part.end());
  resident.insert(resident.end(), flags.begin(), flags.end());
  if (!std::equal(resident.begin(), resident.end(), result.end() - resident.size())) ++design_differences;
  return result;
}

std::vector<uint8_t> run_case(const ImageShape& shape, Strides strides, pvf::Storage storage, float sigma,
                              pvf::NormMode mode, uint64_t seed) {
  std::vector<uint8_t> r;
  pvf::dispatch_storage(storage, [&](auto tag) {
    using T = typename decltype(tag)::type;
    r = run_ops<T>(shape, strides, storage, sigma, mode, seed);
  });
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const int shard = argc > 2 ? std::atoi(argv[1]) : 0, shards = argc > 2 ? std::atoi(argv[2]) : 1;
  // {2, 2, 70, 104}: 16-byte aligned rows with interior tiles (the fast path at radii 2 and 6).
  const ImageShape shapes[] = {{2, 3, 17, 23}, {1, 1, 1, 1}, {3, 2, 3, 2}, {2, 3, 4, 40}, {2, 2, 70, 45}, {2, 1, 40, 70},
                               {2, 2, 70, 104}};
  const Layout layouts[] = {{"contiguous", contiguous}, {"channels_last", channels_last}};
  const pvf::Storage storages[] = {pvf::Storage::kFloat32, pvf::Storage::kFloat16, pvf::Storage::kBFloat16};
  const float sigmas[] = {0.0f, 0.4f, 2.0f, 7.0f, 1e30f};  // radius 0, 2, 6, 21 (past the shared halo), capped
  // Each order once, on one block (all tiles in turn) and on several; the shipped build's tests run
  // every op in all of them (tests/conftest.py), this build looks for what the sanitizers see.
  const std::pair<pvf::emulation::ThreadOrder, int64_t> schedules[] = {{pvf::emulation::ThreadOrder::kReversed, 1},
                                                                      {pvf::emulation::ThreadOrder::kShuffled, 7}};
  int failures = 0, cases = 0, all_cases = 0;
  uint64_t seed = 0;
  for (const auto& shape : shapes) {
    for (const auto& layout : layouts) {
      for (const auto storage : storages) {
        for (const float sigma : sigmas) {
          const auto mode = static_cast<pvf::NormMode>(seed % 5);
          ++seed;
          if (all_cases++ % shards != shard) continue;
          pvf::emulation::config() = {pvf::emulation::ThreadOrder::kNatural, 7, seed};
          const auto want = run_case(shape, layout.strides(shape), storage, sigma, mode, seed);
          bool same = true;
          for (const auto& [order, blocks] : schedules) {
            pvf::emulation::config() = {order, blocks, seed};
            same = same && run_case(shape, layout.strides(shape), storage, sigma, mode, seed) == want;
          }
          ++cases;
          failures += !same;
          std::printf("%s [%lld, %lld, %lld, %lld] %s storage %d sigma %g mode %d\n", same ? "ok  " : "DIFF",
                      (long long)shape.batch, (long long)shape.channels, (long long)shape.height,
                      (long long)shape.width, layout.name, static_cast<int>(storage), sigma, static_cast<int>(mode));
        }
      }
    }
  }
  std::printf("%d of %d cases, %d one-launch steps differed from the two-launch ones\n", cases, all_cases,
              design_differences);
  std::printf("%d of %d cases, %d changed with the schedule\n", cases, all_cases, failures);
  return failures == 0 && design_differences == 0 ? 0 : 1;
}
