// Picking one cuBLASLt algorithm by timing the candidates on the device: the
// heuristic ranks algorithms by a model of the GPU, and for shapes whose tiles
// fit the SMs unevenly (a DiT-XL/2's 1152-wide outputs on 132 SMs) its first
// choice can be several percent slower than another candidate.
//
// Built only with TERN_WITH_CUDA. Not thread-safe: the caller's one thread,
// on its stream, with nothing else of its own enqueued meanwhile.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tern::runtime {

// One matmul D = alpha op(A) op(B) + beta C (here C = D) as cublasLtMatmul
// takes it; the pointers are device memory the timing may overwrite (D) or
// read (A, B, the descriptor's bias).
struct LtMatmulProblem {
  cublasLtHandle_t lt = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a_layout = nullptr, b_layout = nullptr, d_layout = nullptr;
  const void* a = nullptr;
  const void* b = nullptr;
  void* d = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  cudaStream_t stream = nullptr;
};

// How many parts a cuBLASLt algorithm splits K into (1: whole K, also when
// the algorithm does not say). Callers that need a row's sums in one fixed
// order keep the whole-K candidates.
int32_t SplitKParts(const cublasLtMatmulAlgo_t& algo);

struct AlgorithmTiming {
  int index = -1;           // into the candidates
  float mean_ms = 0.0f;     // per run, over `runs`; infinity when the algorithm failed to run
};

// Runs each candidate `warmup` times, then `runs` times between two events,
// and returns the index of the fastest that ran (ties: the earlier, so the
// heuristic's order breaks them). `timings`, when given, receives every
// candidate's figure in candidate order. INTERNAL when a CUDA event call
// fails; NOT_FOUND when no candidate ran. Synchronizes `stream`.
absl::StatusOr<int> FastestAlgorithm(const LtMatmulProblem& problem,
                                     absl::Span<const cublasLtMatmulAlgo_t> candidates, int warmup, int runs,
                                     std::vector<AlgorithmTiming>* timings = nullptr);

}  // namespace tern::runtime
