// The kernels of bfloat16 images.
#include "kernels.cuh"

PVF_CUDA_LAUNCHERS_OF(pvf::Storage::kBFloat16)
