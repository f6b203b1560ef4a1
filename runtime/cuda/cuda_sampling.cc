#include "runtime/cuda/cuda_sampling.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tern::runtime {
namespace {

constexpr size_t kAlign = 16;

size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

absl::Status RowError(size_t row, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("row ", row, ": ", what));
}

}  // namespace

void CudaSampling::Buffer::Release() {
  if (data != nullptr) {
    if (pinned) {
      cudaFreeHost(data);
    } else {
      cudaFree(data);
    }
  }
  data = nullptr;
  bytes = 0;
}

cudaError_t CudaSampling::Buffer::Reserve(size_t wanted) {
  if (wanted <= bytes) return cudaSuccess;
  Release();
  // Half again as much, so slowly growing batches do not reallocate every step.
  const size_t size = std::max<size_t>(wanted + wanted / 2, 256);
  const cudaError_t error = pinned ? cudaMallocHost(&data, size) : cudaMalloc(&data, size);
  if (error != cudaSuccess) {
    data = nullptr;
    return error;
  }
  bytes = size;
  return cudaSuccess;
}

CudaSampling::~CudaSampling() {
  staging_.Release();
  inputs_.Release();
  workspace_.Release();
  outputs_.Release();
  results_.Release();
}

absl::Status CudaSampling::AppendPenalties(size_t row, const SamplingParams& p, const SequenceSamplingState& state) {
  if (!state.tracks_output_counts()) {
    return absl::FailedPreconditionError(
        absl::StrCat("row ", row, ": penalties need a sampling state that tracks output counts"));
  }
  const auto in_vocab = [this](int32_t id) { return id >= 0 && int64_t(id) < vocab_; };
  const auto out_of_vocab = [this, row](int32_t id) {
    return RowError(row, absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab_, ")"));
  };
  // The repetition penalty reads prompt ∪ output; frequency and presence
  // only output tokens, so prompt-only tokens matter only for the former.
  if (p.repetition_penalty != 1.0f) {
    for (int32_t id : state.prompt_token_set()) {
      if (!in_vocab(id)) return out_of_vocab(id);
      const auto it = state.output_counts().find(id);
      entries_.push_back({id, it == state.output_counts().end() ? 0 : it->second, 1});
    }
  }
  for (const auto& [id, count] : state.output_counts()) {
    if (!in_vocab(id)) return out_of_vocab(id);
    if (p.repetition_penalty != 1.0f && state.InPrompt(id)) continue;  // listed above
    entries_.push_back({id, count, state.InPrompt(id) ? 1 : 0});
  }
  return absl::OkStatus();
}

absl::Status CudaSampling::Prepare(const Tensor& logits, absl::Span<const SampleRequest> requests) {
  num_rows_ = 0;
  if (logits.rows != int64_t(requests.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: ", logits.rows, " logits rows for ", requests.size(), " requests"));
  }
  if (logits.cols <= 0 && !requests.empty()) return absl::InvalidArgumentError("sampling: empty logits row");
  vocab_ = logits.cols;
  rows_.clear();
  row_errors_.assign(requests.size(), absl::OkStatus());
  indptr_.assign(1, 0);
  entries_.clear();
  num_penalized_rows_ = 0;
  for (size_t r = 0; r < requests.size(); ++r) {
    const SampleRequest& request = requests[r];
    if (request.params == nullptr || request.state == nullptr) {
      return RowError(r, "sampling needs parameters and a sequence state");
    }
    const SamplingParams& p = *request.params;
    const SequenceSamplingState& state = *request.state;
    kernels::SamplingRowParams row;
    row.temperature = p.temperature;
    row.top_p = p.top_p;
    row.top_k = p.top_k;
    row.min_p = p.min_p;
    row.repetition_penalty = p.repetition_penalty;
    row.presence_penalty = p.presence_penalty;
    row.frequency_penalty = p.frequency_penalty;
    row.num_logprobs = p.logprobs.has_value() ? std::clamp(*p.logprobs, 0, kernels::kMaxSampledLogprobs) : -1;
    // Greedy rows never draw; the host Sampler does not either.
    row.uniform = p.temperature == 0.0f ? 0.0 : state.NextUniform();
    if (p.HasPenalties()) {
      row.workspace_row = num_penalized_rows_++;
      absl::Status penalties_ok = AppendPenalties(r, p, state);
      if (!penalties_ok.ok()) {
        // This row fails alone; the kernel samples it penalty-free and
        // Collect reports the error instead of its token.
        row_errors_[r] = std::move(penalties_ok);
        entries_.resize(size_t(indptr_.back()));
        row.workspace_row = -1;
        --num_penalized_rows_;
      }
    }
    indptr_.push_back(int32_t(entries_.size()));
    rows_.push_back(row);
  }
  num_rows_ = int32_t(requests.size());
  if (num_rows_ == 0) return absl::OkStatus();

  params_offset_ = 0;
  indptr_offset_ = AlignUp(rows_.size() * sizeof(kernels::SamplingRowParams));
  entries_offset_ = indptr_offset_ + AlignUp(indptr_.size() * sizeof(int32_t));
  staged_bytes_ = entries_offset_ + entries_.size() * sizeof(kernels::SamplingPenalty);
  // Pinned buffers are reused step after step: the previous step's copies
  // finished when its SampleRows synchronized.
  if (cudaError_t e = staging_.Reserve(staged_bytes_); e != cudaSuccess) {
    num_rows_ = 0;
    return absl::InternalError(absl::StrCat("sampling: pinned staging: ", cudaGetErrorString(e)));
  }
  if (cudaError_t e = results_.Reserve(rows_.size() * sizeof(kernels::SampledRow)); e != cudaSuccess) {
    num_rows_ = 0;
    return absl::InternalError(absl::StrCat("sampling: pinned results: ", cudaGetErrorString(e)));
  }
  auto* base = static_cast<uint8_t*>(staging_.data);
  std::memcpy(base + params_offset_, rows_.data(), rows_.size() * sizeof(kernels::SamplingRowParams));
  std::memcpy(base + indptr_offset_, indptr_.data(), indptr_.size() * sizeof(int32_t));
  if (!entries_.empty()) {
    std::memcpy(base + entries_offset_, entries_.data(), entries_.size() * sizeof(kernels::SamplingPenalty));
  }
  return absl::OkStatus();
}

cudaError_t CudaSampling::Enqueue(kernels::ScalarType type, const Tensor& logits, cudaStream_t stream) {
  if (num_rows_ == 0) return cudaSuccess;
  if (cudaError_t e = inputs_.Reserve(staged_bytes_); e != cudaSuccess) return e;
  if (cudaError_t e = outputs_.Reserve(size_t(num_rows_) * sizeof(kernels::SampledRow)); e != cudaSuccess) return e;
  if (num_penalized_rows_ > 0) {
    if (cudaError_t e = workspace_.Reserve(size_t(num_penalized_rows_) * size_t(vocab_) * sizeof(float));
        e != cudaSuccess) {
      return e;
    }
  }
  if (cudaError_t e = cudaMemcpyAsync(inputs_.data, staging_.data, staged_bytes_, cudaMemcpyHostToDevice, stream);
      e != cudaSuccess) {
    return e;
  }
  const auto* base = static_cast<const uint8_t*>(inputs_.data);
  kernels::SampleRowsParams p;
  p.num_rows = num_rows_;
  p.vocab = vocab_;
  p.row_stride = logits.stride;
  p.logits = logits.data;
  p.rows = reinterpret_cast<const kernels::SamplingRowParams*>(base + params_offset_);
  p.penalty_indptr = reinterpret_cast<const int32_t*>(base + indptr_offset_);
  p.penalties = reinterpret_cast<const kernels::SamplingPenalty*>(base + entries_offset_);
  p.workspace = num_penalized_rows_ > 0 ? static_cast<float*>(workspace_.data) : nullptr;
  p.out = static_cast<kernels::SampledRow*>(outputs_.data);
  if (cudaError_t e = kernels::LaunchSampleRows(type, p, stream); e != cudaSuccess) return e;
  return cudaMemcpyAsync(results_.data, outputs_.data, size_t(num_rows_) * sizeof(kernels::SampledRow),
                         cudaMemcpyDeviceToHost, stream);
}

void CudaSampling::Collect(absl::Span<const SampleRequest> requests,
                           std::vector<absl::StatusOr<SampledToken>>* out) const {
  out->clear();
  out->reserve(requests.size());
  const auto* results = static_cast<const kernels::SampledRow*>(results_.data);
  for (size_t r = 0; r < requests.size(); ++r) {
    if (!row_errors_[r].ok()) {
      out->push_back(row_errors_[r]);
      continue;
    }
    const kernels::SampledRow& row = results[r];
    switch (row.status) {
      case kernels::kSampleOk: break;
      case kernels::kNonFiniteLogit:
        out->push_back(RowError(r, absl::StrCat("sampling: logit of token ", row.detail, " is ", row.detail_value)));
        continue;
      case kernels::kNoFiniteLogit:
        out->push_back(RowError(r, "sampling: every logit is -inf"));
        continue;
      case kernels::kPenaltyOutOfVocab:
        out->push_back(
            RowError(r, absl::StrCat("token id ", row.detail, " is outside the vocabulary [0, ", vocab_, ")")));
        continue;
      default:
        out->push_back(absl::InternalError(absl::StrCat("sampling: row ", r, " has status ", row.status)));
        continue;
    }
    SampledToken token;
    token.token_id = row.token_id;
    if (requests[r].params->logprobs.has_value()) {
      token.logprob = row.logprob;
      token.top_logprobs.reserve(size_t(row.num_top));
      for (int32_t i = 0; i < row.num_top; ++i) token.top_logprobs.push_back({row.top_ids[i], row.top_logprobs[i]});
    }
    out->push_back(std::move(token));
  }
}

}  // namespace tern::runtime
