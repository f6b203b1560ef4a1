// Device-side sampling for the CUDA backend (kernels/sampling): per step it
// packs every row's parameters, uniform (state.NextUniform(), drawn on the
// host so seeding and batch independence are exactly the host Sampler's) and
// penalty CSR into pinned staging, uploads them with one copy, launches one
// CTA per row and copies back only the SampledRow records (ids, logprobs,
// per-row status). Buffers only grow, so steady-state steps allocate nothing.
//
// Use: Prepare (host checks and packing), Enqueue on the backend's stream,
// synchronize the stream, Collect. Built only with TERN_WITH_CUDA.
// Thread: single-threaded, owned by its CudaBackend.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/common/scalar_type.h"
#include "kernels/sampling/sampling.h"
#include "runtime/backend/backend.h"

namespace tern::runtime {

class CudaSampling {
 public:
  CudaSampling() = default;
  CudaSampling(const CudaSampling&) = delete;
  CudaSampling& operator=(const CudaSampling&) = delete;
  ~CudaSampling();

  // Checks `requests` against `logits` ([requests.size(), vocab]) and packs
  // the step's inputs into pinned staging. INVALID_ARGUMENT for a row count
  // mismatch or a request without params or state; INTERNAL when pinned
  // memory cannot be had. A row whose penalty token ids fall outside
  // [0, vocab) fails alone: Collect reports it for that row.
  absl::Status Prepare(const Tensor& logits, absl::Span<const SampleRequest> requests);
  // Enqueues the upload, the kernel and the read-back on `stream`; the first
  // CUDA error, if any. Only after a successful Prepare.
  cudaError_t Enqueue(kernels::ScalarType type, const Tensor& logits, cudaStream_t stream);
  // After `stream` has been synchronized: per row, its token or
  // INVALID_ARGUMENT naming the row and why it was rejected (by Prepare or
  // by the kernel), as Backend::SampleRows reports it.
  void Collect(absl::Span<const SampleRequest> requests, std::vector<absl::StatusOr<SampledToken>>* out) const;

 private:
  // Appends row `row`'s penalty entries (prompt and output token counts) to
  // entries_; INVALID_ARGUMENT naming the row for an id outside [0, vocab).
  absl::Status AppendPenalties(size_t row, const SamplingParams& p, const SequenceSamplingState& state);

  // A cudaMalloc'd or cudaMallocHost'd buffer that only grows.
  struct Buffer {
    void* data = nullptr;
    size_t bytes = 0;
    bool pinned = false;
    void Release();
    cudaError_t Reserve(size_t wanted);
  };

  int32_t num_rows_ = 0;
  std::vector<absl::Status> row_errors_;  // per row: OK, or why Prepare rejected it
  int32_t num_penalized_rows_ = 0;
  int64_t vocab_ = 0;
  size_t params_offset_ = 0, indptr_offset_ = 0, entries_offset_ = 0, staged_bytes_ = 0;
  std::vector<kernels::SamplingRowParams> rows_;
  std::vector<int32_t> indptr_;
  std::vector<kernels::SamplingPenalty> entries_;
  Buffer staging_{nullptr, 0, true};   // pinned: [params | indptr | entries]
  Buffer inputs_;                      // device mirror of staging_
  Buffer workspace_;                   // device: [penalized rows, vocab] fp32
  Buffer outputs_;                     // device: [rows] SampledRow
  Buffer results_{nullptr, 0, true};   // pinned: [rows] SampledRow
};

}  // namespace tern::runtime
