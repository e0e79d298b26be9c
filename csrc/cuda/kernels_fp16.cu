// The kernels of float16 images.
#include "kernels.cuh"

PVF_CUDA_LAUNCHERS_OF(pvf::Storage::kFloat16)
