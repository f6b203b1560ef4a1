// The CPU backend: fp32 compute, GEMMs through OpenBLAS (multi-threaded by
// OpenBLAS), attention over a host-memory paged KV cache with the same
// block-table contract as the GPU, split across sequences with OpenMP.
// Every op is the kernels/ CPU reference, which makes this backend the
// oracle the CUDA backend is tested against.
//
// Weights of any stored dtype (fp32, fp16, bf16) are converted to fp32 at
// upload. Every weight scheme runs as the reference of its arithmetic
// (kernels/gemm/quant_gemm.h): weight-only layers dequantize once at prepare
// and run fp32 GEMMs; W8A8 layers quantize each row of activations (or take
// rows already quantized) and multiply the quantized values, INT8 exactly
// (integer sums, fp32 GEMMs over blocks of at most 1024 inputs, whose
// partial sums stay below 2^24) and FP8 in fp32, with the scales applied
// once per output. Single-threaded use per the Backend contract.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "runtime/backend/backend.h"

namespace tern::runtime {

// Working memory of the CPU's W8A8 linear layers, reused across calls.
struct CpuLinearScratch {
  std::vector<uint8_t> q;        // quantized activations
  std::vector<float> xf;         // their values
  std::vector<float> row_scales;
  std::vector<float> partial;
  std::vector<double> acc;
};

class CpuBackend : public Backend {
 public:
  CpuBackend() = default;
  std::string name() const override { return "cpu"; }

  absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadWeight(const TensorView& tensor) override;
  absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadFp32Table(const std::vector<float>& values) override;
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareLinear(const TensorView& weight,
                                                              const TensorView* bias) override;
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareFusedLinear(const std::vector<TensorView>& weights,
                                                                   const std::vector<TensorView>& biases) override;
  absl::Status SupportsWeightScheme(const LinearScheme& scheme) const override;
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareQuantizedLinear(const QuantizedLinear& weight) override;
  absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(const KvCacheSpec& spec) override;
  size_t KvBlockBytes(const KvCacheSpec& spec) const override;
  std::optional<size_t> FreeDeviceMemory() const override { return std::nullopt; }
  DType compute_dtype() const override { return DType::kF32; }

  absl::Status BeginStep(const ForwardBatch& batch) override;
  Tensor Scratch(int slot, int64_t rows, int64_t cols) override;
  void Embed(const DeviceWeight& table, Tensor out) override;
  void RmsNorm(Tensor x, const DeviceWeight& weight, float eps, Tensor out) override;
  void Linear(Tensor x, const LinearWeight& weight, Tensor out) override;
  void Rope(Tensor q, Tensor k, int32_t head_dim, const DeviceWeight& inv_freq) override;
  void WriteKv(Tensor k, Tensor v, KvCache& cache, int32_t layer) override;
  void Attention(Tensor q, const KvCache& cache, int32_t layer, const AttentionOptions& options,
                 Tensor out) override;
  void SiluMul(Tensor gate_up, Tensor out) override;
  void Add(Tensor x, Tensor y) override;
  void GatherLogitRows(Tensor x, Tensor out) override;
  void MoeFfn(Tensor x, Tensor router_logits, const MoeWeights& experts, Tensor out) override;
  absl::Status FinishStep() override { return absl::OkStatus(); }
  void ReadToHost(Tensor tensor, float* out) override;

 private:
  const ForwardBatch* batch_ = nullptr;  // borrowed between BeginStep and the next one
  std::map<int, std::vector<float>> scratch_;
  CpuLinearScratch linear_scratch_;
  // MoE working memory, reused across steps.
  std::vector<float> moe_in_, moe_gate_up_, moe_act_, moe_out_;
};

}  // namespace tern::runtime
