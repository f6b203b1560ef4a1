// Long-context serving through the engine ternd runs (Scheduler, BlockManager,
// LlmModelRunner, the CPU or CUDA backend): at one fixed KV-cache memory, how
// many sequences of a context length run at once and how fast they decode,
// with the KV cache in the compute dtype, fp8 or int8, and with dense
// attention or an MoA plan (runtime/model/moa_plan.h).
//
//   tern-long-context-bench --model DIR [--backend cuda] [--dtype float16] [--kv-cache-mib 16384]
//                           [--contexts 8192,16384] [--kv-cache-dtypes auto,fp8] [--moa-plan PLAN]
//                           [--decode-steps 64] [--max-num-batched-tokens 2048] [--max-num-seqs 256]
//                           [--max-kv-cache-groups 8] [--json PATH]
//
// Rows: every KV cache dtype, each with dense attention and (with --moa-plan)
// the plan; every row loads the model afresh with a cache of exactly
// --kv-cache-mib (blocks of the backend's own block bytes for that dtype and
// KV-cache groups: an MoA row's block holds one group's layers, so its cache
// has as many times more blocks as it has groups), and runs each context on
// that engine. Per context, the bench submits as many
// sequences as hold their KV at once at their longest, by the engine's own
// count (long_context_accounting.h: the written positions, or the peak the
// MoA plan's retention leaves in each KV-cache group), all together, each with a random prompt and a
// fixed output length chosen so that every sequence is still decoding when
// the last prompt is done; the engine admits, chunks the prompts and decodes
// as it does for ternd. Reported, per row:
//   seqs         sequences running at once, the most the engine's stats showed
//                (the run fails if it is not every sequence submitted, or if
//                any was preempted);
//   blocks       the KV blocks held at most, of the cache's blocks;
//   decode tok/s output tokens per second in the steady window (every
//                sequence decoding, no prompt left, the decode graph
//                recorded: SteadyDecodeWindow), prefill excluded;
//   vs dense     against the row with the compute-dtype cache and dense
//                attention at the same context;
//   floor        sequences / (bytes one decode step reads: the weights but an
//                untied embedding table, plus each sequence's K/V as the
//                decode kernel reads it at its mean length in the window)
//                over the copy bandwidth measured in the same run.
// The model's compute dtype, the block size (16) and the scheduler limits
// are the same for every row. CUDA graphs are recorded when first met, not
// at start-up (ternd records every shape up to max_num_seqs at start).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "bench/copy_bandwidth.h"
#include "bench/host_info.h"
#include "bench/long_context_accounting.h"
#include "nlohmann/json.hpp"
#include "runtime/backend/backend_factory.h"
#include "runtime/base/flag_names.h"
#include "runtime/cuda/device_probe.h"
#include "runtime/model/dtype.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/moa_plan.h"
#include "runtime/model/safetensors.h"
#include "runtime/runner/llm_model_runner.h"
#include "scheduler/engine.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model directory (token ids only; no tokenizer needed)");
ABSL_FLAG(std::string, backend, "cuda", "cpu or cuda");
ABSL_FLAG(std::string, dtype, "float16", "CUDA compute dtype: float16, bfloat16 or float32");
ABSL_FLAG(int64_t, kv_cache_mib, 16384, "KV cache memory of every row, MiB");
ABSL_FLAG(std::vector<std::string>, contexts, std::vector<std::string>({"8192", "16384"}),
          "tokens per sequence (prompt + output), comma-separated");
ABSL_FLAG(std::vector<std::string>, kv_cache_dtypes, std::vector<std::string>({"auto", "fp8"}),
          "KV cache element types: auto, fp8, int8 (comma-separated)");
ABSL_FLAG(std::string, moa_plan, "", "MoA plan file (runtime/model/moa_plan.h): adds a row with it per KV dtype");
ABSL_FLAG(int32_t, decode_steps, 64, "decode steps every sequence runs together after the graph warm-up");
ABSL_FLAG(int32_t, max_num_batched_tokens, 2048, "the engine's token budget per step (ternd's default)");
ABSL_FLAG(int32_t, max_num_seqs, 256, "the engine's sequences per step (ternd's default)");
ABSL_FLAG(int32_t, max_kv_cache_groups, tern::runtime::kDefaultMaxKvCacheGroups,
          "the most KV-cache groups an MoA plan's layers are cut into (1: one block table, freeing only what no "
          "layer reads)");
ABSL_FLAG(std::string, json, "", "also write the results here as JSON");

namespace {

namespace rt = tern::runtime;
using Clock = std::chrono::steady_clock;
constexpr int32_t kBlockSize = 16;

int Fail(const std::string& message) {
  std::fprintf(stderr, "tern-long-context-bench: %s\n", message.c_str());
  return 1;
}

// Records the delivery time of each output token (seconds on the bench's clock).
class TimingSink final : public tern::scheduler::RequestSink {
 public:
  explicit TimingSink(Clock::time_point epoch) : epoch_(epoch) {}
  void OnDeltas(const std::vector<tern::scheduler::ChoiceDelta>& deltas) override {
    const double now = std::chrono::duration<double>(Clock::now() - epoch_).count();
    absl::MutexLock lock(&mu_);
    for (const auto& d : deltas) times_.insert(times_.end(), d.token_ids.size(), now);
  }
  void OnDone(const absl::Status& status, const tern::scheduler::RequestUsage&) override {
    {
      absl::MutexLock lock(&mu_);
      status_ = status;
    }
    done_.Notify();
  }
  bool done() const { return done_.HasBeenNotified(); }
  absl::Status status() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  std::vector<double> times() const {
    absl::MutexLock lock(&mu_);
    return times_;
  }

 private:
  const Clock::time_point epoch_;
  mutable absl::Mutex mu_;
  std::vector<double> times_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  absl::Notification done_;
};

struct Settings {
  std::string model_dir, backend, dtype;
  int64_t kv_cache_bytes = 0;
  std::vector<int32_t> contexts;
  std::vector<rt::KvCacheDtype> kv_dtypes;
  std::string moa_plan;
  int32_t decode_steps = 0, max_num_batched_tokens = 0, max_num_seqs = 0;
  int32_t max_kv_cache_groups = 0;
};

// The flags, checked; an error names the flag.
absl::StatusOr<Settings> ReadFlags() {
  Settings s;
  s.model_dir = absl::GetFlag(FLAGS_model);
  if (s.model_dir.empty()) return absl::InvalidArgumentError("--model is required");
  s.backend = absl::GetFlag(FLAGS_backend);
  if (s.backend != "cpu" && s.backend != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("--backend: \"", s.backend, "\" is not cpu or cuda"));
  }
  s.dtype = absl::GetFlag(FLAGS_dtype);
  const int64_t mib = absl::GetFlag(FLAGS_kv_cache_mib);
  if (mib <= 0 || mib > (int64_t(1) << 24)) {
    return absl::InvalidArgumentError(absl::StrCat("--kv-cache-mib: ", mib, " is not in [1, 16777216]"));
  }
  s.kv_cache_bytes = mib << 20;
  for (const std::string& item : absl::GetFlag(FLAGS_contexts)) {
    int32_t c = 0;
    if (!absl::SimpleAtoi(item, &c) || c < 2) {
      return absl::InvalidArgumentError(absl::StrCat("--contexts: \"", item, "\" is not a token count >= 2"));
    }
    s.contexts.push_back(c);
  }
  if (s.contexts.empty()) return absl::InvalidArgumentError("--contexts: give at least one");
  for (const std::string& item : absl::GetFlag(FLAGS_kv_cache_dtypes)) {
    auto dtype = rt::ParseKvCacheDtype(item);
    if (!dtype.ok()) return absl::InvalidArgumentError(absl::StrCat("--kv-cache-dtypes: ", dtype.status().message()));
    s.kv_dtypes.push_back(*dtype);
  }
  if (s.kv_dtypes.empty()) return absl::InvalidArgumentError("--kv-cache-dtypes: give at least one");
  s.moa_plan = absl::GetFlag(FLAGS_moa_plan);
  s.decode_steps = absl::GetFlag(FLAGS_decode_steps);
  if (s.decode_steps < 1) return absl::InvalidArgumentError("--decode-steps must be at least 1");
  s.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  if (s.max_num_batched_tokens < 1) return absl::InvalidArgumentError("--max-num-batched-tokens must be at least 1");
  s.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  if (s.max_num_seqs < 1) return absl::InvalidArgumentError("--max-num-seqs must be at least 1");
  s.max_kv_cache_groups = absl::GetFlag(FLAGS_max_kv_cache_groups);
  if (s.max_kv_cache_groups < 1) return absl::InvalidArgumentError("--max-kv-cache-groups must be at least 1");
  return s;
}

// One row: a KV dtype and an attention scheme, on a fresh engine.
struct RowConfig {
  rt::KvCacheDtype kv = rt::KvCacheDtype::kAuto;
  bool moa = false;
  std::string Name() const { return absl::StrCat("kv ", rt::KvCacheDtypeName(kv), moa ? " + MoA" : ", dense"); }
};

struct Measurement {
  int32_t context = 0;
  tern::bench::LongContextRun run;
  int32_t max_running = 0;
  int32_t kv_blocks_total = 0, max_blocks_used = 0;
  int64_t preemptions = 0;
  double prefill_s = 0;  // submit to the last sequence's first token
  tern::bench::SteadyWindow window;
  double mean_context = 0;  // tokens a query sees, mean over sequences at the window's middle
  double kv_bytes_per_step = 0;
};

// Runs one context on `engine`: submits the run's sequences and waits for them.
absl::StatusOr<Measurement> RunContext(tern::scheduler::Engine& engine, const Settings& s, int32_t context,
                                       const rt::KvCacheGroups* groups, int64_t vocab) {
  Measurement m;
  m.context = context;
  const tern::scheduler::EngineStats before = engine.Stats();
  m.kv_blocks_total = before.kv_blocks_total;
  auto run = tern::bench::PlanLongContextRun(before.kv_blocks_total, context, kBlockSize, s.max_num_batched_tokens,
                                             s.max_num_seqs, s.decode_steps, groups);
  if (!run.ok()) return run.status();
  m.run = *run;
  const Clock::time_point epoch = Clock::now();
  std::vector<std::shared_ptr<TimingSink>> sinks;
  std::mt19937 rng{static_cast<uint32_t>(context)};
  std::uniform_int_distribution<int32_t> token(0, int32_t(vocab - 1));
  for (int32_t i = 0; i < m.run.num_seqs; ++i) {
    tern::scheduler::EngineRequest r;
    r.request_id = absl::StrCat("ctx", context, "-", i);
    r.prompt_token_ids.resize(size_t(m.run.prompt_tokens));
    for (int32_t& t : r.prompt_token_ids) t = token(rng);  // distinct prompts: no prefix-cache hits
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = m.run.max_tokens;
    r.sampling.ignore_eos = true;
    auto sink = std::make_shared<TimingSink>(epoch);
    if (absl::Status st = engine.Submit(std::move(r), sink); !st.ok()) return st;
    sinks.push_back(std::move(sink));
  }
  // The engine's own accounting while it runs: sequences running, blocks held.
  while (!std::all_of(sinks.begin(), sinks.end(), [](const auto& k) { return k->done(); })) {
    const tern::scheduler::EngineStats now = engine.Stats();
    m.max_running = std::max(m.max_running, now.running);
    m.max_blocks_used = std::max(m.max_blocks_used, now.kv_blocks_used);
    absl::SleepFor(absl::Milliseconds(2));
  }
  m.preemptions = engine.Stats().preemptions - before.preemptions;
  std::vector<std::vector<double>> times;
  for (const auto& sink : sinks) {
    if (!sink->status().ok()) return sink->status();
    times.push_back(sink->times());
    m.prefill_s = std::max(m.prefill_s, times.back().empty() ? 0.0 : times.back().front());
  }
  auto window = tern::bench::SteadyDecodeWindow(times);
  if (!window.ok()) return window.status();
  m.window = *window;
  const double middle = (m.window.start_s + m.window.end_s) / 2;
  double seen = 0;
  for (const auto& t : times) {
    seen += m.run.prompt_tokens + double(std::upper_bound(t.begin(), t.end(), middle) - t.begin());
  }
  m.mean_context = seen / double(times.size());
  return m;
}

std::string DeviceName(const std::string& backend) {
  if (backend == "cuda") {
    const auto devices = rt::ListCudaDevices();
    if (!devices.empty()) return devices[0].name;
  }
  return "CPU: " + tern::bench::CpuModelName();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "long contexts at one KV memory through the engine: sequences at once and decode tokens/s,\n"
      "compute-dtype / fp8 / int8 KV, dense and MoA\n\n"
      "  tern-long-context-bench --model DIR [--kv-cache-mib 16384] [--contexts 8192,16384]\n"
      "                          [--kv-cache-dtypes auto,fp8] [--moa-plan PLAN] [--json PATH]\n");
  std::vector<std::string> args = tern::base::NormalizeFlagDashes(argc, argv);
  std::vector<char*> arg_ptrs;
  for (auto& arg : args) arg_ptrs.push_back(arg.data());
  const std::vector<char*> positional = absl::ParseCommandLine(int(arg_ptrs.size()), arg_ptrs.data());
  if (positional.size() > 1) return Fail(absl::StrCat("unexpected argument \"", positional[1], "\""));
  auto settings = ReadFlags();
  if (!settings.ok()) return Fail(std::string(settings.status().message()));
  const Settings& s = *settings;

  auto config = rt::LoadHfConfig(s.model_dir);
  if (!config.ok()) return Fail(std::string(config.status().message()));
  const int32_t longest = *std::max_element(s.contexts.begin(), s.contexts.end());
  if (longest > config->max_position_embeddings) {
    return Fail(absl::StrCat("--contexts: ", longest, " tokens exceed the model's max_position_embeddings (",
                             config->max_position_embeddings, ")"));
  }
  std::optional<rt::MoaPlan> plan;
  if (!s.moa_plan.empty()) {
    auto loaded = rt::LoadMoaPlan(s.moa_plan);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
    if (absl::Status fits = rt::CheckMoaPlanFits(*loaded, *config, longest); !fits.ok()) {
      return Fail(std::string(fits.message()));
    }
    plan = std::move(*loaded);
  }
  std::vector<RowConfig> rows;
  for (const rt::KvCacheDtype kv : s.kv_dtypes) {
    rows.push_back({kv, false});
    if (plan.has_value()) rows.push_back({kv, true});
  }

  const std::string device = DeviceName(s.backend);
  double bandwidth = 0;
#if defined(TERN_WITH_CUDA)
  if (s.backend == "cuda") bandwidth = tern::bench::DeviceCopyBandwidth();
#endif
  if (s.backend == "cpu") bandwidth = tern::bench::HostCopyBandwidth();
  auto store = rt::WeightStore::Open(s.model_dir);
  if (!store.ok()) return Fail(std::string(store.status().message()));
  rt::BackendChoice choice;
  choice.name = s.backend;
  choice.dtype = s.dtype;
  size_t compute_bytes = 0;
  const double embed = double(config->vocab_size) * double(config->hidden_size);
  const double params = double((*store)->TotalParameters());

  std::printf("tern-long-context-bench on %s (%s), model %s, KV cache %lld MiB a row, copy bandwidth %.1f GB/s\n",
              device.c_str(), s.backend == "cuda" ? s.dtype.c_str() : "float32", s.model_dir.c_str(),
              static_cast<long long>(s.kv_cache_bytes >> 20), bandwidth / 1e9);
  if (plan.has_value()) {
    std::printf("MoA plan %s (%s format): density", s.moa_plan.c_str(), plan->format.c_str());
    for (const int32_t c : s.contexts) std::printf(" %.3f at %d", plan->Density(c), c);
    std::printf("\n");
  }
  std::printf("%7s %-16s %6s %15s %10s %11s %12s %9s %11s %8s\n", "context", "row", "seqs", "blocks held",
              "prefill_s", "window_tok", "decode_tok/s", "vs_dense", "floor_tok/s", "of_floor");

  nlohmann::json out_rows = nlohmann::json::array();
  std::map<int32_t, double> dense_tps;  // context -> the compute-dtype dense row's tokens/s
  double weight_bytes = 0;
  for (const RowConfig& row : rows) {
    auto backend = rt::MakeBackend(choice);
    if (!backend.ok()) return Fail(std::string(backend.status().message()));
    compute_bytes = rt::DTypeSize((*backend)->compute_dtype());
    weight_bytes = double(compute_bytes) * (params - (config->tie_word_embeddings ? 0.0 : embed));
    rt::KvCacheSpec one_block;
    one_block.num_layers = int32_t(config->num_hidden_layers);
    one_block.num_blocks = 1;
    one_block.block_size = kBlockSize;
    one_block.num_kv_heads = int32_t(config->num_key_value_heads);
    one_block.head_dim = int32_t(config->head_dim);
    one_block.dtype = row.kv;
    // The runner cuts an MoA plan's layers into KV-cache groups the same way
    // (a block then holds one group's layers, so the same bytes hold more).
    int32_t num_groups = 1;
    if (row.moa) {
      const rt::KvCacheGroups groups = plan->KvGroups(longest, s.max_kv_cache_groups);
      num_groups = groups.num_groups();
      if (num_groups > 1) one_block.layer_group = groups.layer_group;
    }
    const size_t block_bytes = (*backend)->KvBlockBytes(one_block);
    if (num_groups > 1) {
      std::printf("%s: %d KV-cache groups of %d layers, blocks of %zu bytes\n", row.Name().c_str(), num_groups,
                  int32_t(config->num_hidden_layers) / num_groups, block_bytes);
    }
    rt::LlmModelRunnerOptions options;
    options.model_dir = s.model_dir;
    options.block_size = kBlockSize;
    options.num_blocks = int32_t(std::min<int64_t>(s.kv_cache_bytes / int64_t(block_bytes), INT32_MAX));
    options.max_context_length = longest;
    options.model.kv_cache_dtype = row.kv;
    options.max_kv_cache_groups = s.max_kv_cache_groups;
    if (row.moa) options.model.attention.plan_path = s.moa_plan;
    if (s.backend == "cuda") options.warmup_tokens = s.max_num_batched_tokens;
    auto runner = rt::LlmModelRunner::Create(*std::move(backend), options);
    if (!runner.ok()) return Fail(absl::StrCat(row.Name(), ": ", runner.status().message()));
    const rt::KvCacheGroups groups = *(*runner)->kv_cache_groups();
    if (groups.num_groups() != num_groups) {
      return Fail(absl::StrCat(row.Name(), ": the runner made ", groups.num_groups(), " KV-cache groups, not ",
                               num_groups));
    }
    const int64_t vocab = (*runner)->vocab_size();
    tern::scheduler::EngineOptions engine_options;
    engine_options.model_name = "long-context-bench";
    engine_options.max_num_seqs = s.max_num_seqs;
    engine_options.max_num_batched_tokens = s.max_num_batched_tokens;
    auto engine = tern::scheduler::Engine::Create(engine_options, *std::move(runner));
    if (!engine.ok()) return Fail(absl::StrCat(row.Name(), ": ", engine.status().message()));

    for (const int32_t context : s.contexts) {
      auto m = RunContext(**engine, s, context, &groups, vocab);
      if (!m.ok()) return Fail(absl::StrCat(row.Name(), ", context ", context, ": ", m.status().message()));
      if (m->max_running != m->run.num_seqs || m->preemptions != 0) {
        return Fail(absl::StrCat(row.Name(), ", context ", context, ": ", m->run.num_seqs,
                                 " sequences submitted, at most ", m->max_running, " ran at once, ", m->preemptions,
                                 " preempted: not a steady batch"));
      }
      const int32_t n = int32_t(std::lround(m->mean_context));
      const int64_t head_tokens =
          tern::bench::DecodeKvHeadTokens(row.moa ? &*plan : nullptr, int32_t(config->num_hidden_layers),
                                          int32_t(config->num_attention_heads),
                                          int32_t(config->num_key_value_heads), n);
      m->kv_bytes_per_step = double(m->run.num_seqs) * double(head_tokens) *
                             tern::bench::KvBytesPerHeadToken(row.kv, compute_bytes, int32_t(config->head_dim));
      const double floor_tps = bandwidth > 0 ? m->run.num_seqs * bandwidth / (weight_bytes + m->kv_bytes_per_step) : 0;
      const bool baseline = row.kv == rt::KvCacheDtype::kAuto && !row.moa;
      if (baseline) dense_tps[context] = m->window.tokens_per_s;
      const auto dense = dense_tps.find(context);
      const double ratio = dense != dense_tps.end() ? m->window.tokens_per_s / dense->second : 0.0;
      std::printf("%7d %-16s %6d %7d / %6d %10.2f %11lld %12.1f %8s %11.1f %8.2f\n", context, row.Name().c_str(),
                  m->max_running, m->max_blocks_used, m->kv_blocks_total, m->prefill_s,
                  static_cast<long long>(m->window.tokens), m->window.tokens_per_s,
                  ratio > 0 ? absl::StrFormat("%.2fx", ratio).c_str() : "-", floor_tps,
                  floor_tps > 0 ? m->window.tokens_per_s / floor_tps : 0.0);
      std::fflush(stdout);
      nlohmann::json j = {{"context", context},
                          {"kv_cache_dtype", rt::KvCacheDtypeName(row.kv)},
                          {"attention", row.moa ? "moa" : "dense"},
                          {"kv_block_bytes", block_bytes},
                          {"kv_cache_groups", num_groups},
                          {"kv_blocks_total", m->kv_blocks_total},
                          {"kv_blocks_held_max", m->max_blocks_used},
                          {"blocks_per_sequence", m->run.blocks_per_seq},
                          {"sequences_submitted", m->run.num_seqs},
                          {"sequences_running_max", m->max_running},
                          {"preemptions", m->preemptions},
                          {"prompt_tokens", m->run.prompt_tokens},
                          {"max_tokens", m->run.max_tokens},
                          {"prefill_s", m->prefill_s},
                          {"window_s", m->window.end_s - m->window.start_s},
                          {"window_tokens", m->window.tokens},
                          {"decode_tokens_per_s", m->window.tokens_per_s},
                          {"mean_context_in_window", m->mean_context},
                          {"kv_bytes_read_per_step", m->kv_bytes_per_step},
                          {"decode_floor_tokens_per_s", floor_tps}};
      if (ratio > 0) j["vs_dense"] = ratio;
      if (row.moa) j["moa_density"] = plan->Density(n);
      out_rows.push_back(std::move(j));
    }
    (*engine)->Drain(absl::ZeroDuration());
  }
  if (!absl::GetFlag(FLAGS_json).empty()) {
    nlohmann::json out = {{"bench", "long_context"},
                          {"device", device},
                          {"backend", s.backend},
                          {"dtype", s.backend == "cuda" ? s.dtype : "float32"},
                          {"model", s.model_dir},
                          {"kv_cache_bytes", s.kv_cache_bytes},
                          {"max_num_batched_tokens", s.max_num_batched_tokens},
                          {"decode_steps", s.decode_steps},
                          {"copy_bandwidth_bytes_per_s", bandwidth},
                          {"weight_bytes_per_step", weight_bytes},
                          {"moa_plan", s.moa_plan},
                          {"rows", out_rows}};
    std::ofstream(absl::GetFlag(FLAGS_json)) << out.dump(2) << "\n";
  }
  return 0;
}
