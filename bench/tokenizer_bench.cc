// Tokenizer encode throughput on WikiText-2 text: tern's Llama-2
// (tokenizer.model) and Llama-3 (tokenizer.json) tokenizers, side by side
// with Google's SentencePiece on the same Llama-2 model when the bench was
// built with libsentencepiece. Every line of the text is one Encode call
// (no BOS, special tokens not parsed, as SentencePiece does); the best of
// --repeat passes is reported. For Llama-2 it also counts lines where tern's
// ids differ from SentencePiece's.
//
//   tern-tokenizer-bench [--text=FILE] [--llama2=DIR] [--llama3=DIR]
//                        [--repeat=N] [--json=PATH]
//
// Defaults: tests/data/text/wikitext-2-test-head.txt and the tokenizers in
// tests/data/tokenizers/. Prints a table; writes JSON to PATH when given.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "bench/host_info.h"
#include "bench/sentencepiece_baseline.h"
#include "nlohmann/json.hpp"
#include "runtime/tokenizer/tokenizer.h"

namespace {

using tern::runtime::Tokenizer;
using Clock = std::chrono::steady_clock;

std::string CpuModel() { return tern::bench::CpuModelName(); }

struct Row {
  std::string tokenizer;
  std::string implementation;
  double seconds = 0;  // best pass
  size_t tokens = 0;
  double load_seconds = 0;
};

// Best wall time over `repeat` passes of encode(line) for every line.
Row Measure(const std::vector<std::string>& lines, int repeat,
            const std::function<size_t(const std::string&)>& encode) {
  Row row;
  row.seconds = 1e30;
  for (int r = 0; r < repeat; ++r) {
    size_t tokens = 0;
    const auto start = Clock::now();
    for (const std::string& line : lines) tokens += encode(line);
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    row.seconds = std::min(row.seconds, s);
    row.tokens = tokens;
  }
  return row;
}

bool TakeFlag(int argc, char** argv, int* i, const std::string& name, std::string* value) {
  const std::string arg = argv[*i];
  if (arg.rfind(name + "=", 0) == 0) {
    *value = arg.substr(name.size() + 1);
    return true;
  }
  if (arg == name && *i + 1 < argc) {
    *value = argv[++*i];
    return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string root = TERN_SOURCE_DIR;
  std::string text_path = root + "/tests/data/text/wikitext-2-test-head.txt";
  std::string llama2_dir = root + "/tests/data/tokenizers/llama2";
  std::string llama3_dir = root + "/tests/data/tokenizers/llama3";
  std::string json_path, repeat_text = "5";
  for (int i = 1; i < argc; ++i) {
    if (TakeFlag(argc, argv, &i, "--text", &text_path) || TakeFlag(argc, argv, &i, "--llama2", &llama2_dir) ||
        TakeFlag(argc, argv, &i, "--llama3", &llama3_dir) || TakeFlag(argc, argv, &i, "--json", &json_path) ||
        TakeFlag(argc, argv, &i, "--repeat", &repeat_text)) {
      continue;
    }
    std::fprintf(stderr, "usage: %s [--text=FILE] [--llama2=DIR] [--llama3=DIR] [--repeat=N] [--json=PATH]\n",
                 argv[0]);
    return 2;
  }
  const int repeat = std::max(1, std::atoi(repeat_text.c_str()));

  std::ifstream in(text_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", text_path.c_str());
    return 1;
  }
  std::vector<std::string> lines;
  size_t bytes = 0;
  for (std::string line; std::getline(in, line);) {
    bytes += line.size();
    lines.push_back(std::move(line));
  }

  std::vector<Row> rows;
  nlohmann::json agreement = nlohmann::json::object();
  const std::string cpu = CpuModel();
  std::printf("tern-tokenizer-bench on %s\ntext: %s (%zu lines, %.2f MB), best of %d passes, 1 thread\n\n",
              cpu.c_str(), text_path.c_str(), lines.size(), bytes / 1e6, repeat);

  for (const auto& [name, dir] : {std::pair<std::string, std::string>{"llama2", llama2_dir},
                                  std::pair<std::string, std::string>{"llama3", llama3_dir}}) {
    const auto load_start = Clock::now();
    auto tokenizer = Tokenizer::FromModelDirectory(dir);
    const double load_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
    if (!tokenizer.ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), tokenizer.status().ToString().c_str());
      return 1;
    }
    const Tokenizer& t = **tokenizer;
    Row row = Measure(lines, repeat, [&](const std::string& line) {
      return t.Encode(line, /*add_special_tokens=*/false, /*parse_special_tokens=*/false).size();
    });
    row.tokenizer = name;
    row.implementation = "tern";
    row.load_seconds = load_seconds;
    rows.push_back(row);

    const std::string model_path = dir + "/tokenizer.model";
    if (!tern::bench::SentencePieceBaseline::Available() || !std::ifstream(model_path)) continue;
    std::string error;
    const auto sp_load_start = Clock::now();
    auto sp = tern::bench::SentencePieceBaseline::Load(model_path, &error);
    const double sp_load_seconds = std::chrono::duration<double>(Clock::now() - sp_load_start).count();
    if (!sp) {
      std::fprintf(stderr, "sentencepiece: %s\n", error.c_str());
      continue;
    }
    Row sp_row = Measure(lines, repeat, [&](const std::string& line) { return sp->Encode(line).size(); });
    sp_row.tokenizer = name;
    sp_row.implementation = "sentencepiece (libsentencepiece)";
    sp_row.load_seconds = sp_load_seconds;
    rows.push_back(sp_row);
    size_t differing = 0;
    for (const std::string& line : lines) {
      const std::vector<int32_t> ours = t.Encode(line, false, false);
      const std::vector<int> theirs = sp->Encode(line);
      differing += !std::equal(ours.begin(), ours.end(), theirs.begin(), theirs.end());
    }
    agreement[name] = {{"lines", lines.size()}, {"lines_with_different_ids", differing}};
  }

  std::printf("%-8s %-34s %10s %12s %10s %9s\n", "model", "implementation", "MB/s", "tokens/s", "tokens", "load_s");
  nlohmann::json results = nlohmann::json::array();
  for (const Row& r : rows) {
    const double mbps = bytes / r.seconds / 1e6;
    const double tps = r.tokens / r.seconds;
    std::printf("%-8s %-34s %10.2f %12.0f %10zu %9.3f\n", r.tokenizer.c_str(), r.implementation.c_str(), mbps, tps,
                r.tokens, r.load_seconds);
    results.push_back({{"model", r.tokenizer}, {"implementation", r.implementation}, {"mb_per_s", mbps},
                       {"tokens_per_s", tps}, {"tokens", r.tokens}, {"best_seconds", r.seconds},
                       {"load_seconds", r.load_seconds}});
  }
  for (const auto& [name, a] : agreement.items()) {
    std::printf("\n%s: tern and SentencePiece ids differ on %zu of %zu lines\n", name.c_str(),
                a["lines_with_different_ids"].get<size_t>(), a["lines"].get<size_t>());
  }
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << nlohmann::json{{"bench", "tokenizer_encode"}, {"device", cpu}, {"text", text_path},
                          {"text_bytes", bytes}, {"lines", lines.size()}, {"repeat", repeat},
                          {"results", results}, {"agreement", agreement}}
               .dump(2)
        << "\n";
  }
  return 0;
}
