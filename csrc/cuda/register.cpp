// The CUDA kernels of every op, registered for CUDA tensors: csrc/cuda/op_frontend.h checks
// and allocates, then the launcher enqueues the kernels on the current stream of x's device.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <atomic>

#include "launchers.h"
#include "op_frontend.h"

namespace pvf {
namespace {

struct CudaDevice {
  template <class Args>
  static void run(const at::Tensor& x, const Args& args) {
    const c10::cuda::CUDAGuard guard(x.device());
    C10_CUDA_CHECK(cuda::launch(args, c10::cuda::getCurrentCUDAStream(x.get_device()).stream()));
  }

  // Checking a device tensor's values would need a host sync: the kernels flag the image
  // instead (a non-finite sigma leaves it unchanged and sets its non-finite flag).
  static void check_sigma_values(const at::Tensor&) {}

  // The blocks of the one-launch step that x's device holds at once (cached by the launcher).
  static int64_t resident_capacity(const at::Tensor& x, Storage storage, NormMode mode) {
    const c10::cuda::CUDAGuard guard(x.device());
    int64_t blocks = 0;
    dispatch_storage(storage, [&](auto tag) {
      C10_CUDA_CHECK(cuda::resident_step_capacity<decltype(tag)::storage>(mode, blocks));
    });
    return blocks;
  }

  // The L2 cache of x's device (an attribute query, no sync: allowed while a graph is captured),
  // cached per device.
  static int64_t cache_bytes(const at::Tensor& x) {
    constexpr int kMaxDevices = 64;
    static std::atomic<int> cached[kMaxDevices] = {};
    const int device = x.get_device();
    if (device < kMaxDevices && cached[device].load() > 0) return cached[device].load();
    int bytes = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrL2CacheSize, device));
    if (device < kMaxDevices) cached[device].store(bytes);
    return bytes;
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(pyviz_fast, CUDA, m) { frontend::register_ops<CudaDevice>(m, ""); }

}  // namespace pvf
