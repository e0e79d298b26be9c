// The executor of the op sequences on the CPU: each launch's block program run by the block
// emulator (block_emulator.h), one block after another.
#pragma once

#include "block_emulator.h"
#include "sequences.h"

namespace pvf::emulation {

struct Launch {
  template <class Program>
  void operator()(int64_t work, const Program& program) {
    run_grid(program, work);
  }

  template <class Program>
  bool resident(int64_t blocks, const Program& program) {
    if (config().refuse_cooperative) return false;
    run_grid(program, blocks);
    return true;
  }
};

template <Storage S, class Args>
void run_stored(const Args& args) {
  Launch launch;
  run_typed<StorageType<S>>(launch, args);
}

}  // namespace pvf::emulation

// The emulated sequences of storage S for every op: the file that expands it compiles them.
#define PVF_EMULATED_SEQUENCE(Args, S) template void pvf::emulation::run_stored<S>(const Args&);
#define PVF_EMULATED_SEQUENCES_OF(S) PVF_FOR_EACH_OP_ARGS(PVF_EMULATED_SEQUENCE, S)
