// The CPU emulation of the CUDA kernels: ops emulated_<op> with the schemas of csrc/ops.cpp,
// for CPU tensors. Each runs the CUDA path's frontend and kernel sequence with one change: the
// block emulator (block_emulator.h) replaces each kernel launch, running the same block
// programs (csrc/kernels/; each storage type's sequences compiled in sequences_*.cpp). Tests
// compare it with the reference to trust the CUDA code without a GPU.
#include <torch/library.h>

#include "../checks.h"
#include "../cuda/op_frontend.h"
#include "block_emulator.h"
#include "sequences.h"
#include "settings.h"

namespace pvf {
namespace {

struct EmulatedDevice {
  template <class Args>
  static void run(const at::Tensor&, const Args& args) {
    emulation::run(args);
  }

  // CPU tensors: a non-finite sigma is a ValueError, as on the other CPU backends.
  static void check_sigma_values(const at::Tensor& sigma) {
    const float* s = sigma.const_data_ptr<float>();
    for (int64_t b = 0; b < sigma.numel(); ++b) check_sigma_value(s[b], b);
  }

  // The emulated L2 size (configure_emulation; 0 by default: no chunking).
  static int64_t cache_bytes(const at::Tensor&) { return emulation::config().cache_bytes; }

  // The emulated device's resident blocks (configure_emulation; 0 by default: two passes).
  static int64_t resident_capacity(const at::Tensor&, Storage, NormMode) { return emulation::config().resident_blocks; }
};

}  // namespace

void emulation::configure(const std::string& order, int64_t max_blocks, uint64_t seed, bool trace,
                          int64_t cache_bytes, int64_t resident_blocks, bool refuse_cooperative) {
  Config c;
  if (order == "natural") {
    c.order = ThreadOrder::kNatural;
  } else if (order == "reversed") {
    c.order = ThreadOrder::kReversed;
  } else if (order == "shuffled") {
    c.order = ThreadOrder::kShuffled;
  } else {
    TORCH_CHECK_VALUE(false, "thread order must be one of natural, reversed, shuffled; got '", order, "'");
  }
  TORCH_CHECK_VALUE(max_blocks >= 1, "max_blocks must be >= 1, got ", max_blocks);
  c.max_blocks = max_blocks;
  c.seed = seed;
  TORCH_CHECK_VALUE(cache_bytes >= 0, "cache_bytes must be >= 0 (0: no chunking), got ", cache_bytes);
  TORCH_CHECK_VALUE(resident_blocks >= 0, "resident_blocks must be >= 0 (0: no one-launch step), got ",
                    resident_blocks);
  c.trace = trace;
  c.cache_bytes = cache_bytes;
  c.resident_blocks = resident_blocks;
  c.refuse_cooperative = refuse_cooperative;
  config() = c;
}

int64_t emulation::launches() { return config().launches; }

std::vector<std::pair<int64_t, int64_t>> emulation::traffic() { return config().traffic; }

std::vector<std::map<int64_t, int64_t>> emulation::access_widths() { return config().widths; }

std::vector<std::pair<int64_t, int64_t>> emulation::tile_paths() { return config().tile_paths; }

TORCH_LIBRARY_FRAGMENT(pyviz_fast, m) {
  m.def("emulated_jitter(Tensor x, Tensor shifts) -> Tensor");
  m.def("emulated_gaussian_blur(Tensor x, Tensor sigma) -> Tensor");
  m.def("emulated_normalize_grad(Tensor g, str mode, float eps) -> Tensor");
  m.def("emulated_clip_grad(Tensor g, float clip) -> Tensor");
  m.def(
      "emulated_fused_ascent_step(Tensor x, Tensor grad, Tensor shifts, Tensor next_shifts, Tensor sigma, "
      "str norm, float eps, float clip, float lr, float decay, float center, float lo, float hi) "
      "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(pyviz_fast, CPU, m) { frontend::register_ops<EmulatedDevice>(m, "emulated_"); }

}  // namespace pvf
