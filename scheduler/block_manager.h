// BlockManager: bookkeeping of the paged KV cache's physical blocks (the
// runner's KvCacheLayout): who holds which block (ref counts), which full
// blocks hold which token content (the prefix cache), and which free blocks
// to reuse first.
//
// Block states:
//   free, uncached  -> ref 0, no hash; handed out first.
//   free, cached    -> ref 0, hashed; kept in LRU order (least recently freed
//                      first) and evicted (hash dropped) only when no
//                      uncached free block is left. A prefix-cache hit
//                      revives it.
//   in use          -> ref >= 1; ref > 1 means shared (prefix-cache hit of
//                      several sequences, or a fork), and a write into a
//                      shared block first copies it (copy-on-write). So
//                      does a write into a cached block, even one held
//                      once: a published block is never written.
//
// KV-cache groups (runtime/backend/kv_cache_groups.h): a sequence holds one
// block table per group (BlockTables); every group's blocks come from this
// one pool and have the same bytes. The table-set calls below treat a
// sequence's tables as one: all or nothing, one prefix-cache hit length.
//
// Prefix cache: a FULL block is named by a chained hash: Hash(parent hash,
// the block's token ids), where the first block's parent is the tenant's
// salt (HashTenant), so tenants never share entries. The index is keyed by
// (hash, group): each group caches its own block of the same tokens. Hashes are checked
// against the stored token ids and parent, so a 64-bit collision is a miss,
// never wrong KV. A hash maps to at most one block; a second block with
// the same content stays uncached.
//
// Running out of blocks is not an error: allocation reports failure and the
// scheduler preempts. Broken invariants (freeing a free block) CHECK.
//
// Thread: single-thread; owned by the engine thread's Scheduler.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace tern::scheduler {

// Physical block ids covering positions [0, size * block_size). An entry
// may be kFreedBlock: a block given back because no query reads its tokens
// again (runtime::KvRetention: MoA spans, sliding windows); it holds no
// reference and is never written.
using BlockTable = std::vector<int32_t>;
inline constexpr int32_t kFreedBlock = -1;  // runtime::kFreedBlock
// One table per KV-cache group, group 0 first (one without groups).
using BlockTables = std::vector<BlockTable>;
// Whole-block copies src -> dst to make before a step.
using BlockCopies = std::vector<std::pair<int32_t, int32_t>>;

struct BlockManagerOptions {
  int32_t num_blocks = 0;  // > 0
  int32_t block_size = 0;  // tokens per block, > 0
  bool enable_prefix_caching = true;
};

struct BlockManagerStats {
  int32_t num_blocks = 0;
  int32_t num_used = 0;          // ref >= 1
  int32_t num_cached_free = 0;   // ref 0 with a hash (evictable)
  int64_t prefix_queries = 0;    // full blocks looked up by MatchPrefix
  int64_t prefix_hits = 0;       // of which found
  int64_t evictions = 0;         // cached free blocks whose hash was dropped for reuse
  int64_t cow_copies = 0;        // blocks copied because a shared or cached block was written
};

class BlockManager {
 public:
  explicit BlockManager(const BlockManagerOptions& options);
  BlockManager(const BlockManager&) = delete;
  BlockManager& operator=(const BlockManager&) = delete;

  // The salt of a tenant's hash chain.
  static uint64_t HashTenant(absl::string_view tenant_name);
  // Chained hash of one full block.
  static uint64_t HashBlock(uint64_t parent_hash, absl::Span<const int32_t> token_ids);
  // Appends to `hashes` the chained hashes of the full blocks of `tokens`
  // not hashed yet (hashes->size() of them are), starting from `salt`.
  void ExtendHashes(uint64_t salt, absl::Span<const int32_t> tokens, std::vector<uint64_t>* hashes) const;

  // One fresh block with ref 1 and no hash, or nullopt when every block is
  // in use. May evict the least recently freed cached block.
  std::optional<int32_t> Allocate();
  void IncRef(int32_t block);
  // Drops one reference; at 0 the block becomes free (cached blocks keep
  // their hash until evicted, and become the most recently freed).
  void Release(int32_t block);

  // Releases a whole table, last block first (so tail blocks, the least
  // likely to be shared later, are evicted first), and clears it. Freed
  // entries are skipped.
  void ReleaseTable(BlockTable* table);
  // The same for every group's table, last position first across the
  // groups; the tables stay, empty.
  void ReleaseTables(BlockTables* tables);
  // Releases entries [begin, end) of `table` (last first) and marks them
  // kFreedBlock; entries already freed are skipped. Returns how many blocks
  // went back. A cached block keeps its hash, so a later request with the
  // same prefix can still hit it.
  int32_t ReleaseRange(BlockTable* table, int32_t begin, int32_t end);
  // `dst` becomes a copy of `src` sharing every block (ref + 1 each; freed
  // entries stay freed).
  void Fork(const BlockTable& src, BlockTable* dst);

  // Makes `table` hold positions [0, end) with the block of `begin`
  // (the first position to be written) and every later one exclusively
  // owned and unpublished: appends fresh blocks, and replaces a shared or
  // cached block at `begin` by a fresh copy recorded in `copies` (a full
  // prefix-cache hit recomputing its last token writes into the copy). All or nothing: false (and no change)
  // when there are not enough free blocks. Requires 0 <= begin <= end.
  bool PrepareWrite(BlockTable* table, int32_t begin, int32_t end, BlockCopies* copies);
  // PrepareWrite in every group's table, all or nothing across them.
  bool PrepareWrite(BlockTables* tables, int32_t begin, int32_t end, BlockCopies* copies);
  // Blocks PrepareWrite would take.
  int32_t BlocksNeededToWrite(const BlockTable& table, int32_t begin, int32_t end) const;
  int32_t BlocksNeededToWrite(const BlockTables& tables, int32_t begin, int32_t end) const;

  // Prefix-cache lookup: the longest run of cached blocks matching
  // `hashes` (and the token ids in `tokens`), at most `max_blocks`; each
  // found block gets a reference and is appended to `table` (which must be
  // empty). Returns the number found. No-op (0) when caching is off.
  // `salt` is the chain's first parent (HashTenant of the tenant).
  // `group`: the KV-cache group the table belongs to.
  int32_t MatchPrefix(uint64_t salt, absl::Span<const uint64_t> hashes, absl::Span<const int32_t> tokens,
                      int32_t max_blocks, BlockTable* table, int32_t group = 0);
  // The same over every group's (empty) table: the hit is the longest run
  // cached in every group, and each table gets that many blocks. Counts as
  // one lookup per block position in the stats.
  int32_t MatchPrefix(uint64_t salt, absl::Span<const uint64_t> hashes, absl::Span<const int32_t> tokens,
                      int32_t max_blocks, BlockTables* tables);
  // Publishes block `index` of `table` (full and computed) under
  // (hashes[index], group). No-op when caching is off, when it is already
  // cached, or when another block holds that key.
  void CacheFullBlock(uint64_t salt, const BlockTable& table, int32_t index, absl::Span<const uint64_t> hashes,
                      absl::Span<const int32_t> tokens, int32_t group = 0);
  void CacheFullBlock(uint64_t salt, const BlockTables& tables, int32_t index, absl::Span<const uint64_t> hashes,
                      absl::Span<const int32_t> tokens);

  int32_t num_blocks() const { return static_cast<int32_t>(ref_.size()); }
  int32_t block_size() const { return block_size_; }
  // Blocks that Allocate can still hand out (uncached + cached free).
  int32_t num_free() const { return num_free_; }
  int32_t ref_count(int32_t block) const;
  std::optional<uint64_t> block_hash(int32_t block) const;
  bool prefix_caching() const { return prefix_caching_; }
  BlockManagerStats stats() const;
  // Cached free blocks, least recently freed first (eviction order).
  std::vector<int32_t> EvictionOrder() const;

 private:
  static constexpr int32_t kNone = -1;
  struct CachedContent {
    uint64_t hash = 0;
    uint64_t parent = 0;
    int32_t group = 0;
    uint64_t key = 0;  // of index_: the hash for group 0, mixed with the group otherwise
  };
  static uint64_t IndexKey(uint64_t hash, int32_t group);
  // The cached block of (hashes[i], group) whose content matches, or kNone.
  int32_t LookUp(uint64_t salt, absl::Span<const uint64_t> hashes, absl::Span<const int32_t> tokens, int32_t i,
                 int32_t group) const;
  // Takes a reference on a cached block found by LookUp.
  void Revive(int32_t block);

  void CheckBlock(int32_t block) const;
  // A write into `block` must go to a copy: it is shared or published.
  bool MustCopyBeforeWrite(int32_t block) const;
  void LruPushBack(int32_t block);
  void LruRemove(int32_t block);
  // Drops the block's hash from the index.
  void Uncache(int32_t block);
  int32_t TakeFreeBlock();

  const int32_t block_size_;
  const bool prefix_caching_;
  std::vector<int32_t> ref_;                         // [num_blocks]
  std::vector<std::optional<CachedContent>> cached_; // [num_blocks] hash of a cached block
  std::vector<int32_t> tokens_;                      // [num_blocks * block_size] content of cached blocks
  absl::flat_hash_map<uint64_t, int32_t> index_;     // IndexKey(hash, group) -> block
  std::vector<int32_t> uncached_free_;               // stack of free uncached blocks
  // Intrusive LRU list of free cached blocks.
  std::vector<int32_t> lru_prev_, lru_next_;         // [num_blocks]
  int32_t lru_head_ = kNone, lru_tail_ = kNone;
  int32_t num_cached_free_ = 0;
  int32_t num_free_ = 0;
  int64_t prefix_queries_ = 0, prefix_hits_ = 0, evictions_ = 0, cow_copies_ = 0;
};

}  // namespace tern::scheduler
