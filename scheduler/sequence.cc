#include "scheduler/sequence.h"

#include <utility>

#include "runtime/base/check.h"

namespace tern::scheduler {

Sequence::Sequence(int64_t seq_id, int32_t index, SequenceGroup* group, std::vector<int32_t> prompt, uint64_t seed,
                   const runtime::SamplingParams& params, const std::vector<int32_t>& eos_token_ids,
                   const runtime::Tokenizer* tokenizer)
    : seq_id_(seq_id),
      index_(index),
      group_(group),
      tokens_(std::move(prompt)),
      num_prompt_tokens_(static_cast<int32_t>(tokens_.size())),
      salt_(BlockManager::HashTenant(group->tenant().name)),
      sampling_state_(seed, static_cast<uint32_t>(index), tokens_,
                      params.HasPenalties() ? runtime::OutputCounts::kTracked : runtime::OutputCounts::kUntracked),
      stop_checker_(params, eos_token_ids),
      params_(&params),
      eos_token_ids_(&eos_token_ids),
      tokenizer_(tokenizer) {
  if (tokenizer != nullptr) {
    // The output continues the prompt, so a SentencePiece leading space is kept.
    detokenizer_ = std::make_unique<runtime::IncrementalDetokenizer>(
        *tokenizer, runtime::IncrementalDetokenizer::Options{.skip_special_tokens = params.skip_special_tokens,
                                                             .at_sequence_start = false});
  }
}

std::unique_ptr<Sequence> Sequence::Fork(int64_t seq_id, int32_t index, BlockManager* blocks) const {
  CHECK_EQ(num_output_tokens(), 0) << "fork after output";
  auto child = std::make_unique<Sequence>(seq_id, index, group_, tokens_, group_->seed(), *params_, *eos_token_ids_,
                                          tokenizer_);
  child->num_computed_tokens_ = num_computed_tokens_;
  child->block_hashes_ = block_hashes_;
  child->status_ = status_;
  blocks->Fork(block_table_, &child->block_table_);
  return child;
}

void Sequence::UpdateHashes(const BlockManager& blocks) {
  if (!blocks.prefix_caching()) return;
  blocks.ExtendHashes(salt_, tokens_, &block_hashes_);
}

void Sequence::AdvanceComputed(int32_t n, BlockManager* blocks) {
  const int32_t bs = blocks->block_size();
  const int32_t before = num_computed_tokens_ / bs;
  num_computed_tokens_ += n;
  CHECK_LE(num_computed_tokens_, num_tokens());
  CHECK_GE(int64_t(block_table_.size()) * bs, num_computed_tokens_);
  const int32_t after = num_computed_tokens_ / bs;
  if (after == before || !blocks->prefix_caching()) return;
  UpdateHashes(*blocks);
  for (int32_t i = before; i < after; ++i) blocks->CacheFullBlock(salt_, block_table_, i, block_hashes_, tokens_);
}

void Sequence::ResetComputed(BlockManager* blocks) {
  blocks->ReleaseTable(&block_table_);
  num_computed_tokens_ = 0;
}

void Sequence::Finish(runtime::FinishReason reason, runtime::StopReason stop_reason) {
  finish_reason_ = reason;
  stop_reason_ = std::move(stop_reason);
  status_ = SequenceStatus::kFinished;
}

void Sequence::AppendOutput(const runtime::SampledToken& token, int64_t max_context) {
  CHECK(!finished()) << "output appended to finished sequence " << seq_id_;
  tokens_.push_back(token.token_id);
  sampling_state_.AppendOutputToken(token.token_id);
  pending_.token_ids.push_back(token.token_id);
  if (params_->logprobs.has_value()) pending_.logprobs.push_back(token);
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
  if (finished()) return;
  // Held-back text that might have started a stop string is not released:
  // the client asked to stop, and the text is not known to be final.
  aborted_ = true;
  Finish(runtime::FinishReason::kNone, std::monostate());
}

SequenceGroup::SequenceGroup(Options options, int64_t arrival_order, uint64_t seed)
    : options_(std::move(options)), arrival_order_(arrival_order), seed_(seed) {
  CHECK(options_.tenant != nullptr);
}

bool SequenceGroup::AllFinished() const {
  if (needs_fork()) return false;
  for (const auto& s : sequences_) {
    if (!s->finished()) return false;
  }
  return true;
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
