// tern-load: an open- or closed-loop load generator for ternd's Generate
// stream. See loadtest/README.md for the flags and what each metric means.
//
// Exit status: 0 when every request ended OK, 1 when any failed (or the
// target was unreachable, or the JSON could not be written), 2 for bad flags
// or an unreadable prompts file.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "loadtest/options.h"
#include "loadtest/progress.h"
#include "loadtest/prompts.h"
#include "loadtest/report.h"
#include "loadtest/runner.h"

namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr auto kProgressEvery = std::chrono::milliseconds(250);

int UsageError(const std::string& message) {
  std::fprintf(stderr, "tern-load: %s\n(tern-load --help lists the flags)\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tern::loadtest;
  bool help = false;
  absl::StatusOr<LoadOptions> parsed = ParseLoadOptions(std::vector<std::string>(argv + 1, argv + argc), &help);
  if (help) {
    std::fputs(LoadUsage(), stdout);
    return 0;
  }
  if (!parsed.ok()) return UsageError(std::string(parsed.status().message()));
  const LoadOptions& options = *parsed;

  std::vector<std::string> prompts;
  if (!options.prompts_path.empty()) {
    absl::StatusOr<std::vector<std::string>> loaded = LoadPrompts(options.prompts_path, options.prompts_format);
    if (!loaded.ok()) {
      std::fprintf(stderr, "tern-load: --prompts: %s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    prompts = *std::move(loaded);
  }

  absl::StatusOr<std::unique_ptr<LoadRunner>> runner =
      LoadRunner::Create(options, std::move(prompts), kConnectTimeout);
  if (!runner.ok()) {
    std::fprintf(stderr, "tern-load: %s\n", std::string(runner.status().message()).c_str());
    return 1;
  }
  ProgressLine progress(stderr, options.force_progress || isatty(STDERR_FILENO), options.duration_s);
  const RunResult result = (*runner)->Run([&](const RunProgress& p) { progress.Update(p); }, kProgressEvery);
  progress.Finish();

  const double elapsed_s = std::chrono::duration<double>(result.end - result.start).count();
  const Report report = BuildReport(options, result.traces, elapsed_s, result.hit_max_time, result.abandoned);
  std::fputs(FormatReportTable(options, report).c_str(), stdout);
  std::fflush(stdout);
  if (!options.json_path.empty()) {
    const nlohmann::json json =
        ReportToJson(options, report, options.json_requests ? &result.traces : nullptr, result.start);
    std::ofstream out(options.json_path, std::ios::trunc);
    out << json.dump(2) << "\n";
    out.close();
    if (!out) {
      std::fprintf(stderr, "tern-load: cannot write %s\n", options.json_path.c_str());
      return 1;
    }
  }
  return report.failed == 0 && report.abandoned == 0 ? 0 : 1;
}
