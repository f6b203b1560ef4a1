#include "runtime/backend/backend.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/backend/attention_span_tables.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {

Tensor Tensor::Columns(int64_t begin, int64_t count) const {
  CHECK(begin >= 0 && count >= 0 && begin + count <= cols) << "columns out of range";
  Tensor t = *this;
  t.data = static_cast<uint8_t*>(data) + begin * int64_t(DTypeSize(dtype));
  t.cols = count;
  return t;
}

Tensor Tensor::Rows(int64_t begin, int64_t count) const {
  CHECK(begin >= 0 && count >= 0 && begin + count <= rows) << "rows out of range";
  Tensor t = *this;
  t.data = static_cast<uint8_t*>(data) + begin * stride * int64_t(DTypeSize(dtype));
  t.rows = count;
  if (row_scales != nullptr) t.row_scales = row_scales + begin;
  return t;
}

absl::Status Backend::SupportsWeightScheme(const LinearScheme& scheme) const {
  if (scheme.scheme == WeightScheme::kDense) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat("the ", name(), " backend cannot run ", scheme.ToString(),
                                               " weights yet; serve the model on the cpu backend or with a dense "
                                               "checkpoint and weight_scheme \"auto\""));
}

absl::StatusOr<std::unique_ptr<LinearWeight>> Backend::PrepareQuantizedLinear(const QuantizedLinear& weight) {
  RETURN_IF_ERROR(SupportsWeightScheme(weight.scheme));
  return absl::UnimplementedError(absl::StrCat("the ", name(), " backend has no ", weight.scheme.ToString(), " linear"));
}

absl::StatusOr<std::unique_ptr<AttentionSpans>> Backend::UploadAttentionSpans(const MoaPlan& plan) {
  return std::unique_ptr<AttentionSpans>(new HostAttentionSpans(AttentionSpanTables::FromPlan(plan)));
}

bool ForwardBatch::IsDecodeOnly() const {
  if (num_tokens() != num_seqs() || logits_rows.size() != context_lens.size()) return false;
  for (int32_t i = 0; i < num_tokens(); ++i) {
    if (logits_rows[i] != i) return false;
  }
  return true;
}

void PadDecodeBatch(int32_t num_seqs, ForwardBatch* batch) {
  CHECK(batch->IsDecodeOnly()) << "only decode-only batches are padded";
  const int32_t groups = batch->num_kv_groups;
  const int32_t pad = num_seqs - batch->num_seqs();
  if (pad <= 0) return;
  const int32_t tokens = batch->num_tokens();
  const int32_t seqs = batch->num_seqs();
  // Per group: the real slots then pad slots of -1; the real offsets then one
  // one-block table each, group sections rebuilt in place.
  std::vector<int32_t> slots, indptr, ids;
  slots.reserve(size_t(groups) * (tokens + pad));
  indptr.reserve(size_t(groups) * (seqs + pad + 1));
  ids.reserve(batch->block_ids.size() + size_t(groups) * pad);
  for (int32_t g = 0; g < groups; ++g) {
    const int32_t* s = batch->group_slots(g);
    slots.insert(slots.end(), s, s + tokens);
    slots.insert(slots.end(), size_t(pad), -1);
    const int32_t* ip = batch->group_block_indptr(g);
    const int32_t base = int32_t(ids.size()) - ip[0];
    for (int32_t q = 0; q <= seqs; ++q) indptr.push_back(ip[q] + base);
    ids.insert(ids.end(), batch->block_ids.begin() + ip[0], batch->block_ids.begin() + ip[seqs]);
    for (int32_t p = 0; p < pad; ++p) {
      ids.push_back(0);
      indptr.push_back(int32_t(ids.size()));
    }
  }
  for (int32_t p = 0; p < pad; ++p) {
    const int32_t row = batch->num_tokens();
    batch->token_ids.push_back(0);
    batch->positions.push_back(0);
    batch->query_start.push_back(row + 1);
    batch->context_lens.push_back(1);
    batch->logits_rows.push_back(row);
  }
  batch->slots = std::move(slots);
  batch->block_indptr = std::move(indptr);
  batch->block_ids = std::move(ids);
}

absl::Status Backend::SampleRows(Tensor logits, absl::Span<const SampleRequest> requests,
                                 std::vector<absl::StatusOr<SampledToken>>* out) {
  RETURN_IF_ERROR(FinishStep());
  if (logits.rows != int64_t(requests.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: ", logits.rows, " logits rows for ", requests.size(), " requests"));
  }
  const size_t vocab = size_t(logits.cols);
  host_logits_.resize(size_t(logits.rows) * vocab);
  if (logits.rows > 0) ReadToHost(logits, host_logits_.data());
  out->clear();
  out->reserve(requests.size());
  for (size_t r = 0; r < requests.size(); ++r) {
    auto token = host_sampler_.Sample(absl::MakeConstSpan(&host_logits_[r * vocab], vocab), *requests[r].params,
                                      *requests[r].state);
    if (!token.ok()) {
      out->push_back(absl::Status(token.status().code(), absl::StrCat("row ", r, ": ", token.status().message())));
      continue;
    }
    out->push_back(std::move(*token));
  }
  return absl::OkStatus();
}

void Backend::EnqueueSampleRows(Tensor logits, absl::Span<const SampleRequest> requests) {
  enqueued_status_ = SampleRows(logits, requests, &enqueued_tokens_);
}

absl::Status Backend::FinishSampleRows(std::vector<absl::StatusOr<SampledToken>>* out) {
  *out = std::move(enqueued_tokens_);
  enqueued_tokens_.clear();
  return std::exchange(enqueued_status_, absl::OkStatus());
}

absl::Status ForwardBatch::Validate(const KvCacheSpec& cache, int64_t vocab_size) const {
  const auto invalid = [](const std::string& what) { return absl::InvalidArgumentError("batch: " + what); };
  const int32_t n = num_tokens();
  const int32_t s = num_seqs();
  const int32_t groups = num_kv_groups;
  if (groups != cache.num_groups()) {
    return invalid(absl::StrCat("num_kv_groups is ", groups, "; the cache has ", cache.num_groups(), " groups"));
  }
  if (positions.size() != token_ids.size() || slots.size() != size_t(groups) * token_ids.size()) {
    return invalid("positions need one entry per token and slots one per token and group");
  }
  if (query_start.size() != size_t(s) + 1 || block_indptr.size() != size_t(groups) * (size_t(s) + 1)) {
    return invalid("query_start needs num_seqs + 1 entries and block_indptr num_seqs + 1 per group");
  }
  if (query_start.front() != 0 || query_start.back() != n) return invalid("query_start must span all tokens");
  for (int32_t g = 0; g < groups; ++g) {
    const int32_t* ip = group_block_indptr(g);
    const int32_t begin = g == 0 ? 0 : group_block_indptr(g - 1)[s];
    const int32_t end = g + 1 == groups ? int32_t(block_ids.size()) : group_block_indptr(g + 1)[0];
    if (ip[0] != begin || ip[s] != end) {
      return invalid(absl::StrCat("block_indptr of group ", g, " must span its part of block_ids"));
    }
  }
  for (int32_t id : token_ids) {
    if (id < 0 || id >= vocab_size) return invalid(absl::StrCat("token id ", id, " outside the vocabulary"));
  }
  for (int32_t b : block_ids) {
    if ((b < 0 && b != kFreedBlock) || b >= cache.num_blocks) {
      return invalid(absl::StrCat("block id ", b, " outside the cache"));
    }
  }
  const int64_t num_slots = int64_t(cache.num_blocks) * cache.block_size;
  for (int32_t slot : slots) {
    if (slot < 0 || slot >= num_slots) return invalid(absl::StrCat("slot ", slot, " outside the cache"));
  }
  for (int32_t q = 0; q < s; ++q) {
    const int32_t n_q = query_start[q + 1] - query_start[q];
    if (n_q < 0) return invalid("offsets must not decrease");
    if (context_lens[q] < n_q) return invalid(absl::StrCat("sequence ", q, ": context shorter than its new tokens"));
    for (int32_t g = 0; g < groups; ++g) {
      const int32_t* ip = group_block_indptr(g);
      const int32_t* group_slot = group_slots(g);
      const int32_t blocks = ip[q + 1] - ip[q];
      if (blocks < 0) return invalid("offsets must not decrease");
      if (int64_t(blocks) * cache.block_size < context_lens[q]) {
        return invalid(absl::StrCat("sequence ", q, ": ", blocks, " blocks cannot hold ", context_lens[q], " tokens"));
      }
      for (int32_t i = 0; i < n_q; ++i) {
        const int32_t row = query_start[q] + i;
        const int32_t position = context_lens[q] - n_q + i;
        if (g == 0 && positions[row] != position) {
          return invalid(absl::StrCat("token ", row, " has position ", positions[row], ", expected ", position));
        }
        const int32_t block = block_ids[ip[q] + position / cache.block_size];
        if (block == kFreedBlock) return invalid(absl::StrCat("token ", row, " is written into a freed block"));
        if (group_slot[row] != block * cache.block_size + position % cache.block_size) {
          return invalid(absl::StrCat("token ", row, " slot does not match its block table"));
        }
      }
    }
  }
  for (int32_t row : logits_rows) {
    if (row < 0 || row >= n) return invalid(absl::StrCat("logits row ", row, " outside the batch"));
  }
  return absl::OkStatus();
}

}  // namespace tern::runtime
