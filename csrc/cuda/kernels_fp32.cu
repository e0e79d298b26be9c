// The kernels of float32 images.
#include "kernels.cuh"

PVF_CUDA_LAUNCHERS_OF(pvf::Storage::kFloat32)
