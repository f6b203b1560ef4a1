#include "runtime/runner/llm_model_runner.h"

#include <algorithm>
#include <climits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

std::string Mib(size_t bytes) { return absl::StrFormat("%.1f MiB", double(bytes) / double(1 << 20)); }

}  // namespace

absl::StatusOr<std::unique_ptr<LlmModelRunner>> LlmModelRunner::Create(std::unique_ptr<Backend> backend,
                                                                       const LlmModelRunnerOptions& options) {
  if (options.block_size <= 0) return absl::InvalidArgumentError("block_size must be positive");
  std::unique_ptr<LlmModelRunner> runner(new LlmModelRunner());
  runner->backend_ = std::move(backend);
  ASSIGN_OR_RETURN(runner->model_, LlamaModel::Load(options.model_dir, runner->backend_.get(), options.model));
  if (options.max_kv_cache_groups <= 0) return absl::InvalidArgumentError("max_kv_cache_groups must be positive");
  runner->max_context_ = runner->model_->config().max_position_embeddings;
  if (options.max_context_length > 0) runner->max_context_ = std::min(runner->max_context_, options.max_context_length);
  // What the cache may give back, per KV-cache group: the MoA plan's spans
  // (layers that read alike share a group), or a sliding window.
  const int32_t num_layers = static_cast<int32_t>(runner->model_->config().num_hidden_layers);
  const int32_t context = static_cast<int32_t>(std::min<int64_t>(runner->max_context_, INT32_MAX));
  if (const MoaPlan* plan = runner->model_->moa_plan(); plan != nullptr) {
    runner->groups_ = plan->KvGroups(context, options.max_kv_cache_groups);
  } else if (runner->model_->config().sliding_window > 0 && context > 0) {
    runner->groups_ = KvCacheGroups::Single(
        num_layers, KvRetention::SlidingWindow(static_cast<int32_t>(runner->model_->config().sliding_window), context));
  } else {
    runner->groups_ = KvCacheGroups::Single(num_layers);
  }
  const auto cache_spec = [&](int32_t blocks) {
    KvCacheSpec spec = runner->model_->CacheSpec(blocks, options.block_size);
    if (runner->groups_.num_groups() > 1) spec.layer_group = runner->groups_.layer_group;
    return spec;
  };
  int32_t num_blocks = options.num_blocks;
  if (num_blocks <= 0) {
    const size_t per_block = runner->backend_->KvBlockBytes(cache_spec(1));
    size_t budget = options.kv_cache_bytes;
    std::string budget_source = absl::StrCat("the KV cache budget of ", Mib(budget));
    if (const std::optional<size_t> free = runner->backend_->FreeDeviceMemory(); free.has_value()) {
      const double usable = double(*free) * options.gpu_memory_fraction - double(options.activation_reserve_bytes);
      budget = usable > 0 ? size_t(usable) : 0;
      budget_source = absl::StrCat("the device memory left for the KV cache after loading the weights (",
                                   Mib(*free), " free x gpu_memory_fraction ", options.gpu_memory_fraction,
                                   " - ", Mib(options.activation_reserve_bytes), " reserved for activations = ",
                                   Mib(budget), ")");
    }
    num_blocks = static_cast<int32_t>(std::min<size_t>(budget / per_block, INT32_MAX));
    if (num_blocks < runner->groups_.num_groups()) {
      return absl::ResourceExhaustedError(absl::StrCat(budget_source, " holds no KV cache block of ",
                                                       Mib(per_block), " in each of ", runner->groups_.num_groups(),
                                                       " KV-cache groups"));
    }
  }
  ASSIGN_OR_RETURN(runner->cache_, runner->backend_->AllocateKvCache(cache_spec(num_blocks)));
  if (options.warmup_tokens > 0) {
    if (absl::Status warm = runner->Warmup(options.warmup_tokens); !warm.ok()) {
      return absl::Status(warm.code(), absl::StrCat("warm-up step: ", warm.message()));
    }
    if (options.warmup_graph_seqs > 0) {
      if (absl::Status warm = runner->WarmupDecodeGraphs(options.warmup_graph_seqs); !warm.ok()) {
        return absl::Status(warm.code(), absl::StrCat("decode graph warm-up: ", warm.message()));
      }
    }
  }
  return runner;
}

std::vector<int32_t> WarmupPrefillLengths(int32_t tokens) {
  std::vector<int32_t> lengths;
  if (tokens <= 0) return lengths;
  for (int32_t n = tokens; n == tokens || n >= kMinWarmupPrefillTokens; n /= 4) {
    lengths.push_back(n);
    if (n > 1) lengths.push_back(n - 1);
  }
  return lengths;
}

absl::Status LlmModelRunner::Warmup(int32_t tokens) {
  const int32_t block_size = cache_->spec().block_size;
  const int32_t groups = groups_.num_groups();
  const int64_t capacity = int64_t(cache_->spec().num_blocks / groups) * block_size;
  // Room for the prompt and the one decoded token.
  const auto fit = [&](int32_t length) {
    return static_cast<int32_t>(std::min<int64_t>({int64_t(length), max_context_ - 1, capacity - 1}));
  };
  // Each distinct length once (cut to the cache, two may meet), the longest
  // last with its decode step.
  std::vector<int32_t> fitted;
  for (int32_t length : WarmupPrefillLengths(tokens)) {
    if (std::find(fitted.begin(), fitted.end(), fit(length)) == fitted.end()) fitted.push_back(fit(length));
  }
  if (fitted.empty()) return absl::OkStatus();
  const int32_t longest = *std::max_element(fitted.begin(), fitted.end());
  for (int32_t length : fitted) {
    if (length != longest) RETURN_IF_ERROR(WarmupPrefill(length, /*decode=*/false));
  }
  return WarmupPrefill(longest, /*decode=*/true);
}

absl::Status LlmModelRunner::WarmupPrefill(int32_t n, bool decode) {
  if (n <= 0) return absl::OkStatus();
  const int32_t block_size = cache_->spec().block_size;
  const int32_t groups = groups_.num_groups();
  std::vector<int32_t> ids(size_t(n), 0);  // token 0 exists in every vocabulary
  const int32_t per_group = (n + 1 + block_size - 1) / block_size;
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(groups),
                                           std::vector<int32_t>(static_cast<size_t>(per_group), 0));
  for (int32_t g = 0; g < groups; ++g) std::iota(tables[size_t(g)].begin(), tables[size_t(g)].end(), g * per_group);
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  SequenceSamplingState state(0, 0, ids);
  SequenceStep step;
  step.seq_id = -1;
  step.token_ids = ids;
  step.block_tables = tables;
  step.sample = true;
  step.sampling = &greedy;
  step.sampling_state = &state;
  StepPlan plan;
  plan.sequences = {step};
  ASSIGN_OR_RETURN(StepResult prefill, Execute(plan));
  if (prefill.outputs.size() != 1) return absl::InternalError("the warm-up prefill sampled no token");
  if (!prefill.outputs[0].token.ok()) {
    return absl::InternalError(absl::StrCat("warm-up: ", prefill.outputs[0].token.status().message()));
  }
  if (!decode) return absl::OkStatus();
  ids.push_back(prefill.outputs[0].token->token_id);
  state.AppendOutputToken(ids.back());
  step.token_ids = absl::MakeConstSpan(ids).subspan(size_t(n));
  step.num_computed_tokens = n;
  plan.sequences = {step};
  return Execute(plan).status();
}

absl::Status LlmModelRunner::WarmupDecodeGraphs(int32_t max_seqs) {
  const int32_t block_size = cache_->spec().block_size;
  const int64_t cache_tokens = int64_t(cache_->spec().num_blocks) * block_size;
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  const std::vector<int32_t> token = {0};
  const int32_t max_context = int32_t(std::min<int64_t>(max_context_, kMaxWarmupGraphContext));
  for (const auto& [num_seqs, context] : backend_->DecodeGraphShapes(max_seqs, max_context)) {
    // Longer than the cache, or a step whose MoE layers wait on the host.
    if (context > cache_tokens || !model_->CanRunAsGraph(num_seqs)) continue;
    std::vector<int32_t> blocks(size_t((context + block_size - 1) / block_size));
    std::iota(blocks.begin(), blocks.end(), 0);
    // Every group and sequence shares the blocks: what they write is garbage.
    const std::vector<std::vector<int32_t>> tables(size_t(groups_.num_groups()), blocks);
    std::vector<SequenceSamplingState> states;
    states.reserve(size_t(num_seqs));
    for (int32_t s = 0; s < num_seqs; ++s) states.emplace_back(0, 0, token, OutputCounts::kUntracked);
    StepPlan plan;
    for (int32_t s = 0; s < num_seqs; ++s) {
      SequenceStep step;
      step.seq_id = -1 - s;
      step.token_ids = token;
      step.num_computed_tokens = context - 1;
      step.block_tables = tables;
      step.sample = true;
      step.sampling = &greedy;
      step.sampling_state = &states[size_t(s)];
      plan.sequences.push_back(step);
    }
    for (int run = 0; run < 2; ++run) RETURN_IF_ERROR(Execute(plan).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<StepResult> LlmModelRunner::Execute(const StepPlan& plan) {
  RETURN_IF_ERROR(Start(plan));
  return Finish();
}

absl::Status LlmModelRunner::Launch(const StepPlan& plan) {
  CHECK(!launched_) << "a step was launched and not collected";
  launched_ = true;
  absl::StatusOr<const StepPlan*> resolved = ResolveLastSamples(plan);
  launch_status_ = resolved.ok() ? Start(**resolved) : resolved.status();
  return launch_status_;
}

absl::StatusOr<StepResult> LlmModelRunner::Collect() {
  CHECK(launched_) << "Collect without a launched step";
  launched_ = false;
  if (!launch_status_.ok()) return std::exchange(launch_status_, absl::OkStatus());
  absl::StatusOr<StepResult> result = Finish();
  if (result.ok()) RememberSamples(*result);
  return result;
}

absl::Status LlmModelRunner::Start(const StepPlan& plan) {
  sampled_seq_ids_.clear();
  copies_only_ = false;
  if (!plan.block_copies.empty()) {
    std::vector<int32_t> src, dst;
    for (const auto& [s, d] : plan.block_copies) {
      if (s < 0 || d < 0 || s >= cache_->spec().num_blocks || d >= cache_->spec().num_blocks) {
        return absl::InvalidArgumentError("block copy outside the cache");
      }
      src.push_back(s);
      dst.push_back(d);
    }
    cache_->CopyBlocks(src, dst);
  }
  if (plan.sequences.empty()) {
    // Copies alone: Finish waits for them, so their errors belong to this step.
    copies_only_ = true;
    return absl::OkStatus();
  }

  const int32_t block_size = cache_->spec().block_size;
  const int32_t groups = groups_.num_groups();
  ForwardBatch& b = batch_;
  b.token_ids.clear();
  b.positions.clear();
  b.slots.clear();
  b.query_start.assign(1, 0);
  b.context_lens.clear();
  b.block_indptr.clear();
  b.block_ids.clear();
  b.logits_rows.clear();
  b.num_kv_groups = groups;
  for (const SequenceStep& s : plan.sequences) {
    const int32_t n = static_cast<int32_t>(s.token_ids.size());
    if (n == 0) return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, " has no tokens to compute"));
    if (s.input_from_last_sample) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", s.seq_id, " takes its input from the last sample: only Launch resolves it"));
    }
    const int32_t end = s.num_computed_tokens + n;
    if (int32_t(s.block_tables.size()) != groups) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": ", s.block_tables.size(),
                                                     " block tables for ", groups, " KV-cache groups"));
    }
    for (const std::vector<int32_t>& table : s.block_tables) {
      if (int64_t(table.size()) * block_size < end) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": ", table.size(),
                                                       " blocks cannot hold ", end, " tokens"));
      }
    }
    for (int32_t i = 0; i < n; ++i) {
      b.token_ids.push_back(s.token_ids[i]);
      b.positions.push_back(s.num_computed_tokens + i);
    }
    b.query_start.push_back(b.num_tokens());
    b.context_lens.push_back(end);
    if (s.sample) {
      if (s.sampling == nullptr || s.sampling_state == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, " samples without parameters"));
      }
      b.logits_rows.push_back(b.num_tokens() - 1);
    }
  }
  // Slots and block tables group after group (ForwardBatch).
  for (int32_t g = 0; g < groups; ++g) {
    b.block_indptr.push_back(static_cast<int32_t>(b.block_ids.size()));
    for (const SequenceStep& s : plan.sequences) {
      const std::vector<int32_t>& table = s.block_tables[size_t(g)];
      const int32_t n = static_cast<int32_t>(s.token_ids.size());
      for (int32_t i = 0; i < n; ++i) {
        const int32_t p = s.num_computed_tokens + i;
        b.slots.push_back(table[size_t(p / block_size)] * block_size + p % block_size);
      }
      b.block_ids.insert(b.block_ids.end(), table.begin(), table.end());
      b.block_indptr.push_back(static_cast<int32_t>(b.block_ids.size()));
    }
  }
  RETURN_IF_ERROR(b.Validate(cache_->spec(), model_->config().vocab_size));
  if (b.IsDecodeOnly()) {
    // Padding rows follow the real ones, so the sampling below skips them.
    const int32_t padded = backend_->DecodeGraphBatchSize(b.num_seqs());
    if (padded > b.num_seqs() && model_->CanRunAsGraph(padded)) PadDecodeBatch(padded, &b);
  }
  ASSIGN_OR_RETURN(Tensor logits, model_->ForwardLogits(b, *cache_));
  requests_.clear();
  for (const SequenceStep& s : plan.sequences) {
    if (!s.sample) continue;
    requests_.push_back({s.sampling, s.sampling_state});
    sampled_seq_ids_.push_back(s.seq_id);
  }
  // Padding rows (decode graphs) follow the real ones and are not sampled.
  backend_->EnqueueSampleRows(logits.Rows(0, int64_t(requests_.size())), requests_);
  return absl::OkStatus();
}

absl::StatusOr<StepResult> LlmModelRunner::Finish() {
  StepResult result;
  if (copies_only_) {
    RETURN_IF_ERROR(backend_->FinishStep());
    return result;
  }
  // The step's one wait for the device; it reports the errors of the whole pass.
  RETURN_IF_ERROR(backend_->FinishSampleRows(&tokens_));
  if (tokens_.size() != sampled_seq_ids_.size()) {
    return absl::InternalError(absl::StrCat("sampling gave ", tokens_.size(), " rows for ", sampled_seq_ids_.size()));
  }
  for (size_t row = 0; row < sampled_seq_ids_.size(); ++row) {
    result.outputs.push_back({sampled_seq_ids_[row], std::move(tokens_[row])});
  }
  return result;
}

}  // namespace tern::runtime
