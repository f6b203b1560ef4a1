// Host sampler cost per token at real vocabulary sizes (Llama-2: 32000,
// Llama-3: 128256), one row per sampling configuration.
//
//   sampling_bench [--iters=N] [--json=PATH]
//
// Prints a table (mean and p50/p99 microseconds per sampled token) and writes
// the same numbers as JSON to PATH when given. Logits are N(0, 2.5) with a
// fixed seed; each token draws at a new position of one sequence.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "bench/host_info.h"
#include "nlohmann/json.hpp"
#include "runtime/sampling/sampler.h"

namespace {

using tern::runtime::Sampler;
using tern::runtime::SamplingParams;
using tern::runtime::SequenceSamplingState;

struct Config {
  std::string name;
  SamplingParams params;
  int prompt_tokens = 0;  // prompt size the penalties scan
};

std::vector<Config> Configs() {
  std::vector<Config> configs;
  auto add = [&](std::string name, auto mutate, int prompt_tokens = 0) {
    Config c;
    c.name = std::move(name);
    mutate(c.params);
    c.prompt_tokens = prompt_tokens;
    configs.push_back(std::move(c));
  };
  add("greedy", [](SamplingParams& p) { p.temperature = 0.0f; });
  add("t=1.0", [](SamplingParams&) {});
  add("top_k=50", [](SamplingParams& p) { p.top_k = 50; });
  add("top_p=0.9", [](SamplingParams& p) { p.top_p = 0.9f; });
  add("top_k=50,top_p=0.9", [](SamplingParams& p) {
    p.top_k = 50;
    p.top_p = 0.9f;
  });
  add("min_p=0.05", [](SamplingParams& p) { p.min_p = 0.05f; });
  add("t=0.7,top_p=0.95,rep=1.1,prompt=2k,logprobs=5", [](SamplingParams& p) {
    p.temperature = 0.7f;
    p.top_p = 0.95f;
    p.repetition_penalty = 1.1f;
    p.frequency_penalty = 0.2f;
    p.logprobs = 5;
  }, 2048);
  return configs;
}

std::string CpuName() { return tern::bench::CpuModelName(); }

}  // namespace

int main(int argc, char** argv) {
  int iters = 300;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--iters=", 0) == 0) {
      iters = std::max(1, std::atoi(arg.c_str() + 8));
    } else if (arg.rfind("--json=", 0) == 0) {
      json_path = arg.substr(7);
    } else {
      std::fprintf(stderr, "usage: %s [--iters=N] [--json=PATH]\n", argv[0]);
      return 2;
    }
  }

  const std::string cpu = CpuName();
  std::printf("sampling_bench on %s, %d tokens per row\n\n", cpu.c_str(), iters);
  std::printf("%-48s %8s %10s %10s %10s\n", "config", "vocab", "mean_us", "p50_us", "p99_us");
  nlohmann::json results = nlohmann::json::array();
  for (int vocab : {32000, 128256}) {
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 2.5f);
    std::vector<float> logits(vocab);
    for (float& x : logits) x = normal(rng);
    for (const Config& config : Configs()) {
      std::vector<int32_t> prompt(config.prompt_tokens);
      for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % vocab);
      Sampler sampler;
      SequenceSamplingState state(7, 0, prompt);
      std::vector<double> micros;
      micros.reserve(iters);
      for (int i = 0; i < iters + 5; ++i) {
        const auto start = std::chrono::steady_clock::now();
        auto token = sampler.Sample(logits, config.params, state);
        const auto stop = std::chrono::steady_clock::now();
        if (!token.ok()) {
          std::fprintf(stderr, "%s\n", token.status().ToString().c_str());
          return 1;
        }
        state.AppendOutputToken(token->token_id);
        if (i >= 5) micros.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
      }
      std::sort(micros.begin(), micros.end());
      double mean = 0.0;
      for (double m : micros) mean += m;
      mean /= micros.size();
      const double p50 = micros[micros.size() / 2];
      const double p99 = micros[std::min(micros.size() - 1, micros.size() * 99 / 100)];
      std::printf("%-48s %8d %10.1f %10.1f %10.1f\n", config.name.c_str(), vocab, mean, p50, p99);
      results.push_back({{"config", config.name}, {"vocab", vocab}, {"mean_us", mean},
                         {"p50_us", p50}, {"p99_us", p99}});
    }
  }
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << nlohmann::json{{"bench", "sampling"}, {"device", cpu}, {"iters", iters},
                          {"results", results}}
               .dump(2)
        << "\n";
  }
  return 0;
}
