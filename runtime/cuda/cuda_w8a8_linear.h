// A W8A8 linear layer (INT8 or FP8 E4M3) on the CUDA backend, as
// kernels/gemm/quant_gemm.h states it: the activations quantized per token
// (or with the layer's static scale, after its smoothing) by a small kernel
// (kernels/gemm/w8a8.h), the products summed by cuBLASLt (FP8, Hopper or
// Ada: fast accumulation off, so partial sums are added in fp32 every 128
// inputs, each 32-input tensor-core step keeping 13 fraction bits; INT8:
// exact int32 sums), and the row and weight scales and the bias applied
// after the sums. Weights stay as stored ([out, in] bytes: cuBLASLt's "TN"
// operand), with their per-output-channel fp32 scales.
//
// Where the scales and bias are applied:
// - FP8 with a 16-bit output, where cuBLASLt has outer-vector scaling
//   (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F: a scale per row of each
//   operand, Hopper and later): in the GEMM itself. The fp32 sum times the
//   weight's and the row's scale, plus the bias (rounded to the output
//   type), then GELU when asked, is rounded once into the output; no fp32
//   accumulator buffer, no epilogue kernel (`fused_scales()` after the
//   first Run says so).
// - Otherwise (INT8, fp32 output, no such algorithm for the shape): the GEMM
//   writes fp32 / int32 sums into the workspace and an elementwise epilogue
//   (kernels/gemm/w8a8.h) applies scales and bias in fp32.
//
// Built only with TERN_WITH_CUDA. Immutable after Create except for the
// cached cuBLASLt algorithm per row count (single-threaded, as the backend).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/common/scalar_type.h"
#include "runtime/backend/backend.h"
#include "runtime/model/quantized_weight.h"

namespace tern::runtime {

// What a W8A8 call needs of the backend: cuBLASLt, its workspace, the stream
// and scratch for the quantized activations, their scales and the
// accumulators.
struct W8A8Workspace {
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  cudaStream_t stream = nullptr;
  uint8_t* q = nullptr;         // [rows, in] (row stride in)
  float* row_scales = nullptr;  // [rows]
  // [rows, out] fp32 or int32 sums for the epilogue, asked for only on the
  // path that has one (not the fused FP8 GEMM, which writes `out` itself);
  // null: it could not be had (the caller recorded why).
  std::function<void*()> accumulators;
  // > 0: one cuBLASLt algorithm for every row count, the heuristic's first
  // without split-K for this many rows, so a row's sums do not depend on
  // how many rows run with it (the DiT's batch invariance); 0: the
  // heuristic's choice per row count.
  int64_t algorithm_rows = 0;
  // With algorithm_rows: time the whole-K candidates at that many rows (at
  // most 512 MiB of tuning buffers, allocated and freed around the timing;
  // never while the stream is capturing) and keep the fastest, as the CUDA
  // DiT ops' dense layers do (runtime/cuda/cublaslt_autotune.h).
  bool autotune = false;
  // FP8: cuBLASLt's fast accumulation (the tensor cores' 13-fraction-bit
  // sums over all of K, no fp32 promotion every 128 inputs): faster, with an
  // error that grows with K, which kernels/gemm/quant_gemm.h's reference
  // does not model. One setting per layer for its lifetime (the algorithm
  // caches do not key on it).
  bool fp8_fast_accumulation = false;
};

class CudaW8A8Linear final : public LinearWeight {
 public:
  // INVALID_ARGUMENT when `linear` fails ValidateQuantizedLinear or is not
  // W8A8; UNIMPLEMENTED when in_features is not a multiple of 16 or
  // out_features of 4 (cuBLASLt's alignment); INTERNAL when an upload fails.
  static absl::StatusOr<std::unique_ptr<CudaW8A8Linear>> Create(const QuantizedLinear& linear);
  ~CudaW8A8Linear() override;
  CudaW8A8Linear(const CudaW8A8Linear&) = delete;
  CudaW8A8Linear& operator=(const CudaW8A8Linear&) = delete;

  int64_t out_features() const override { return out_; }
  int64_t in_features() const override { return in_; }
  LinearScheme scheme() const override { return scheme_; }
  // Weight bytes, weight scales, smoothing and bias.
  size_t bytes() const override { return device_bytes_; }
  bool fp8() const { return scheme_.scheme == WeightScheme::kW8A8Fp8; }
  // Bytes of the accumulators of `rows` rows.
  size_t AccBytes(int64_t rows) const { return size_t(rows) * size_t(out_) * 4; }

  // out = x W^T + b for x in `type` (quantized here into ws.q), or x already
  // quantized (dtype kI8 / kF8E4M3 matching the scheme, with row scales;
  // row stride a multiple of 16). Enqueues only; the first failure as a
  // CUDA error (cuBLASLt failures: cudaErrorUnknown) and `what` names it.
  // With `gelu` the fused FP8 path applies GELU (cuBLASLt's tanh form) after
  // the bias in the same epilogue, and *gelu_applied says whether it did;
  // where it did not (INT8, fp32 output, no fused algorithm) out is the
  // linear's and the caller applies the activation.
  cudaError_t Run(kernels::ScalarType type, const Tensor& x, const Tensor& out, const W8A8Workspace& ws,
                  const char** what, bool gelu = false, bool* gelu_applied = nullptr) const;

  // Whether the last Run applied the scales and bias inside the GEMM (see
  // above); false before the first Run.
  bool fused_scales() const { return last_fused_; }

 private:
  CudaW8A8Linear() = default;
  // The algorithm for `rows` rows under `desc` (found on first use, host
  // only), from `cache`; null with *what naming the failure.
  const cublasLtMatmulAlgo_t* Algorithm(const W8A8Workspace& ws, const void* desc, cudaDataType_t ab_type,
                                        cudaDataType_t d_type, int64_t q_stride, int64_t rows,
                                        std::map<int64_t, cublasLtMatmulAlgo_t>& cache, const char** what) const;
  // The index among `candidates` (whole-K, heuristic order) of the fastest
  // timed at `rows` rows (W8A8Workspace::autotune); 0 when the stream is
  // capturing or no tuning buffers fit.
  size_t TunedChoice(const W8A8Workspace& ws, const void* desc, cudaDataType_t ab_type, cudaDataType_t d_type,
                     int64_t rows, const std::vector<cublasLtMatmulAlgo_t>& candidates) const;
  // The FP8 GEMM with outer-vector scales into `out` (16-bit); false when
  // cuBLASLt offers no such algorithm for this shape (then never tried
  // again for this output type), with nothing enqueued.
  bool RunFusedFp8(kernels::ScalarType type, const uint8_t* q, const float* row_scales, int64_t q_stride,
                   const Tensor& out, bool gelu, const W8A8Workspace& ws, cudaError_t* error,
                   const char** what) const;

  LinearScheme scheme_;
  int64_t out_ = 0, in_ = 0;
  float input_scale_ = 0.0f;
  size_t device_bytes_ = 0;
  uint8_t* weight_ = nullptr;   // [out, in]
  float* w_scales_ = nullptr;   // [out]
  float* smoothing_ = nullptr;  // [in] or null
  float* bias_ = nullptr;       // [out] or null
  uint16_t* bias_bf16_ = nullptr;  // [out] or null: the bias rounded, for the fused FP8 epilogue
  uint16_t* bias_f16_ = nullptr;
  // cuBLASLt's choice per row count (or per algorithm_rows), found on first use.
  mutable std::map<int64_t, cublasLtMatmulAlgo_t> algos_;
  // The same for the fused FP8 GEMM, by output type (0: fp16, 1: bf16) and
  // epilogue (0: bias, 1: bias + GELU), and whether that pair has no fused
  // algorithm for this shape.
  mutable std::map<int64_t, cublasLtMatmulAlgo_t> fused_algos_[2][2];
  mutable bool fused_unavailable_[2][2] = {{false, false}, {false, false}};
  mutable bool last_fused_ = false;
  // With algorithm_rows: the (cache, algorithm_rows, rows) triples checked to run.
  mutable std::set<std::tuple<const void*, int64_t, int64_t>> checked_;
};

}  // namespace tern::runtime
