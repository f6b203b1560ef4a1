// The CUDA backend: activations and KV cache in fp16, bf16 or fp32 on one
// GPU; GEMMs through cuBLAS (fp32 accumulation, no TF32) with a workspace;
// every other op a kernels/ launcher on the backend's stream.
//
// CUDA graphs: a decode-only step whose batch size is a bucket
// (DecodeGraphBatchSize; callers pad with PadDecodeBatch) runs eagerly the
// first time a (bucket, context-capacity) key is seen, so every buffer it
// touches reaches its size; the second time its ops are captured into a graph
// (captured work does not run) that EndForward instantiates and launches;
// after that the ops return at once and EndForward replays the graph. Step
// metadata lives at offsets that depend only on the batch size, with the
// block table last and reserved for the key's context capacity, so a replay
// reads the new step's values from the same addresses. Any buffer that moves
// (a larger step) bumps a generation counter and retires older graphs.
// A key whose eager pass ran a MoE layer that waited on the host (more
// tokens than MoeDeviceMaxTokens) is never recorded.
//
// Step metadata (token ids, positions, slots, CSR block tables) is staged in
// pinned host memory and uploaded once per step into device buffers that
// only grow, so steady-state steps allocate nothing. Ops record the first
// CUDA error of a step; FinishStep returns it. A sticky device error (a
// fault) poisons the backend: every later step fails, so the server can mark
// itself unready and exit.
//
// Built only with TERN_WITH_CUDA. Single-threaded use per the Backend contract.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "runtime/backend/backend.h"

namespace tern::runtime {

class CudaW8A8Linear;
class CudaWeightOnlyLinear;

struct CudaBackendOptions {
  int device = 0;
  DType compute_dtype = DType::kBF16;  // kF16, kBF16 or kF32
  size_t cublas_workspace_bytes = size_t(32) << 20;
  // Decode-only steps of up to kMaxGraphBatch (decode_graph_keys.h) sequences, padded to a bucket
  // size, are recorded once per (bucket, context bucket) as a CUDA graph and
  // replayed: one launch per step instead of ~10 per layer.
  bool cuda_graphs = true;
  // The decode chain's kernels (RMSNorm, skinny GEMM, RoPE + KV append,
  // decode attention, SwiGLU) start with programmatic dependent launch on
  // Hopper and later (kernels/common/pdl.cuh); false launches them in plain
  // stream order, for A/B measurements.
  bool pdl = true;
  // MoE layers of decode-sized steps run the expert GEMM over row offsets
  // read on the device (MoeDeviceMaxTokens); false reads them back to the
  // host for every step (graphs off for MoE models), for A/B measurements.
  bool moe_device_experts = true;
};

class CudaBackend final : public Backend {
 public:
  // FAILED_PRECONDITION without a usable device; INVALID_ARGUMENT for a
  // compute dtype other than fp16, bf16 or fp32.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadWeight(const TensorView& tensor) override;
  absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadFp32Table(const std::vector<float>& values) override;
  absl::StatusOr<std::unique_ptr<AttentionSpans>> UploadAttentionSpans(const MoaPlan& plan) override;
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareLinear(const TensorView& weight,
                                                              const TensorView* bias) override;
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareFusedLinear(const std::vector<TensorView>& weights,
                                                                   const std::vector<TensorView>& biases) override;
  // Dense, W4A16 and W8A16 (group size a multiple of 16, or per channel:
  // cuda_weight_only_linear.h), INT8 W8A8, and FP8 W8A8 on compute
  // capability 8.9 and later (cuda_w8a8_linear.h); anything else is
  // UNIMPLEMENTED, so such a model fails its load.
  absl::Status SupportsWeightScheme(const LinearScheme& scheme) const override;
  // Repacks a weight-only layer once for the kernels and reserves the
  // large-M path's dequantization scratch for it (load time: nothing grows
  // in a step); uploads a W8A8 layer as stored.
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareQuantizedLinear(const QuantizedLinear& weight) override;
  absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(const KvCacheSpec& spec) override;
  size_t KvBlockBytes(const KvCacheSpec& spec) const override;
  std::optional<size_t> FreeDeviceMemory() const override;
  DType compute_dtype() const override { return options_.compute_dtype; }

  absl::Status BeginStep(const ForwardBatch& batch) override;
  Tensor Scratch(int slot, int64_t rows, int64_t cols) override;
  void Embed(const DeviceWeight& table, Tensor out) override;
  void RmsNorm(Tensor x, const DeviceWeight& weight, float eps, Tensor out) override;
  void Linear(Tensor x, const LinearWeight& weight, Tensor out) override;
  void Rope(Tensor q, Tensor k, int32_t head_dim, const DeviceWeight& inv_freq) override;
  void WriteKv(Tensor k, Tensor v, KvCache& cache, int32_t layer) override;
  void RopeWriteKv(Tensor q, Tensor k, Tensor v, int32_t head_dim, const DeviceWeight& inv_freq, KvCache& cache,
                   int32_t layer) override;
  void Attention(Tensor q, const KvCache& cache, int32_t layer, const AttentionOptions& options,
                 Tensor out) override;
  void SiluMul(Tensor gate_up, Tensor out) override;
  void Add(Tensor x, Tensor y) override;
  void GatherLogitRows(Tensor x, Tensor out) override;
  void MoeFfn(Tensor x, Tensor router_logits, const MoeWeights& experts, Tensor out) override;
  int64_t MoeDeviceMaxTokens(const MoeWeights& experts) const override;
  void AddRmsNorm(Tensor x, Tensor residual, const DeviceWeight& weight, float eps, Tensor out) override;
  void EndForward() override;
  int32_t DecodeGraphBatchSize(int32_t num_seqs) const override;
  // Samples on the device (runtime/cuda/cuda_sampling.h): only ids and
  // logprobs are read back.
  absl::Status SampleRows(Tensor logits, absl::Span<const SampleRequest> requests,
                          std::vector<absl::StatusOr<SampledToken>>* out) override;
  absl::Status FinishStep() override;
  absl::Status Health() const override;

  std::vector<std::pair<int32_t, int32_t>> DecodeGraphShapes(int32_t max_seqs, int32_t max_context) const override;

  // Graph statistics, for tests and benchmarks.
  struct GraphStats {
    int64_t captured = 0;  // graphs recorded
    int64_t replayed = 0;  // steps that replayed a graph
    int64_t eager = 0;     // steps run op by op
  };
  GraphStats graph_stats() const;
  void ReadToHost(Tensor tensor, float* out) override;
  // Enqueue prepares the rows on the host and launches the sampling kernels;
  // Finish is the step's one wait, then reads back the ids (and logprobs).
  void EnqueueSampleRows(Tensor logits, absl::Span<const SampleRequest> requests) override;
  absl::Status FinishSampleRows(std::vector<absl::StatusOr<SampledToken>>* out) override;

 private:
  struct Impl;
  void WeightOnlyLinear(Tensor x, const CudaWeightOnlyLinear& weight, Tensor out);
  void W8A8Linear(Tensor x, const CudaW8A8Linear& weight, Tensor out);
  // The device array of a MoE layer's expert weight pointers (gate, then up,
  // then down: 3 x num_experts), uploaded on the layer's first (eager) pass;
  // null after recording the error when it cannot be.
  const void* const* MoeExpertTable(const MoeWeights& experts);
  explicit CudaBackend(std::unique_ptr<Impl> impl, const CudaBackendOptions& options);
  std::unique_ptr<Impl> impl_;
  CudaBackendOptions options_;
};

}  // namespace tern::runtime
