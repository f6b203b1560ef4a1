#include "scheduler/sequence.h"

#include <algorithm>
#include <utility>

#include "runtime/base/check.h"

namespace tern::scheduler {

Sequence::Sequence(int64_t seq_id, int32_t index, SequenceGroup* group, std::vector<int32_t> prompt, uint64_t seed,
                   const runtime::SamplingParams& params, const std::vector<int32_t>& eos_token_ids,
                   const runtime::Tokenizer* tokenizer, int32_t num_kv_groups)
    : seq_id_(seq_id),
      index_(index),
      group_(group),
      tokens_(std::move(prompt)),
      num_prompt_tokens_(static_cast<int32_t>(tokens_.size())),
      salt_(BlockManager::HashTenant(group->tenant().name)),
      sampling_state_(seed, static_cast<uint32_t>(index), tokens_,
                      params.HasPenalties() ? runtime::OutputCounts::kTracked : runtime::OutputCounts::kUntracked),
      stop_checker_(params, eos_token_ids),
      params_(params) {
  CHECK_GE(num_kv_groups, 1);
  block_tables_.resize(size_t(num_kv_groups));
  released_until_.assign(size_t(num_kv_groups), 0);
  if (tokenizer != nullptr) {
    // The output continues the prompt, so a SentencePiece leading space is kept.
    detokenizer_ = std::make_unique<runtime::IncrementalDetokenizer>(
        *tokenizer, runtime::IncrementalDetokenizer::Options{.skip_special_tokens = params.skip_special_tokens,
                                                             .at_sequence_start = false});
  }
}

void Sequence::AttachSharedPrefix(const Sequence& carrier, int32_t prefix_len, BlockManager* blocks) {
  CHECK(!holds_blocks() && num_computed_tokens_ == 0) << "attach to a sequence holding KV";
  CHECK_LE(prefix_len, carrier.num_computed_tokens());
  CHECK_LE(prefix_len, num_tokens());
  CHECK_EQ(carrier.block_tables().size(), block_tables_.size());
  CHECK(std::equal(tokens_.begin(), tokens_.begin() + prefix_len, carrier.tokens().begin()))
      << "sequence " << seq_id_ << " does not share the prefix of " << carrier.seq_id();
  const int32_t bs = blocks->block_size();
  const size_t num_blocks = static_cast<size_t>((prefix_len + bs - 1) / bs);
  for (size_t g = 0; g < block_tables_.size(); ++g) {
    const BlockTable& from = carrier.block_tables()[g];
    CHECK_LE(num_blocks, from.size());
    BlockTable prefix(from.begin(), from.begin() + num_blocks);
    blocks->Fork(prefix, &block_tables_[g]);
    released_until_[g] = 0;
  }
  num_computed_tokens_ = prefix_len;
}

bool Sequence::holds_blocks() const {
  return std::any_of(block_tables_.begin(), block_tables_.end(), [](const BlockTable& t) { return !t.empty(); });
}

void Sequence::UpdateHashes(const BlockManager& blocks) {
  if (!blocks.prefix_caching()) return;
  blocks.ExtendHashes(salt_, known_tokens(), &block_hashes_);
}

void Sequence::AdvanceComputed(int32_t n, BlockManager* blocks) {
  const int32_t bs = blocks->block_size();
  const int32_t before = num_computed_tokens_ / bs;
  num_computed_tokens_ += n;
  CHECK_LE(num_computed_tokens_, num_tokens());
  for (const BlockTable& t : block_tables_) CHECK_GE(int64_t(t.size()) * bs, num_computed_tokens_);
  const int32_t after = num_computed_tokens_ / bs;
  if (after == before || !blocks->prefix_caching()) return;
  UpdateHashes(*blocks);
  for (int32_t i = before; i < after; ++i) blocks->CacheFullBlock(salt_, block_tables_, i, block_hashes_, tokens_);
}

void Sequence::ResetComputed(BlockManager* blocks) {
  blocks->ReleaseTables(&block_tables_);
  num_computed_tokens_ = 0;
  std::fill(released_until_.begin(), released_until_.end(), 0);
}

int32_t Sequence::ReleaseUnread(const runtime::KvCacheGroups& groups, BlockManager* blocks) {
  CHECK_EQ(size_t(groups.num_groups()), block_tables_.size());
  const int32_t bs = blocks->block_size();
  int32_t released = 0;
  for (int32_t g = 0; g < groups.num_groups(); ++g) {
    const runtime::KvRetention* retention = groups.group_retention(g);
    if (retention == nullptr) continue;
    BlockTable& table = block_tables_[size_t(g)];
    const int32_t first = (retention->sink_tokens() + bs - 1) / bs;  // blocks holding sinks stay
    const int32_t end = std::min<int32_t>(retention->FreeBefore(num_computed_tokens_) / bs,
                                          static_cast<int32_t>(table.size()));
    const int32_t begin = std::max(first, released_until_[size_t(g)]);
    if (end <= begin) continue;
    released_until_[size_t(g)] = end;
    released += blocks->ReleaseRange(&table, begin, end);
  }
  return released;
}

int32_t Sequence::num_held_blocks() const {
  int32_t held = 0;
  for (const BlockTable& t : block_tables_) {
    held += static_cast<int32_t>(std::count_if(t.begin(), t.end(), [](int32_t b) { return b != kFreedBlock; }));
  }
  return held;
}

void Sequence::Finish(runtime::FinishReason reason, runtime::StopReason stop_reason) {
  finish_reason_ = reason;
  stop_reason_ = std::move(stop_reason);
  status_ = SequenceStatus::kFinished;
}

void Sequence::AppendOutput(const runtime::SampledToken& token, int64_t max_context) {
  CHECK(!finished()) << "output appended to finished sequence " << seq_id_;
  CHECK(!reserved_output_) << "output appended to sequence " << seq_id_ << " over a reserved one";
  tokens_.push_back(token.token_id);
  sampling_state_.AppendOutputToken(token.token_id);
  AcceptOutput(token, max_context);
}

void Sequence::ReserveOutput() {
  CHECK(!finished()) << "output reserved for finished sequence " << seq_id_;
  CHECK(!reserved_output_) << "sequence " << seq_id_ << " reserves a second output";
  tokens_.push_back(kReservedToken);
  sampling_state_.AdvanceStream();
  reserved_output_ = true;
  reserved_counted_ = -1;
}

void Sequence::CountReservedOutput(int32_t token_id) {
  CHECK(reserved_output_ && reserved_counted_ < 0) << "sequence " << seq_id_ << " has no uncounted reserved output";
  if (!sampling_state_.tracks_output_counts()) return;
  sampling_state_.CountOutputToken(token_id);
  reserved_counted_ = token_id;
}

void Sequence::ResolveOutput(const runtime::SampledToken& token, int64_t max_context) {
  CHECK(reserved_output_) << "sequence " << seq_id_ << " has no reserved output";
  CHECK(!finished()) << "output resolved for finished sequence " << seq_id_;
  if (reserved_counted_ < 0) {
    sampling_state_.CountOutputToken(token.token_id);
  } else {
    CHECK_EQ(reserved_counted_, token.token_id) << "sequence " << seq_id_ << " counted another token";
  }
  tokens_.back() = token.token_id;
  reserved_output_ = false;
  reserved_counted_ = -1;
  AcceptOutput(token, max_context);
}

void Sequence::DropReservedOutput() {
  if (!reserved_output_) return;
  tokens_.pop_back();
  sampling_state_.RetractOutputToken(reserved_counted_);
  reserved_output_ = false;
  reserved_counted_ = -1;
  // Computed positions never include the reservation until its step is
  // applied, and that step resolves it first.
  num_computed_tokens_ = std::min(num_computed_tokens_, num_tokens());
}

void Sequence::AcceptOutput(const runtime::SampledToken& token, int64_t max_context) {
  pending_.token_ids.push_back(token.token_id);
  if (params_.logprobs.has_value()) pending_.logprobs.push_back(token);
  std::string text;
  if (detokenizer_ != nullptr) {
    // A model vocabulary may be larger than the tokenizer's: such ids have no text.
    auto piece = detokenizer_->Push(token.token_id);
    if (piece.ok()) text = *std::move(piece);
  }
  runtime::StopUpdate update = stop_checker_.Append(token.token_id, text);
  pending_.text += update.text;
  if (update.finish_reason != runtime::FinishReason::kNone) {
    if (detokenizer_ != nullptr && update.finish_reason == runtime::FinishReason::kLength) {
      pending_.text += detokenizer_->Finish();
    }
    Finish(update.finish_reason, std::move(update.stop_reason));
    return;
  }
  if (num_tokens() >= max_context) {
    // Held-back text first: it precedes the detokenizer's incomplete tail.
    pending_.text += stop_checker_.Flush();
    if (detokenizer_ != nullptr) pending_.text += detokenizer_->Finish();
    Finish(runtime::FinishReason::kLength, std::monostate());
  }
}

void Sequence::Abort() {
  DropReservedOutput();
  if (finished()) return;
  // Held-back text that might have started a stop string is not released:
  // the client asked to stop, and the text is not known to be final.
  aborted_ = true;
  Finish(runtime::FinishReason::kNone, std::monostate());
}

SequenceGroup::SequenceGroup(Options options, int64_t arrival_order, uint64_t seed, int32_t shared_prefix_len)
    : options_(std::move(options)), arrival_order_(arrival_order), seed_(seed), shared_prefix_len_(shared_prefix_len) {
  CHECK(options_.tenant != nullptr);
  CHECK_GE(shared_prefix_len_, 0);
}

Sequence* SequenceGroup::carrier() const {
  for (const auto& s : sequences_) {
    if (!s->finished()) return s.get();
  }
  return nullptr;
}

int32_t SequenceGroup::num_live() const {
  int32_t n = 0;
  for (const auto& s : sequences_) n += s->finished() ? 0 : 1;
  return n;
}

bool SequenceGroup::AllFinished() const { return num_live() == 0; }

int32_t SequenceGroup::num_prompt_tokens() const {
  if (sequences_.empty()) return 0;
  const Sequence& first = *sequences_.front();
  const auto same_prompt = [&](const std::unique_ptr<Sequence>& s) {
    return s->num_prompt_tokens() == first.num_prompt_tokens() &&
           std::equal(s->tokens().begin(), s->tokens().begin() + s->num_prompt_tokens(), first.tokens().begin());
  };
  if (std::all_of(sequences_.begin(), sequences_.end(), same_prompt)) return first.num_prompt_tokens();
  int32_t n = shared_prefix_len_;
  for (const auto& s : sequences_) n += s->num_prompt_tokens() - shared_prefix_len_;
  return n;
}

bool ServedBefore(const Sequence& a, const Sequence& b) {
  const SequenceGroup& ga = *a.group();
  const SequenceGroup& gb = *b.group();
  if (ga.priority() != gb.priority()) return ga.priority() > gb.priority();
  if (ga.arrival_time() != gb.arrival_time()) return ga.arrival_time() < gb.arrival_time();
  if (ga.arrival_order() != gb.arrival_order()) return ga.arrival_order() < gb.arrival_order();
  return a.index() < b.index();
}

}  // namespace tern::scheduler
