#include "runtime/cuda/cuda_weight_only_linear.h"

#include <cuda_runtime.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/cuda/cuda_device_buffer.h"
#include "runtime/model/dtype.h"

namespace tern::runtime {

absl::StatusOr<std::unique_ptr<CudaWeightOnlyLinear>> CudaWeightOnlyLinear::Create(const QuantizedLinear& q,
                                                                                   kernels::ScalarType type) {
  const std::string what =
      absl::StrCat("a ", q.scheme.ToString(), " linear [", q.out_features, ", ", q.in_features, "]");
  if (auto status = ValidateQuantizedLinear(q, what); !status.ok()) return status;
  if (!IsWeightOnly(q.scheme.scheme)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not weight-only (w4a16 or w8a16)"));
  }
  kernels::WeightOnlyLayout layout;
  layout.bits = WeightSchemeBits(q.scheme.scheme);
  layout.n = q.out_features;
  layout.k = q.in_features;
  layout.group_size = q.group_size;
  layout.groups = q.num_groups();
  kernels::PackedWeightOnly packed;
  const std::string error = kernels::PackWeightOnly(layout, q.weight.data(), q.scales.data(), q.zeros.data(), &packed);
  if (!error.empty()) {
    return absl::UnimplementedError(absl::StrCat("the CUDA backend cannot run ", what, ": ", error));
  }

  auto linear = std::unique_ptr<CudaWeightOnlyLinear>(new CudaWeightOnlyLinear());
  linear->scheme_ = q.scheme;
  linear->element_bytes_ = type == kernels::ScalarType::kF32 ? 4 : 2;
  linear->weight_.layout = layout;
  size_t& total = linear->device_bytes_;
  RETURN_IF_ERROR(UploadToDevice(packed.codes.data(), packed.codes.size(), &linear->codes_, what + " codes", &total));
  if (!packed.half_scales.empty()) {
    RETURN_IF_ERROR(UploadToDevice(packed.half_scales.data(), packed.half_scales.size() * 2, &linear->scales_,
                                   what + " scales", &total));
  } else {
    RETURN_IF_ERROR(UploadToDevice(packed.float_scales.data(), packed.float_scales.size() * 4, &linear->scales_,
                                   what + " scales", &total));
  }
  void* zeros = nullptr;
  RETURN_IF_ERROR(UploadToDevice(packed.zeros.data(), packed.zeros.size(), &zeros, what + " zeros", &total));
  linear->zeros_ = static_cast<uint8_t*>(zeros);
  void* order = nullptr;
  RETURN_IF_ERROR(UploadToDevice(q.input_order.data(), q.input_order.size() * sizeof(int32_t), &order,
                                 what + " input order", &total));
  linear->order_ = static_cast<int32_t*>(order);
  if (!q.bias.empty()) {
    std::vector<uint8_t> bias(q.bias.size() * linear->element_bytes_);
    for (size_t i = 0; i < q.bias.size(); ++i) {
      if (type == kernels::ScalarType::kF32) {
        std::memcpy(&bias[4 * i], &q.bias[i], 4);
      } else {
        const uint16_t h = type == kernels::ScalarType::kF16 ? FloatToHalf(q.bias[i]) : FloatToBFloat16(q.bias[i]);
        std::memcpy(&bias[2 * i], &h, 2);
      }
    }
    RETURN_IF_ERROR(UploadToDevice(bias.data(), bias.size(), &linear->bias_, what + " bias", &total));
  }
  linear->weight_.codes = linear->codes_;
  linear->weight_.scales = linear->scales_;
  linear->weight_.half_scales = !packed.half_scales.empty();
  linear->weight_.zeros = linear->zeros_;
  return linear;
}

CudaWeightOnlyLinear::~CudaWeightOnlyLinear() {
  for (void* p : {codes_, scales_, static_cast<void*>(zeros_), static_cast<void*>(order_), bias_}) {
    if (p != nullptr) cudaFree(p);
  }
}

}  // namespace tern::runtime
