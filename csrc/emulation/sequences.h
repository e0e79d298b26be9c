// The emulation's entry to the op sequences (csrc/kernels/sequences.h). Each storage type's
// sequences are compiled in a file of their own (sequences_fp32.cpp, sequences_fp16.cpp,
// sequences_bf16.cpp): their block programs are most of the extension's CPU build, and a
// parallel build then compiles the three side by side, as it does the CUDA kernels.
#pragma once

#include "../kernels/sequences.h"

namespace pvf::emulation {

// The sequence of `args` for images of storage S, run by the block emulator (launch.h).
template <Storage S, class Args>
void run_stored(const Args& args);

template <class Args>
void run(const Args& args) {
  dispatch_storage(args.storage, [&](auto tag) { run_stored<decltype(tag)::storage>(args); });
}

}  // namespace pvf::emulation
