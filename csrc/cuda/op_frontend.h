// Host side of the CUDA kernel sequences, shared by the CUDA registration (cuda/register.cpp)
// and its CPU emulation (emulation/register.cpp), so both run the same sequence on the same
// buffers: argument checks, outputs and the partials workspace, then Device::run(x, args) runs
// the sequence of csrc/kernels/sequences.h on x's device. Device::check_sigma_values(sigma)
// rejects a non-finite sigma where that needs no device sync (the emulation, on CPU tensors);
// Device::cache_bytes(x) is the L2 size that sets the two-launch ops' chunks (0: no chunking);
// Device::resident_capacity(x, storage, mode) the blocks of the one-pass step that the device
// holds at once (0: it cannot run it).
// Nothing here synchronizes with the device, and every allocation is a torch tensor (the
// caching allocator on CUDA), so a step can be captured in a CUDA graph. Images are passed with their strides
// (no copy of a channels_last or sliced input); outputs are empty_like(x): the dtype and, for
// a dense x, the memory layout of x. No CUDA headers: it also builds without a toolkit.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>

#include "../checks.h"
#include "../kernels/sequences.h"

namespace pvf::frontend {

inline Storage storage_of(const at::Tensor& x) {
  switch (x.scalar_type()) {
    case at::kHalf: return Storage::kFloat16;
    case at::kBFloat16: return Storage::kBFloat16;
    default: return Storage::kFloat32;  // check_image allows nothing else
  }
}

inline ImageShape shape_of(const at::Tensor& x) {
  const ImageShape s{x.size(0), x.size(1), x.size(2), x.size(3)};
  // StatsPartial counts an image's elements in int32.
  TORCH_CHECK(s.image() <= std::numeric_limits<int32_t>::max(),
              "images must have at most 2^31 - 1 elements (C*H*W), got ", x.sizes());
  // The kernels count tiles (kTileH x kTileW pixels) in int32.
  TORCH_CHECK(tile_count(s) <= std::numeric_limits<int32_t>::max(),
              "a batch must have at most 2^31 - 1 tiles of ", kTileH, " x ", kTileW, " pixels per plane, got ",
              x.sizes());
  return s;
}

inline Strides strides_of(const at::Tensor& x) { return {x.stride(0), x.stride(1), x.stride(2), x.stride(3)}; }

// Every image the kernels read or write: offsets inside an image must fit int32.
inline ImageIn in_view(const at::Tensor& x) {
  check_int32_image_offsets(x, "input");
  return {x.const_data_ptr(), strides_of(x)};
}

inline ImageOut out_view(at::Tensor& x) {
  check_int32_image_offsets(x, "output");
  return {x.mutable_data_ptr(), strides_of(x)};
}

// Images per chunk of a two-launch op on x's device (sequences.h).
template <class Device>
int64_t chunk_of(const ImageShape& s, const at::Tensor& x) {
  return chunk_images(s, x.element_size(), Device::cache_bytes(x));
}

// The per-tile partials of the norm statistic of one chunk, reused by every chunk.
inline at::Tensor partials_workspace(const ImageShape& s, int64_t chunk, const at::Tensor& like) {
  ImageShape part = s;
  part.batch = chunk;
  return at::empty({partials_needed(part) * int64_t(sizeof(StatsPartial))}, like.options().dtype(at::kByte));
}

inline StatsPartial* partials_of(at::Tensor& workspace) {
  return reinterpret_cast<StatsPartial*>(workspace.mutable_data_ptr<uint8_t>());
}

inline at::Tensor empty_flags(const at::Tensor& like) {
  return at::empty({like.size(0)}, like.options().dtype(at::kBool));
}

template <class Device>
at::Tensor jitter(const at::Tensor& x, const at::Tensor& shifts) {
  check_image(x, "x");
  check_shifts(shifts, x, "shifts");
  const at::Tensor sc = shifts.contiguous();
  at::Tensor out = at::empty_like(x);
  Device::run(x, JitterArgs{storage_of(x), shape_of(x), in_view(x), sc.const_data_ptr<int64_t>(), out_view(out)});
  return out;
}

template <class Device>
at::Tensor gaussian_blur(const at::Tensor& x, const at::Tensor& sigma) {
  check_image(x, "x");
  check_sigma(sigma, x);
  const at::Tensor sc = sigma.contiguous();
  const ImageShape shape = shape_of(x);
  Device::check_sigma_values(sc);
  at::Tensor out = at::empty_like(x);
  Device::run(x, BlurArgs{storage_of(x), shape, in_view(x), sc.const_data_ptr<float>(), out_view(out)});
  return out;
}

template <class Device>
at::Tensor normalize_grad(const at::Tensor& g, std::string_view mode, double eps) {
  check_image(g, "g");
  const NormMode norm = parse_norm_mode(mode);
  check_eps(eps);
  const ImageShape shape = shape_of(g);
  at::Tensor out = at::empty_like(g);
  const int64_t chunk = chunk_of<Device>(shape, g);
  at::Tensor partials = partials_workspace(shape, chunk, g);
  Device::run(g, NormalizeArgs{storage_of(g), shape, in_view(g), norm, static_cast<float>(eps), out_view(out),
                               partials_of(partials), chunk});
  return out;
}

template <class Device>
at::Tensor clip_grad(const at::Tensor& g, double clip) {
  check_image(g, "g");
  check_clip(clip);
  at::Tensor out = at::empty_like(g);
  Device::run(g, ClipArgs{storage_of(g), shape_of(g), in_view(g), static_cast<float>(clip), out_view(out)});
  return out;
}

template <class Device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_ascent_step(
    const at::Tensor& x, const at::Tensor& grad, const at::Tensor& shifts, const at::Tensor& next_shifts,
    const at::Tensor& sigma, std::string_view norm, double eps, double clip, double lr, double decay, double center,
    double lo, double hi) {
  check_image(x, "x");
  check_like(grad, x, "grad");
  check_shifts(shifts, x, "shifts");
  check_shifts(next_shifts, x, "next_shifts");
  check_sigma(sigma, x);
  const NormMode mode = parse_norm_mode(norm);
  check_step_scalars(eps, clip, lr, decay, center, lo, hi);

  const at::Tensor sc = shifts.contiguous(), nc = next_shifts.contiguous(), sigc = sigma.contiguous();
  Device::check_sigma_values(sigc);
  const ImageShape shape = shape_of(x);
  at::Tensor new_x = at::empty_like(x);
  at::Tensor next_input = at::empty_like(x);
  at::Tensor nonfinite = empty_flags(x);
  const AscentParams params{mode,
                            static_cast<float>(clip),
                            static_cast<float>(lr),
                            static_cast<float>(decay),
                            static_cast<float>(center),
                            static_cast<float>(lo),
                            static_cast<float>(hi)};
  AscentStepArgs args{storage_of(x),   shape, in_view(x), in_view(grad), sc.const_data_ptr<int64_t>(),
                      nc.const_data_ptr<int64_t>(), sigc.const_data_ptr<float>(), static_cast<float>(eps),
                      params,          out_view(new_x), out_view(next_input), nonfinite.mutable_data_ptr<bool>()};
  // One pass over g when the images fit the device (the step's kernel after the one that writes
  // its tickets), else two per chunk of images.
  args.resident_blocks =
      resident_step_blocks(TileGrid(shape, step_interleaved(args)), Device::resident_capacity(x, args.storage, mode));
  at::Tensor tickets;
  if (args.resident_blocks > 0) {
    tickets = at::empty({ticket_bytes(TileGrid(shape, step_interleaved(args)))}, x.options().dtype(at::kByte));
    args.tickets = reinterpret_cast<ImageTicket*>(tickets.mutable_data_ptr<uint8_t>());
  }
  args.chunk = chunk_of<Device>(shape, x);  // of the two-pass step (also if the device refuses the one pass)
  at::Tensor partials = partials_workspace(shape, args.tickets ? shape.batch : args.chunk, x);
  args.partials = partials_of(partials);
  Device::run(x, args);
  return {new_x, next_input, nonfinite};
}

// Registers Device's kernels of every op as "<prefix><op>" (prefix "" or "emulated_").
template <class Device>
void register_ops(torch::Library& m, const std::string& prefix) {
  m.impl((prefix + "jitter").c_str(), &jitter<Device>);
  m.impl((prefix + "gaussian_blur").c_str(), &gaussian_blur<Device>);
  m.impl((prefix + "normalize_grad").c_str(), &normalize_grad<Device>);
  m.impl((prefix + "clip_grad").c_str(), &clip_grad<Device>);
  m.impl((prefix + "fused_ascent_step").c_str(), &fused_ascent_step<Device>);
}

}  // namespace pvf::frontend
