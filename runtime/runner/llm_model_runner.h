// LlmModelRunner: a ModelRunner over a LlamaModel on any Backend: builds the
// ForwardBatch from a StepPlan, runs the forward pass and samples with
// Backend::SampleRows (on the device for the CUDA backend, with the host
// Sampler otherwise). A step waits for the device once: SampleRows waits for
// the forward pass and the sampling together and reports the first error of
// either.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/backend/backend.h"
#include "runtime/model/llama_model.h"
#include "runtime/runner/model_runner.h"

namespace tern::runtime {

// Contexts past this are left out of the start-up graph warm-up: its cost
// grows with batch x context, and longer contexts are rarer; their graphs
// are recorded when first met.
inline constexpr int32_t kMaxWarmupGraphContext = 8192;

struct LlmModelRunnerOptions {
  std::string model_dir;
  int32_t block_size = 16;
  // KV cache blocks; 0 sizes the cache from kv_cache_bytes.
  int32_t num_blocks = 0;
  // KV budget where the backend has no device memory of its own (the CPU).
  size_t kv_cache_bytes = size_t(1) << 30;
  // On a GPU: the fraction of the memory free after loading the weights that
  // the KV cache may take, after reserving activation headroom.
  double gpu_memory_fraction = 0.9;
  size_t activation_reserve_bytes = size_t(1) << 30;
  int64_t max_context_length = 0;  // 0: the model's
  LlamaModelOptions model;
  // > 0: Create runs prefills of WarmupPrefillLengths(warmup_tokens) tokens
  // (each fewer when the cache or the context is smaller) and one decode
  // step, then forgets them, so that lazy kernel loading, library heuristics
  // for each GEMM shape and scratch growth happen before the first request
  // instead of inside its time to first token.
  int32_t warmup_tokens = 0;
  // > 0 (with warmup_tokens > 0): Create also records the backend's decode
  // graph for every batch bucket up to this many sequences at every context
  // capacity up to the max context, or kMaxWarmupGraphContext when that is
  // smaller (Backend::DecodeGraphShapes), so that serving does not record
  // or re-record one (a recording and a moved buffer are each a latency
  // spike between two tokens). Set it to the engine's max_num_seqs.
  int32_t warmup_graph_seqs = 0;
  // The most KV-cache groups an MoA plan's layers are cut into
  // (kv_cache_groups.h; 1: one block table for all layers, which frees only
  // what no layer reads). Dense and sliding-window models have one group.
  int32_t max_kv_cache_groups = kDefaultMaxKvCacheGroups;
};

// The prompt lengths of the start-up warm-up, longest first: `tokens`, then
// a quarter of the previous one while that is at least
// kMinWarmupPrefillTokens, each followed by the length one token shorter,
// so short, middle and long prompts each meet GEMM shapes (and attention
// tiles) that have run once, at row counts that are multiples of the
// libraries' alignments and at ones that are not (a first 1,823-token
// prompt after a warm-up of aligned lengths took 1.8 times as long as the
// next ones). Empty for tokens <= 0.
inline constexpr int32_t kMinWarmupPrefillTokens = 16;
std::vector<int32_t> WarmupPrefillLengths(int32_t tokens);

class LlmModelRunner final : public ModelRunner {
 public:
  // Takes ownership of `backend`.
  static absl::StatusOr<std::unique_ptr<LlmModelRunner>> Create(std::unique_ptr<Backend> backend,
                                                                const LlmModelRunnerOptions& options);

  absl::StatusOr<StepResult> Execute(const StepPlan& plan) override;
  // Launch enqueues the step's forward pass and sampling and returns (on
  // the CUDA backend, before the device has run them); Collect waits.
  absl::Status Launch(const StepPlan& plan) override;
  absl::StatusOr<StepResult> Collect() override;
  KvCacheLayout kv_cache_layout() const override {
    return {cache_->spec().num_blocks, cache_->spec().block_size, groups_.num_groups()};
  }
  int64_t vocab_size() const override { return model_->config().vocab_size; }
  int64_t max_context_length() const override { return max_context_; }
  absl::Status Health() const override { return backend_->Health(); }
  // The KV-cache groups: an MoA plan's (layers that read alike share a
  // block table and a retention), a sliding window's one group, or one group
  // that keeps every token.
  const KvCacheGroups* kv_cache_groups() const override { return &groups_; }
  // The model's MoA plan, or null (dense attention).
  const MoaPlan* moa_plan() const { return model_->moa_plan(); }
  // Bytes the model's weights hold on the backend (LlamaModel::weight_bytes).
  size_t weight_bytes() const { return model_->weight_bytes(); }
  // What the linear layers run as (LlamaModel::weight_scheme).
  const std::string& weight_scheme() const { return model_->weight_scheme(); }

  // The warm-up of LlmModelRunnerOptions::warmup_tokens: a greedy prefill
  // of each of WarmupPrefillLengths(tokens) copies of token 0 into blocks 0,
  // 1, ... (each KV-cache group its own run of them), and after the longest
  // one decode step.
  // The blocks it wrote hold no sequence afterwards (the scheduler owns
  // block allocation and overwrites them before any read).
  absl::Status Warmup(int32_t tokens);
  // The graph warm-up of LlmModelRunnerOptions::warmup_graph_seqs: each of
  // Backend::DecodeGraphShapes run twice as a decode step of `num_seqs`
  // sequences sharing blocks 0, 1, ... (what they write is garbage nobody
  // reads). Shapes longer than the KV cache are left to be recorded when met.
  absl::Status WarmupDecodeGraphs(int32_t max_seqs);

 private:
  LlmModelRunner() = default;
  // One warm-up prefill of n tokens (n fits the cache and the context), and
  // with `decode` one decode step after it.
  absl::Status WarmupPrefill(int32_t n, bool decode);
  // A step in two halves: Start builds the batch and enqueues the forward
  // pass and the sampling, Finish waits for them and gives the result.
  absl::Status Start(const StepPlan& plan);
  absl::StatusOr<StepResult> Finish();
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvCache> cache_;
  int64_t max_context_ = 0;
  KvCacheGroups groups_;
  ForwardBatch batch_;  // reused step to step
  std::vector<SampleRequest> requests_;
  std::vector<absl::StatusOr<SampledToken>> tokens_;
  // The started step (Start, until Finish): its sampled sequences in row
  // order, or block copies alone; and Launch's state until Collect.
  std::vector<int64_t> sampled_seq_ids_;
  bool copies_only_ = false;
  bool launched_ = false;
  absl::Status launch_status_;
};

}  // namespace tern::runtime
