// The CUDA side of every op: one kernel template runs any block program of csrc/kernels/ (the
// same programs the CPU emulation runs block by block), launched on the caller's stream in the
// order that csrc/kernels/sequences.h gives. The grid is what fits on the device at once
// (occupancy x SMs, capped by the work): the programs' tile loops cover the rest, and their
// results do not depend on the grid size; the one-pass step's grid is what the device holds
// at once, launched cooperatively. No host synchronization and no allocation here.
// Plain CUDA: no torch headers.
// Each storage type's kernels are compiled in a file of their own (kernels_fp32.cu,
// kernels_fp16.cu, kernels_bf16.cu): nvcc's front end, most of the build, runs on one core per
// file, so the build compiles the three side by side.
#pragma once

#include <algorithm>

#include "launchers.h"

namespace pvf::cuda {
namespace {

// At least 4 resident blocks (512 threads) per SM: at most 128 registers per thread. The
// compile-time-radius tile loops keep a tile's loads, taps and window sums in registers (about
// 105-128 of them): at 6 blocks (80 registers) ptxas would spill; each thread instead keeps
// 10-30 global loads in flight per tile.
constexpr int kMinBlocksPerSM = 4;

template <class Program>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocksPerSM) run_blocks(Program program) {
  __shared__ typename Program::Shared shared;
  GpuBlock blk;
  program(blk, shared);
}

// Blocks of run_blocks<Program> resident on the current device at once (cached per device).
template <class Program>
cudaError_t resident_blocks(int64_t& blocks) {
  constexpr int kMaxDevices = 64;
  static int cached[kMaxDevices] = {};
  int device = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status != cudaSuccess) return status;
  if (device < kMaxDevices && cached[device] > 0) {
    blocks = cached[device];
    return cudaSuccess;
  }
  int per_sm = 0, sms = 0;
  status = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, run_blocks<Program>, kBlockThreads, 0);
  if (status == cudaSuccess) status = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (status != cudaSuccess) return status;
  blocks = std::max(1, per_sm) * int64_t(std::max(1, sms));
  if (device < kMaxDevices) cached[device] = static_cast<int>(blocks);
  return cudaSuccess;
}

// The executor of sequences.h on the GPU; stops launching after the first error.
struct CudaLaunch {
  cudaStream_t stream;
  cudaError_t status = cudaSuccess;

  template <class Program>
  void operator()(int64_t work, const Program& program) {
    if (status != cudaSuccess || work == 0) return;
    int64_t blocks = 0;
    status = resident_blocks<Program>(blocks);
    if (status != cudaSuccess) return;
    run_blocks<<<static_cast<unsigned>(std::min(work, blocks)), kBlockThreads, 0, stream>>>(program);
    status = cudaGetLastError();
  }

  // A cooperative launch: the device runs all `blocks` at once, which a program whose blocks
  // wait on each other needs. As a launch attribute it is valid in a CUDA graph too (a captured
  // step). False, with no error kept, when the device refuses so large a cooperative grid now
  // (another process's share of the SMs, under MPS): the caller then takes the two-pass step.
  template <class Program>
  bool resident(int64_t blocks, const Program& program) {
    if (status != cudaSuccess) return true;
    cudaLaunchAttribute cooperative{};
    cooperative.id = cudaLaunchAttributeCooperative;
    cooperative.val.cooperative = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(static_cast<unsigned>(blocks));
    config.blockDim = dim3(kBlockThreads);
    config.stream = stream;
    config.attrs = &cooperative;
    config.numAttrs = 1;
    status = cudaLaunchKernelEx(&config, run_blocks<Program>, program);
    if (status != cudaErrorCooperativeLaunchTooLarge) return true;
    status = cudaSuccess;
    (void)cudaGetLastError();  // the refused launch's error is not sticky: clear it
    return false;
  }
};

}  // namespace

template <Storage S, class Args>
cudaError_t launch_stored(const Args& args, cudaStream_t stream) {
  CudaLaunch launcher{stream};
  run_typed<StorageType<S>>(launcher, args);
  return launcher.status;
}

template <Storage S>
cudaError_t resident_step_capacity(NormMode mode, int64_t& blocks) {
  blocks = 0;
  int device = 0, cooperative = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status == cudaSuccess) status = cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device);
  if (status != cudaSuccess || cooperative == 0) return status;
  with_norm_mode(mode, [&](auto m) {
    status = resident_blocks<ResidentStepProgram<StorageType<S>, decltype(m)::value>>(blocks);
  });
  return status;
}

}  // namespace pvf::cuda

// The launchers of storage S for every op, and its one-pass step's capacity: the file that
// expands it holds S's kernels.
#define PVF_CUDA_LAUNCHER(Args, S) template cudaError_t pvf::cuda::launch_stored<S>(const Args&, cudaStream_t);
#define PVF_CUDA_LAUNCHERS_OF(S)              \
  PVF_FOR_EACH_OP_ARGS(PVF_CUDA_LAUNCHER, S) \
  template cudaError_t pvf::cuda::resident_step_capacity<S>(pvf::NormMode, int64_t&);
