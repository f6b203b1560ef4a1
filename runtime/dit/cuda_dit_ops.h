// CudaDitOps: DitOps on one GPU, computing in fp32, bf16 or fp16 (weights
// converted at preparation). Linear layers go through cuBLASLt with fp32
// accumulation (no TF32) and the bias in its epilogue; every other op is a
// kernels/dit launcher (dit_kernels.h, dit_attention.h) on the ops' stream.
// CpuDitOps is its reference (tests/runtime/dit/cuda_dit_ops_test.cc).
//
// Batch invariance: a library GEMM may pick its algorithm by the row count,
// and algorithms differ in rounding, so each linear layer shape runs ONE
// fixed cuBLASLt algorithm whatever the batch: chosen once, by cuBLASLt's
// heuristic, for (rows per sample) x `gemm_reference_batch` rows, among the
// algorithms without split-K (with `gemm_autotune`, the fastest of them timed
// at that row count, runtime/cuda/cublaslt_autotune.h). In such a GEMM an output row's value depends
// only on that row of x (the tile loop over K is the same for every row), so
// a sample's rows come out bitwise the same alone or batched. The other ops
// work per row or per (sample, head). The GPU test checks this bitwise.
//
// Memory: weights, tables, workspaces and the host staging area (pinned)
// are allocated at load or by the first pass of a given size; a warm pass
// allocates nothing. Host inputs (x, labels, timestep features) are staged
// in pinned memory at addresses that depend only on the op sequence and
// sizes, and copied on the stream.
//
// Convolutions (the VAE decoder's): 3x3 layers in bf16/fp16 whose channels
// are multiples of 8 run kernels/dit/vae_conv.h's implicit GEMM over the whole
// batch (tiling fixed by the layer's shape); the rest go per sample through
// im2col over fixed chunks of its pixels (kernels/dit/vae_kernels.h) and a
// cuBLASLt GEMM with the layer's one algorithm, the bias in the epilogue; a
// 1x1 convolution GEMMs the pixels directly. GroupNorm: chunked moments
// merged in a fixed order.
//
// CUDA graphs (`cuda_graphs`): a pass marked DitStep::eager runs eagerly and
// leaves the graphs alone. Otherwise the first pass of a (pass kind, batch
// size, image shape, DitStep::variant) runs eagerly (DiTFastAttn passes: a
// variant per combination of their rows' plan steps, at most 512 graphs of
// them, later combinations eager); the second is captured and replayed by every
// later pass of that key: ops then only stage their host inputs and
// FinishStep launches the graph. So every pass of one key must issue the
// same op sequence, as DitModel::Forward does for its model (one model per
// ops) and VaeDecoder::Decode for its latent size (decoders of several sizes
// may share the ops); a pass that differs (op, shape or buffer) fails
// FinishStep with INTERNAL rather than replaying the wrong work. Buffers that
// grow retire the graphs.
//
// Errors: ops record the first CUDA / cuBLAS error of a pass and FinishStep
// returns it, naming the op. ReadToHost after a failed read fills NaN and
// the next BeginStep returns the error. A sticky device fault poisons the
// ops: every later pass fails (Health).
//
// Built only with TERN_WITH_CUDA. One thread at a time, per DitOps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/dit/dit_ops.h"

namespace tern::runtime {

struct CudaDitOpsOptions {
  int device = 0;
  DType compute_dtype = DType::kBF16;  // kF32, kBF16 or kF16
  size_t cublas_workspace_bytes = size_t(32) << 20;
  // Each linear layer shape's cuBLASLt algorithm is the heuristic's choice
  // for (rows per sample) x this many rows, then used for every batch size.
  int64_t gemm_reference_batch = 64;
  // Among the heuristic's candidates without split-K, time each at the
  // reference rows (tuning buffers of at most 512 MiB, allocated and freed
  // around the timing) and keep the fastest; off: the heuristic's first.
  // Only a plan made by an eager pass is timed (never during capture).
  // W8A8 layers time their cuBLASLt candidates the same way
  // (W8A8Workspace::autotune).
  bool gemm_autotune = true;
  // FP8 W8A8 layers with cuBLASLt's fast accumulation
  // (W8A8Workspace::fp8_fast_accumulation): off keeps the arithmetic the
  // CPU reference models.
  bool w8a8_fp8_fast_accumulation = false;
  bool cuda_graphs = true;
  // Times every op with CUDA events (graphs off): op_times() after FinishStep.
  bool profile = false;
};

class CudaDitOps final : public DitOps {
 public:
  // FAILED_PRECONDITION without a usable device; INVALID_ARGUMENT for
  // another compute dtype.
  static absl::StatusOr<std::unique_ptr<CudaDitOps>> Create(const CudaDitOpsOptions& options);
  ~CudaDitOps() override;

  std::string name() const override { return "cuda"; }
  bool records_graphs() const override;
  // Device scratch and workspaces (the cuBLASLt workspace and the pinned
  // staging's device twin included; the pinned host staging is not).
  size_t workspace_bytes() const override;
  DType compute_dtype() const { return options_.compute_dtype; }

  absl::StatusOr<std::unique_ptr<DitLinear>> PrepareLinear(const TensorView& weight,
                                                         const TensorView* bias) override;
  // W8A8: INT8 on any device, FP8 on compute capability 8.9+
  // (cuda_dit_w8a8_linear.h).
  absl::Status CheckWeightScheme(const LinearScheme& scheme) const override;
  absl::StatusOr<std::unique_ptr<DitLinear>> PrepareQuantizedLinear(const QuantizedLinear& linear) override;
  absl::StatusOr<std::unique_ptr<DitTable>> UploadTable(const TensorView& table, int64_t rows) override;
  absl::StatusOr<std::unique_ptr<DitTable>> UploadTable(absl::Span<const float> values, int64_t rows,
                                                        int64_t cols) override;
  absl::StatusOr<std::unique_ptr<DitConv>> PrepareConv2d(const TensorView& weight, const TensorView* bias) override;

  absl::Status BeginStep(const DitStep& step) override;
  Tensor Scratch(int slot, int64_t rows, int64_t cols) override;
  Tensor QuantizedScratch(int slot, int64_t rows, int64_t cols, DType codes) override;
  void CopyFromHost(const float* src, Tensor dst) override;
  absl::Status FinishStep() override;
  void ReadToHost(Tensor src, float* dst) override;

  void Linear(Tensor x, const DitLinear& weight, Tensor out) override;
  void Patchify(Tensor images, const DitPatchGeometry& geometry, Tensor patches) override;
  void AddPositions(Tensor x, const DitTable& table) override;
  void TimestepEmbedding(double max_period, double freq_shift, Tensor out) override;
  void EmbedClasses(const DitTable& table, Tensor out) override;
  void Add(Tensor x, Tensor y) override;
  void Silu(Tensor x, Tensor out) override;
  void GeluTanh(Tensor x) override;
  // cuBLASLt's GELU (tanh) epilogue, after the bias, on the fp32 accumulators.
  void LinearGeluTanh(Tensor x, const DitLinear& weight, Tensor out) override;
  void LayerNormModulate(Tensor x, Tensor shift, Tensor scale, float eps, Tensor out) override;
  void Attention(Tensor qkv, const DitAttentionParams& params, Tensor out) override;
  // DiTFastAttn: cache buffers (cudaMalloc, zeroed), the linear with its
  // layer's one algorithm for that many rows per sample, the flash kernel
  // walking only the key tiles of each band (kernels/dit/dit_attention.h),
  // index copies and the residual (kernels/dit/dit_cache_kernels.h). Index
  // and window arrays are staged host inputs, like the labels.
  absl::StatusOr<std::unique_ptr<DitBuffer>> AllocateBuffer(int64_t rows, int64_t cols) override;
  void LinearSamples(Tensor x, int64_t samples, const DitLinear& weight, Tensor out) override;
  void WindowAttention(Tensor qkv, const DitAttentionParams& params, absl::Span<const int32_t> windows,
                       Tensor out) override;
  void CopySamples(Tensor src, absl::Span<const int32_t> from, Tensor dst, absl::Span<const int32_t> to,
                   int64_t rows_per_sample) override;
  void Subtract(Tensor x, Tensor y, Tensor out) override;
  void GatedAdd(Tensor x, Tensor y, Tensor gate) override;
  // One kernel: x += gate * y, then LayerNorm + modulate of the new x
  // (bitwise GatedAdd then LayerNormModulate).
  void GatedAddLayerNormModulate(Tensor x, Tensor y, Tensor gate, Tensor shift, Tensor scale, float eps,
                                 Tensor out) override;
  void Unpatchify(Tensor patches, const DitPatchGeometry& geometry, int32_t keep_channels, Tensor images) override;
  void Conv2d(Tensor x, const DitImageShape& shape, const DitConv& conv, Tensor out) override;
  void GroupNorm(Tensor x, int32_t groups, float eps, const DitTable& affine, bool silu, Tensor out) override;
  void Upsample2x(Tensor x, const DitImageShape& shape, Tensor out) override;

  // OK unless a device fault poisoned the ops.
  absl::Status Health() const;

  // With `profile`: milliseconds the last finished pass spent in each kind
  // of op, by stream order (an op's time runs to the next op's start).
  struct OpTimes {
    double linear_ms = 0;
    double attention_ms = 0;
    double other_ms = 0;
  };
  OpTimes op_times() const;

  struct GraphStats {
    int64_t captured = 0;
    int64_t replayed = 0;
    int64_t eager = 0;
  };
  GraphStats graph_stats() const;

  // With gemm_autotune: the layer shapes timed so far, how many of them
  // kept another algorithm than the heuristic's first, and the sum over
  // them of the heuristic's first and of the kept one (ms a GEMM at the
  // tuning rows).
  struct GemmTuning {
    int64_t shapes_timed = 0;
    int64_t changed = 0;
    double heuristic_ms = 0;
    double chosen_ms = 0;
  };
  GemmTuning gemm_tuning() const;

 private:
  struct Impl;
  CudaDitOps(std::unique_ptr<Impl> impl, const CudaDitOpsOptions& options);
  // Linear and LinearGeluTanh: op `op_id` of the pass, GELU in the epilogue or not.
  void RunLinear(uint64_t op_id, bool gelu, Tensor x, const DitLinear& weight, Tensor out);
  std::unique_ptr<Impl> impl_;
  CudaDitOpsOptions options_;
};

}  // namespace tern::runtime
