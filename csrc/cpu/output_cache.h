// Large outputs of the CPU ops take their memory from a few blocks freed by earlier outputs.
//
// A fused step returns two fresh batch-sized tensors. glibc gives blocks that large back to the
// kernel when they are freed (its trim threshold follows the sizes freed), so in a loop of
// steps every call faulted its outputs in page by page again: mapping and zeroing 2 x 19 MB cost
// several times the step itself (20 ms instead of 4 ms at B=32, 224 px). Loops free the last
// step's outputs as they make the next ones, of the same sizes, so a few cached blocks suffice.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace pvf::cpu {

// at::empty_like(x): same sizes, strides and dtype, on the CPU, its memory from the cache when
// it is large.
at::Tensor empty_output_like(const at::Tensor& x);

// Frees the cached blocks (none are in use); returns how many bytes that gave back.
int64_t release_cached_outputs();

// Bytes held in cached blocks not in use.
int64_t cached_output_bytes();

}  // namespace pvf::cpu
