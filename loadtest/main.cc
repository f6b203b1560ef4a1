// tern-load: an open- or closed-loop load generator for ternd's Generate
// stream. See loadtest/README.md for the flags and what each metric means.
//
// Exit status: 0 when every request ended OK, 1 when any failed (or the
// target was unreachable, the JSON could not be written, or Ctrl-C cut the
// run short), 2 for bad flags, an unreadable prompts file or an unwritable
// --json path. A first Ctrl-C cancels what is in flight and still prints
// the report; a second kills.
#include <signal.h>
#include <unistd.h>

#include <atomic>
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

// Set by the first SIGINT (Ctrl-C): the run stops and reports what it has.
// SA_RESETHAND makes a second Ctrl-C end the process at once.
std::atomic<bool> interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

extern "C" void OnSigint(int) { interrupted.store(true); }

void InstallSigintHandler() {
  struct sigaction action = {};
  action.sa_handler = OnSigint;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
}

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

  // Open the report file before the run, so a bad path fails in a second,
  // not after an hour of load.
  std::ofstream json_out;
  if (!options.json_path.empty()) {
    json_out.open(options.json_path, std::ios::trunc);
    if (!json_out) {
      std::fprintf(stderr, "tern-load: --json: cannot write %s\n", options.json_path.c_str());
      return 2;
    }
  }

  absl::StatusOr<std::unique_ptr<LoadRunner>> runner =
      LoadRunner::Create(options, std::move(prompts), kConnectTimeout);
  if (!runner.ok()) {
    std::fprintf(stderr, "tern-load: %s\n", std::string(runner.status().message()).c_str());
    return 1;
  }
  ProgressLine progress(stderr, options.force_progress || isatty(STDERR_FILENO), options.duration_s);
  RunHooks hooks;
  hooks.on_progress = [&](const RunProgress& p) { progress.Update(p); };
  hooks.progress_every = kProgressEvery;
  hooks.interrupt = &interrupted;
  InstallSigintHandler();
  const RunResult result = (*runner)->Run(hooks);
  progress.Finish();

  RunEnd end;
  end.elapsed_s = std::chrono::duration<double>(result.end - result.start).count();
  end.hit_max_time = result.hit_max_time;
  end.interrupted = result.interrupted;
  end.abandoned = result.abandoned;
  const Report report = BuildReport(options, result.traces, end);
  std::fputs(FormatReportTable(options, report).c_str(), stdout);
  std::fflush(stdout);
  if (!options.json_path.empty()) {
    const nlohmann::json json =
        ReportToJson(options, report, options.json_requests ? &result.traces : nullptr, result.start);
    json_out << json.dump(2) << "\n";
    json_out.close();
    if (!json_out) {
      std::fprintf(stderr, "tern-load: cannot write %s\n", options.json_path.c_str());
      return 1;
    }
  }
  return report.failed == 0 && report.abandoned == 0 && !report.interrupted ? 0 : 1;
}
