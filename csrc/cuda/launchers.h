// The CUDA launchers (csrc/cuda/kernels.cuh): each enqueues its op's kernel sequence
// (csrc/kernels/sequences.h) on `stream` and returns the first launch error, if any.
#pragma once

#include <cuda_runtime_api.h>

#include "../kernels/sequences.h"

namespace pvf::cuda {

// Images of storage S, compiled in that storage's file (kernels_fp32.cu, kernels_fp16.cu,
// kernels_bf16.cu). Named by S, not by the element type: the half types of nvcc and of host C++
// differ (storage.h).
template <Storage S, class Args>
cudaError_t launch_stored(const Args& args, cudaStream_t stream);

template <class Args>
cudaError_t launch(const Args& args, cudaStream_t stream) {
  cudaError_t status = cudaSuccess;
  dispatch_storage(args.storage, [&](auto tag) { status = launch_stored<decltype(tag)::storage>(args, stream); });
  return status;
}

// The blocks of the one-pass step (ResidentStepProgram<storage S, mode>) that the current device
// runs at once; 0 where it cannot launch cooperatively (kernels.cuh, compiled in S's file).
template <Storage S>
cudaError_t resident_step_capacity(NormMode mode, int64_t& blocks);

}  // namespace pvf::cuda
