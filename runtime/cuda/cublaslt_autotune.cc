#include "runtime/cuda/cublaslt_autotune.h"

#include <limits>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_device_buffer.h"

namespace tern::runtime {

int32_t SplitKParts(const cublasLtMatmulAlgo_t& algo) {
  int32_t splits = 1;
  size_t written = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits, sizeof(splits),
                                           &written) != CUBLAS_STATUS_SUCCESS) {
    return 1;
  }
  return splits;
}
namespace {

// Two events, destroyed with the scope.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  ~EventPair() {
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
  }
};

cublasStatus_t RunOnce(const LtMatmulProblem& p, const cublasLtMatmulAlgo_t& algo) {
  const float alpha = 1.0f, beta = 0.0f;
  return cublasLtMatmul(p.lt, p.desc, &alpha, p.a, p.a_layout, p.b, p.b_layout, &beta, p.d, p.d_layout, p.d,
                        p.d_layout, &algo, p.workspace, p.workspace_bytes, p.stream);
}

}  // namespace

absl::StatusOr<int> FastestAlgorithm(const LtMatmulProblem& problem,
                                     absl::Span<const cublasLtMatmulAlgo_t> candidates, int warmup, int runs,
                                     std::vector<AlgorithmTiming>* timings) {
  if (runs < 1 || warmup < 0) return absl::InvalidArgumentError("timing needs runs >= 1 and warmup >= 0");
  EventPair events;
  RETURN_IF_CUDA(cudaEventCreate(&events.start), "creating a timing event");
  RETURN_IF_CUDA(cudaEventCreate(&events.stop), "creating a timing event");
  if (timings != nullptr) timings->clear();
  int best = -1;
  float best_ms = std::numeric_limits<float>::infinity();
  for (int i = 0; i < int(candidates.size()); ++i) {
    AlgorithmTiming timing{i, std::numeric_limits<float>::infinity()};
    bool ran = true;
    for (int w = 0; w < warmup && ran; ++w) ran = RunOnce(problem, candidates[i]) == CUBLAS_STATUS_SUCCESS;
    if (ran) {
      RETURN_IF_CUDA(cudaEventRecord(events.start, problem.stream), "recording a timing event");
      for (int r = 0; r < runs && ran; ++r) ran = RunOnce(problem, candidates[i]) == CUBLAS_STATUS_SUCCESS;
      RETURN_IF_CUDA(cudaEventRecord(events.stop, problem.stream), "recording a timing event");
      RETURN_IF_CUDA(cudaEventSynchronize(events.stop), "waiting for a timing event");
    }
    if (!ran) {
      // cuBLAS refused the algorithm before launching: nothing is sticky,
      // but clear a last error it may have left for the caller's checks.
      cudaGetLastError();
    } else {
      float ms = 0.0f;
      RETURN_IF_CUDA(cudaEventElapsedTime(&ms, events.start, events.stop), "reading a timing event");
      timing.mean_ms = ms / float(runs);
      if (timing.mean_ms < best_ms) {
        best_ms = timing.mean_ms;
        best = i;
      }
    }
    if (timings != nullptr) timings->push_back(timing);
  }
  if (best < 0) return absl::NotFoundError(absl::StrCat("none of ", candidates.size(), " cuBLASLt algorithms ran"));
  return best;
}

}  // namespace tern::runtime
