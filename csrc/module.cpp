// The Python module pyviz_fast._C: importing it registers the ops with the torch dispatcher
// (static registrations in the other translation units); it also tells what was built.
#include <ATen/Parallel.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/version.h>

#include "cpu/bf16_gram.h"
#include "cpu/output_cache.h"
#include "cpu/row_kernels.h"
#include "emulation/settings.h"
#include "kernels/sequences.h"

namespace py = pybind11;

// Which torch this binary was built against (setup.py or the just-in-time build defines it),
// stored as a string that pyviz_fast/_ext.py reads from the file before loading it.
#if !defined(PVF_BUILT_AGAINST) && defined(PVF_WITH_CUDA)
#define PVF_BUILT_AGAINST "torch=" TORCH_VERSION " cuda=unknown"
#elif !defined(PVF_BUILT_AGAINST)
#define PVF_BUILT_AGAINST "torch=" TORCH_VERSION " cuda=none"
#endif
extern "C" __attribute__((used)) const char pvf_built_against_tag[] = "pyviz_fast built against " PVF_BUILT_AGAINST;

namespace {

py::dict build_info() {
  py::dict info;
  info["cpu"] = true;
  info["cuda_emulation"] = true;
#ifdef PVF_WITH_CUDA
  info["cuda"] = true;
  info["cuda_arches"] = PVF_CUDA_ARCHES;
#else
  info["cuda"] = false;
  info["cuda_arches"] = py::none();
#endif
#ifdef _OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
  info["threads"] = at::get_num_threads();
  info["parallel"] = at::get_parallel_info();
  info["torch_built_with"] = TORCH_VERSION;
  info["built_against"] = PVF_BUILT_AGAINST;
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyviz_fast compiled kernels (ops are under torch.ops.pyviz_fast)";
  m.def("build_info", &build_info, "What this extension was built with.");
  m.def("release_cached_outputs", &pvf::cpu::release_cached_outputs,
        "Frees the CPU output blocks kept for reuse; returns the bytes freed.");
  m.def("cached_output_bytes", &pvf::cpu::cached_output_bytes, "Bytes of CPU output blocks kept for reuse.");
  m.def("configure_emulation", &pvf::emulation::configure, py::arg("order") = "natural", py::arg("max_blocks") = 5,
        py::arg("seed") = 1, py::arg("trace") = false, py::arg("cache_bytes") = 0, py::arg("resident_blocks") = 0,
        py::arg("refuse_cooperative") = false,
        "How the CUDA emulation runs: thread order within a phase (natural, reversed, shuffled), grid-size cap, "
        "seed of the shuffles, whether to measure each launch's global memory traffic, the L2 size that "
        "sets the chunks of the two-launch ops (0: no chunking), and the blocks the emulated device holds at "
        "once, which sets the one-pass step's grid (0: the step always takes two passes), and whether it refuses "
        "the one-pass step's cooperative launch (as a GPU shared under MPS may), which then falls back to two.");
  m.def("emulated_launches", &pvf::emulation::launches,
        "Kernel launches the CUDA emulation ran since configure_emulation() (as many as the GPU would).");
  m.def("emulated_traffic", &pvf::emulation::traffic,
        "Per launch traced since configure_emulation(trace=True): (distinct global bytes read, written).");
  m.def("emulated_access_widths", &pvf::emulation::access_widths,
        "Per launch traced since configure_emulation(trace=True): {access width in bytes: bytes moved}.");
  m.def("emulated_tile_paths", &pvf::emulation::tile_paths,
        "Per launch traced since configure_emulation(trace=True): (tiles of the interior fast path, other tiles).");
  m.def("vector_instruction_sets", &pvf::cpu::vector_instruction_sets,
        "The instruction sets this CPU runs the CPU kernels' explicit-vector loops with (blur rows, gradient "
        "statistics, Gram products), best first.");
  m.def("use_vector_instruction_set", &pvf::cpu::use_vector_instruction_set, py::arg("name"),
        "Run those loops with this instruction set from now on ('' for the best); returns the previous one.");
  m.def("bf16_gram_available", &pvf::cpu::bf16_gram_available,
        "Whether the Gram products' CPU kernels take bfloat16 activations: this CPU has AMX tiles (and the OS "
        "lets the process use them) or AVX512_BF16.");
  m.def("bf16_gram_instruction_sets", &pvf::cpu::bf16_gram_instruction_sets,
        "The instruction sets this CPU runs the bfloat16 Gram products with ('amx', 'avx512_bf16'), best first.");
  m.def("use_bf16_gram_instruction_set", &pvf::cpu::use_bf16_gram_instruction_set, py::arg("name"),
        "Run the bfloat16 Gram products with this instruction set from now on ('' for the best); returns the "
        "previous one.");
  m.def(
      "chunk_images",
      [](const std::vector<int64_t>& shape, int64_t element_bytes, int64_t cache_bytes) {
        TORCH_CHECK_VALUE(shape.size() == 4, "shape must be [B, C, H, W], got ", shape.size(), " sizes");
        return pvf::chunk_images({shape[0], shape[1], shape[2], shape[3]}, element_bytes, cache_bytes);
      },
      py::arg("shape"), py::arg("element_bytes"), py::arg("cache_bytes"),
      "Images per chunk of the CUDA step and normalize_grad (two launches per chunk) on a device with "
      "cache_bytes of L2.");
  m.def(
      "resident_step_blocks",
      [](const std::vector<int64_t>& shape, bool interleaved, int64_t capacity) {
        TORCH_CHECK_VALUE(shape.size() == 4, "shape must be [B, C, H, W], got ", shape.size(), " sizes");
        return pvf::resident_step_blocks(pvf::TileGrid({shape[0], shape[1], shape[2], shape[3]}, interleaved),
                                         capacity);
      },
      py::arg("shape"), py::arg("interleaved"), py::arg("capacity"),
      "Blocks of the CUDA step's one-pass kernel on a device that holds `capacity` blocks at once (0: an image "
      "has more tiles than that, and the step takes two passes, two launches per chunk); interleaved: the "
      "channels_last cut.");
}
