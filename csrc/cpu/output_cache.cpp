#include "output_cache.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <deque>
#include <memory>
#include <mutex>
#include <utility>

namespace pvf::cpu {
namespace {

// Smaller blocks come from the heap without page faults.
constexpr size_t kMinCachedBytes = size_t{1} << 20;
// Enough for the outputs of two steps in flight.
constexpr size_t kMaxCachedBlocks = 4;

// A block of torch's CPU allocator and its size.
struct Block {
  c10::DataPtr memory;
  size_t bytes;
};

class BlockCache {
 public:
  // A cached block of exactly `bytes`, else a new one.
  std::unique_ptr<Block> take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = blocks_.begin(); it != blocks_.end(); ++it) {
        if ((*it)->bytes != bytes) continue;
        std::unique_ptr<Block> block = std::move(*it);
        blocks_.erase(it);
        return block;
      }
    }
    return std::unique_ptr<Block>(new Block{c10::GetCPUAllocator()->allocate(bytes), bytes});
  }

  // Keeps a freed block, dropping the oldest beyond kMaxCachedBlocks (freed outside the lock).
  void give(std::unique_ptr<Block> block) {
    std::unique_ptr<Block> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks_.push_back(std::move(block));
      if (blocks_.size() > kMaxCachedBlocks) {
        evicted = std::move(blocks_.front());
        blocks_.pop_front();
      }
    }
  }

  int64_t release() {
    std::deque<std::unique_ptr<Block>> released;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      released.swap(blocks_);
    }
    return bytes_in(released);
  }

  int64_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return bytes_in(blocks_);
  }

 private:
  static int64_t bytes_in(const std::deque<std::unique_ptr<Block>>& blocks) {
    int64_t total = 0;
    for (const auto& block : blocks) total += static_cast<int64_t>(block->bytes);
    return total;
  }

  std::mutex mutex_;
  std::deque<std::unique_ptr<Block>> blocks_;
};

// Never destroyed: tensors may still return their blocks while the process exits.
BlockCache& cache() {
  static BlockCache* blocks = new BlockCache;
  return *blocks;
}

void return_block(void* context) { cache().give(std::unique_ptr<Block>(static_cast<Block*>(context))); }

class CachingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t bytes) override {
    if (bytes < kMinCachedBytes) return c10::GetCPUAllocator()->allocate(bytes);
    std::unique_ptr<Block> block = cache().take(bytes);
    void* data = block->memory.get();
    return {data, block.release(), &return_block, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }
};

}  // namespace

at::Tensor empty_output_like(const at::Tensor& x) {
  static CachingAllocator allocator;
  // The sizes and strides at::empty_like would give (a meta tensor holds no memory).
  const at::Tensor layout = at::empty_like(x, x.options().device(c10::DeviceType::Meta));
  return at::detail::empty_strided_generic(layout.sizes(), layout.strides(), &allocator,
                                           c10::DispatchKeySet(c10::DispatchKey::CPU), x.scalar_type());
}

int64_t release_cached_outputs() { return cache().release(); }

int64_t cached_output_bytes() { return cache().cached_bytes(); }

}  // namespace pvf::cpu
