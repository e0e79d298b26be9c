// The CPU emulation of the CUDA kernels: ops emulated_<op> with the schemas of csrc/ops.cpp,
// for CPU tensors. Each runs the CUDA path's frontend and kernel sequence with one change: a
// plain loop over all thread indices replaces each kernel launch, calling the same per-thread
// bodies (csrc/kernels/). Tests compare it with the reference to trust the CUDA code without a GPU.
#include <torch/library.h>

#include "../cuda/op_frontend.h"

namespace pvf {
namespace {

// The executor of sequences.h on the CPU: thread i of a launch of n is body(i), in order.
struct LoopLaunch {
  template <class Body>
  void operator()(int64_t n, const Body& body) {
    for (int64_t i = 0; i < n; ++i) body(i);
  }
};

struct EmulatedDevice {
  template <class Args>
  static void run(const at::Tensor&, const Args& args) {
    LoopLaunch launcher;
    run_sequence(launcher, args);
  }
};

}  // namespace

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
