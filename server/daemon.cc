#include "server/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "runtime/base/status_macros.h"
#include "server/config/server_config.h"
#include "server/observability/device_collector.h"
#include "server/observability/engine_collector.h"
#include "server/observability/model_info_collector.h"
#include "spdlog/spdlog.h"

namespace tern::server {
namespace {

std::string HostPort(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return ipv6 ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
}

constexpr const char* kServiceNames[] = {"tern.v1.Llm", "tern.v1.Models", "tern.v1.Diffusion"};

// "3.9 GiB", "812.0 MiB", "96.0 KiB", "512 B".
std::string HumanBytes(size_t bytes) {
  constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double value = double(bytes) / 1024;
  int unit = 0;
  while (value >= 1024 && unit + 1 < 4) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

// The start-up line of one model: what it is, what its weights hold in the
// backend's memory and in which scheme, and (LLMs) the KV cache's tokens.
void LogModelReady(const ServedModel& model) {
  const tern::v1::ModelInfo& info = model.info;
  std::string memory;
  if (model.engine != nullptr) {
    memory = absl::StrCat(" weights=", HumanBytes(model.weight_bytes), " (", info.weight_scheme(),
                          ") kv_cache=", model.kv_cache_capacity_tokens, " tokens");
  } else {
    memory = absl::StrCat(" weights=", HumanBytes(model.weight_bytes), " (", info.weight_scheme(), ")");
  }
  spdlog::info("model {} ready: {} {} backend={} context={} params={}{} path={}", info.name(), info.architecture(),
               info.dtype(), info.backend(), info.context_length(), info.num_parameters(), memory, info.path());
}

}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const tern::v1::ServerConfig& config, DaemonHooks hooks) {
  RETURN_IF_ERROR(ValidateServerConfig(config));
  std::unique_ptr<Daemon> daemon(new Daemon());
  daemon->config_ = config;
  // TLS files are checked before any model loads: a bad certificate stops
  // start-up at once, naming the field.
  if (TlsConfigured(config)) {
    ASSIGN_OR_RETURN(daemon->tls_, LoadTlsFiles(config.tls()));
  }
  daemon->metrics_ = std::make_unique<ServerMetrics>(config.limits().max_tenant_label_values() > 0
                                                         ? config.limits().max_tenant_label_values()
                                                         : kDefaultMaxTenantLabelValues);
  daemon->authenticator_ = Authenticator::FromConfig(config);
  Daemon* self = daemon.get();
  ASSIGN_OR_RETURN(daemon->models_,
                   ModelRegistry::Create(
                       config,
                       [self](const std::string& model, const absl::Status& status) { self->OnFatal(model, status); },
                       std::move(hooks.wrap_runner)));
  daemon->metrics_->SetModelsLoaded(static_cast<int>(daemon->models_->size()));
  daemon->metrics_->AddCollectable(std::make_shared<EngineCollector>(daemon->models_.get()));
  daemon->metrics_->AddCollectable(std::make_shared<DeviceCollector>(daemon->models_.get()));
  daemon->metrics_->AddCollectable(std::make_shared<ModelInfoCollector>(daemon->models_.get()));
  for (const ServedModel* model : daemon->models_->All()) LogModelReady(*model);

  daemon->services_.models = daemon->models_.get();
  daemon->services_.authenticator = daemon->authenticator_.get();
  daemon->services_.metrics = daemon->metrics_.get();
  daemon->services_.limits = RequestLimits::FromConfig(config.limits());
  daemon->llm_service_ = std::make_unique<LlmService>(daemon->services_);
  daemon->models_service_ = std::make_unique<ModelsService>(daemon->services_);
  daemon->diffusion_service_ = std::make_unique<DiffusionService>(daemon->services_);
  daemon->openai_api_ = std::make_unique<openai::OpenAiApi>(daemon->services_);

  RETURN_IF_ERROR(daemon->StartHttp());
  RETURN_IF_ERROR(daemon->StartGrpc());
  daemon->serving_ = true;
  {
    absl::MutexLock lock(&daemon->health_mu_);
    daemon->PublishReadiness();
  }
  std::vector<StallWatchdog::Watched> watched;
  for (const ServedModel* model : daemon->models_->All()) {
    if (model->engine != nullptr) watched.push_back({model->info.name(), model->engine.get()});
  }
  daemon->watchdog_ = std::make_unique<StallWatchdog>(std::move(watched), daemon->metrics_.get(), [self](bool stalled) {
    absl::MutexLock lock(&self->health_mu_);
    self->engines_stalled_ = stalled;
    self->PublishReadiness();
  });
  const absl::Duration stall_timeout = absl::Seconds(EffectiveEngineStallTimeoutSeconds(config));
  daemon->watchdog_->Start(StallWatchdog::IntervalFor(stall_timeout));
  spdlog::info("ternd serving: gRPC on {}, HTTP{} on {}, auth {}, tls {}, {} model(s)",
               HostPort(EffectiveGrpcHost(config), daemon->grpc_port_), daemon->tls_ ? "S" : "",
               HostPort(EffectiveHttpHost(config), daemon->http_port_),
               daemon->authenticator_->enabled() ? "on" : "off",
               !daemon->tls_ ? "off" : daemon->tls_->mutual() ? "mutual" : "on", daemon->models_->size());
  return daemon;
}

void Daemon::OnFatal(const std::string& model, const absl::Status& status) {
  {
    absl::MutexLock lock(&fatal_mu_);
    if (!fatal_.ok()) return;
    fatal_ = absl::Status(status.code(), absl::StrCat("model ", model, ": ", status.message()));
  }
  serving_ = false;
  {
    absl::MutexLock lock(&health_mu_);
    PublishReadiness();
  }
  spdlog::critical("model {} failed: {}; ternd stops serving and exits", model, std::string(status.message()));
  // main() sleeps in sigwait: wake it to drain and exit non-zero.
  kill(getpid(), SIGTERM);
}

void Daemon::PublishReadiness() {
  const bool ready = serving_.load() && !engines_stalled_;
  if (grpc_server_ != nullptr) {
    auto* health = grpc_server_->GetHealthCheckService();
    health->SetServingStatus(ready);
    for (const char* service : kServiceNames) health->SetServingStatus(service, ready);
  }
  metrics_->SetReady(ready);
}

Daemon::Readiness Daemon::CheckReadiness() const {
  if (!serving_.load()) return {false, fatal_error().ok() ? "draining" : "failed"};
  for (const ServedModel* model : models_->All()) {
    if (model->engine != nullptr && model->engine->Stats().stalled) {
      return {false, absl::StrCat("stalled: model ", model->info.name())};
    }
  }
  return {true, "ready"};
}

absl::Status Daemon::fatal_error() const {
  absl::MutexLock lock(&fatal_mu_);
  return fatal_;
}

absl::Status Daemon::StartGrpc() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Without this, Linux lets a second ternd bind the same port and steal
  // half its calls; a port in use must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  const std::string address = HostPort(EffectiveGrpcHost(config_), EffectiveGrpcPort(config_));
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (tls_.has_value()) {
    // Mutual TLS: the client's certificate must chain to the client CA.
    grpc::SslServerCredentialsOptions ssl(tls_->mutual() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                                         : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ssl.pem_root_certs = tls_->client_ca_pem;
    ssl.pem_key_cert_pairs.push_back({tls_->private_key_pem, tls_->cert_chain_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  builder.AddListeningPort(address, credentials, &grpc_port_);
  builder.RegisterService(llm_service_.get());
  builder.RegisterService(models_service_.get());
  builder.RegisterService(diffusion_service_.get());
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || grpc_port_ == 0) {
    grpc_server_.reset();
    return absl::FailedPreconditionError(
        absl::StrCat("cannot listen for gRPC on ", address, " (address in use or not local?)"));
  }
  return absl::OkStatus();
}

HttpRouter Daemon::BuildRouter() {
  HttpRouter router;
  router.Handle("GET", "/metrics", [this](const HttpRequest&) {
    metrics_->RecordHttp("/metrics", 200);
    HttpResponse response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = metrics_->Scrape();
    return response;
  });
  router.Handle("GET", "/healthz", [this](const HttpRequest&) {
    metrics_->RecordHttp("/healthz", 200);
    return HttpResponse{200, "text/plain; charset=utf-8", "ok\n", {}};
  });
  router.Handle("GET", "/readyz", [this](const HttpRequest&) {
    const Readiness readiness = CheckReadiness();
    const int code = readiness.ready ? 200 : 503;
    metrics_->RecordHttp("/readyz", code);
    return HttpResponse{code, "text/plain; charset=utf-8", readiness.reason + "\n", {}};
  });
  openai_api_->Register(router);
  return router;
}

absl::Status Daemon::StartHttp() {
  HttpServer::Options options;
  options.host = EffectiveHttpHost(config_);
  options.port = EffectiveHttpPort(config_);
  // Streams are written from these threads (formatting included), never
  // from the engines'.
  options.num_threads = 4;
  options.tls = tls_;
  ASSIGN_OR_RETURN(http_server_, HttpServer::Start(options, BuildRouter()));
  http_port_ = http_server_->port();
  return absl::OkStatus();
}

void Daemon::Drain(absl::Duration timeout) {
  if (drained_) return;
  drained_ = true;
  serving_ = false;
  spdlog::info("draining: no new calls; waiting up to {:.1f}s for in-flight calls",
               absl::ToDoubleSeconds(timeout));
  const absl::Time deadline = absl::Now() + timeout;
  if (watchdog_ != nullptr) watchdog_->Stop();
  if (metrics_ != nullptr) {
    absl::MutexLock lock(&health_mu_);
    PublishReadiness();
  }
  // Engines first: they refuse new requests, finish in-flight ones until the
  // deadline and abort the rest, which ends every open stream.
  if (models_ != nullptr) models_->DrainEngines(timeout);
  if (grpc_server_ != nullptr) {
    grpc_server_->Shutdown(absl::ToChronoTime(std::max(deadline, absl::Now() + absl::Seconds(1))));
    grpc_server_->Wait();
  }
  // Streams of the OpenAI API have ended in the engines; let their last
  // chunks reach the clients.
  if (http_server_ != nullptr) http_server_->Stop(std::max(deadline - absl::Now(), absl::Seconds(1)));
  spdlog::info("drained");
}

Daemon::~Daemon() { Drain(absl::ZeroDuration()); }

}  // namespace tern::server
