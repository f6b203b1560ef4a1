// ternd: the tern inference-serving daemon.
//
//   ternd [--config FILE] [--model DIR]... [--grpc-port N] [--http-port N]
//
// Flags override the config file's fields. SIGTERM or SIGINT drains: the
// daemon stops accepting calls, lets in-flight calls finish within the drain
// timeout, and exits 0.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/build_info.h"
#include "server/config/server_config.h"
#include "server/daemon.h"
#include "runtime/base/flag_names.h"
#include "server/observability/logging.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, config, "", "JSON config file (schema: tern.v1.ServerConfig)");
ABSL_FLAG(std::vector<std::string>, model, {},
          "Hugging Face model directory to serve; repeat or comma-separate for several");
// Optional flags override the config file only when given.
ABSL_FLAG(std::optional<std::string>, host, std::nullopt,
          "Address both servers bind (default 0.0.0.0)");
ABSL_FLAG(std::optional<int>, grpc_port, std::nullopt, "gRPC port (default 50051); 0 picks a free one");
ABSL_FLAG(std::optional<int>, http_port, std::nullopt,
          "HTTP port for metrics, health and the OpenAI API (default 8000); 0 picks a free one");
ABSL_FLAG(std::string, backend, "", "Backend for --model: auto, cpu or cuda");
ABSL_FLAG(bool, disable_pdl, false,
          "CUDA: launch every model's decode kernels in plain stream order, without programmatic dependent "
          "launch (for A/B measurements)");
ABSL_FLAG(std::optional<double>, drain_timeout, std::nullopt,
          "Seconds in-flight calls may take to finish after SIGTERM (default 30)");
ABSL_FLAG(std::optional<double>, engine_stall_timeout, std::nullopt,
          "Seconds an engine may be busy without finishing a step before ternd reports itself not ready "
          "(default 30)");
ABSL_FLAG(std::string, ports_file, "",
          "After startup, write {\"grpc_port\":N,\"http_port\":M,\"pid\":P} here");
ABSL_FLAG(std::optional<std::string>, log_level, std::nullopt,
          "trace, debug, info, warn or error (default info)");
ABSL_FLAG(std::optional<bool>, log_json, std::nullopt, "Log one JSON object per line");
ABSL_FLAG(std::optional<std::string>, sot_router_file, std::nullopt,
          "Trained SoT-R router (models/sot-router/router.json) that DECODING_MODE_AUTO uses");
ABSL_FLAG(bool, no_auth, false, "Serve without API keys even if tenants define them");
ABSL_FLAG(bool, version, false, "Print the version and exit");

namespace {

absl::StatusOr<tern::v1::ServerConfig> BuildConfig() {
  tern::v1::ServerConfig config;
  if (const std::string path = absl::GetFlag(FLAGS_config); !path.empty()) {
    auto loaded = tern::server::LoadServerConfigFile(path);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  auto* listen = config.mutable_listen();
  if (const auto host = absl::GetFlag(FLAGS_host)) {
    listen->set_grpc_host(*host);
    listen->set_http_host(*host);
  }
  if (const auto port = absl::GetFlag(FLAGS_grpc_port)) listen->set_grpc_port(*port);
  if (const auto port = absl::GetFlag(FLAGS_http_port)) listen->set_http_port(*port);
  if (const auto seconds = absl::GetFlag(FLAGS_drain_timeout)) config.set_drain_timeout_seconds(*seconds);
  if (const auto seconds = absl::GetFlag(FLAGS_engine_stall_timeout)) {
    config.set_engine_stall_timeout_seconds(*seconds);
  }
  if (const auto level = absl::GetFlag(FLAGS_log_level)) config.set_log_level(*level);
  if (const auto json = absl::GetFlag(FLAGS_log_json)) config.set_log_json(*json);
  if (const auto router = absl::GetFlag(FLAGS_sot_router_file)) config.set_sot_router_file(*router);
  if (absl::GetFlag(FLAGS_no_auth)) config.mutable_auth()->set_enabled(false);
  for (const std::string& dir : absl::GetFlag(FLAGS_model)) {
    auto* model = config.add_models();
    model->set_path(dir);
    model->set_backend(absl::GetFlag(FLAGS_backend));
  }
  if (absl::GetFlag(FLAGS_disable_pdl)) {
    for (auto& model : *config.mutable_models()) model.set_disable_pdl(true);
  }
  return config;
}

absl::Status WritePortsFile(const std::string& path, int grpc_port, int http_port) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << "{\"grpc_port\":" << grpc_port << ",\"http_port\":" << http_port
        << ",\"pid\":" << getpid() << "}\n";
    if (!out) return absl::FailedPreconditionError(absl::StrCat("cannot write ", temp));
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot write ", path, ": ", ec.message()));
  return absl::OkStatus();
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "ternd: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Signals are taken synchronously by sigwait below; block them before any
  // thread starts so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::SetProgramUsageMessage(
      "the tern inference-serving daemon\n\n"
      "  ternd [--config FILE] [--model DIR]... [--grpc-port N] [--http-port N]\n");
  std::vector<std::string> args =
      tern::base::JoinRepeatedListFlag(tern::base::NormalizeFlagDashes(argc, argv), "model");
  std::vector<char*> arg_ptrs;
  for (auto& arg : args) arg_ptrs.push_back(arg.data());
  const std::vector<char*> positional = absl::ParseCommandLine(static_cast<int>(arg_ptrs.size()),
                                                               arg_ptrs.data());
  if (absl::GetFlag(FLAGS_version)) {
    std::printf("ternd %s (%s)\n", tern::server::BuildVersion().c_str(),
                tern::server::BuildGitSha().c_str());
    return 0;
  }
  if (positional.size() > 1) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("unexpected argument \"", positional[1], "\"; models are given with --model DIR")));
  }

  auto config = BuildConfig();
  if (!config.ok()) return Fail(config.status());
  if (auto status = tern::server::ValidateServerConfig(*config); !status.ok()) return Fail(status);
  if (auto status = tern::server::ConfigureLogging(config->log_level(), config->log_json());
      !status.ok()) {
    return Fail(status);
  }
  spdlog::info("ternd {} ({}) starting", tern::server::BuildVersion(), tern::server::BuildGitSha());

  auto daemon = tern::server::Daemon::Start(*config);
  if (!daemon.ok()) {
    spdlog::error("startup failed: {}", std::string(daemon.status().message()));
    return Fail(daemon.status());
  }
  if (const std::string path = absl::GetFlag(FLAGS_ports_file); !path.empty()) {
    if (auto status = WritePortsFile(path, (*daemon)->grpc_port(), (*daemon)->http_port());
        !status.ok()) {
      (*daemon)->Drain(absl::ZeroDuration());
      return Fail(status);
    }
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  spdlog::info("received {}", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
  (*daemon)->Drain(absl::Seconds(tern::server::EffectiveDrainTimeoutSeconds(*config)));
  const absl::Status fatal = (*daemon)->fatal_error();
  daemon->reset();
  if (!fatal.ok()) {
    // Non-zero, so that Kubernetes (or systemd) restarts a fresh process.
    spdlog::critical("ternd exits after a device failure: {}", std::string(fatal.message()));
    return 2;
  }
  spdlog::info("ternd exited cleanly");
  return 0;
}
