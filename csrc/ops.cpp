// The schema of every op, in one place. Each device registers its kernels in its own file
// (cpu/register.cpp, cuda/register.cpp); the CUDA kernels' CPU emulation registers the
// emulated_* twins in emulation/register.cpp.
#include <torch/library.h>

TORCH_LIBRARY(pyviz_fast, m) {
  m.def("jitter(Tensor x, Tensor shifts) -> Tensor");
  m.def("gaussian_blur(Tensor x, Tensor sigma) -> Tensor");
  m.def("normalize_grad(Tensor g, str mode, float eps) -> Tensor");
  m.def("clip_grad(Tensor g, float clip) -> Tensor");
  m.def(
      "fused_ascent_step(Tensor x, Tensor grad, Tensor shifts, Tensor next_shifts, Tensor sigma, "
      "str norm, float eps, float clip, float lr, float decay, float center, float lo, float hi) "
      "-> (Tensor, Tensor, Tensor)");
  // MaCo's views; CPU kernels only (other devices run the reference).
  m.def("periodic_crops(Tensor image, Tensor boxes, Tensor? noise, float noise_scale) -> Tensor");
  m.def("periodic_crops_backward(Tensor grad, Tensor boxes) -> Tensor");
  // Gram products of activations whose channels are innermost; CPU kernels only.
  m.def("gram(Tensor x) -> Tensor");
  m.def("gram_times(Tensor m, Tensor x) -> Tensor");
  // A style loss's layer: its Gram matrix's residual against a target and the gradient back
  // (plus another gradient of x, if given).
  m.def("gram_error(Tensor x, Tensor target, Tensor norms) -> (Tensor, Tensor)");
  m.def("gram_error_backward(Tensor x, Tensor residual, Tensor weights, Tensor? add=None) -> Tensor");
  // A content loss's layer: each image's squared distance to a target and the gradient back (plus
  // another gradient of x, if given); CPU kernels only.
  m.def("squared_error(Tensor x, Tensor target, Tensor norms) -> Tensor");
  m.def("squared_error_backward(Tensor x, Tensor target, Tensor weights, Tensor? add=None) -> Tensor");
}
