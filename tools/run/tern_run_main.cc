// tern-run: drives the model definition directly, without the daemon: one
// prompt through the tokenizer, the CPU backend's paged KV cache, the
// sampler and the stop checker, with the text streamed to stdout.
//
//   tern-run --model DIR [--backend cpu|cuda] [--dtype bfloat16] [--max-tokens 64]
//            [--temperature 0] [--top-p 1] [--top-k 0] [--seed N] "prompt"
//   tern-run --model DIR --bench [--batch 1] [--prompt-tokens 128] [--decode-tokens 64] [--json FILE]
//   tern-run --model DIR --dump-logits FILE --token-ids 1,2,3 [--decode-tokens 32 | --force-tokens 4,5]
//
// --bench times prefill and decode on seeded random token ids (--batch
// sequences decoding together; each prompt is prefilled alone, the first one
// cold, and with --batch 2 or more the fastest of the others is printed as
// the warm prefill rate) and prints them beside the decode floor: the
// weight bytes plus the KV bytes one decode step must read, over the
// measured copy bandwidth (host memcpy on the CPU, device-to-device on CUDA);
// a quantized checkpoint's weight bytes are its tensors as stored.
// --dump-logits writes the logits of the prompt's last position and of each
// greedy decode step as JSON, for comparison with a peer implementation.
// With --force-tokens the decode steps feed those ids instead of the greedy
// picks (teacher forcing), so two implementations can be compared on every
// step even after a near-tie sends their greedy continuations apart.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/copy_bandwidth.h"
#include "nlohmann/json.hpp"
#include "runtime/backend/backend_factory.h"
#include "runtime/base/flag_names.h"
#include "runtime/base/status_macros.h"
#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>
#endif
#include "runtime/model/llama_model.h"
#include "runtime/model/safetensors.h"
#include "runtime/sampling/sampler.h"
#include "runtime/sampling/sequence_sampling_state.h"
#include "runtime/sampling/stop_checker.h"
#include "runtime/tokenizer/incremental_detokenizer.h"
#include "runtime/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model directory");
ABSL_FLAG(std::string, backend, "cpu", "cpu or cuda");
ABSL_FLAG(std::string, dtype, "bfloat16", "CUDA compute dtype: float16, bfloat16 or float32");
ABSL_FLAG(bool, cuda_graphs, true, "CUDA: replay decode steps as CUDA graphs (false: op by op)");
ABSL_FLAG(bool, pdl, true,
          "CUDA: start the decode kernels with programmatic dependent launch (false: plain stream order)");
ABSL_FLAG(bool, moe_device_experts, true,
          "CUDA: decode-sized MoE steps read the experts' row offsets on the device (false: on the host, "
          "as every step did before; for A/B measurements)");
ABSL_FLAG(int32_t, batch, 1, "--bench: sequences decoding together");
ABSL_FLAG(std::string, dump_logits, "", "Write prompt and greedy-step logits as JSON to this file");
ABSL_FLAG(std::vector<std::string>, token_ids, {}, "--dump-logits: the prompt as token ids");
ABSL_FLAG(std::vector<std::string>, force_tokens, {},
          "--dump-logits: decode these ids, one per step, instead of the greedy picks");
ABSL_FLAG(int32_t, max_tokens, 64, "Tokens to generate at most");
ABSL_FLAG(float, temperature, 0.0f, "0 is greedy");
ABSL_FLAG(float, top_p, 1.0f, "Nucleus sampling mass");
ABSL_FLAG(int32_t, top_k, 0, "0 means no limit");
ABSL_FLAG(uint64_t, seed, 0, "Sampling seed");
ABSL_FLAG(bool, bench, false, "Time prefill and decode on random ids instead of generating text");
ABSL_FLAG(int32_t, prompt_tokens, 128, "--bench: prompt length");
ABSL_FLAG(int32_t, decode_tokens, 64, "--bench: decode steps");
ABSL_FLAG(std::string, json, "", "--bench: also write the results here as JSON");

namespace {

using namespace tern::runtime;
using Clock = std::chrono::steady_clock;

constexpr int32_t kBlockSize = 16;

// Sequences over contiguous block ranges of a cache sized for them:
// sequence i owns blocks [i * blocks_per_seq, (i + 1) * blocks_per_seq).
class Sequences {
 public:
  Sequences(int32_t count, int32_t blocks_per_seq) : cached_(count, 0), blocks_per_seq_(blocks_per_seq) {}

  // One step in which each listed sequence computes its (non-empty) tokens.
  void Step(const std::vector<std::pair<int32_t, std::vector<int32_t>>>& work, ForwardBatch* batch) {
    *batch = ForwardBatch{};
    batch->query_start = {0};
    batch->block_indptr = {0};
    for (const auto& [s, tokens] : work) {
      const int32_t base_block = s * blocks_per_seq_;
      for (int32_t token : tokens) {
        const int32_t p = cached_[s]++;
        batch->token_ids.push_back(token);
        batch->positions.push_back(p);
        batch->slots.push_back((base_block + p / kBlockSize) * kBlockSize + p % kBlockSize);
      }
      batch->query_start.push_back(batch->num_tokens());
      batch->context_lens.push_back(cached_[s]);
      const int32_t blocks = (cached_[s] + kBlockSize - 1) / kBlockSize;
      for (int32_t b = 0; b < blocks; ++b) batch->block_ids.push_back(base_block + b);
      batch->block_indptr.push_back(int32_t(batch->block_ids.size()));
      batch->logits_rows.push_back(batch->num_tokens() - 1);
    }
  }
  // Sequence 0 computes `tokens`.
  void Step(const std::vector<int32_t>& tokens, ForwardBatch* batch) { Step({{0, tokens}}, batch); }

 private:
  std::vector<int32_t> cached_;
  int32_t blocks_per_seq_;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "tern-run: %s\n", message.c_str());
  return 1;
}

// Copy bandwidth (bytes read + written per second): host memcpy on the CPU,
// a device-to-device copy on CUDA; the best of five 256 MiB copies.
double MeasureCopyBandwidth(const std::string& backend) {
  const size_t bytes = size_t(256) << 20;
#if defined(TERN_WITH_CUDA)
  if (backend == "cuda") return tern::bench::DeviceCopyBandwidth(bytes);
#endif
  return tern::bench::HostCopyBandwidth(bytes);
}

int Bench(LlamaModel& model, Backend& backend, KvCache& cache, const std::string& model_dir, int32_t blocks_per_seq) {
  const int32_t batch_size = absl::GetFlag(FLAGS_batch);
  const int32_t prompt_len = absl::GetFlag(FLAGS_prompt_tokens);
  const int32_t decode_steps = absl::GetFlag(FLAGS_decode_tokens);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> token(0, int32_t(model.config().vocab_size) - 1);
  Sequences seqs(batch_size, blocks_per_seq);
  ForwardBatch batch;
  std::vector<float> logits;

  // Prefill every sequence's prompt, one at a time. The first is cold (lazy
  // kernel loading, first allocations); the fastest is the warm figure.
  double prefill_s = 0, warm_prefill_s = 0;
  for (int32_t s = 0; s < batch_size; ++s) {
    std::vector<int32_t> prompt(prompt_len);
    for (auto& t : prompt) t = token(rng);
    seqs.Step({{s, prompt}}, &batch);
    const auto start = Clock::now();
    if (auto st = model.Forward(batch, cache, &logits); !st.ok()) return Fail(std::string(st.message()));
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (s == 0) prefill_s = elapsed;
    if (s == 1 || (s > 1 && elapsed < warm_prefill_s)) warm_prefill_s = elapsed;
  }
  // Decode all sequences together, sampling greedily on the backend as the
  // serving runner does (on the GPU only token ids come back): one warm-up
  // step, then the timed steps.
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  std::vector<SequenceSamplingState> states;
  for (int32_t s = 0; s < batch_size; ++s) states.emplace_back(1, uint32_t(s), absl::Span<const int32_t>());
  std::vector<SampleRequest> requests;
  for (const auto& state : states) requests.push_back({&greedy, &state});
  std::vector<absl::StatusOr<SampledToken>> sampled;
  const auto decode_step = [&]() -> absl::Status {
    std::vector<std::pair<int32_t, std::vector<int32_t>>> work;
    for (int32_t s = 0; s < batch_size; ++s) work.push_back({s, {token(rng)}});
    seqs.Step(work, &batch);
    if (batch.IsDecodeOnly()) {
      const int32_t padded = backend.DecodeGraphBatchSize(batch.num_seqs());
      if (padded > batch.num_seqs() && model.CanRunAsGraph(padded)) PadDecodeBatch(padded, &batch);
    }
    absl::StatusOr<Tensor> out = model.ForwardLogits(batch, cache);
    if (!out.ok()) return out.status();
    RETURN_IF_ERROR(backend.SampleRows(out->Rows(0, batch_size), requests, &sampled));
    for (const auto& row : sampled) RETURN_IF_ERROR(row.status());
    return absl::OkStatus();
  };
  if (auto st = decode_step(); !st.ok()) return Fail(std::string(st.message()));
  const auto start = Clock::now();
  for (int32_t i = 0; i < decode_steps; ++i) {
    if (auto st = decode_step(); !st.ok()) return Fail(std::string(st.message()));
  }
  const double decode_s = std::chrono::duration<double>(Clock::now() - start).count();

  auto store = WeightStore::Open(model_dir);
  if (!store.ok()) return Fail(std::string(store.status().message()));
  const auto& c = model.config();
  const double element = double(DTypeSize(backend.compute_dtype()));
  double params = double((*store)->TotalParameters());
  const double embed = double(c.vocab_size * c.hidden_size);
  double weight_bytes = element * (params - (c.tie_word_embeddings ? 0.0 : embed));
  const bool quantized = model.weight_scheme() != "dense";
  if (quantized) {
    // Logical parameters (a quantized [out, in] layer counts out * in), and
    // the bytes a step reads: the checkpoint as stored (packed codes, scales,
    // zeros, the dense layers), less an untied embedding table.
    auto summary = LlamaModel::Inspect(model_dir, c, {});
    if (!summary.ok()) return Fail(std::string(summary.status().message()));
    params = double(summary->parameters);
    auto table = (*store)->Get("model.embed_tokens.weight");
    if (!table.ok()) return Fail(std::string(table.status().message()));
    weight_bytes = double((*store)->TotalBytes()) - (c.tie_word_embeddings ? 0.0 : double(table->nbytes));
  }
  // A mixture of experts reads the experts its tokens chose: with uniform
  // routing a layer's distinct experts at batch B, top k of E, number
  // E (1 - (1 - k / E)^B) on average (the floor's expectation, not a count).
  double active_experts = 0.0;
  if (c.num_local_experts > 0 && !quantized) {
    const double experts = double(c.num_local_experts), k = double(c.num_experts_per_tok);
    const double per_expert = 3.0 * double(c.intermediate_size) * double(c.hidden_size) * element *
                              double(c.num_hidden_layers);
    active_experts = experts * (1.0 - std::pow(1.0 - k / experts, double(batch_size)));
    weight_bytes -= (experts - active_experts) * per_expert;
  }
  const double mean_context = prompt_len + 1.5 + decode_steps / 2.0;
  const double kv_bytes = batch_size * mean_context * 2.0 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim *
                          element;
  const double bandwidth = MeasureCopyBandwidth(absl::GetFlag(FLAGS_backend));
  const double floor_step_s = (weight_bytes + kv_bytes) / bandwidth;
  const double prefill_tps = prompt_len / prefill_s;
  const double decode_tps = batch_size * decode_steps / decode_s;
  const double floor_tps = batch_size / floor_step_s;
  std::printf("model %s: %.1fM parameters, %s, weights %s, backend %s (%s)\n", model_dir.c_str(), params / 1e6,
              c.architecture.c_str(), model.weight_scheme().c_str(), backend.name().c_str(),
              absl::GetFlag(FLAGS_dtype).c_str());
  std::printf("copy bandwidth %.1f GB/s (read + write)\n", bandwidth / 1e9);
  std::printf("%-34s %12s\n", "phase", "tokens/s");
  std::printf("%-34s %12.1f   (%.1f TFLOP/s at 2 x parameters per token)\n",
              ("prefill (" + std::to_string(prompt_len) + " tokens)").c_str(), prefill_tps,
              2.0 * params * prefill_tps / 1e12);
  const double warm_prefill_tps = warm_prefill_s > 0 ? prompt_len / warm_prefill_s : 0.0;
  if (batch_size > 1) {
    std::printf("%-34s %12.1f   (%.1f TFLOP/s)\n", "prefill, warm (fastest of the rest)", warm_prefill_tps,
                2.0 * params * warm_prefill_tps / 1e12);
  }
  std::printf("%-34s %12.1f\n",
              ("decode (batch " + std::to_string(batch_size) + ", " + std::to_string(decode_steps) + " steps)").c_str(),
              decode_tps);
  std::printf("%-34s %12.1f   (%.0f MB weights + %.0f MB KV per step)\n", "decode floor", floor_tps, weight_bytes / 1e6,
              kv_bytes / 1e6);
  if (active_experts > 0.0) {
    std::printf("experts read a layer (uniform routing, expected): %.2f of %lld\n", active_experts,
                static_cast<long long>(c.num_local_experts));
  }
  std::printf("decode / floor: %.2f\n", decode_tps / floor_tps);
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    nlohmann::json out = {{"model", model_dir},
                          {"backend", backend.name()},
                          {"dtype", absl::GetFlag(FLAGS_dtype)},
                          {"parameters", params},
                          {"weight_scheme", model.weight_scheme()},
                          {"weight_bytes_per_step", weight_bytes},
                          {"batch", batch_size},
                          {"prompt_tokens", prompt_len},
                          {"decode_steps", decode_steps},
                          {"prefill_tokens_per_s", prefill_tps},
                          {"prefill_warm_tokens_per_s", warm_prefill_tps},
                          {"decode_tokens_per_s", decode_tps},
                          {"decode_floor_tokens_per_s", floor_tps},
                          {"copy_bandwidth_bytes_per_s", bandwidth},
                          {"moe_expected_active_experts", active_experts},
                          {"moe_device_experts", absl::GetFlag(FLAGS_moe_device_experts)}};
    std::ofstream(path) << out.dump(2) << "\n";
  }
  return 0;
}

// Token ids from a comma-separated flag; false (with a message) on a bad id.
bool ParseIds(const std::vector<std::string>& items, const char* flag, std::vector<int32_t>* ids) {
  for (const auto& item : items) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(item, &id) || id < 0) {
      Fail(absl::StrCat("--", flag, ": '", item, "' is not a token id"));
      return false;
    }
    ids->push_back(id);
  }
  return true;
}

// Decode steps --dump-logits runs: one per forced token, else --decode-tokens.
int64_t DumpDecodeSteps() {
  const auto& forced = absl::GetFlag(FLAGS_force_tokens);
  return forced.empty() ? absl::GetFlag(FLAGS_decode_tokens) : int64_t(forced.size());
}

// Prompt logits and decode-step logits (greedy or forced), as JSON, for peer
// comparison.
int DumpLogits(LlamaModel& model, KvCache& cache, int32_t blocks_per_seq) {
  std::vector<int32_t> prompt, forced;
  if (!ParseIds(absl::GetFlag(FLAGS_token_ids), "token-ids", &prompt)) return 1;
  if (!ParseIds(absl::GetFlag(FLAGS_force_tokens), "force-tokens", &forced)) return 1;
  if (prompt.empty()) return Fail("--dump-logits needs --token-ids");
  const int64_t steps = DumpDecodeSteps();
  const size_t vocab = size_t(model.config().vocab_size);
  for (const int32_t id : prompt) {
    if (size_t(id) >= vocab) return Fail(absl::StrCat("token id ", id, " is outside the vocabulary"));
  }
  for (const int32_t id : forced) {
    if (size_t(id) >= vocab) return Fail(absl::StrCat("forced token id ", id, " is outside the vocabulary"));
  }
  Sequences seq(1, blocks_per_seq);
  ForwardBatch batch;
  std::vector<float> logits;
  nlohmann::json out = {{"prompt", prompt}, {"forced", !forced.empty()}, {"steps", nlohmann::json::array()}};
  std::vector<int32_t> next = prompt;
  for (int64_t i = 0; i <= steps; ++i) {
    seq.Step(next, &batch);
    if (auto st = model.Forward(batch, cache, &logits); !st.ok()) return Fail(std::string(st.message()));
    const int32_t argmax = int32_t(std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin());
    out["steps"].push_back({{"token", argmax}, {"logits", std::vector<float>(logits.begin(), logits.begin() + vocab)}});
    if (i < steps) next = {forced.empty() ? argmax : forced[size_t(i)]};
  }
  std::ofstream(absl::GetFlag(FLAGS_dump_logits)) << out.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("runs one prompt through a model on the CPU backend\n\n"
                               "  tern-run --model DIR [--max-tokens N] [--temperature T] \"prompt\"\n"
                               "  tern-run --model DIR --bench [--prompt-tokens N] [--decode-tokens M]\n");
  std::vector<std::string> args = tern::base::NormalizeFlagDashes(argc, argv);
  std::vector<char*> arg_ptrs;
  for (auto& arg : args) arg_ptrs.push_back(arg.data());
  const std::vector<char*> positional = absl::ParseCommandLine(int(arg_ptrs.size()), arg_ptrs.data());
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) return Fail("--model is required");
  const bool bench = absl::GetFlag(FLAGS_bench);
  const bool dump = !absl::GetFlag(FLAGS_dump_logits).empty();
  if (!bench && !dump && positional.size() != 2) return Fail("give exactly one prompt");

  BackendChoice choice;
  choice.name = absl::GetFlag(FLAGS_backend);
  choice.dtype = absl::GetFlag(FLAGS_dtype);
  choice.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  choice.pdl = absl::GetFlag(FLAGS_pdl);
  choice.moe_device_experts = absl::GetFlag(FLAGS_moe_device_experts);
  auto made = MakeBackend(choice);
  if (!made.ok()) return Fail(std::string(made.status().message()));
  std::unique_ptr<Backend> backend = std::move(*made);
  auto model = LlamaModel::Load(model_dir, backend.get(), {});
  if (!model.ok()) return Fail(std::string(model.status().message()));
  const int32_t max_tokens = absl::GetFlag(FLAGS_max_tokens);
  const int32_t num_seqs = bench ? std::max(1, absl::GetFlag(FLAGS_batch)) : 1;
  const int64_t context = bench ? absl::GetFlag(FLAGS_prompt_tokens) + absl::GetFlag(FLAGS_decode_tokens) + 2
                          : dump ? int64_t(absl::GetFlag(FLAGS_token_ids).size()) + DumpDecodeSteps() + 1
                                 : std::min<int64_t>((*model)->config().max_position_embeddings, 1 << 16);
  const int32_t blocks_per_seq = int32_t((context + kBlockSize - 1) / kBlockSize) + 1;
  auto cache = backend->AllocateKvCache((*model)->CacheSpec(blocks_per_seq * num_seqs, kBlockSize));
  if (!cache.ok()) return Fail(std::string(cache.status().message()));
  if (bench) return Bench(**model, *backend, **cache, model_dir, blocks_per_seq);
  if (dump) return DumpLogits(**model, **cache, blocks_per_seq);

  auto tokenizer = Tokenizer::FromModelDirectory(model_dir);
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));
  std::vector<int32_t> prompt = (*tokenizer)->Encode(positional[1], /*add_special_tokens=*/true);
  if (prompt.empty()) return Fail("the prompt encodes to no tokens");
  if (int64_t(prompt.size()) + max_tokens > context) return Fail("prompt plus --max-tokens exceed the context");

  SamplingParams params;
  params.temperature = absl::GetFlag(FLAGS_temperature);
  params.top_p = absl::GetFlag(FLAGS_top_p);
  params.top_k = absl::GetFlag(FLAGS_top_k);
  params.seed = absl::GetFlag(FLAGS_seed);
  params.max_tokens = max_tokens;
  if (auto s = params.Validate(); !s.ok()) return Fail(std::string(s.message()));
  SequenceSamplingState state(*params.seed, 0, prompt);
  Sampler sampler;
  StopChecker stop(params, (*tokenizer)->eos_ids());
  IncrementalDetokenizer detokenizer(**tokenizer, {.skip_special_tokens = true, .at_sequence_start = false});

  Sequences seq(1, blocks_per_seq);
  ForwardBatch batch;
  std::vector<float> logits;
  std::vector<int32_t> next = prompt;
  const int64_t vocab = (*model)->config().vocab_size;
  while (true) {
    seq.Step(next, &batch);
    if (auto s = (*model)->Forward(batch, **cache, &logits); !s.ok()) return Fail(std::string(s.message()));
    auto sampled = sampler.Sample(absl::MakeConstSpan(logits.data(), size_t(vocab)), params, state);
    if (!sampled.ok()) return Fail(std::string(sampled.status().message()));
    const int32_t id = sampled->token_id;
    state.AppendOutputToken(id);
    auto text = detokenizer.Push(id);
    if (!text.ok()) return Fail(std::string(text.status().message()));
    const StopUpdate update = stop.Append(id, *text);
    std::fwrite(update.text.data(), 1, update.text.size(), stdout);
    std::fflush(stdout);
    if (update.finish_reason != FinishReason::kNone) break;
    next = {id};
  }
  std::printf("\n");
  return 0;
}
