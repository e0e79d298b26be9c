// The CUDA launchers of csrc/cuda/kernels.cu: each enqueues its op's kernel sequence
// (csrc/kernels/sequences.h) on `stream` and returns the first launch error, if any.
#pragma once

#include <cuda_runtime_api.h>

#include "../kernels/sequences.h"

namespace pvf::cuda {

template <class Args>
cudaError_t launch(const Args& args, cudaStream_t stream);

// The blocks of the one-pass step (ResidentStepProgram<storage, mode>) that the current device
// runs at once; 0 where it cannot launch cooperatively.
cudaError_t resident_step_capacity(Storage storage, NormMode mode, int64_t& blocks);

}  // namespace pvf::cuda
