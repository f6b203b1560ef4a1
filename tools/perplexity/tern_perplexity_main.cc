// tern-perplexity: the perplexity of a text file under a model directory,
// computed through tern's tokenizer, model definition and backend, with the
// windowing of tools/eval/eval_llm.py (runtime/model/windowed_perplexity.h),
// so that its figures compare one to one with the PyTorch evaluation.
//
//   tern-perplexity --model DIR --text FILE [--backend cpu|cuda] [--dtype float32]
//                   [--weight-scheme auto] [--kv-cache-dtype auto|fp8|int8] [--attention-scheme dense|moa:PLAN]
//                   [--window 2048] [--chunk 512] [--max-bytes N] [--json OUT]
//
// Prints the token count, windows, total NLL, token perplexity, bits per
// byte and word-level perplexity (NLL over the whitespace-separated words plus
// one per line, the convention of pytorch/examples word_language_model).
// --max-bytes keeps the longest prefix of whole lines (ending at a newline)
// within N bytes.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "nlohmann/json.hpp"
#include "runtime/backend/backend_factory.h"
#include "runtime/base/flag_names.h"
#include "runtime/model/llama_model.h"
#include "runtime/model/windowed_perplexity.h"
#include "runtime/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model directory");
ABSL_FLAG(std::string, text, "", "UTF-8 text file to score");
ABSL_FLAG(std::string, backend, "cpu", "cpu or cuda");
ABSL_FLAG(std::string, dtype, "float32", "CUDA compute dtype: float32, bfloat16 or float16");
ABSL_FLAG(int32_t, window, 2048, "Tokens per window, BOS included");
ABSL_FLAG(int32_t, chunk, 512, "Most tokens per forward pass");
ABSL_FLAG(int64_t, max_bytes, 0, "Score only the longest prefix of whole lines within this many bytes (0: all)");
ABSL_FLAG(std::string, json, "", "Also write the results here as JSON");
ABSL_FLAG(std::string, weight_scheme, "auto",
          "What the linear layers run as: auto (as stored), w8a16, w4a16[-g32|-g64|-g128], fp8, int8, "
          "mixed:<plan> (runtime/model/weight_scheme.h); a scheme on a dense checkpoint quantizes it at load");

ABSL_FLAG(std::string, kv_cache_dtype, "auto",
          "What the KV cache stores: auto (the compute dtype), fp8 (e4m3, the checkpoint's k_scale/v_scale or 1.0), "
          "int8 (a scale per token and kv head); runtime/backend/kv_cache_spec.h");

ABSL_FLAG(std::string, attention_scheme, "dense",
          "How attention reads the cache: dense, or moa:<plan file> (MoA per-head sink and band spans; "
          "runtime/model/moa_plan.h): each query head attends its sink and band only");

namespace {

using namespace tern::runtime;

int Fail(const std::string& message) {
  std::fprintf(stderr, "tern-perplexity: %s\n", message.c_str());
  return 1;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Whitespace-separated words plus one end-of-line per line (a final newline
// does not open another line).
int64_t CountWords(const std::string& text) {
  int64_t words = 0, lines = 0;
  bool in_word = false, line_open = false;
  for (char c : text) {
    if (c == '\n') {
      ++lines;
      in_word = false;
      line_open = false;
      continue;
    }
    line_open = true;
    if (IsSpace(c)) {
      in_word = false;
    } else if (!in_word) {
      in_word = true;
      ++words;
    }
  }
  if (line_open || text.empty()) ++lines;
  return words + lines;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("windowed perplexity of a text file\n\n"
                               "  tern-perplexity --model DIR --text FILE [--backend cpu|cuda] [--window 2048]\n");
  std::vector<std::string> args = tern::base::NormalizeFlagDashes(argc, argv);
  std::vector<char*> arg_ptrs;
  for (auto& arg : args) arg_ptrs.push_back(arg.data());
  const std::vector<char*> positional = absl::ParseCommandLine(int(arg_ptrs.size()), arg_ptrs.data());
  if (positional.size() != 1) return Fail("takes no positional arguments");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  const std::string text_path = absl::GetFlag(FLAGS_text);
  if (model_dir.empty() || text_path.empty()) return Fail("--model and --text are required");

  std::ifstream in(text_path, std::ios::binary);
  if (!in) return Fail("cannot read " + text_path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  if (const int64_t max_bytes = absl::GetFlag(FLAGS_max_bytes); max_bytes > 0 && int64_t(text.size()) > max_bytes) {
    const size_t cut = text.rfind('\n', size_t(max_bytes) - 1);
    text.resize(cut == std::string::npos ? 0 : cut + 1);
  }
  if (text.empty()) return Fail("no text to score");

  BackendChoice choice;
  choice.name = absl::GetFlag(FLAGS_backend);
  choice.dtype = absl::GetFlag(FLAGS_dtype);
  auto made = MakeBackend(choice);
  if (!made.ok()) return Fail(std::string(made.status().message()));
  std::unique_ptr<Backend> backend = std::move(*made);
  auto weight_scheme = ParseWeightSchemeRequest(absl::GetFlag(FLAGS_weight_scheme));
  if (!weight_scheme.ok()) return Fail("--weight-scheme: " + std::string(weight_scheme.status().message()));
  LlamaModelOptions model_options;
  model_options.weight_scheme = *weight_scheme;
  auto kv_cache_dtype = ParseKvCacheDtype(absl::GetFlag(FLAGS_kv_cache_dtype));
  if (!kv_cache_dtype.ok()) return Fail("--kv-cache-dtype: " + std::string(kv_cache_dtype.status().message()));
  model_options.kv_cache_dtype = *kv_cache_dtype;
  auto attention = ParseAttentionScheme(absl::GetFlag(FLAGS_attention_scheme));
  if (!attention.ok()) return Fail("--attention-scheme: " + std::string(attention.status().message()));
  model_options.attention = *attention;
  auto model = LlamaModel::Load(model_dir, backend.get(), model_options);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  auto tokenizer = Tokenizer::FromModelDirectory(model_dir);
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));
  if ((*tokenizer)->bos_id() < 0) return Fail("the tokenizer has no BOS token to open each window");

  WindowedPerplexityOptions options;
  options.window = absl::GetFlag(FLAGS_window);
  options.chunk_tokens = absl::GetFlag(FLAGS_chunk);
  options.bos_id = (*tokenizer)->bos_id();
  constexpr int32_t kBlockSize = 16;
  if (options.window < 2) return Fail("--window must be at least 2");
  auto cache = backend->AllocateKvCache((*model)->CacheSpec(CacheBlocks(options.window, kBlockSize), kBlockSize));
  if (!cache.ok()) return Fail(std::string(cache.status().message()));

  const std::vector<int32_t> ids = (*tokenizer)->Encode(text, /*add_special_tokens=*/false);
  const auto start = std::chrono::steady_clock::now();
  auto nll = ScoreWindows(**model, **cache, ids, options);
  if (!nll.ok()) return Fail(std::string(nll.status().message()));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const int64_t words = CountWords(text);
  // MoA: the plan's average density at the window's length (the fraction of
  // each window position's context a head attends, over the heads).
  std::string attention_description = "dense";
  double density = 1.0;
  if (const MoaPlan* plan = (*model)->moa_plan(); plan != nullptr) {
    density = plan->Density(options.window);
    attention_description = "moa " + plan->path + " (density " + std::to_string(density).substr(0, 5) + " at " +
                            std::to_string(options.window) + " tokens)";
  }
  const double bits_per_byte = nll->nll_sum / std::log(2.0) / double(text.size());
  const double word_ppl = std::exp(nll->nll_sum / double(words));
  std::printf("model %s, backend %s%s, weights %s, kv cache %s, attention %s, window %d\n", model_dir.c_str(),
              backend->name().c_str(), choice.name == "cuda" ? (" (" + absl::GetFlag(FLAGS_dtype) + ")").c_str() : "",
              (*model)->weight_scheme().c_str(), (*model)->kv_cache_description().c_str(),
              attention_description.c_str(), options.window);
  std::printf("text %s: %zu bytes, %lld tokens in %lld windows, %lld words\n", text_path.c_str(), text.size(),
              (long long)nll->tokens, (long long)nll->windows, (long long)words);
  std::printf("nll_sum %.6f nats\ntoken perplexity %.4f\nbits per byte %.6f\nword perplexity %.2f\n", nll->nll_sum,
              nll->TokenPerplexity(), bits_per_byte, word_ppl);
  std::printf("%.1f s, %.0f tokens/s\n", seconds, double(nll->tokens) / seconds);
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    nlohmann::json out = {{"model", model_dir},       {"backend", backend->name()},
                          {"dtype", choice.name == "cuda" ? absl::GetFlag(FLAGS_dtype) : "float32"},
                          {"weight_scheme", (*model)->weight_scheme()},
                          {"kv_cache_dtype", (*model)->kv_cache_description()},
                          {"attention_scheme", absl::GetFlag(FLAGS_attention_scheme)},
                          {"attention_density", density},
                          {"text", text_path},        {"bytes", text.size()},
                          {"tokens", nll->tokens},    {"windows", nll->windows},
                          {"window", options.window}, {"nll_sum", nll->nll_sum},
                          {"token_ppl", nll->TokenPerplexity()},
                          {"bits_per_byte", bits_per_byte},
                          {"words", words},           {"word_ppl", word_ppl},
                          {"seconds", seconds}};
    std::ofstream(path) << out.dump(2) << "\n";
  }
  return 0;
}
