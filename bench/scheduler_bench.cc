// Host overhead of the continuous-batching Scheduler per step: Schedule()
// (plan) and Apply() (append tokens, stop checks, prefix-cache publishing,
// frees), timed apart from the model step. The model is the FakeModelRunner
// of the scheduler tests (its cost is not counted).
//
//   tern-scheduler-bench [--steps N] [--json PATH]
//
// Scenarios, all at 256 running sequences, 16-token blocks:
//   decode            256 sequences decoding (prompt 64), prefix caching on
//   decode-nocache    the same with prefix caching off
//   decode-penalties  decode with a frequency penalty on every request, so
//                     each sequence counts its output tokens
//   churn             requests of 64 + 64 tokens finish and are replaced each
//                     step (admission, prefix-cache lookups, chunked prefill)
//   pressure          requests of 64 + 256 tokens, the KV cache holding 60%
//                     of what they grow to: preemption by recompute
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "bench/host_info.h"
#include "nlohmann/json.hpp"
#include "runtime/base/check.h"
#include "scheduler/scheduler.h"
#include "tests/scheduler/fake_model_runner.h"

namespace {

using tern::scheduler::Scheduler;
using tern::scheduler::SchedulerOptions;
using tern::scheduler::SequenceGroup;
using tern::scheduler::Tenant;
using tern::scheduler::testing::FakeModelRunner;
using Clock = std::chrono::steady_clock;

struct Scenario {
  std::string name;
  int32_t num_blocks = 0;  // 0: enough for every sequence to grow to the end
  bool prefix_caching = true;
  int32_t max_tokens = 0;  // 0: more than the run generates (nothing finishes)
  int32_t prompt_tokens = 64;
  int32_t shared_prefix = 0;  // leading prompt tokens common to all requests
  int32_t backlog = 0;        // requests kept waiting
  float frequency_penalty = 0.0f;
};

struct Row {
  std::string name;
  int64_t steps = 0;
  double schedule_mean_us = 0, schedule_p50_us = 0, schedule_p99_us = 0;
  double apply_mean_us = 0, apply_p50_us = 0, apply_p99_us = 0;
  double seqs_per_step = 0, tokens_per_step = 0;
  int64_t preemptions = 0;
  double prefix_hit_rate = 0;
};

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}

Row Run(Scenario sc, int64_t steps) {
  constexpr int32_t kBlockSize = 16;
  constexpr int32_t kSeqs = 256;
  const int64_t warmup = 64;
  if (sc.max_tokens == 0) sc.max_tokens = static_cast<int32_t>(warmup + steps + 16);
  if (sc.num_blocks == 0) sc.num_blocks = kSeqs * ((sc.prompt_tokens + sc.max_tokens) / kBlockSize + 1);
  FakeModelRunner runner(sc.num_blocks, kBlockSize, 32000, 1 << 20);
  runner.set_record(false);
  SchedulerOptions options;
  options.max_num_seqs = kSeqs;
  options.max_num_batched_tokens = 4096;
  options.enable_prefix_caching = sc.prefix_caching;
  options.max_context_length = 1 << 20;
  Scheduler scheduler(options, runner.kv_cache_layout());
  Tenant tenant;
  tenant.name = "bench";
  int64_t next = 0;
  auto add = [&] {
    SequenceGroup::Options o;
    o.request_id = "r" + std::to_string(next);
    o.tenant = &tenant;
    o.sampling.temperature = 0;
    o.sampling.max_tokens = sc.max_tokens;
    o.sampling.frequency_penalty = sc.frequency_penalty;
    std::vector<int32_t> prompt(sc.prompt_tokens);
    for (int32_t i = 0; i < sc.prompt_tokens; ++i) {
      prompt[i] = i < sc.shared_prefix ? 7 + i : int32_t((next * 131 + i * 17) % 31000) + 1;
    }
    scheduler.Add(std::move(o), std::move(prompt), /*seed=*/uint64_t(next));
    ++next;
  };
  for (int i = 0; i < kSeqs + sc.backlog; ++i) add();
  // Warm up until every slot is running (prefills done).
  std::vector<double> schedule_us, apply_us;
  double seqs = 0, tokens = 0;
  const auto before = scheduler.stats();
  for (int64_t step = 0; step < warmup + steps; ++step) {
    while (scheduler.num_waiting_groups() < sc.backlog) add();
    const auto t0 = Clock::now();
    const auto& out = scheduler.Schedule();
    const auto t1 = Clock::now();
    auto result = runner.Execute(out.plan);
    CHECK(result.ok()) << result.status().ToString();
    const auto t2 = Clock::now();
    auto outcome = scheduler.Apply(*result);
    const auto t3 = Clock::now();
    CHECK(outcome.ok());
    for (SequenceGroup* g : outcome->updated) {
      for (auto& s : g->sequences()) s->pending() = {};
    }
    if (step < warmup) continue;
    schedule_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    apply_us.push_back(std::chrono::duration<double, std::micro>(t3 - t2).count());
    seqs += double(out.scheduled.size());
    tokens += double(out.num_batched_tokens);
  }
  const auto after = scheduler.stats();
  Row row;
  row.name = sc.name;
  row.steps = steps;
  row.schedule_mean_us = Mean(schedule_us);
  row.schedule_p50_us = Percentile(schedule_us, 0.5);
  row.schedule_p99_us = Percentile(schedule_us, 0.99);
  row.apply_mean_us = Mean(apply_us);
  row.apply_p50_us = Percentile(apply_us, 0.5);
  row.apply_p99_us = Percentile(apply_us, 0.99);
  row.seqs_per_step = seqs / double(steps);
  row.tokens_per_step = tokens / double(steps);
  row.preemptions = after.preemptions - before.preemptions;
  const int64_t queries = after.blocks.prefix_queries;
  row.prefix_hit_rate = queries > 0 ? double(after.blocks.prefix_hits) / double(queries) : 0.0;
  return row;
}

std::string CpuName() { return tern::bench::CpuModelName(); }

}  // namespace

int main(int argc, char** argv) {
  int64_t steps = 1000;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--steps" && i + 1 < argc) {
      steps = std::max<int64_t>(1, std::atoll(argv[++i]));
    } else if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--steps N] [--json PATH]\n", argv[0]);
      return 2;
    }
  }
  // Blocks: decode sequences get all they grow to; churn requests need 8
  // and get 16; pressure requests (64 + 256) need 20 each, 5120 in all, and
  // get 3072 (60%).
  const std::vector<Scenario> scenarios = {
      {"decode", 0, true, 0, 64, 0, 0},
      {"decode-nocache", 0, false, 0, 64, 0, 0},
      {"decode-penalties", 0, true, 0, 64, 0, 0, 0.5f},
      {"churn", 256 * 16, true, 64, 64, 32, 64},
      {"pressure", 3072, true, 256, 64, 0, 16},
  };
  std::vector<Row> rows;
  for (const Scenario& sc : scenarios) rows.push_back(Run(sc, steps));

  std::printf("Scheduler host overhead per step, 256 running sequences, %ld measured steps, CPU: %s\n",
              long(steps), CpuName().c_str());
  std::printf("%-17s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n", "scenario", "sched", "p50", "p99", "apply", "p50",
              "p99", "seqs", "tokens", "preempt", "hit%");
  for (const Row& r : rows) {
    std::printf("%-17s %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8ld %8.1f\n", r.name.c_str(),
                r.schedule_mean_us, r.schedule_p50_us, r.schedule_p99_us, r.apply_mean_us, r.apply_p50_us,
                r.apply_p99_us, r.seqs_per_step, r.tokens_per_step, long(r.preemptions), 100 * r.prefix_hit_rate);
  }
  std::printf("(sched/apply: mean, p50, p99 microseconds per step; seqs, tokens: mean per step)\n");

  if (!json_path.empty()) {
    nlohmann::json doc;
    doc["cpu"] = CpuName();
    doc["steps"] = steps;
    doc["running_sequences"] = 256;
    for (const Row& r : rows) {
      doc["scenarios"].push_back({{"name", r.name},
                                  {"schedule_us", {{"mean", r.schedule_mean_us}, {"p50", r.schedule_p50_us},
                                                   {"p99", r.schedule_p99_us}}},
                                  {"apply_us", {{"mean", r.apply_mean_us}, {"p50", r.apply_p50_us},
                                                {"p99", r.apply_p99_us}}},
                                  {"sequences_per_step", r.seqs_per_step},
                                  {"tokens_per_step", r.tokens_per_step},
                                  {"preemptions", r.preemptions},
                                  {"prefix_hit_rate", r.prefix_hit_rate}});
    }
    std::ofstream(json_path) << doc.dump(2) << "\n";
  }
  return 0;
}
