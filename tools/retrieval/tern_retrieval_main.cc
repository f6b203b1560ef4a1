// tern-retrieval: the line-retrieval needle test (LongEval "lines", the test
// of the MoA paper and of models/tern-demo-llm) through tern's tokenizer,
// model, backend and attention scheme, so an MoA plan or a KV cache type is
// judged by what it keeps of long-context retrieval.
//
//   python3 tools/eval/retrieval_cases.py --lengths 512 1024 2048 --cases 200 --out cases.jsonl
//   tern-retrieval --model DIR --cases cases.jsonl [--backend cpu|cuda] [--dtype float16]
//                  [--attention-scheme dense|moa:PLAN] [--kv-cache-dtype auto|fp8|int8]
//                  [--batch 16] [--json OUT]
//
// Each case's record is cut (lines other than the needle dropped from the
// end) until `<s>` + the prompt + the answer fit its length; the model then
// decodes greedily from "... in line <key> is <", and the case counts as
// right when the text it prints starts with "<value>>". Prints, per length,
// the accuracy, the mean prompt tokens and the plan's density there.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "nlohmann/json.hpp"
#include "runtime/backend/backend_factory.h"
#include "runtime/base/flag_names.h"
#include "runtime/model/moa_plan.h"
#include "runtime/runner/llm_model_runner.h"
#include "runtime/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model directory");
ABSL_FLAG(std::string, cases, "", "JSON lines from tools/eval/retrieval_cases.py");
ABSL_FLAG(std::string, backend, "cpu", "cpu or cuda");
ABSL_FLAG(std::string, dtype, "float16", "CUDA compute dtype: float32, bfloat16 or float16");
ABSL_FLAG(std::string, attention_scheme, "dense", "dense, or moa:<plan file> (runtime/model/moa_plan.h)");
ABSL_FLAG(std::string, kv_cache_dtype, "auto", "auto, fp8 or int8 (runtime/backend/kv_cache_spec.h)");
ABSL_FLAG(int32_t, batch, 16, "Cases per forward pass");
ABSL_FLAG(int32_t, max_new_tokens, 8, "Tokens decoded after the answer prefix");
ABSL_FLAG(std::string, json, "", "Also write the results here as JSON");

namespace {

using namespace tern::runtime;

int Fail(const std::string& message) {
  std::fprintf(stderr, "tern-retrieval: %s\n", message.c_str());
  return 1;
}

struct Case {
  int32_t length = 0;
  std::vector<int32_t> prompt;  // <s> + the cut record, question and answer prefix
  std::string value;
  bool right = false;
};

std::string Text(const nlohmann::json& c, const std::vector<std::string>& lines) {
  std::string text = c["preamble"].get<std::string>();
  for (const std::string& line : lines) text += line;
  return text + c["question"].get<std::string>() + c["answer_prefix"].get<std::string>();
}

// The case's prompt tokens: lines other than the needle dropped from the end
// until <s> + prompt + max_new tokens fit the length.
absl::StatusOr<Case> MakeCase(const nlohmann::json& c, const Tokenizer& tokenizer, int32_t max_new) {
  Case out;
  out.length = c["length"].get<int32_t>();
  out.value = c["value"].get<std::string>();
  std::vector<std::string> lines = c["lines"].get<std::vector<std::string>>();
  size_t needle = c["needle"].get<size_t>();
  if (needle >= lines.size()) return absl::InvalidArgumentError("a case's needle is past its lines");
  const auto encode = [&] {
    std::vector<int32_t> ids = {tokenizer.bos_id()};
    const std::vector<int32_t> text = tokenizer.Encode(Text(c, lines), /*add_special_tokens=*/false);
    ids.insert(ids.end(), text.begin(), text.end());
    return ids;
  };
  // A first cut by each line's own token count, then exact.
  std::vector<int32_t> ids = encode();
  int64_t excess = int64_t(ids.size()) + max_new - out.length;
  while (excess > 0 && lines.size() > 2) {
    const size_t drop = needle == lines.size() - 1 ? lines.size() - 2 : lines.size() - 1;
    excess -= int64_t(tokenizer.Encode(lines[drop], false).size());
    lines.erase(lines.begin() + drop);
    if (needle > drop) --needle;
    if (excess <= 0) {
      ids = encode();
      excess = int64_t(ids.size()) + max_new - out.length;
    }
  }
  if (excess > 0) return absl::InvalidArgumentError("a case does not fit its length even with two lines");
  out.prompt = std::move(ids);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("line-retrieval needle test\n\n"
                               "  tern-retrieval --model DIR --cases FILE [--attention-scheme moa:PLAN]\n");
  std::vector<std::string> args = tern::base::NormalizeFlagDashes(argc, argv);
  std::vector<char*> arg_ptrs;
  for (auto& arg : args) arg_ptrs.push_back(arg.data());
  if (absl::ParseCommandLine(int(arg_ptrs.size()), arg_ptrs.data()).size() != 1) {
    return Fail("takes no positional arguments");
  }
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty() || absl::GetFlag(FLAGS_cases).empty()) return Fail("--model and --cases are required");
  const int32_t max_new = absl::GetFlag(FLAGS_max_new_tokens);
  const int32_t batch = absl::GetFlag(FLAGS_batch);
  if (max_new < 1 || batch < 1) return Fail("--max-new-tokens and --batch must be positive");

  auto tokenizer = Tokenizer::FromModelDirectory(model_dir);
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));
  if ((*tokenizer)->bos_id() < 0) return Fail("the tokenizer has no BOS token");
  std::vector<Case> cases;
  {
    std::ifstream in(absl::GetFlag(FLAGS_cases));
    if (!in) return Fail("cannot read " + absl::GetFlag(FLAGS_cases));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const nlohmann::json c = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (c.is_discarded() || !c.is_object()) return Fail("a line of the cases file is not a JSON object");
      auto made = MakeCase(c, **tokenizer, max_new);
      if (!made.ok()) return Fail(std::string(made.status().message()));
      cases.push_back(*std::move(made));
    }
  }
  if (cases.empty()) return Fail("no cases");
  int32_t longest = 0;
  for (const Case& c : cases) longest = std::max(longest, c.length);

  BackendChoice choice;
  choice.name = absl::GetFlag(FLAGS_backend);
  choice.dtype = absl::GetFlag(FLAGS_dtype);
  auto backend = MakeBackend(choice);
  if (!backend.ok()) return Fail(std::string(backend.status().message()));
  LlmModelRunnerOptions options;
  options.model_dir = model_dir;
  options.block_size = 16;
  const int32_t blocks_per_case = (longest + options.block_size - 1) / options.block_size;
  options.num_blocks = batch * blocks_per_case;
  // Every case keeps all its blocks (nothing is freed here), so one table
  // for all layers.
  options.max_kv_cache_groups = 1;
  auto kv = ParseKvCacheDtype(absl::GetFlag(FLAGS_kv_cache_dtype));
  if (!kv.ok()) return Fail("--kv-cache-dtype: " + std::string(kv.status().message()));
  options.model.kv_cache_dtype = *kv;
  auto attention = ParseAttentionScheme(absl::GetFlag(FLAGS_attention_scheme));
  if (!attention.ok()) return Fail("--attention-scheme: " + std::string(attention.status().message()));
  options.model.attention = *attention;
  auto runner = LlmModelRunner::Create(*std::move(backend), options);
  if (!runner.ok()) return Fail(std::string(runner.status().message()));
  if (longest > (*runner)->max_context_length()) return Fail("a case is longer than the model's context");

  SamplingParams greedy;
  greedy.temperature = 0.0f;
  const auto start = std::chrono::steady_clock::now();
  int64_t tokens_run = 0;
  for (size_t first = 0; first < cases.size(); first += size_t(batch)) {
    const size_t count = std::min(cases.size() - first, size_t(batch));
    std::vector<std::vector<int32_t>> tokens(count);
    std::vector<std::vector<std::vector<int32_t>>> tables(count, std::vector<std::vector<int32_t>>(1));
    std::vector<SequenceSamplingState> states;
    states.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      tokens[i] = cases[first + i].prompt;
      tables[i][0].resize(size_t(blocks_per_case));
      std::iota(tables[i][0].begin(), tables[i][0].end(), int32_t(i) * blocks_per_case);
      states.emplace_back(0, 0, tokens[i], OutputCounts::kUntracked);
    }
    std::vector<int32_t> computed(count, 0);
    for (int32_t step = 0; step < max_new; ++step) {
      StepPlan plan;
      for (size_t i = 0; i < count; ++i) {
        SequenceStep s;
        s.seq_id = int64_t(first + i);
        s.token_ids = absl::MakeConstSpan(tokens[i]).subspan(size_t(computed[i]));
        s.num_computed_tokens = computed[i];
        s.block_tables = tables[i];
        s.sample = true;
        s.sampling = &greedy;
        s.sampling_state = &states[i];
        tokens_run += int64_t(s.token_ids.size());
        plan.sequences.push_back(s);
      }
      auto result = (*runner)->Execute(plan);
      if (!result.ok()) return Fail(std::string(result.status().message()));
      for (size_t i = 0; i < count; ++i) {
        if (!result->outputs[i].token.ok()) return Fail(std::string(result->outputs[i].token.status().message()));
        computed[i] = int32_t(tokens[i].size());
        tokens[i].push_back(result->outputs[i].token->token_id);
        states[i].AppendOutputToken(tokens[i].back());
      }
    }
    for (size_t i = 0; i < count; ++i) {
      Case& c = cases[first + i];
      const std::vector<int32_t> out(tokens[i].begin() + c.prompt.size(), tokens[i].end());
      auto text = (*tokenizer)->Decode(out, /*skip_special_tokens=*/false);
      c.right = text.ok() && text->rfind(c.value + ">", 0) == 0;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const MoaPlan* plan = (*runner)->moa_plan();
  std::printf("model %s, backend %s, kv cache %s, attention %s\n", model_dir.c_str(), choice.name.c_str(),
              absl::GetFlag(FLAGS_kv_cache_dtype).c_str(), absl::GetFlag(FLAGS_attention_scheme).c_str());
  std::printf("%8s %7s %9s %13s %9s\n", "length", "cases", "accuracy", "prompt tokens", "density");
  std::map<int32_t, std::vector<const Case*>> by_length;
  for (const Case& c : cases) by_length[c.length].push_back(&c);
  nlohmann::json results = nlohmann::json::object();
  for (const auto& [length, group] : by_length) {
    int32_t right = 0;
    double prompt = 0;
    for (const Case* c : group) {
      right += c->right ? 1 : 0;
      prompt += double(c->prompt.size());
    }
    const double accuracy = double(right) / double(group.size());
    const double density = plan != nullptr ? plan->Density(length) : 1.0;
    std::printf("%8d %7zu %8.1f%% %13.1f %9.3f\n", length, group.size(), 100.0 * accuracy,
                prompt / double(group.size()), density);
    results[std::to_string(length)] = {{"cases", group.size()},
                                       {"accuracy", accuracy},
                                       {"mean_prompt_tokens", prompt / double(group.size())},
                                       {"density", density}};
  }
  std::printf("%.1f s, %.0f tokens/s\n", seconds, double(tokens_run) / seconds);
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    nlohmann::json out = {{"model", model_dir},
                          {"backend", choice.name},
                          {"dtype", choice.name == "cuda" ? choice.dtype : "float32"},
                          {"attention_scheme", absl::GetFlag(FLAGS_attention_scheme)},
                          {"kv_cache_dtype", absl::GetFlag(FLAGS_kv_cache_dtype)},
                          {"results", results},
                          {"seconds", seconds}};
    std::ofstream(path) << out.dump(2) << "\n";
  }
  return 0;
}
