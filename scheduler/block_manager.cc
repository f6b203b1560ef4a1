#include "scheduler/block_manager.h"

#include <algorithm>

#include "runtime/base/check.h"

namespace tern::scheduler {
namespace {

// splitmix64's finalizer: a cheap, well-mixing 64-bit permutation. The
// prefix-cache index verifies content on a hit, so the hash need not be
// cryptographic; it must only be deterministic and spread well.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

BlockManager::BlockManager(const BlockManagerOptions& options)
    : block_size_(options.block_size), prefix_caching_(options.enable_prefix_caching) {
  CHECK_GT(options.num_blocks, 0);
  CHECK_GT(options.block_size, 0);
  const int32_t n = options.num_blocks;
  ref_.assign(n, 0);
  cached_.assign(n, std::nullopt);
  if (prefix_caching_) tokens_.assign(size_t(n) * block_size_, -1);
  lru_prev_.assign(n, kNone);
  lru_next_.assign(n, kNone);
  // Stack: block 0 is handed out first.
  uncached_free_.resize(n);
  for (int32_t i = 0; i < n; ++i) uncached_free_[i] = n - 1 - i;
  num_free_ = n;
}

uint64_t BlockManager::HashTenant(absl::string_view tenant_name) {
  uint64_t h = Mix(0x7465726e2d6b7631ULL ^ tenant_name.size());  // "tern-kv1"
  for (unsigned char c : tenant_name) h = Mix(h ^ c);
  return h;
}

uint64_t BlockManager::HashBlock(uint64_t parent_hash, absl::Span<const int32_t> token_ids) {
  uint64_t h = Mix(parent_hash ^ (uint64_t(token_ids.size()) << 32));
  for (int32_t t : token_ids) h = Mix(h ^ uint32_t(t));
  return h;
}

void BlockManager::ExtendHashes(uint64_t salt, absl::Span<const int32_t> tokens,
                                std::vector<uint64_t>* hashes) const {
  const size_t full = tokens.size() / block_size_;
  while (hashes->size() < full) {
    const size_t i = hashes->size();
    const uint64_t parent = i == 0 ? salt : (*hashes)[i - 1];
    hashes->push_back(HashBlock(parent, tokens.subspan(i * block_size_, block_size_)));
  }
}

void BlockManager::CheckBlock(int32_t block) const {
  CHECK(block >= 0 && block < num_blocks()) << "block " << block << " outside [0, " << num_blocks() << ")";
}

int32_t BlockManager::ref_count(int32_t block) const {
  CheckBlock(block);
  return ref_[block];
}

std::optional<uint64_t> BlockManager::block_hash(int32_t block) const {
  CheckBlock(block);
  if (!cached_[block]) return std::nullopt;
  return cached_[block]->hash;
}

void BlockManager::LruPushBack(int32_t block) {
  lru_prev_[block] = lru_tail_;
  lru_next_[block] = kNone;
  if (lru_tail_ != kNone) lru_next_[lru_tail_] = block;
  lru_tail_ = block;
  if (lru_head_ == kNone) lru_head_ = block;
  ++num_cached_free_;
}

void BlockManager::LruRemove(int32_t block) {
  const int32_t prev = lru_prev_[block], next = lru_next_[block];
  if (prev != kNone) lru_next_[prev] = next; else lru_head_ = next;
  if (next != kNone) lru_prev_[next] = prev; else lru_tail_ = prev;
  lru_prev_[block] = lru_next_[block] = kNone;
  --num_cached_free_;
}

uint64_t BlockManager::IndexKey(uint64_t hash, int32_t group) {
  return group == 0 ? hash : Mix(hash ^ (uint64_t(uint32_t(group)) * 0xd6e8feb86659fd93ULL));
}

void BlockManager::Uncache(int32_t block) {
  CHECK(cached_[block].has_value());
  index_.erase(cached_[block]->key);
  cached_[block].reset();
}

int32_t BlockManager::TakeFreeBlock() {
  int32_t block;
  if (!uncached_free_.empty()) {
    block = uncached_free_.back();
    uncached_free_.pop_back();
  } else {
    block = lru_head_;
    CHECK_NE(block, kNone);
    LruRemove(block);
    Uncache(block);
    ++evictions_;
  }
  CHECK_EQ(ref_[block], 0);
  ref_[block] = 1;
  --num_free_;
  return block;
}

std::optional<int32_t> BlockManager::Allocate() {
  if (num_free_ == 0) return std::nullopt;
  return TakeFreeBlock();
}

void BlockManager::IncRef(int32_t block) {
  CheckBlock(block);
  CHECK_GT(ref_[block], 0) << "IncRef of free block " << block;
  ++ref_[block];
}

void BlockManager::Release(int32_t block) {
  CheckBlock(block);
  CHECK_GT(ref_[block], 0) << "double free of block " << block;
  if (--ref_[block] > 0) return;
  ++num_free_;
  if (cached_[block]) {
    LruPushBack(block);
  } else {
    uncached_free_.push_back(block);
  }
}

void BlockManager::ReleaseTable(BlockTable* table) {
  for (auto it = table->rbegin(); it != table->rend(); ++it) {
    if (*it != kFreedBlock) Release(*it);
  }
  table->clear();
}

void BlockManager::ReleaseTables(BlockTables* tables) {
  size_t longest = 0;
  for (const BlockTable& t : *tables) longest = std::max(longest, t.size());
  for (size_t i = longest; i-- > 0;) {
    for (BlockTable& t : *tables) {
      if (i < t.size() && t[i] != kFreedBlock) Release(t[i]);
    }
  }
  for (BlockTable& t : *tables) t.clear();
}

int32_t BlockManager::ReleaseRange(BlockTable* table, int32_t begin, int32_t end) {
  CHECK(0 <= begin && begin <= end && size_t(end) <= table->size());
  int32_t released = 0;
  for (int32_t i = end; i-- > begin;) {
    int32_t& block = (*table)[i];
    if (block == kFreedBlock) continue;
    Release(block);
    block = kFreedBlock;
    ++released;
  }
  return released;
}

void BlockManager::Fork(const BlockTable& src, BlockTable* dst) {
  CHECK(dst->empty());
  for (int32_t b : src) {
    if (b != kFreedBlock) IncRef(b);
  }
  *dst = src;
}

bool BlockManager::MustCopyBeforeWrite(int32_t block) const {
  // A published block's KV is what every later hit reads: even the same
  // token recomputed at the same position may come out in other bits (the
  // kernels' rounding depends on the batch), so it is never written.
  return ref_[block] > 1 || cached_[block].has_value();
}

int32_t BlockManager::BlocksNeededToWrite(const BlockTable& table, int32_t begin, int32_t end) const {
  CHECK(0 <= begin && begin <= end);
  const int32_t have = static_cast<int32_t>(table.size());
  const int32_t want = (end + block_size_ - 1) / block_size_;
  int32_t needed = std::max(0, want - have);
  for (int32_t i = begin / block_size_; i < std::min(have, want); ++i) {
    CHECK_NE(table[i], kFreedBlock) << "a write into freed block " << i << " of a table";
    if (MustCopyBeforeWrite(table[i])) ++needed;
  }
  return needed;
}

int32_t BlockManager::BlocksNeededToWrite(const BlockTables& tables, int32_t begin, int32_t end) const {
  int32_t needed = 0;
  for (const BlockTable& t : tables) needed += BlocksNeededToWrite(t, begin, end);
  return needed;
}

bool BlockManager::PrepareWrite(BlockTables* tables, int32_t begin, int32_t end, BlockCopies* copies) {
  if (BlocksNeededToWrite(*tables, begin, end) > num_free_) return false;
  for (BlockTable& t : *tables) CHECK(PrepareWrite(&t, begin, end, copies));
  return true;
}

bool BlockManager::PrepareWrite(BlockTable* table, int32_t begin, int32_t end, BlockCopies* copies) {
  if (BlocksNeededToWrite(*table, begin, end) > num_free_) return false;
  const int32_t have = static_cast<int32_t>(table->size());
  const int32_t want = (end + block_size_ - 1) / block_size_;
  for (int32_t i = begin / block_size_; i < std::min(have, want); ++i) {
    const int32_t shared = (*table)[i];
    if (!MustCopyBeforeWrite(shared)) continue;
    const int32_t copy = TakeFreeBlock();
    copies->emplace_back(shared, copy);
    ++cow_copies_;
    Release(shared);
    (*table)[i] = copy;
  }
  for (int32_t i = have; i < want; ++i) table->push_back(TakeFreeBlock());
  return true;
}

int32_t BlockManager::LookUp(uint64_t salt, absl::Span<const uint64_t> hashes, absl::Span<const int32_t> tokens,
                             int32_t i, int32_t group) const {
  auto it = index_.find(IndexKey(hashes[i], group));
  if (it == index_.end()) return kNone;
  const int32_t block = it->second;
  const uint64_t parent = i == 0 ? salt : hashes[i - 1];
  const CachedContent& c = *cached_[block];
  const bool same = c.hash == hashes[i] && c.group == group && c.parent == parent &&
                    std::equal(tokens.begin() + size_t(i) * block_size_, tokens.begin() + size_t(i + 1) * block_size_,
                               tokens_.begin() + size_t(block) * block_size_);
  return same ? block : kNone;  // a hash collision is a miss
}

void BlockManager::Revive(int32_t block) {
  if (ref_[block] == 0) {
    LruRemove(block);
    --num_free_;
  }
  ++ref_[block];
}

int32_t BlockManager::MatchPrefix(uint64_t salt, absl::Span<const uint64_t> hashes,
                                  absl::Span<const int32_t> tokens, int32_t max_blocks, BlockTable* table,
                                  int32_t group) {
  CHECK(table->empty());
  if (!prefix_caching_) return 0;
  const int32_t limit = std::min<int32_t>(max_blocks, static_cast<int32_t>(hashes.size()));
  int32_t found = 0;
  for (; found < limit; ++found) {
    ++prefix_queries_;
    const int32_t block = LookUp(salt, hashes, tokens, found, group);
    if (block == kNone) break;
    ++prefix_hits_;
    Revive(block);
    table->push_back(block);
  }
  return found;
}

int32_t BlockManager::MatchPrefix(uint64_t salt, absl::Span<const uint64_t> hashes,
                                  absl::Span<const int32_t> tokens, int32_t max_blocks, BlockTables* tables) {
  for (const BlockTable& t : *tables) CHECK(t.empty());
  if (!prefix_caching_) return 0;
  const int32_t limit = std::min<int32_t>(max_blocks, static_cast<int32_t>(hashes.size()));
  const int32_t groups = static_cast<int32_t>(tables->size());
  // The longest run cached in every group, then a reference on each block.
  int32_t found = 0;
  for (; found < limit; ++found) {
    ++prefix_queries_;
    bool all = true;
    for (int32_t g = 0; g < groups && all; ++g) all = LookUp(salt, hashes, tokens, found, g) != kNone;
    if (!all) break;
    ++prefix_hits_;
  }
  for (int32_t g = 0; g < groups; ++g) {
    for (int32_t i = 0; i < found; ++i) {
      const int32_t block = LookUp(salt, hashes, tokens, i, g);
      Revive(block);
      (*tables)[size_t(g)].push_back(block);
    }
  }
  return found;
}

void BlockManager::CacheFullBlock(uint64_t salt, const BlockTable& table, int32_t index,
                                  absl::Span<const uint64_t> hashes, absl::Span<const int32_t> tokens,
                                  int32_t group) {
  if (!prefix_caching_) return;
  CHECK(index >= 0 && size_t(index) < table.size() && size_t(index) < hashes.size());
  CHECK_GE(tokens.size(), size_t(index + 1) * block_size_);
  const int32_t block = table[index];
  if (block == kFreedBlock) return;
  CHECK_GT(ref_[block], 0);
  if (cached_[block]) return;
  const uint64_t key = IndexKey(hashes[index], group);
  if (!index_.try_emplace(key, block).second) return;
  cached_[block] = CachedContent{hashes[index], index == 0 ? salt : hashes[index - 1], group, key};
  std::copy(tokens.begin() + size_t(index) * block_size_, tokens.begin() + size_t(index + 1) * block_size_,
            tokens_.begin() + size_t(block) * block_size_);
}

void BlockManager::CacheFullBlock(uint64_t salt, const BlockTables& tables, int32_t index,
                                  absl::Span<const uint64_t> hashes, absl::Span<const int32_t> tokens) {
  for (int32_t g = 0; g < static_cast<int32_t>(tables.size()); ++g) {
    CacheFullBlock(salt, tables[size_t(g)], index, hashes, tokens, g);
  }
}

BlockManagerStats BlockManager::stats() const {
  BlockManagerStats s;
  s.num_blocks = num_blocks();
  s.num_used = num_blocks() - num_free_;
  s.num_cached_free = num_cached_free_;
  s.prefix_queries = prefix_queries_;
  s.prefix_hits = prefix_hits_;
  s.evictions = evictions_;
  s.cow_copies = cow_copies_;
  return s;
}

std::vector<int32_t> BlockManager::EvictionOrder() const {
  std::vector<int32_t> order;
  for (int32_t b = lru_head_; b != kNone; b = lru_next_[b]) order.push_back(b);
  return order;
}

}  // namespace tern::scheduler
