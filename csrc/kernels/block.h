// The portable layer every tiled kernel is written against, so that the GPU and its CPU
// emulation (csrc/emulation/block_emulator.h) run the very same kernel code.
//
// A kernel is a program `template <class Block> PVF_HD void operator()(Block& blk, Shared& sh)`
// for one thread block of kBlockThreads threads. Its code is block-uniform (every thread takes
// the same branches and loops, on values that depend only on the block index, the arguments
// and shared memory read after a barrier) except inside phases:
//   blk.each(regs, f)     a phase: f(thread, regs_of_thread) for this block's threads;
//   blk.sync()            a barrier; every phase must be followed by one (or by a warp fold)
//                         before the next phase;
//   blk.warp_fold(regs, &Regs::v, fold)
//                         v of every lane becomes the butterfly fold over its warp: at offsets
//                         16, 8, 4, 2, 1, v = fold(v, v of lane ^ offset);
//   blk.index(), blk.count()  block index and grid size;
//   blk.arrive(&counter)  block-uniform, a barrier: the block's earlier global writes are made
//                         visible device-wide, then counter += 1; every thread gets the count
//                         before its addition;
//   blk.publish(&flag)    block-uniform, a barrier: the block's earlier global writes are made
//                         visible device-wide, then flag = 1;
//   blk.await(&flag)      block-uniform, a barrier: waits until another block's publish set
//                         flag; that block's writes before it are then visible (read them with
//                         load_coherent). Only a program whose blocks are all resident at once
//                         (Program::kResident: a cooperative launch) may wait on another block;
//   blk.renew_thread_index()  block-uniform, no barrier: on the GPU, what phases compute from
//                         the thread index alone is computed after this point (a no-op in the
//                         emulation). Without it the compiler hoists such values (task splits,
//                         shared addresses of every tile loop of every radius) to the kernel's
//                         start, where they stay live through all the loops and ptxas spills
//                         them at the 128-register budget; a program renews the index before
//                         each tile loop, so they live in that loop alone.
// Per-thread state that lives across phases is one `Regs` struct, held by
// `typename Block::template PerThread<Regs>` (a register struct on the GPU, an array of
// kBlockThreads of them in the emulation). The emulation runs a phase for all threads before
// the next starts, in natural, reversed or shuffled thread order: a result that depends on the
// order is a race on the GPU.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common.h"

namespace pvf {

// 4 warps: a tile of 64 rows gives each thread 16 pixels of one column, over which its share of
// the tile's fixed costs (its place and plan, taps, row tables, barriers, the ticket) is spread
// (with 8 warps and 8 pixels, about 10 SASS instructions more per pixel of a step).
constexpr int kBlockThreads = 128;
constexpr int kWarpSize = 32;
constexpr int kBlockWarps = kBlockThreads / kWarpSize;

#ifdef __CUDACC__
struct GpuBlock {
  template <class Regs>
  struct PerThread {
    Regs self;
  };

  __device__ __forceinline__ int index() const { return static_cast<int>(blockIdx.x); }
  __device__ __forceinline__ int count() const { return static_cast<int>(gridDim.x); }

  __device__ __forceinline__ GpuBlock() { renew_thread_index(); }

  // Reads the thread index anew (a volatile read that the compiler neither hoists nor merges):
  // what phases derive from the thread index alone is computed after the last renewal, so the
  // compiler hoists it no further out than that (see renew_thread_index in block.h's header).
  __device__ __forceinline__ void renew_thread_index() { asm volatile("mov.u32 %0, %%tid.x;" : "=r"(thread_)); }

  template <class Regs, class F>
  __device__ __forceinline__ void each(PerThread<Regs>& regs, F&& f) {
    f(thread_, regs.self);
  }

  __device__ __forceinline__ void sync() { __syncthreads(); }

  __device__ __forceinline__ int arrive(int* counter) {
    __shared__ int before;
    __syncthreads();
    if (thread_ == 0) {
      __threadfence();
      before = atomicAdd(counter, 1);
    }
    __syncthreads();
    return before;
  }

  __device__ __forceinline__ void publish(int* flag) {
    __syncthreads();
    if (thread_ == 0) {
      __threadfence();
      atomicExch(flag, 1);
    }
  }

  __device__ __forceinline__ void await(const int* flag) {
    if (thread_ == 0) {
      int set = 0;
      for (;;) {
        asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(set) : "l"(flag) : "memory");
        if (set != 0) break;
        __nanosleep(64);
      }
    }
    __syncthreads();
  }

  template <class Regs, class V, class Fold>
  __device__ __forceinline__ void warp_fold(PerThread<Regs>& regs, V Regs::*member, Fold fold) {
    static_assert(sizeof(V) % 4 == 0, "warp_fold moves 4-byte words");
    V& v = regs.self.*member;
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
      uint32_t words[sizeof(V) / 4];
      memcpy(words, &v, sizeof(V));
#pragma unroll
      for (unsigned w = 0; w < sizeof(V) / 4; ++w) words[w] = __shfl_xor_sync(0xffffffffu, words[w], offset);
      V other;
      memcpy(&other, words, sizeof(V));
      v = fold(v, other);
    }
  }

 private:
  int thread_;
};
#endif

// *p as another block wrote it before its publish (blk.await): read from L2 on the GPU, past an
// L1 line that may predate the write.
template <class T>
PVF_HD T load_coherent(const T* p) {
#ifdef __CUDA_ARCH__
  static_assert(sizeof(T) == 4 || sizeof(T) == 16, "a 4-byte value or a 16-byte aligned struct");
  using Word = std::conditional_t<sizeof(T) == 4, unsigned, uint4>;
  const Word w = __ldcg(reinterpret_cast<const Word*>(p));
  T v;
  memcpy(&v, &w, sizeof v);
  return v;
#else
  return *p;
#endif
}

}  // namespace pvf
