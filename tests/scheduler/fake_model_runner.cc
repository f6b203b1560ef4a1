#include "tests/scheduler/fake_model_runner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tern::scheduler::testing {

FakeModelRunner::FakeModelRunner(int32_t num_blocks, int32_t block_size, int64_t vocab_size, int64_t max_context)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      vocab_size_(vocab_size),
      max_context_(max_context),
      kv_(size_t(num_blocks) * block_size, -1) {}

int32_t FakeModelRunner::NextToken(absl::Span<const int32_t> context, int64_t vocab_size, uint32_t stream) {
  uint64_t h = 0x12345678ULL + context.size() + (uint64_t(stream) << 40);
  for (int32_t t : context) {
    h ^= uint64_t(uint32_t(t)) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  }
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 32;
  return static_cast<int32_t>(h % uint64_t(vocab_size));
}

std::vector<int32_t> FakeModelRunner::RetainedPositions(const runtime::KvRetention* retention, int32_t end) {
  std::vector<int32_t> positions;
  const int32_t sink = retention == nullptr ? end : std::min(end, retention->sink_tokens());
  const int32_t band = retention == nullptr ? end : std::max(sink, retention->FreeBefore(end - 1));
  for (int32_t p = 0; p < sink; ++p) positions.push_back(p);
  for (int32_t p = band; p < end; ++p) positions.push_back(p);
  return positions;
}

std::vector<int32_t> FakeModelRunner::ReadContext(const runtime::KvCacheGroups* groups,
                                                 absl::Span<const int32_t> tokens, int32_t end) {
  std::vector<int32_t> context;
  const int32_t num_groups = groups != nullptr ? groups->num_groups() : 1;
  for (int32_t g = 0; g < num_groups; ++g) {
    const runtime::KvRetention* r = groups != nullptr ? groups->group_retention(g) : nullptr;
    for (int32_t p : RetainedPositions(r, end)) context.push_back(tokens[size_t(p)]);
  }
  return context;
}

absl::StatusOr<runtime::StepResult> FakeModelRunner::Execute(const runtime::StepPlan& plan) {
  RecordedStep record;
  record.block_copies = plan.block_copies;
  for (const auto& [src, dst] : plan.block_copies) {
    if (src < 0 || dst < 0 || src >= num_blocks_ || dst >= num_blocks_) {
      return absl::InvalidArgumentError("block copy outside the cache");
    }
    std::copy(kv_.begin() + size_t(src) * block_size_, kv_.begin() + size_t(src + 1) * block_size_,
              kv_.begin() + size_t(dst) * block_size_);
  }
  runtime::StepResult result;
  // Writes first, then reads: as a real forward pass, every sequence sees
  // the KV of the whole step.
  const int32_t num_groups = groups_ != nullptr ? groups_->num_groups() : 1;
  const bool retention = groups_ != nullptr && groups_->any_retention();
  for (const runtime::SequenceStep& s : plan.sequences) {
    const int32_t n = static_cast<int32_t>(s.token_ids.size());
    if (n == 0) return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, " has no tokens"));
    if (s.input_from_last_sample) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": an unresolved input reached Execute"));
    }
    for (int32_t t : s.token_ids) {
      if (t < 0) return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": token ", t, " computed"));
    }
    const int32_t end = s.num_computed_tokens + n;
    if (int32_t(s.block_tables.size()) != num_groups) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": ", s.block_tables.size(),
                                                     " block tables for ", num_groups, " groups"));
    }
    for (const std::vector<int32_t>& table : s.block_tables) {
      if (int64_t(table.size()) * block_size_ < end) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": too few blocks"));
      }
      for (int32_t b : table) {
        const bool freed = b == -1 && retention;
        if (!freed && (b < 0 || b >= num_blocks_)) return absl::InvalidArgumentError("block id outside the cache");
      }
      for (int32_t i = 0; i < n; ++i) {
        const int32_t p = s.num_computed_tokens + i;
        const int32_t block = table[p / block_size_];
        if (block < 0) {
          return absl::InvalidArgumentError(absl::StrCat("position ", p, " is written into a freed block"));
        }
        kv_[size_t(block) * block_size_ + p % block_size_] = s.token_ids[i];
      }
    }
    if (record_) {
      RecordedSequence r{s.seq_id, std::vector<int32_t>(s.token_ids.begin(), s.token_ids.end()),
                         s.num_computed_tokens, s.block_tables[0], {}, s.sample};
      r.block_tables.assign(s.block_tables.begin(), s.block_tables.end());
      record.sequences.push_back(std::move(r));
    }
  }
  for (const runtime::SequenceStep& s : plan.sequences) {
    if (!s.sample) continue;
    if (s.sampling == nullptr || s.sampling_state == nullptr) {
      return absl::InvalidArgumentError("sample without sampling parameters");
    }
    const int32_t end = s.num_computed_tokens + static_cast<int32_t>(s.token_ids.size());
    context_.clear();
    for (int32_t g = 0; g < num_groups; ++g) {
      const runtime::KvRetention* r = groups_ != nullptr ? groups_->group_retention(g) : nullptr;
      const std::vector<int32_t>& table = s.block_tables[size_t(g)];
      for (int32_t p : RetainedPositions(r, end)) {
        const int32_t block = table[p / block_size_];
        if (block < 0) {
          return absl::InvalidArgumentError(absl::StrCat("position ", p, " of group ", g, " is read from a freed block"));
        }
        context_.push_back(kv_[size_t(block) * block_size_ + p % block_size_]);
      }
    }
    runtime::SequenceOutput out;
    out.seq_id = s.seq_id;
    if (poison_token_ >= 0 && std::find(context_.begin(), context_.end(), poison_token_) != context_.end()) {
      out.token = absl::InvalidArgumentError(
          absl::StrCat("row ", result.outputs.size(), ": sampling: logit of token 0 is nan"));
    } else {
      runtime::SampledToken token;
      token.token_id = NextToken(context_, vocab_size_, s.sampling_state->stream());
      out.token = token;
    }
    result.outputs.push_back(out);
  }
  if (record_) steps_.push_back(std::move(record));
  return result;
}

}  // namespace tern::scheduler::testing
