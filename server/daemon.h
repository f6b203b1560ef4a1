// Daemon: everything ternd runs, wired together. main() parses flags into a
// ServerConfig and hands it here; the Daemon owns the models, the gRPC server
// (tern.v1 services, grpc.health.v1, reflection) and the HTTP server
// (/metrics, /healthz, /readyz, the OpenAI-compatible API), both transports
// over one front (server/front/), and drains them on request.
//
// Threads: Start and Drain are called from the main thread; gRPC and HTTP
// run on their own pools.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "server/auth/authenticator.h"
#include "server/http/http_server.h"
#include "server/models/model_registry.h"
#include "server/observability/server_metrics.h"
#include "server/observability/stall_watchdog.h"
#include "server/services/diffusion_service.h"
#include "server/services/llm_service.h"
#include "server/services/models_service.h"
#include "server/front/service_context.h"
#include "server/openai/openai_api.h"
#include "tern/v1/config.pb.h"

namespace tern::server {

// Seams for tests; ternd passes none.
struct DaemonHooks {
  // Wraps each model's runner (fault injection: a step that hangs, say).
  ModelRegistry::RunnerWrapper wrap_runner;
};

class Daemon {
 public:
  // Validates `config`, loads its models, binds both servers and starts
  // serving. Errors name what failed: the config field, the model, or the
  // address that could not be bound.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const tern::v1::ServerConfig& config,
                                                       DaemonHooks hooks = {});
  ~Daemon();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }

  // Ready for traffic: every model loaded, not draining, no model failed,
  // and no engine stalled (scheduler::EngineStats::stalled). /readyz answers
  // with this, checking the engines when asked; gRPC health and tern_ready
  // follow it, a stall within one StallWatchdog interval.
  struct Readiness {
    bool ready = false;
    std::string reason;  // "ready", "draining", "failed" or "stalled: model <name>"
  };
  Readiness CheckReadiness() const;

  // Marks the daemon NOT_SERVING (health and /readyz), stops accepting calls,
  // lets in-flight calls finish for up to `timeout`, cancels the rest, and
  // stops the HTTP server. Idempotent.
  void Drain(absl::Duration timeout);

  // OK, or the device failure of a model that stopped the daemon: it is no
  // longer ready, and main() exits non-zero after draining so that the
  // orchestrator restarts it.
  absl::Status fatal_error() const;

 private:
  Daemon() = default;
  absl::Status StartGrpc();
  absl::Status StartHttp();
  HttpRouter BuildRouter();
  // Engine thread: a model's device failed for good. Marks the daemon not
  // ready and raises SIGTERM, which main() waits for.
  void OnFatal(const std::string& model, const absl::Status& status);
  // Sets gRPC health and tern_ready from serving_ and engines_stalled_.
  void PublishReadiness() ABSL_EXCLUSIVE_LOCKS_REQUIRED(health_mu_);

  tern::v1::ServerConfig config_;
  std::optional<TlsFiles> tls_;  // set: both ports speak TLS only (config `tls`)
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<ModelRegistry> models_;
  ServiceContext services_;
  std::unique_ptr<LlmService> llm_service_;
  std::unique_ptr<ModelsService> models_service_;
  std::unique_ptr<DiffusionService> diffusion_service_;
  std::unique_ptr<openai::OpenAiApi> openai_api_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<HttpServer> http_server_;
  std::unique_ptr<StallWatchdog> watchdog_;
  int grpc_port_ = 0;
  int http_port_ = 0;
  std::atomic<bool> serving_{false};
  absl::Mutex health_mu_;  // orders the updates of gRPC health and tern_ready
  bool engines_stalled_ ABSL_GUARDED_BY(health_mu_) = false;
  mutable absl::Mutex fatal_mu_;
  absl::Status fatal_ ABSL_GUARDED_BY(fatal_mu_);
  bool drained_ = false;
};

}  // namespace tern::server
