// CudaBackend's weights: dense tensors and tables uploaded in the compute
// dtype, MoA span tables, dense and fused linear layers, and quantized
// layers (weight-only repacked with their dequantization scratch reserved,
// W8A8 as stored), with the schemes the backend supports.
#include <cuda_runtime.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/backend/attention_span_tables.h"
#include "runtime/backend/backend_common.h"
#include "runtime/base/status_macros.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_backend_impl.h"
#include "runtime/cuda/cuda_backend_weights.h"
#include "runtime/cuda/cuda_device_buffer.h"
#include "runtime/cuda/cuda_w8a8_linear.h"
#include "runtime/cuda/cuda_weight_only_linear.h"
#include "runtime/model/quantized_weight.h"

namespace tern::runtime {

absl::StatusOr<std::unique_ptr<DeviceWeight>> CudaBackend::UploadWeight(const TensorView& tensor) {
  if (!IsFloatDType(tensor.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", tensor.name, "\" is not F32/F16/BF16"));
  }
  size_t count = 0;
  auto buffer = impl_->ToDevice({tensor}, &count);
  if (!buffer.ok()) return buffer.status();
  return std::unique_ptr<DeviceWeight>(new CudaWeight(tensor.shape, std::move(*buffer)));
}

absl::StatusOr<std::unique_ptr<DeviceWeight>> CudaBackend::UploadFp32Table(const std::vector<float>& values) {
  DeviceBuffer buffer;
  RETURN_IF_ERROR(AllocationStatus(buffer.Reserve(values.size() * sizeof(float)), "allocating a table",
                                   values.size() * sizeof(float)));
  RETURN_IF_CUDA(cudaMemcpy(buffer.data(), values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice),
                 "uploading a table");
  return std::unique_ptr<DeviceWeight>(new CudaWeight({int64_t(values.size())}, std::move(buffer)));
}

absl::StatusOr<std::unique_ptr<AttentionSpans>> CudaBackend::UploadAttentionSpans(const MoaPlan& plan) {
  auto spans = std::make_unique<CudaAttentionSpans>(AttentionSpanTables::FromPlan(plan));
  RETURN_IF_ERROR(spans->Upload());
  return std::unique_ptr<AttentionSpans>(std::move(spans));
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CudaBackend::PrepareLinear(const TensorView& weight,
                                                                         const TensorView* bias) {
  std::vector<TensorView> biases;
  if (bias != nullptr) biases.push_back(*bias);
  return PrepareFusedLinear({weight}, biases);
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CudaBackend::PrepareFusedLinear(const std::vector<TensorView>& weights,
                                                                              const std::vector<TensorView>& biases) {
  auto shape = CheckFusedLinear(weights, biases);
  if (!shape.ok()) return shape.status();
  size_t count = 0;
  auto weight = impl_->ToDevice(weights, &count);
  if (!weight.ok()) return weight.status();
  DeviceBuffer bias;
  if (!biases.empty()) {
    auto uploaded = impl_->ToDevice(biases, &count);
    if (!uploaded.ok()) return uploaded.status();
    bias = std::move(*uploaded);
  }
  return std::unique_ptr<LinearWeight>(new CudaLinear(shape->out_features, shape->in_features, std::move(*weight),
                                                      std::move(bias), !biases.empty()));
}

absl::Status CudaBackend::SupportsWeightScheme(const LinearScheme& scheme) const {
  if (scheme.scheme == WeightScheme::kDense) return absl::OkStatus();
  if (IsWeightOnly(scheme.scheme)) {
    if (scheme.group_size == 0 || scheme.group_size % 16 == 0) return absl::OkStatus();
    return absl::UnimplementedError(absl::StrCat("the cuda backend runs ", scheme.ToString(),
                                                 " only with groups of a multiple of 16 input channels, or one "
                                                 "group per output channel"));
  }
  if (scheme.scheme == WeightScheme::kW8A8Int8) return absl::OkStatus();
  if (scheme.scheme == WeightScheme::kW8A8Fp8) {
    if (impl_->compute_capability >= 89) return absl::OkStatus();
    return absl::UnimplementedError(absl::StrCat("the cuda backend runs ", scheme.ToString(),
                                                 " on compute capability 8.9 or later (this device: ",
                                                 impl_->compute_capability / 10, ".",
                                                 impl_->compute_capability % 10, ")"));
  }
  return Backend::SupportsWeightScheme(scheme);
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CudaBackend::PrepareQuantizedLinear(const QuantizedLinear& weight) {
  RETURN_IF_ERROR(SupportsWeightScheme(weight.scheme));
  if (IsW8A8(weight.scheme.scheme)) {
    auto linear = CudaW8A8Linear::Create(weight);
    if (!linear.ok()) return linear.status();
    return std::unique_ptr<LinearWeight>(std::move(*linear));
  }
  auto linear = CudaWeightOnlyLinear::Create(weight, impl_->type);
  if (!linear.ok()) return linear.status();
  RETURN_IF_CUDA(impl_->dequant_scratch.Reserve((*linear)->DenseBytes()),
                 "allocating the weight-only dequantization scratch");
  ++impl_->generation;  // the scratch may have moved
  return std::unique_ptr<LinearWeight>(std::move(*linear));
}

}  // namespace tern::runtime
