// A W4A16 / W8A16 linear layer on the CUDA backend: the QuantizedLinear
// repacked once at load into kernels/gemm/weight_only_pack.h's layout and
// uploaded (codes, group scales, zero codes unless symmetric, the act-order
// permutation, the bias in the compute dtype). CudaBackend::Linear runs it
// (kernels::SelectWeightOnlyKernel), fp16 or bf16, on the one packed layout:
//   rows <= kernels::kWeightOnlyGemvMaxRows (decode): the weight-only GEMV,
//     which streams the packed codes once at close to copy bandwidth
//     (kernels/gemm/weight_only_gemv.h);
//   rows <= kernels::kWeightOnlyGemmFastRows (larger batches): the tensor-core
//     weight-only GEMM, which reads the packed codes once
//     (kernels/gemm/weight_only_gemm.h);
//   more rows (prefill), or fp32: the large-M path, the layer dequantized into
//     the backend's scratch (DenseBytes) and the dense GEMM (cuBLAS).
// An act-order layer first gathers x's columns into stored order.
//
// Built only with TERN_WITH_CUDA. Immutable after Create; the device memory
// is freed by the destructor.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/common/scalar_type.h"
#include "kernels/gemm/weight_only_gemm.h"
#include "runtime/backend/backend.h"
#include "runtime/model/quantized_weight.h"

namespace tern::runtime {

class CudaWeightOnlyLinear final : public LinearWeight {
 public:
  // INVALID_ARGUMENT when `linear` fails ValidateQuantizedLinear or is not
  // weight-only; UNIMPLEMENTED for a shape the kernels cannot take (odd
  // in_features, several groups of a size that is not a multiple of 16);
  // INTERNAL for a CUDA allocation or copy that fails. Synchronous.
  static absl::StatusOr<std::unique_ptr<CudaWeightOnlyLinear>> Create(const QuantizedLinear& linear,
                                                                      kernels::ScalarType type);
  ~CudaWeightOnlyLinear() override;
  CudaWeightOnlyLinear(const CudaWeightOnlyLinear&) = delete;
  CudaWeightOnlyLinear& operator=(const CudaWeightOnlyLinear&) = delete;

  int64_t out_features() const override { return weight_.layout.n; }
  int64_t in_features() const override { return weight_.layout.k; }
  LinearScheme scheme() const override { return scheme_; }
  // Codes, scales, zero codes, input order and bias (not the backend's
  // dequantization scratch).
  size_t bytes() const override { return device_bytes_; }

  const kernels::WeightOnlyDeviceWeight& weight() const { return weight_; }
  const void* bias() const { return bias_; }             // [out] compute dtype, or null
  const int32_t* input_order() const { return order_; }  // [in], or null (identity)
  // Bytes of the dense weight the large-M path dequantizes into.
  size_t DenseBytes() const { return size_t(weight_.layout.n) * size_t(weight_.layout.k) * element_bytes_; }

 private:
  CudaWeightOnlyLinear() = default;

  LinearScheme scheme_;
  kernels::WeightOnlyDeviceWeight weight_;
  size_t element_bytes_ = 2;
  size_t device_bytes_ = 0;
  void* codes_ = nullptr;
  void* scales_ = nullptr;
  uint8_t* zeros_ = nullptr;
  int32_t* order_ = nullptr;
  void* bias_ = nullptr;
};

}  // namespace tern::runtime
