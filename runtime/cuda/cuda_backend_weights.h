// The CUDA backend's dense weights in device memory: a tensor (CudaWeight),
// a linear layer (CudaLinear) and an MoA plan's span tables
// (CudaAttentionSpans). Quantized layers are cuda_weight_only_linear.h and
// cuda_w8a8_linear.h. Internal to runtime/cuda; the backend's ops cast the
// Backend's weight interfaces to these types.
//
// Built only with TERN_WITH_CUDA. Immutable after upload.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "kernels/attention/attention_spans.h"
#include "runtime/backend/attention_span_tables.h"
#include "runtime/backend/backend.h"
#include "runtime/base/status_macros.h"
#include "runtime/cuda/cuda_device_buffer.h"

namespace tern::runtime {

class CudaWeight final : public DeviceWeight {
 public:
  CudaWeight(std::vector<int64_t> shape, DeviceBuffer buffer) : shape_(std::move(shape)), buffer_(std::move(buffer)) {}
  const std::vector<int64_t>& shape() const override { return shape_; }
  size_t bytes() const override { return buffer_.bytes(); }
  const void* data() const { return buffer_.data(); }

 private:
  std::vector<int64_t> shape_;
  DeviceBuffer buffer_;
};

class CudaLinear final : public LinearWeight {
 public:
  CudaLinear(int64_t out, int64_t in, DeviceBuffer weight, DeviceBuffer bias, bool has_bias)
      : out_(out), in_(in), weight_(std::move(weight)), bias_(std::move(bias)), has_bias_(has_bias) {}
  int64_t out_features() const override { return out_; }
  int64_t in_features() const override { return in_; }
  size_t bytes() const override { return weight_.bytes() + bias_.bytes(); }
  const void* weight() const { return weight_.data(); }
  const void* bias() const { return has_bias_ ? bias_.data() : nullptr; }

 private:
  int64_t out_, in_;
  DeviceBuffer weight_;  // [out, in] row-major
  DeviceBuffer bias_;
  bool has_bias_;
};

// An MoA plan's span tables in device memory (attention_span_tables.h).
class CudaAttentionSpans final : public AttentionSpans {
 public:
  explicit CudaAttentionSpans(AttentionSpanTables tables) : tables_(std::move(tables)) {}
  absl::Status Upload() {
    RETURN_IF_ERROR(Copy(tables_.bucket_max_length, &max_length_));
    RETURN_IF_ERROR(Copy(tables_.sinks, &sinks_));
    RETURN_IF_ERROR(Copy(tables_.alphas, &alphas_));
    return Copy(tables_.betas, &betas_);
  }
  kernels::AttentionSpanRules Layer(int32_t layer) const {
    return tables_.Layer(layer, static_cast<const int32_t*>(max_length_.data()),
                         static_cast<const int32_t*>(sinks_.data()), static_cast<const double*>(alphas_.data()),
                         static_cast<const double*>(betas_.data()));
  }

 private:
  template <typename T>
  static absl::Status Copy(const std::vector<T>& values, DeviceBuffer* buffer) {
    RETURN_IF_ERROR(AllocationStatus(buffer->Reserve(values.size() * sizeof(T)), "allocating attention span tables",
                                     values.size() * sizeof(T)));
    RETURN_IF_CUDA(cudaMemcpy(buffer->data(), values.data(), values.size() * sizeof(T), cudaMemcpyHostToDevice),
                   "uploading attention span tables");
    return absl::OkStatus();
  }
  AttentionSpanTables tables_;
  DeviceBuffer max_length_, sinks_, alphas_, betas_;
};

}  // namespace tern::runtime
