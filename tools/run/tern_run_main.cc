// tern-run: drives the model definition directly, without the daemon: one
// prompt through the tokenizer, the CPU backend's paged KV cache, the
// sampler and the stop checker, with the text streamed to stdout.
//
//   tern-run --model DIR [--max-tokens 64] [--temperature 0] [--top-p 1] [--top-k 0]
//            [--seed N] "prompt"
//   tern-run --model DIR --bench [--prompt-tokens 128] [--decode-tokens 64] [--json FILE]
//
// --bench times prefill and decode on seeded random token ids and prints
// them beside the decode floor: the bytes of weights one decode step must
// read over this machine's measured copy bandwidth.
#include <chrono>
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
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/base/flag_names.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/model/llama_model.h"
#include "runtime/model/safetensors.h"
#include "runtime/sampling/sampler.h"
#include "runtime/sampling/sequence_sampling_state.h"
#include "runtime/sampling/stop_checker.h"
#include "runtime/tokenizer/incremental_detokenizer.h"
#include "runtime/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model directory");
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

// One sequence over contiguous blocks 0, 1, 2, ... of a cache sized for it.
class SingleSequence {
 public:
  void Step(const std::vector<int32_t>& new_tokens, ForwardBatch* batch) {
    *batch = ForwardBatch{};
    const int32_t begin = cached_;
    for (size_t i = 0; i < new_tokens.size(); ++i) {
      const int32_t p = begin + int32_t(i);
      batch->token_ids.push_back(new_tokens[i]);
      batch->positions.push_back(p);
      batch->slots.push_back(p);  // block b holds positions [16b, 16b + 16)
    }
    cached_ += int32_t(new_tokens.size());
    batch->query_start = {0, int32_t(new_tokens.size())};
    batch->context_lens = {cached_};
    const int32_t blocks = (cached_ + kBlockSize - 1) / kBlockSize;
    for (int32_t b = 0; b < blocks; ++b) batch->block_ids.push_back(b);
    batch->block_indptr = {0, blocks};
    batch->logits_rows = {int32_t(new_tokens.size()) - 1};
  }
  int32_t cached() const { return cached_; }

 private:
  int32_t cached_ = 0;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "tern-run: %s\n", message.c_str());
  return 1;
}

// Copy bandwidth of this machine (bytes read + written per second), from the
// best of several 256 MiB memcpy runs.
double MeasureCopyBandwidth() {
  const size_t bytes = size_t(256) << 20;
  std::vector<char> a(bytes, 1), b(bytes, 2);
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    std::memcpy(b.data(), a.data(), bytes);
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, 2.0 * bytes / s);
    std::swap(a, b);
  }
  return best;
}

int Bench(LlamaModel& model, KvCache& cache, const std::string& model_dir) {
  const int32_t prompt_len = absl::GetFlag(FLAGS_prompt_tokens);
  const int32_t decode_steps = absl::GetFlag(FLAGS_decode_tokens);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> token(0, int32_t(model.config().vocab_size) - 1);
  std::vector<int32_t> prompt(prompt_len);
  for (auto& t : prompt) t = token(rng);

  SingleSequence seq;
  ForwardBatch batch;
  std::vector<float> logits;
  seq.Step(prompt, &batch);
  auto start = Clock::now();
  if (auto s = model.Forward(batch, cache, &logits); !s.ok()) return Fail(std::string(s.message()));
  const double prefill_s = std::chrono::duration<double>(Clock::now() - start).count();
  start = Clock::now();
  for (int32_t i = 0; i < decode_steps; ++i) {
    seq.Step({token(rng)}, &batch);
    if (auto s = model.Forward(batch, cache, &logits); !s.ok()) return Fail(std::string(s.message()));
  }
  const double decode_s = std::chrono::duration<double>(Clock::now() - start).count();

  // The floor: every weight except the embedding table is read once per
  // decode step (the table contributes one row), as fp32 on this backend.
  auto store = WeightStore::Open(model_dir);
  if (!store.ok()) return Fail(std::string(store.status().message()));
  const auto& c = model.config();
  const double params = double((*store)->TotalParameters());
  const double embed = double(c.vocab_size * c.hidden_size);
  const double step_bytes = 4.0 * (params - (c.tie_word_embeddings ? 0.0 : embed));
  const double bandwidth = MeasureCopyBandwidth();
  const double floor_s = step_bytes / bandwidth;
  const double prefill_tps = prompt_len / prefill_s;
  const double decode_tps = decode_steps / decode_s;
  const double floor_tps = 1.0 / floor_s;
  std::printf("model %s: %.1fM parameters, %s\n", model_dir.c_str(), params / 1e6, c.architecture.c_str());
  std::printf("threads %u, copy bandwidth %.1f GB/s (read + write)\n", std::thread::hardware_concurrency(),
              bandwidth / 1e9);
  std::printf("%-28s %12s\n", "phase", "tokens/s");
  std::printf("%-28s %12.1f\n", ("prefill (" + std::to_string(prompt_len) + " tokens)").c_str(), prefill_tps);
  std::printf("%-28s %12.1f\n", ("decode (" + std::to_string(decode_steps) + " steps)").c_str(), decode_tps);
  std::printf("%-28s %12.1f   (%.0f MB of fp32 weights per step)\n", "decode floor", floor_tps, step_bytes / 1e6);
  std::printf("decode / floor: %.2f\n", decode_tps / floor_tps);
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    nlohmann::json out = {{"model", model_dir},
                          {"parameters", params},
                          {"prompt_tokens", prompt_len},
                          {"decode_steps", decode_steps},
                          {"prefill_tokens_per_s", prefill_tps},
                          {"decode_tokens_per_s", decode_tps},
                          {"decode_floor_tokens_per_s", floor_tps},
                          {"copy_bandwidth_bytes_per_s", bandwidth},
                          {"threads", std::thread::hardware_concurrency()}};
    std::ofstream(path) << out.dump(2) << "\n";
  }
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
  if (!bench && positional.size() != 2) return Fail("give exactly one prompt");

  CpuBackend backend;
  auto model = LlamaModel::Load(model_dir, &backend, {});
  if (!model.ok()) return Fail(std::string(model.status().message()));
  const int32_t max_tokens = absl::GetFlag(FLAGS_max_tokens);
  const int64_t context = bench ? absl::GetFlag(FLAGS_prompt_tokens) + absl::GetFlag(FLAGS_decode_tokens)
                                : std::min<int64_t>((*model)->config().max_position_embeddings, 1 << 16);
  auto cache = backend.AllocateKvCache((*model)->CacheSpec(int32_t((context + kBlockSize) / kBlockSize) + 1,
                                                           kBlockSize));
  if (!cache.ok()) return Fail(std::string(cache.status().message()));
  if (bench) return Bench(**model, **cache, model_dir);

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

  SingleSequence seq;
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
