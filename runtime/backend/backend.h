// Backend: the op set a model is written against, once, for every device
// (as ggml does it). A model definition (runtime/model/llama_model.h) calls
// these ops; the CPU backend runs them with OpenBLAS and the kernels/ CPU
// references, the CUDA backend with cuBLAS and kernels/*.cu.
//
// Memory: weights and the KV cache are uploaded/allocated once and owned by
// the backend objects returned here. Activations are 2-D row-major Tensors
// borrowed from the backend's step workspace (`Scratch`), reused step after
// step so the hot path allocates nothing once warm.
//
// Steps: BeginStep(batch) stages the batch metadata (token ids, positions,
// block tables) on the device; ops enqueue work; EndForward() marks the end
// of the forward pass; SampleRows() turns logits rows into tokens, or
// FinishStep() reports the first error of the step (a CUDA error, say) and
// makes results readable. Ops themselves return nothing: shape mismatches
// are programming errors and CHECK-fail.
//
// Threads: a Backend is used by one engine thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/backend/kv_cache_spec.h"
#include "runtime/model/dtype.h"
#include "runtime/model/moa_plan.h"
#include "runtime/model/quantized_weight.h"
#include "runtime/model/safetensors.h"
#include "runtime/sampling/sampler.h"
#include "runtime/sampling/sampling_params.h"
#include "runtime/sampling/sequence_sampling_state.h"

namespace tern::runtime {

// A borrowed 2-D view of backend memory: rows x cols, row stride `stride`.
// Activations are in the backend's compute dtype, or quantized: dtype kI8 or
// kF8E4M3 with one fp32 scale per row (row r holds values q * row_scales[r],
// as kernels/gemm/quant_gemm.h quantizes them), which an op that fuses the
// activation quantization of a W8A8 linear layer writes beside the data.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;  // elements between rows; >= cols
  float* row_scales = nullptr;  // [rows] for quantized dtypes, else null

  // Columns [begin, begin + count) of every row, same rows (and row scales).
  Tensor Columns(int64_t begin, int64_t count) const;
  // Rows [begin, begin + count).
  Tensor Rows(int64_t begin, int64_t count) const;
};

// A stored tensor the backend uploaded (embedding table, norm weight, bias).
class DeviceWeight {
 public:
  virtual ~DeviceWeight() = default;
  virtual const std::vector<int64_t>& shape() const = 0;
  // Bytes this weight holds in the backend's memory (device memory on a GPU
  // backend): every buffer it allocated, at the size allocated.
  virtual size_t bytes() const = 0;
};

// A linear layer y = x W^T (+ b), W stored [out_features, in_features] in
// its weight scheme (runtime/model/quantized_weight.h): dense in the compute
// dtype, or quantized as the backend's kernels want it.
class LinearWeight {
 public:
  virtual ~LinearWeight() = default;
  virtual int64_t out_features() const = 0;
  virtual int64_t in_features() const = 0;
  virtual LinearScheme scheme() const { return {}; }
  // Bytes this layer holds in the backend's memory (device memory on a GPU
  // backend) in the form its kernels run: weights or codes, scales, zero
  // codes, permutation, smoothing and bias, every buffer at the size
  // allocated. Scratch shared by all layers (a dequantization buffer) is the
  // backend's, not a layer's.
  virtual size_t bytes() const = 0;
};

// One layer-set of paged K and V: per layer of a group (KvCacheSpec::
// group_layers, every layer without groups) [num_blocks, block_size,
// num_kv_heads, head_dim] of the spec's element type (kv_cache_spec.h), and
// for int8 the token scales beside them; layer l of group g lives in pool
// LayerSlot(l) of the block ids group g's tables hold. Which blocks belong to which
// sequence is the scheduler's business; the cache only stores.
class KvCache {
 public:
  virtual ~KvCache() = default;
  virtual const KvCacheSpec& spec() const = 0;
  // Copies whole blocks (copy-on-write forks): dst[i] <- src[i] in all
  // pools, with their int8 scales.
  // Enqueued before the step's pass; an error fails the step it precedes
  // (BeginStep, FinishStep or SampleRows report it).
  virtual void CopyBlocks(const std::vector<int32_t>& src, const std::vector<int32_t>& dst) = 0;
};

// A block-table entry whose block was freed (runtime/backend/kv_retention.h).
inline constexpr int32_t kFreedBlock = -1;

// What one forward pass computes. Tokens of all sequences are packed: the
// new tokens of sequence s are rows [query_start[s], query_start[s+1]).
//
// KV-cache groups (KvCacheSpec::layer_group): each group has its own block
// table per sequence and so its own cache slots. slots and block_indptr hold
// one section per group, group after group; a group's block_indptr section
// holds offsets into the one block_ids array (group g's tables follow group
// g - 1's). A layer of group g writes at group_slots(g) and attends through
// group_block_indptr(g). With one group (the default) this is one slot per
// token and one table per sequence.
struct ForwardBatch {
  std::vector<int32_t> token_ids;       // [num_tokens]
  std::vector<int32_t> positions;       // [num_tokens] absolute position of each token
  // [num_kv_groups * num_tokens] cache slot = block * block_size + offset
  // in the group's block of the token's position.
  std::vector<int32_t> slots;
  std::vector<int32_t> query_start;     // [num_seqs + 1]
  std::vector<int32_t> context_lens;    // [num_seqs] tokens cached after this step
  // [num_kv_groups * (num_seqs + 1)] offsets into block_ids.
  std::vector<int32_t> block_indptr;
  // Block table of each sequence, concatenated, group after group; -1
  // (kFreedBlock) marks a block freed because no query of the group's layers
  // reads its tokens again (KV retention).
  std::vector<int32_t> block_ids;
  std::vector<int32_t> logits_rows;     // token rows whose logits are wanted, in output order
  int32_t num_kv_groups = 1;

  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
  int32_t num_seqs() const { return static_cast<int32_t>(context_lens.size()); }
  // Group g's sections of slots and block_indptr (offsets into their vectors).
  size_t group_slots_offset(int32_t group) const { return size_t(group) * token_ids.size(); }
  size_t group_indptr_offset(int32_t group) const { return size_t(group) * (context_lens.size() + 1); }
  const int32_t* group_slots(int32_t group) const { return slots.data() + group_slots_offset(group); }
  const int32_t* group_block_indptr(int32_t group) const { return block_indptr.data() + group_indptr_offset(group); }
  // True when every sequence computes exactly one token and samples it.
  bool IsDecodeOnly() const;
  // Checks internal consistency against a cache spec (its group count
  // included); INVALID_ARGUMENT naming the broken field (for batches that
  // come from outside the scheduler).
  absl::Status Validate(const KvCacheSpec& cache, int64_t vocab_size) const;
};

// Pads a decode-only batch (IsDecodeOnly) to `num_seqs` sequences with
// padding sequences: token 0 at position 0 with slot -1 in every group
// (nothing is stored), a context of one token in block 0 of every group, and
// a logits row. Their outputs are
// meaningless and follow the real rows. Used to run a decode step at a
// CUDA-graph bucket size (Backend::DecodeGraphBatchSize); call after
// Validate, which rejects negative slots.
void PadDecodeBatch(int32_t num_seqs, ForwardBatch* batch);

// The per-head spans of every layer of an MoA plan (moa_plan.h), in the
// backend's memory for its attention kernels (UploadAttentionSpans).
class AttentionSpans {
 public:
  virtual ~AttentionSpans() = default;
};

struct AttentionOptions {
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  float scale = 1.0f;
  int32_t sliding_window = 0;
  // MoA: each query head attends only to its sink and band
  // (kernels/attention/attention_spans.h); null: dense. Exclusive with
  // sliding_window. Borrowed from the model.
  const AttentionSpans* spans = nullptr;
};

// Mixture-of-experts FFN weights of one layer (Mixtral): per expert
// gate [inter, hidden], up [inter, hidden], down [hidden, inter].
struct MoeWeights {
  std::vector<std::unique_ptr<LinearWeight>> gate, up, down;
  int32_t top_k = 2;
};

// What one logits row is sampled with (borrowed; valid during SampleRows).
// params must have passed SamplingParams::Validate().
struct SampleRequest {
  const SamplingParams* params = nullptr;
  const SequenceSamplingState* state = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // --- weights and cache (setup time) ---
  // A stored tensor, converted to the backend's compute dtype.
  virtual absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadWeight(const TensorView& tensor) = 0;
  // A table that stays fp32 whatever the compute dtype (RoPE frequencies).
  virtual absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadFp32Table(const std::vector<float>& values) = 0;
  // A dense linear layer from a float tensor [out, in]; bias may be null.
  virtual absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareLinear(const TensorView& weight,
                                                                      const TensorView* bias) = 0;
  // Same as PrepareLinear on the rows-concatenation of `weights` (fused QKV,
  // fused gate/up); biases are concatenated likewise (all or none).
  virtual absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareFusedLinear(
      const std::vector<TensorView>& weights, const std::vector<TensorView>& biases) = 0;
  // OK when this backend runs linear layers of `scheme`, else UNIMPLEMENTED
  // saying so. A model asks for every scheme it needs before it uploads
  // anything, so an unsupported scheme fails the load at once. The default
  // runs dense layers only.
  virtual absl::Status SupportsWeightScheme(const LinearScheme& scheme) const;
  // A quantized linear layer (fused parts already concatenated), repacked as
  // the backend's kernels want it. The default is UNIMPLEMENTED.
  virtual absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareQuantizedLinear(const QuantizedLinear& weight);
  // INVALID_ARGUMENT for a spec ValidateKvCacheSpec refuses; UNIMPLEMENTED
  // naming the reason for an element type the backend cannot attend over
  // at this shape.
  virtual absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(const KvCacheSpec& spec) = 0;
  // An MoA plan's spans for Attention (AttentionOptions::spans). The
  // default keeps them in host memory, for backends whose kernels run on
  // the host.
  virtual absl::StatusOr<std::unique_ptr<AttentionSpans>> UploadAttentionSpans(const MoaPlan& plan);
  // Bytes of KV cache one block costs across all layers, for sizing
  // (KvCacheBlockBytes at the backend's compute dtype).
  virtual size_t KvBlockBytes(const KvCacheSpec& spec) const = 0;
  // Free device memory in bytes now, or nullopt when the backend has no
  // device memory of its own (the CPU).
  virtual std::optional<size_t> FreeDeviceMemory() const = 0;
  // The element type activations and caches are computed in.
  virtual DType compute_dtype() const = 0;

  // --- one step ---
  // `batch` must stay alive and unchanged until FinishStep returns.
  virtual absl::Status BeginStep(const ForwardBatch& batch) = 0;
  // A reusable workspace tensor: `slot` names its role (0, 1, ...); contents
  // are undefined and survive until the next Scratch call with that slot.
  virtual Tensor Scratch(int slot, int64_t rows, int64_t cols) = 0;

  // out[t] = table[token_ids[t]] for the step's tokens.
  virtual void Embed(const DeviceWeight& table, Tensor out) = 0;
  virtual void RmsNorm(Tensor x, const DeviceWeight& weight, float eps, Tensor out) = 0;
  // out = x W^T + b. x is in the compute dtype, or (W8A8 layers) already
  // quantized with row scales.
  virtual void Linear(Tensor x, const LinearWeight& weight, Tensor out) = 0;
  // Rotates q and k in place at the step's positions; inv_freq [head_dim / 2]
  // from UploadFp32Table.
  virtual void Rope(Tensor q, Tensor k, int32_t head_dim, const DeviceWeight& inv_freq) = 0;
  // Stores k and v rows at the step's slots of layer `layer`'s KV-cache
  // group (ForwardBatch::group_slots).
  virtual void WriteKv(Tensor k, Tensor v, KvCache& cache, int32_t layer) = 0;
  // Rope on q and k, then WriteKv of the rotated k and v: the seam between
  // the QKV projection and attention. k's contents afterwards are
  // unspecified. Backends may fuse it; the default runs the two ops.
  virtual void RopeWriteKv(Tensor q, Tensor k, Tensor v, int32_t head_dim, const DeviceWeight& inv_freq,
                           KvCache& cache, int32_t layer) {
    Rope(q, k, head_dim, inv_freq);
    WriteKv(k, v, cache, layer);
  }
  // Causal paged attention of q over layer `layer` for the step's sequences,
  // through the block tables of the layer's KV-cache group (with
  // options.spans, each head over its own sink and band; the block tables
  // may then hold -1 where the scheduler freed blocks no head of the group's
  // layers reads).
  virtual void Attention(Tensor q, const KvCache& cache, int32_t layer, const AttentionOptions& options,
                         Tensor out) = 0;
  // out = silu(gate) * up, where gate_up holds [gate | up] column halves.
  virtual void SiluMul(Tensor gate_up, Tensor out) = 0;
  // x += y.
  virtual void Add(Tensor x, Tensor y) = 0;
  // x += residual, then out = RMSNorm(x) * weight (the seam between two
  // pre-norm sublayers). out must not alias x. Backends may fuse it; the
  // default runs Add then RmsNorm.
  virtual void AddRmsNorm(Tensor x, Tensor residual, const DeviceWeight& weight, float eps, Tensor out) {
    Add(x, residual);
    RmsNorm(x, weight, eps, out);
  }
  // out[i] = x[step's logits_rows[i]].
  virtual void GatherLogitRows(Tensor x, Tensor out) = 0;
  // Mixtral MoE FFN: softmax over router logits, top-k experts, renormalized
  // weights, out = sum_k w_k * down_k(silu(gate_k x) * up_k x).
  virtual void MoeFfn(Tensor x, Tensor router_logits, const MoeWeights& experts, Tensor out) = 0;
  // The most tokens for which MoeFfn over these experts only enqueues device
  // work (no wait for the routing on the host), so that a decode step of
  // that many sequences may be recorded as a graph; 0: it always waits.
  virtual int64_t MoeDeviceMaxTokens(const MoeWeights& experts) const {
    (void)experts;
    return 0;
  }

  // Marks the end of one forward pass's ops (from BeginStep on); sampling and
  // read-back may follow. A backend that records the pass (a CUDA graph)
  // launches it here.
  virtual void EndForward() {}
  // The padded number of sequences at which a decode-only step of `num_seqs`
  // sequences should run (see PadDecodeBatch) so that the backend can replay
  // a captured graph of the whole pass; 0 when such steps run as they are.
  // Only for steps whose ops never wait on the host (a Mixtral step of more
  // tokens than MoeDeviceMaxTokens does).
  virtual int32_t DecodeGraphBatchSize(int32_t num_seqs) const {
    (void)num_seqs;
    return 0;
  }
  // The decode steps, as (num_seqs, context length of every sequence, at most
  // max_context), that leave a captured graph for every decode shape a
  // server of at most `max_seqs` sequences and `max_context` tokens can
  // meet, when each is run
  // twice (the first run sizes and warms, the second records), in this
  // order: the first needs the largest buffers, so no later step moves one
  // (which would drop the graphs recorded before it). Empty when the backend
  // keeps no graphs.
  virtual std::vector<std::pair<int32_t, int32_t>> DecodeGraphShapes(int32_t max_seqs, int32_t max_context) const {
    (void)max_seqs;
    (void)max_context;
    return {};
  }

  // OK while the device can run steps; after an unrecoverable fault (a
  // sticky CUDA error) the reason, and every later step fails. A server
  // treats that as fatal: it stops serving and exits so it is restarted.
  virtual absl::Status Health() const { return absl::OkStatus(); }

  // Samples one token per row of `logits` ([requests.size(), vocab], from the
  // step's forward pass) with the semantics of runtime/sampling/sampler.h,
  // including each sequence's uniform (state->NextUniform()). Finishes the
  // step: returns the step's first error (the whole step failed). On OK,
  // (*out)[i] is row i's token, or, for a row the host Sampler would reject
  // (NaN/+inf logit, no finite logit, penalty token outside the vocabulary),
  // INVALID_ARGUMENT naming the row and the cause: one bad row fails only
  // its own sequence, and the other rows are sampled as usual. The default
  // reads the rows to host fp32 and runs the host Sampler; device backends
  // override it to sample in place and read back only ids and logprobs.
  virtual absl::Status SampleRows(Tensor logits, absl::Span<const SampleRequest> requests,
                                  std::vector<absl::StatusOr<SampledToken>>* out);
  // SampleRows in two phases, for a step launched before its result is
  // needed (ModelRunner::Launch): EnqueueSampleRows starts it (each state's
  // uniform is read now) and may return before the device has run the
  // step; FinishSampleRows waits and gives what SampleRows would have
  // returned. The requests' params stay valid until FinishSampleRows. The
  // default runs SampleRows in EnqueueSampleRows.
  virtual void EnqueueSampleRows(Tensor logits, absl::Span<const SampleRequest> requests);
  virtual absl::Status FinishSampleRows(std::vector<absl::StatusOr<SampledToken>>* out);

  // Waits for the step's work; the first error of the step, if any.
  virtual absl::Status FinishStep() = 0;
  // Copies a tensor to host fp32 (after FinishStep).
  virtual void ReadToHost(Tensor tensor, float* out) = 0;

 private:
  // Scratch of the default SampleRows.
  Sampler host_sampler_;
  std::vector<float> host_logits_;
  // The default EnqueueSampleRows's result, until FinishSampleRows.
  absl::Status enqueued_status_;
  std::vector<absl::StatusOr<SampledToken>> enqueued_tokens_;
};

}  // namespace tern::runtime
