#include "cache/stored_blocks.h"

#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>  // the library's AVX2/AVX-512 code, chosen at run time
#endif

namespace glancefs::cache {
namespace {

Status Stopped() { return Status::Unavailable("stopped by its consumer"); }

}  // namespace

uint64_t BlockCheck(BlockKey key, const char* data, size_t n) {
  const uint64_t seed = key.image_no * 0x9E3779B97F4A7C15ULL + key.index;
#if defined(__x86_64__)
  return XXH3_64bits_withSeed_dispatch(data, n, seed);  // the same hash, faster
#else
  return XXH3_64bits_withSeed(data, n, seed);
#endif
}

Result<BlockData> StoredBlocks::Load(BlockKey key, size_t len) {
  std::shared_ptr<Block> block = buffers_->Allocate(len);
  if (!block) return Status::IOError("out of memory for a cache block");
  uint64_t check = 0;
  GLANCEFS_RETURN_IF_ERROR(store_->GetBlock(key, block->mutable_data(), len, &check));
  if (check != BlockCheck(key, block->data(), len)) return Status::Corruption("checksum mismatch");
  return BlockData(std::move(block));
}

bool StoredBlocks::ReadRun(BlockKey first, const std::vector<size_t>& lens,
                           std::vector<BlockData>* blocks, std::vector<uint64_t>* checks) {
  // Where the store keeps the bytes, without a copy; else copied into pooled buffers.
  Status mapped = store_->MapBlocks(first, lens, blocks, checks);
  if (!mapped.IsNotSupported()) return mapped.ok();
  std::vector<std::shared_ptr<Block>> buffers(lens.size());
  std::vector<IoSlice> dsts(lens.size());
  for (size_t i = 0; i < lens.size(); ++i) {
    buffers[i] = buffers_->Allocate(lens[i]);
    if (!buffers[i]) return false;
    dsts[i] = {buffers[i]->mutable_data(), lens[i]};
  }
  if (!store_->GetBlocks(first, dsts, checks).ok()) return false;
  blocks->assign(buffers.begin(), buffers.end());
  return true;
}

std::vector<BlockData> StoredBlocks::LoadAll(BlockKey key, const std::vector<size_t>& lens) {
  std::vector<BlockData> blocks;
  std::vector<uint64_t> checks;
  if (!ReadRun(key, lens, &blocks, &checks)) return std::vector<BlockData>(lens.size());
  for (size_t i = 0; i < lens.size(); ++i) {
    if (checks[i] != BlockCheck({key.image_no, key.index + i}, blocks[i]->data(), lens[i])) {
      blocks[i].reset();
    }
  }
  return blocks;
}

Result<BlockData> StoredBlocks::LoadRun(BlockKey key, const std::vector<size_t>& lens) {
  std::vector<BlockData> run = LoadAll(key, lens);
  // Damaged: the block is judged (dropped, counted, fetched again) when it is read alone.
  if (!run[0]) return Load(key, lens[0]);
  // The ones after the first go to the memory tier (and count there as memory hits), up to
  // the first damaged one.
  for (size_t i = 1; i < run.size() && run[i]; ++i) {
    memory_->Insert({key.image_no, key.index + i}, std::move(run[i]));
  }
  return std::move(run[0]);
}

Status StoredBlocks::ForEachStored(uint64_t no, const std::vector<size_t>& lens,
                                   uint64_t run_blocks,
                                   const std::function<bool(const char*, size_t)>& fn,
                                   uint64_t* bad) {
  // Read in runs (one store request each); a run that fails is read again block by block to
  // find the block at fault.
  std::vector<BlockData> run;
  std::vector<uint64_t> checks;
  for (uint64_t i = 0; i < lens.size(); i += run_blocks) {
    const uint64_t count = std::min<uint64_t>(run_blocks, lens.size() - i);
    std::vector<size_t> run_lens(lens.begin() + i, lens.begin() + i + count);
    bool whole = ReadRun({no, i}, run_lens, &run, &checks);
    for (uint64_t k = 0; k < count && whole; ++k) {
      whole = checks[k] == BlockCheck({no, i + k}, run[k]->data(), run[k]->size());
    }
    for (uint64_t k = 0; k < count; ++k) {
      if (whole) {
        if (!fn(run[k]->data(), run[k]->size())) return Stopped();
        continue;
      }
      auto block = Load({no, i + k}, run_lens[k]);
      if (!block.ok()) {
        *bad = i + k;
        return Status::Corruption("block " + std::to_string(i + k) + ": " +
                                  block.status().message());
      }
      if (!fn((*block)->data(), (*block)->size())) return Stopped();
    }
  }
  return Status::Ok();
}

}  // namespace glancefs::cache
