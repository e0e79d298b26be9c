// The kernels of float32 images, among them the one-pass step's (float32 only).
#include "kernels.cuh"

PVF_CUDA_LAUNCHERS_OF(pvf::Storage::kFloat32)

namespace pvf::cuda {

cudaError_t resident_step_capacity(Storage storage, NormMode mode, int64_t& blocks) {
  blocks = 0;
  int device = 0, cooperative = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status == cudaSuccess) status = cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device);
  if (status != cudaSuccess || cooperative == 0 || storage != Storage::kFloat32) return status;  // float32 only
  with_norm_mode(mode, [&](auto m) { status = resident_blocks<ResidentStepProgram<float, decltype(m)::value>>(blocks); });
  return status;
}

}  // namespace pvf::cuda
