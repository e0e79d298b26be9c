// The CUDA launchers of csrc/cuda/kernels.cu: each enqueues its op's kernel sequence
// (csrc/kernels/sequences.h) on `stream` and returns the first launch error, if any.
#pragma once

#include <cuda_runtime_api.h>

#include "../kernels/sequences.h"

namespace pvf::cuda {

template <class Args>
cudaError_t launch(const Args& args, cudaStream_t stream);

}  // namespace pvf::cuda
