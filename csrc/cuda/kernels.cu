// The CUDA side of every op: one grid-stride kernel template runs any per-thread body of
// csrc/kernels/ (the same bodies the CPU emulation loops over), launched on the caller's
// stream in the order that csrc/kernels/sequences.h gives. Plain CUDA: no torch headers.
#include <algorithm>

#include "launchers.h"

namespace pvf::cuda {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = 4096;  // the loop covers the rest: no grid-size limits, fewer idle blocks

template <class Body>
__global__ void __launch_bounds__(kThreadsPerBlock) for_each_index(int64_t n, Body body) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) body(i);
}

// The executor of sequences.h on the GPU; stops launching after the first error.
struct CudaLaunch {
  cudaStream_t stream;
  cudaError_t status = cudaSuccess;

  template <class Body>
  void operator()(int64_t n, const Body& body) {
    if (status != cudaSuccess || n == 0) return;
    const int64_t blocks = std::min((n + kThreadsPerBlock - 1) / kThreadsPerBlock, kMaxBlocks);
    for_each_index<<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0, stream>>>(n, body);
    status = cudaGetLastError();
  }
};

}  // namespace

template <class Args>
cudaError_t launch(const Args& args, cudaStream_t stream) {
  CudaLaunch launcher{stream};
  run_sequence(launcher, args);
  return launcher.status;
}

template cudaError_t launch(const JitterArgs&, cudaStream_t);
template cudaError_t launch(const BlurArgs&, cudaStream_t);
template cudaError_t launch(const NormalizeArgs&, cudaStream_t);
template cudaError_t launch(const ClipArgs&, cudaStream_t);
template cudaError_t launch(const AscentStepArgs&, cudaStream_t);

}  // namespace pvf::cuda
