// A W8A8 linear layer of the CUDA DiT ops (CudaDitOps::PrepareQuantizedLinear):
// the LLM backend's CudaW8A8Linear (runtime/cuda/cuda_w8a8_linear.h) behind
// the DitLinear interface. A call quantizes the activations per token
// (kernels/gemm/w8a8.h, bit for bit QuantizeActivationsReference), sums the
// products in cuBLASLt (INT8: exact int32; FP8 E4M3: fp32 every 128 inputs,
// 13 fraction bits within each 32-input tensor-core step), applies the row
// and weight scales and the bias (FP8 with a 16-bit output: in cuBLASLt's
// epilogue, GELU too for LinearGeluTanh; otherwise the epilogue kernel, one
// rounding to the compute dtype, and for LinearGeluTanh the GELU kernel).
//
// Batch invariance: a row's codes and scale depend on that row only; INT8
// sums are exact whatever the algorithm. FP8 sums depend on the algorithm's
// order of K steps, so CudaDitOps fixes one algorithm per layer shape as for
// its dense layers (W8A8Workspace::algorithm_rows: the heuristic's first
// without split-K for rows per sample x gemm_reference_batch rows, used at
// every batch size); the GPU test checks the result bitwise across batch
// sizes.
//
// Built only with TERN_WITH_CUDA. Immutable after Create but for
// CudaW8A8Linear's algorithm cache (one thread, as the ops).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/common/scalar_type.h"
#include "runtime/cuda/cuda_w8a8_linear.h"
#include "runtime/dit/dit_ops.h"

namespace tern::runtime {

class CudaDitW8A8Linear final : public DitLinear {
 public:
  // CudaW8A8Linear::Create's errors (INVALID_ARGUMENT, UNIMPLEMENTED for in
  // not a multiple of 16 or out not of 4, INTERNAL); INVALID_ARGUMENT for a
  // static activation scale or smoothing (the DiT path quantizes per token).
  static absl::StatusOr<std::unique_ptr<CudaDitW8A8Linear>> Create(const QuantizedLinear& linear);

  int64_t out_features() const override { return gemm_->out_features(); }
  int64_t in_features() const override { return gemm_->in_features(); }
  LinearScheme scheme() const override { return gemm_->scheme(); }
  size_t bytes() const override { return gemm_->bytes(); }

  // Bytes of ws.q, ws.row_scales and ws.acc that Run needs for `rows` rows.
  size_t CodeBytes(int64_t rows) const { return size_t(rows) * size_t(in_features()); }
  size_t AccBytes(int64_t rows) const { return gemm_->AccBytes(rows); }

  // out [rows, out] = x [rows, in] W^T + b (then GELU-tanh when `gelu`), x
  // and out in `type`. Enqueues on ws.stream only; the first failure, with
  // `what` naming the step.
  cudaError_t Run(kernels::ScalarType type, const Tensor& x, const Tensor& out, bool gelu, const W8A8Workspace& ws,
                  const char** what) const;

 private:
  explicit CudaDitW8A8Linear(std::unique_ptr<CudaW8A8Linear> gemm) : gemm_(std::move(gemm)) {}
  std::unique_ptr<CudaW8A8Linear> gemm_;
};

// OK for dense and W8A8 INT8; W8A8 FP8 on compute capability 8.9 or later;
// FAILED_PRECONDITION naming the device's capability otherwise.
absl::Status CheckCudaDitWeightScheme(const LinearScheme& scheme, int device);

}  // namespace tern::runtime
