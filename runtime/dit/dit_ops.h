// DitOps: the op set the diffusion transformer (runtime/dit/dit_model.h) is
// written against, once for every device. CpuDitOps (cpu_dit_ops.h) runs it
// in fp32 on the host; a CUDA implementation comes behind the same
// interface. It is the DiT's own op set, not the LLM Backend's: a DiT needs
// no KV cache, no causal mask and no token sampling, but adaLN modulation,
// gated residuals, patchify and per-sample conditioning.
//
// Memory, as Backend does it (runtime/backend/backend.h): weights are
// prepared once into objects the ops implementation defines (DitLinear,
// DitTable) and the caller owns; activations are borrowed 2-D row-major
// `Tensor` views of the implementation's workspace (`Scratch`), reused pass
// after pass, so a warm forward pass allocates nothing. A Tensor's `data` is
// host memory on the CPU and device memory on a GPU; the model never
// dereferences it. Host data enters with CopyFromHost and leaves with
// ReadToHost after FinishStep.
//
// A forward pass: BeginStep(step) stages the per-sample inputs (timesteps,
// class labels) and fixes the batch size B; ops enqueue work; FinishStep
// reports the pass's first error and makes results readable. The VAE
// decoder of a latent model (vae_decoder.h) runs on the same ops, as passes
// of their own kind (DitPass::kVaeDecode) without timesteps.
//
// Shapes: activations of B samples with L tokens each are [B * L, features],
// sample-major (rows b*L .. b*L+L-1 are sample b's tokens); per-sample
// vectors (conditioning, modulation) are [B, features]. Ops take the rows per
// sample from x.rows / B. Images (the VAE decoder's activations) are the same
// thing with pixels for tokens: [B * H * W, channels], pixel (y, x) of sample
// b in row b*H*W + y*W + x (NHWC). Shape mismatches are programming errors and
// CHECK-fail; ops return nothing.
//
// Batch invariance: every op computes a sample's rows with the same
// arithmetic whatever else is in the batch and wherever the sample sits in
// it, so a sample's output is bitwise the same alone or batched (the serving
// engine batches samples at different denoising steps; a request's image must
// not depend on its neighbours). Library GEMMs do not promise this across
// row counts (OpenBLAS's result for a row changes with M), so an
// implementation may have to run a GEMM per sample.
//
// Threads: one DitOps is driven by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "runtime/backend/backend.h"
#include "runtime/model/quantized_weight.h"
#include "runtime/model/safetensors.h"

namespace tern::runtime {

// A linear layer y = x W^T + b, W [out_features, in_features], prepared by
// DitOps::PrepareLinear.
class DitLinear {
 public:
  virtual ~DitLinear() = default;
  virtual int64_t out_features() const = 0;
  virtual int64_t in_features() const = 0;
  // What the layer runs as: dense (PrepareLinear) or W8A8
  // (PrepareQuantizedLinear).
  virtual LinearScheme scheme() const { return LinearScheme{}; }
  // Bytes the layer holds in the ops' memory (device memory on a GPU):
  // weights, scales and bias as prepared.
  virtual size_t bytes() const = 0;
};

// A table of rows (class embeddings, the position table), prepared by
// DitOps::UploadTable.
class DitTable {
 public:
  virtual ~DitTable() = default;
  virtual int64_t rows() const = 0;
  virtual int64_t cols() const = 0;
  virtual size_t bytes() const = 0;  // as DitLinear::bytes
};

// A 2-D convolution y = conv(x, W) + b, stride 1, odd square kernel k, zero
// padding (k - 1) / 2 on every side (the output is as large as the input),
// prepared by DitOps::PrepareConv2d.
class DitConv {
 public:
  virtual ~DitConv() = default;
  virtual int32_t out_channels() const = 0;
  virtual int32_t in_channels() const = 0;
  virtual int32_t kernel() const = 0;
  virtual size_t bytes() const = 0;  // as DitLinear::bytes
};

// Device memory that outlives passes (DiTFastAttn's per-request caches),
// prepared by DitOps::AllocateBuffer: [rows, cols] in the compute dtype.
class DitBuffer {
 public:
  virtual ~DitBuffer() = default;
  virtual Tensor tensor() const = 0;
  virtual size_t bytes() const = 0;
};

// One sample's image in an NHWC activation: height x width pixels.
struct DitImageShape {
  int32_t height = 0;
  int32_t width = 0;
  int64_t pixels() const { return int64_t(height) * width; }
};

// One sample's image side: channels x image_size x image_size, cut into
// (image_size / patch_size)^2 patches of patch_size^2 pixels.
struct DitPatchGeometry {
  int32_t channels = 0;
  int32_t image_size = 0;
  int32_t patch_size = 0;

  int32_t grid() const { return image_size / patch_size; }
  int64_t tokens() const { return int64_t(grid()) * grid(); }
  int64_t pixels() const { return int64_t(channels) * image_size * image_size; }
};

// The kinds of pass a model runs on one DitOps. Implementations that record
// a pass's work (CudaDitOps' graphs) keep one record per (kind, batch size,
// image shape).
enum class DitPass : int32_t {
  kForward = 0,    // the DiT: DitModel::Forward
  kVaeDecode = 1,  // the VAE decoder: VaeDecoder::Decode
};

// The per-sample inputs of one pass (host memory).
struct DitStep {
  absl::Span<const float> timesteps;  // [B] diffusion timesteps, any real numbers
  absl::Span<const int32_t> labels;   // [B] rows of the class table
  DitPass pass = DitPass::kForward;
  int64_t samples = 0;  // B of a pass without timesteps (a decode); else ignored
  // One sample's input image: the DiT's latents (or pixels), the VAE
  // decoder's latents. With the kind and B it fixes the pass's ops and
  // shapes: one VaeDecoder weight set decodes several latent sizes on one
  // ops, at the same batch sizes.
  DitImageShape image;
  // Run this pass eagerly, without recording or replaying a CUDA graph.
  bool eager = false;
  // Passes whose op sequence depends on more than the kind, batch and image
  // shape name the rest here: passes of one (kind, batch, image, variant)
  // issue the same ops on the same buffers (a DiTFastAttn pass: its rows'
  // plan steps, which fix which rows compute what; the rows' cache slots and
  // gather indices are staged inputs, like the labels). 0: none.
  uint64_t variant = 0;

  int64_t batch() const { return timesteps.empty() ? samples : static_cast<int64_t>(timesteps.size()); }
};

// Non-causal multi-head self-attention within each sample.
struct DitAttentionParams {
  int32_t num_heads = 0;
  int32_t head_dim = 0;
  float scale = 1.0f;  // applied to q.k, usually 1/sqrt(head_dim)
};

// OK when `t` is a non-empty F32, F16 or BF16 tensor, what every DitOps
// preparation takes; INVALID_ARGUMENT naming the tensor otherwise.
inline absl::Status CheckFloatTensor(const TensorView& t) {
  if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name, "\" has dtype ",
                                                   DTypeSafetensorsName(t.dtype), "; expected F32, F16 or BF16"));
  }
  if (t.shape.empty() || t.numel() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name, "\" is empty ", t.ShapeString()));
  }
  return absl::OkStatus();
}

// The bytes of prepared weights (DitLinear, DitTable, DitConv; null ones
// count 0).
template <typename... Weights>
size_t PreparedBytes(const Weights&... weights) {
  return ((weights != nullptr ? weights->bytes() : size_t(0)) + ... + size_t(0));
}

// The code type a W8A8 layer's quantized input has (kI8, kF8E4M3), or kF32
// for a layer that takes the compute dtype (dense).
inline DType QuantizedInputType(const LinearScheme& scheme) {
  if (scheme.scheme == WeightScheme::kW8A8Int8) return DType::kI8;
  if (scheme.scheme == WeightScheme::kW8A8Fp8) return DType::kF8E4M3;
  return DType::kF32;
}

class DitOps {
 public:
  virtual ~DitOps() = default;
  virtual std::string name() const = 0;
  // Whether passes are recorded (CUDA graphs, keyed by kind, batch, image
  // and variant) and replayed: then the first passes of each key cost more
  // than later ones, and a start-up warm-up (DitRunner::Warmup) pays it.
  virtual bool records_graphs() const { return false; }
  // Bytes the ops hold for passes (activations, step scratch, workspaces and
  // staging: what the largest pass so far needed; weights and DitBuffers
  // are not counted). Buffers only grow, so after DitRunner::Warmup this is
  // the activation memory reserved for every batch up to its rows.
  virtual size_t workspace_bytes() const = 0;

  // --- weights (load time); errors name the tensor ---
  // `weight` [out, ...] is read as [out, numel / out]: a PyTorch Linear's
  // [out, in], or a patch-embedding convolution's [hidden, C, p, p] as the
  // linear over unfolded patches (see Patchify). `bias` [out] may be null.
  // Stored F32, F16 or BF16.
  virtual absl::StatusOr<std::unique_ptr<DitLinear>> PrepareLinear(const TensorView& weight,
                                                                 const TensorView* bias) = 0;
  // OK when this ops can run layers of `scheme` (dense always);
  // FAILED_PRECONDITION saying why not (FP8 on a GPU older than compute
  // capability 8.9). Asked before any layer is prepared.
  virtual absl::Status CheckWeightScheme(const LinearScheme& scheme) const {
    if (scheme.scheme == WeightScheme::kDense) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("the ", name(), " DiT ops run dense linear layers only, not ", scheme.ToString()));
  }
  // A W8A8 layer (INT8 or FP8 E4M3 weights [out, in] with one fp32 scale per
  // output row, fp32 bias or none, dynamic per-token activation scales: no
  // static scale, no smoothing): Linear then computes
  // kernels/gemm/quant_gemm.h's W8A8 arithmetic, activations quantized per
  // row from the compute dtype. INVALID_ARGUMENT for another scheme or an
  // invalid layer; UNIMPLEMENTED for a shape the implementation cannot run.
  virtual absl::StatusOr<std::unique_ptr<DitLinear>> PrepareQuantizedLinear(const QuantizedLinear& linear) {
    return absl::FailedPreconditionError(
        absl::StrCat("the ", name(), " DiT ops run dense linear layers only, not ", linear.scheme.ToString()));
  }
  // `table` [rows, ...] read as [rows, numel / rows] (a [1, L, hidden]
  // position table is L rows when `rows` is L; pass rows = 0 to take shape[0]).
  virtual absl::StatusOr<std::unique_ptr<DitTable>> UploadTable(const TensorView& table, int64_t rows) = 0;
  // A table computed on the host: `values` [rows, cols] row-major.
  virtual absl::StatusOr<std::unique_ptr<DitTable>> UploadTable(absl::Span<const float> values, int64_t rows,
                                                                int64_t cols) = 0;
  // `weight` [out, in, k, k] (a PyTorch Conv2d's), k odd; `bias` [out] or
  // null. Stored F32, F16 or BF16. INVALID_ARGUMENT naming the tensor for
  // another shape.
  virtual absl::StatusOr<std::unique_ptr<DitConv>> PrepareConv2d(const TensorView& weight,
                                                                 const TensorView* bias) = 0;

  // --- a forward pass ---
  // Starts a pass over `step.batch()` samples; `step`'s spans are borrowed
  // until FinishStep. INVALID_ARGUMENT when the spans disagree in length.
  // Every pass of one (kind, batch size, image shape) issues the same ops on
  // the same shapes (DitModel and VaeDecoder do).
  virtual absl::Status BeginStep(const DitStep& step) = 0;
  // A workspace tensor [rows, cols] in the compute dtype: `slot` names its
  // role; contents are undefined and survive until the next Scratch call
  // with that slot.
  virtual Tensor Scratch(int slot, int64_t rows, int64_t cols) = 0;
  // A workspace of per-row quantized activations for a W8A8 layer: one-byte
  // codes [rows, cols] of `codes` (kI8 or kF8E4M3; row stride a multiple of
  // 16) and Tensor::row_scales [rows]. Slots are their own namespace, apart
  // from Scratch's; the same lifetime rules.
  virtual Tensor QuantizedScratch(int slot, int64_t rows, int64_t cols, DType codes) = 0;
  // dst <- src, where src is dense host fp32 [dst.rows, dst.cols].
  virtual void CopyFromHost(const float* src, Tensor dst) = 0;
  // Waits for the pass's work; its first error, if any.
  virtual absl::Status FinishStep() = 0;
  // dst (dense host fp32 [src.rows, src.cols]) <- src, after FinishStep.
  virtual void ReadToHost(Tensor src, float* dst) = 0;

  // --- ops ---
  // out = x W^T + b (a W8A8 layer: quant_gemm.h's arithmetic). A W8A8 layer
  // also takes x already quantized (a QuantizedScratch tensor of its code
  // type, written by a producer op): the same result as from the values
  // those codes quantize, without quantizing again.
  virtual void Linear(Tensor x, const DitLinear& weight, Tensor out) = 0;
  // images [B, C*H*W] (each sample C x H x W row-major) -> patches
  // [B*L, C*p*p]: row b*L + (r*grid + c) holds patch (r, c) of sample b,
  // ordered (channel, row in patch, col in patch), the order of a
  // convolution weight [hidden, C, p, p].
  virtual void Patchify(Tensor images, const DitPatchGeometry& geometry, Tensor patches) = 0;
  // x[b*L + l] += table[l] for every sample b (the position table, [L, cols]).
  virtual void AddPositions(Tensor x, const DitTable& table) = 0;
  // out [B, 2h] row b = [cos(t_b f_0) .. cos(t_b f_{h-1}), sin(t_b f_0) ..
  // sin(t_b f_{h-1})], f_i = exp(-ln(max_period) i / (h - freq_shift)), t_b
  // the step's timestep of sample b (freq_shift: 0 in the original DiT, 1 in
  // diffusers). Computed in float64 (t f reaches ~1000 radians, where
  // float32 arguments are off by ~6e-5), rounded to the compute dtype.
  virtual void TimestepEmbedding(double max_period, double freq_shift, Tensor out) = 0;
  // out [B, cols] row b = table[label_b], the step's class of sample b (the
  // caller checked labels against the table).
  virtual void EmbedClasses(const DitTable& table, Tensor out) = 0;
  // x += y.
  virtual void Add(Tensor x, Tensor y) = 0;
  // out = x / (1 + exp(-x)); out may alias x.
  virtual void Silu(Tensor x, Tensor out) = 0;
  // x = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in place.
  virtual void GeluTanh(Tensor x) = 0;
  // out = GeluTanh(x W^T + b): the MLP's first layer. This default runs
  // Linear then GeluTanh; a backend may apply the activation in the GEMM's
  // epilogue instead (one pass over `out`, rounded once).
  virtual void LinearGeluTanh(Tensor x, const DitLinear& weight, Tensor out) {
    Linear(x, weight, out);
    GeluTanh(out);
  }
  // LayerNorm without affine (biased variance, eps) of each row of x [B*L, D],
  // then adaLN: out = norm * (1 + scale[b]) + shift[b], shift and scale
  // [B, D] (column views of the modulation output are fine). out must not
  // alias x. When out is a QuantizedScratch tensor, each row is quantized
  // as a W8A8 layer quantizes its input (QuantizeActivationsReference,
  // dynamic per row) from the values this op would have written in the
  // compute dtype: codes and scales bit for bit those of Linear's own
  // quantization of that output (ViDiT-Q's per-token activations, produced
  // by the op before the layer instead of a pass of their own).
  virtual void LayerNormModulate(Tensor x, Tensor shift, Tensor scale, float eps, Tensor out) = 0;
  // qkv [B*L, 3*H*d]: q in columns [0, H*d), k in [H*d, 2*H*d), v after,
  // head h at offset h*d of each. out [B*L, H*d] = per sample and head,
  // softmax(q k^T * scale) v over the sample's L tokens (no mask), heads
  // concatenated in head order. Any head_dim (the VAE's mid-block attention
  // is one head of 512 over every pixel).
  virtual void Attention(Tensor qkv, const DitAttentionParams& params, Tensor out) = 0;
  // --- DiTFastAttn (dit_fast_attention.h): ops over a subset of the samples ---
  // A zeroed buffer that lives until destroyed (across passes). Not during a
  // pass. RESOURCE_EXHAUSTED when the device has no room.
  virtual absl::StatusOr<std::unique_ptr<DitBuffer>> AllocateBuffer(int64_t rows, int64_t cols) = 0;
  // Linear over `samples` samples of x.rows / samples rows each (a gathered
  // subset of the pass's samples): the same arithmetic per row as Linear
  // gives a sample of that many rows in the pass, so a sample's output is the
  // same whichever route it takes.
  virtual void LinearSamples(Tensor x, int64_t samples, const DitLinear& weight, Tensor out) = 0;
  // Attention over windows.size() samples of qkv.rows / windows.size()
  // tokens each (layout as Attention). Sample b with windows[b] < 0 attends
  // every key, with Attention's arithmetic exactly; with windows[b] >= 0
  // query i attends the keys j with |i - j| <= windows[b] (a band over the
  // token order; a band as wide as the sample is full attention, bitwise).
  virtual void WindowAttention(Tensor qkv, const DitAttentionParams& params, absl::Span<const int32_t> windows,
                               Tensor out) = 0;
  // For every i: the rows_per_sample rows of sample to[i] of dst <- those of
  // sample from[i] of src (src and dst may be one tensor when no sample is
  // both read and written).
  virtual void CopySamples(Tensor src, absl::Span<const int32_t> from, Tensor dst, absl::Span<const int32_t> to,
                           int64_t rows_per_sample) = 0;
  // out = x - y elementwise (out may alias x or y).
  virtual void Subtract(Tensor x, Tensor y, Tensor out) = 0;

  // x[b*L + l] += gate[b] * y[b*L + l] (adaLN-Zero's gated residual);
  // gate [B, D].
  virtual void GatedAdd(Tensor x, Tensor y, Tensor gate) = 0;
  // An adaLN-Zero block's residual and the LayerNorm + modulate after it:
  // x += gate[b] * y (as GatedAdd), then out = LayerNormModulate(x, shift,
  // scale, eps) of the updated x (as LayerNormModulate). gate, shift and
  // scale [B, D] (column views are fine); out must alias neither x nor y,
  // and may be quantized as LayerNormModulate's. This default runs the two
  // ops in turn (the CPU's, so its results are
  // theirs bit for bit); a backend may fuse them into one pass over x that
  // reads the old x once and writes the new x and out once, with the same
  // arithmetic as its two ops (CudaDitOps: bitwise equal to them).
  virtual void GatedAddLayerNormModulate(Tensor x, Tensor y, Tensor gate, Tensor shift, Tensor scale, float eps,
                                         Tensor out) {
    GatedAdd(x, y, gate);
    LayerNormModulate(x, shift, scale, eps, out);
  }
  // patches [B*L, p*p*C_out] (ordered row in patch, col in patch, channel;
  // geometry.channels = C_out) -> images [B, keep*H*W] holding the first
  // `keep_channels` channels (the noise prediction of a learn_sigma model).
  virtual void Unpatchify(Tensor patches, const DitPatchGeometry& geometry, int32_t keep_channels,
                          Tensor images) = 0;

  // --- image ops (the VAE decoder), NHWC activations [B * H * W, C] ---
  // out [B*H*W, conv.out] = conv(x [B*H*W, conv.in]) + bias, each sample
  // alone (zero padding at its borders). out must not alias x.
  virtual void Conv2d(Tensor x, const DitImageShape& shape, const DitConv& conv, Tensor out) = 0;
  // GroupNorm: per sample and group of C / groups consecutive channels, the
  // mean and biased variance over the sample's pixels x the group's
  // channels; out = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c], then
  // SiLU when `silu`. `affine` is [2, C]: gamma, then beta. out may alias x.
  virtual void GroupNorm(Tensor x, int32_t groups, float eps, const DitTable& affine, bool silu, Tensor out) = 0;
  // Nearest-neighbour 2x upsampling: out [B*2H*2W, C], pixel (y, x) of out
  // is pixel (y / 2, x / 2) of x (shape: x's H, W).
  virtual void Upsample2x(Tensor x, const DitImageShape& shape, Tensor out) = 0;
};

}  // namespace tern::runtime
