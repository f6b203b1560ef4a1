// CpuDitOps: DitOps in fp32 on the host. GEMMs (linear layers, the two
// products of each attention head, and convolutions as im2col + GEMM) go
// through OpenBLAS, which threads them; everything else is a plain loop over
// rows (GroupNorm's statistics in float64). It is the reference a device
// implementation of DitOps is checked against.
//
// Weights of any float dtype (F32, F16, BF16) are converted to fp32 at
// preparation. Batch invariance: a linear layer runs one GEMM per sample
// (OpenBLAS's result for a row depends on the GEMM's row count and on where
// the row falls in it, so a single batched GEMM would make a sample's output
// depend on its batch mates), a convolution GEMMs per sample over fixed
// chunks of its pixels; the other ops are loops over rows.
// Single-threaded use per the DitOps contract.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/dit/dit_ops.h"

namespace tern::runtime {

class CpuDitOps final : public DitOps {
 public:
  CpuDitOps() = default;
  std::string name() const override { return "cpu"; }
  size_t workspace_bytes() const override;

  absl::StatusOr<std::unique_ptr<DitLinear>> PrepareLinear(const TensorView& weight,
                                                         const TensorView* bias) override;
  // W8A8 INT8 and FP8 both: the reference arithmetic itself
  // (QuantizeActivationsReference and W8A8GemmReference), row by row, so
  // batch invariance holds as for dense layers.
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
  absl::Status FinishStep() override { return absl::OkStatus(); }
  void ReadToHost(Tensor src, float* dst) override;

  void Linear(Tensor x, const DitLinear& weight, Tensor out) override;
  void Patchify(Tensor images, const DitPatchGeometry& geometry, Tensor patches) override;
  void AddPositions(Tensor x, const DitTable& table) override;
  void TimestepEmbedding(double max_period, double freq_shift, Tensor out) override;
  void EmbedClasses(const DitTable& table, Tensor out) override;
  void Add(Tensor x, Tensor y) override;
  void Silu(Tensor x, Tensor out) override;
  void GeluTanh(Tensor x) override;
  void LayerNormModulate(Tensor x, Tensor shift, Tensor scale, float eps, Tensor out) override;
  void Attention(Tensor qkv, const DitAttentionParams& params, Tensor out) override;
  absl::StatusOr<std::unique_ptr<DitBuffer>> AllocateBuffer(int64_t rows, int64_t cols) override;
  void LinearSamples(Tensor x, int64_t samples, const DitLinear& weight, Tensor out) override;
  // Attention's loops, a band's keys outside it weighing exactly 0.
  void WindowAttention(Tensor qkv, const DitAttentionParams& params, absl::Span<const int32_t> windows,
                       Tensor out) override;
  void CopySamples(Tensor src, absl::Span<const int32_t> from, Tensor dst, absl::Span<const int32_t> to,
                   int64_t rows_per_sample) override;
  void Subtract(Tensor x, Tensor y, Tensor out) override;
  void GatedAdd(Tensor x, Tensor y, Tensor gate) override;
  void Unpatchify(Tensor patches, const DitPatchGeometry& geometry, int32_t keep_channels, Tensor images) override;
  void Conv2d(Tensor x, const DitImageShape& shape, const DitConv& conv, Tensor out) override;
  void GroupNorm(Tensor x, int32_t groups, float eps, const DitTable& affine, bool silu, Tensor out) override;
  void Upsample2x(Tensor x, const DitImageShape& shape, Tensor out) override;

  // Pixels of one convolution GEMM: a sample's pixels go through im2col and
  // the GEMM this many at a time (a fixed split, so batch invariance holds).
  static constexpr int64_t kConvChunkPixels = 4096;

 private:
  // Rows per sample of an activation with `rows` rows in this step.
  int64_t RowsPerSample(int64_t rows) const;

  int64_t batch_ = 0;             // B of the current step
  std::vector<float> timesteps_;  // [B] of the current step
  std::vector<int32_t> labels_;   // [B]
  std::map<int, std::vector<float>> scratch_;
  std::vector<float> scores_;    // [tokens, tokens] of one attention head
  std::vector<float> inv_sums_;  // [tokens] its softmax denominators, inverted
  std::vector<int32_t> full_windows_;  // Attention's windows: -1 a sample
  std::vector<float> columns_;   // a convolution chunk's im2col [pixels, k*k*in]
  std::vector<float> group_stats_;  // GroupNorm's [groups] means and inverse deviations
  std::vector<uint8_t> quantized_rows_;  // a W8A8 layer's activation codes [rows, in]
  std::vector<float> row_scales_;        // and their scales [rows]
  struct QuantizedSlot {
    std::vector<uint8_t> codes;
    std::vector<float> scales;
  };
  std::map<int, QuantizedSlot> quantized_scratch_;
};

}  // namespace tern::runtime
