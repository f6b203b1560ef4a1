// Latency of the trained SoT-R router (runtime/sot/trained_router.h): one
// TrainedRouter::Score call per question, timed call by call, on the 80
// Vicuna questions (each scored --iters times, interleaved), and on one long
// question (all 80 joined, about 9 KB) to show how the cost grows with length.
//
//   tern-sot-router-bench [--router=FILE] [--data=FILE] [--iters=N] [--json=PATH]
//
// Defaults: models/sot-router/router.json and tests/data/sot/vicuna/router.csv.
// Prints a table (mean, p50, p99, max microseconds per call) and the load
// time; writes the same as JSON to PATH when given.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench/host_info.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "runtime/base/delimited_text.h"
#include "runtime/sot/trained_router.h"

namespace {

using Clock = std::chrono::steady_clock;
using tern::runtime::TrainedRouter;

// The request column of a `label;request` table after its header row.
absl::StatusOr<std::vector<std::string>> ReadRequests(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  auto rows = tern::SplitDelimitedText(buffer.str(), ';');
  if (!rows.ok()) return absl::InvalidArgumentError(path + ": " + std::string(rows.status().message()));
  std::vector<std::string> requests;
  for (size_t r = 1; r < rows->size(); ++r) {
    if ((*rows)[r].size() != 2) return absl::InvalidArgumentError(path + ": a row without label;request");
    requests.push_back((*rows)[r][1]);
  }
  return requests;
}

struct Row {
  std::string name;
  size_t questions = 0;
  size_t mean_bytes = 0;
  size_t calls = 0;
  double mean_us = 0, p50_us = 0, p99_us = 0, max_us = 0;
};

// Times every Score call: `iters` rounds over all questions.
Row Measure(const std::string& name, const TrainedRouter& router, const std::vector<std::string>& questions,
            int iters, double* checksum) {
  std::vector<double> micros;
  micros.reserve(questions.size() * iters);
  for (int round = -2; round < iters; ++round) {  // two warm-up rounds
    for (const std::string& q : questions) {
      const auto start = Clock::now();
      const double score = router.Score(q);
      const auto stop = Clock::now();
      *checksum += score;
      if (round >= 0) micros.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
    }
  }
  std::sort(micros.begin(), micros.end());
  Row row;
  row.name = name;
  row.questions = questions.size();
  for (const std::string& q : questions) row.mean_bytes += q.size();
  row.mean_bytes /= std::max<size_t>(1, questions.size());
  row.calls = micros.size();
  for (double m : micros) row.mean_us += m;
  row.mean_us /= micros.size();
  row.p50_us = micros[micros.size() / 2];
  row.p99_us = micros[std::min(micros.size() - 1, micros.size() * 99 / 100)];
  row.max_us = micros.back();
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string root = TERN_SOURCE_DIR;
  std::string router_path = root + "/models/sot-router/router.json";
  std::string data_path = root + "/tests/data/sot/vicuna/router.csv";
  std::string json_path;
  int iters = 1000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--router=", 0) == 0) {
      router_path = arg.substr(9);
    } else if (arg.rfind("--data=", 0) == 0) {
      data_path = arg.substr(7);
    } else if (arg.rfind("--iters=", 0) == 0) {
      iters = std::max(1, std::atoi(arg.c_str() + 8));
    } else if (arg.rfind("--json=", 0) == 0) {
      json_path = arg.substr(7);
    } else {
      std::fprintf(stderr, "usage: %s [--router=FILE] [--data=FILE] [--iters=N] [--json=PATH]\n", argv[0]);
      return 2;
    }
  }

  const auto load_start = Clock::now();
  auto router = TrainedRouter::Load(router_path);
  const double load_ms = std::chrono::duration<double, std::milli>(Clock::now() - load_start).count();
  if (!router.ok()) {
    std::fprintf(stderr, "%s\n", router.status().ToString().c_str());
    return 1;
  }
  auto read = ReadRequests(data_path);
  if (!read.ok()) {
    std::fprintf(stderr, "%s\n", read.status().ToString().c_str());
    return 1;
  }
  const std::vector<std::string>& questions = *read;
  if (questions.empty()) {
    std::fprintf(stderr, "%s: no questions\n", data_path.c_str());
    return 1;
  }
  std::string joined;
  for (const std::string& q : questions) joined += q + "\n";

  const std::string cpu = tern::bench::CpuModelName();
  std::printf("tern-sot-router-bench on %s: %zu features, loaded in %.1f ms; one thread\n\n", cpu.c_str(),
              (*router)->num_features(), load_ms);
  double checksum = 0;
  std::vector<Row> rows;
  rows.push_back(Measure("vicuna-80", **router, questions, iters, &checksum));
  rows.push_back(Measure("vicuna-80 joined", **router, {joined}, std::max(1, iters / 10), &checksum));
  std::printf("%-18s %9s %10s %9s %9s %9s %9s %9s\n", "questions", "count", "mean_bytes", "calls", "mean_us",
              "p50_us", "p99_us", "max_us");
  nlohmann::json results = nlohmann::json::array();
  for (const Row& r : rows) {
    std::printf("%-18s %9zu %10zu %9zu %9.2f %9.2f %9.2f %9.2f\n", r.name.c_str(), r.questions, r.mean_bytes,
                r.calls, r.mean_us, r.p50_us, r.p99_us, r.max_us);
    results.push_back({{"questions", r.name}, {"count", r.questions}, {"mean_bytes", r.mean_bytes},
                       {"calls", r.calls}, {"mean_us", r.mean_us}, {"p50_us", r.p50_us}, {"p99_us", r.p99_us},
                       {"max_us", r.max_us}});
  }
  std::printf("\n(checksum %.6f)\n", checksum);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << nlohmann::json{{"bench", "sot_router"}, {"device", cpu}, {"router", router_path},
                          {"features", (*router)->num_features()}, {"load_ms", load_ms}, {"iters", iters},
                          {"results", results}}
               .dump(2)
        << "\n";
  }
  return 0;
}
