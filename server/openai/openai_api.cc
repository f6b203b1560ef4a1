#include "server/openai/openai_api.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/front/call_scope.h"
#include "server/front/generation.h"
#include "server/front/image_generation.h"
#include "server/observability/diffusion_metrics.h"
#include "server/openai/openai_request.h"
#include "server/openai/openai_response.h"
#include "server/services/image_stream.h"

namespace tern::server::openai {
namespace {

using json = nlohmann::ordered_json;

constexpr char kChatRoute[] = "/v1/chat/completions";
constexpr char kCompletionsRoute[] = "/v1/completions";
constexpr char kModelsRoute[] = "/v1/models";
constexpr char kModelPrefix[] = "/v1/models/";
constexpr char kImagesRoute[] = "/v1/images/generations";

CallInfo HttpCallInfo(const HttpRequest& request, const char* route) {
  CallInfo info;
  info.transport = Transport::kHttp;
  info.method = route;
  info.peer = request.peer;
  info.authorization = request.Header("authorization");
  info.request_id = request.Header("x-request-id");
  return info;
}

HttpResponse JsonResponse(const json& body, const std::string& request_id) {
  HttpResponse response;
  response.content_type = "application/json";
  response.body = Dump(body);
  response.headers.emplace_back("x-request-id", request_id);
  return response;
}

// Ends a call that never reached an engine: the error response, then the
// call's log line and metrics.
void Reject(CallScope& scope, HttpExchange& exchange, const absl::Status& status) {
  HttpResponse response = ErrorResponse(status);
  response.headers.emplace_back("x-request-id", scope.request_id());
  exchange.Respond(std::move(response));
  scope.Finish(status).IgnoreError();
}

// "%2F" -> "/": model names in paths may be percent-encoded.
std::string PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto hex = [](char ch) -> int {
      if (ch >= '0' && ch <= '9') return ch - '0';
      if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
      if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
      return -1;
    };
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

json ModelObject(const tern::v1::ModelInfo& info, int64_t created) {
  return {{"id", info.name()},
          {"object", "model"},
          {"created", created},
          {"owned_by", "tern"},
          {"max_model_len", info.context_length()}};
}

// The HTTP end of one Generate/Chat stream: the GenerationStream's consumer.
// Messages are formatted and written on the connection's strand. The call
// keeps itself alive (self_) from Start until its stream has ended, like a
// gRPC reactor until OnDone.
class OpenAiCall final : public StreamConsumer, public std::enable_shared_from_this<OpenAiCall> {
 public:
  static void Start(CallScope scope, PreparedGeneration call, Endpoint endpoint, ResponseOptions options,
                    std::shared_ptr<HttpExchange> exchange) {
    const std::string prefix = endpoint == Endpoint::kChatCompletions ? "chatcmpl-" : "cmpl-";
    auto self = std::make_shared<OpenAiCall>(std::move(scope), endpoint, options, std::move(exchange),
                                             call.model->engine.get(),
                                             scheduler::RequestKey{call.request.tenant->name, call.request.request_id},
                                             ResponseAssembler(endpoint, prefix + call.request.request_id,
                                                               call.model->info.name(), absl::ToUnixSeconds(absl::Now()),
                                                               options, call.model->tokenizer.get()));
    self->self_ = self;
    self->stream_ = NewGenerationStream(call, &self->scope_.services().metrics->requests());
    self->exchange_->OnClientGone([weak = std::weak_ptr<OpenAiCall>(self)] {
      if (auto call = weak.lock()) {
        call->client_gone_ = true;
        call->Cancel();
      }
    });
    if (StartGeneration(std::move(call), self->stream_, self.get())) {
      self->accepted_ = true;
      if (self->cancelled_) self->engine_->Cancel(self->key_);
    }
  }

  OpenAiCall(CallScope scope, Endpoint endpoint, ResponseOptions options, std::shared_ptr<HttpExchange> exchange,
             scheduler::Engine* engine, scheduler::RequestKey key, ResponseAssembler assembler)
      : scope_(std::move(scope)),
        endpoint_(endpoint),
        options_(options),
        exchange_(std::move(exchange)),
        engine_(engine),
        key_(std::move(key)),
        request_id_(key_.id),
        assembler_(std::move(assembler)) {}

 private:
  // StreamConsumer: called with the stream's mutex held; hop onto the strand.
  void StartWrite(const tern::v1::GenerateResponse* message) override {
    // `message` stays valid until OnWriteDone.
    exchange_->Post([self = shared_from_this(), message] { self->Write(*message); });
  }
  void Finish(const absl::Status& status) override {
    exchange_->Post([self = shared_from_this(), status] { self->End(status); });
  }

  void Write(const tern::v1::GenerateResponse& message) {
    if (!options_.stream) {
      assembler_.Add(message);
      stream_->OnWriteDone(true);
      return;
    }
    std::string events = assembler_.Events(message);
    if (events.empty()) {
      stream_->OnWriteDone(true);
      return;
    }
    OpenStream();
    exchange_->Write(std::move(events), [self = shared_from_this()](bool ok) {
      if (!ok) self->Cancel();  // the client is gone: stop generating for it
      self->stream_->OnWriteDone(ok);
    });
  }

  void End(const absl::Status& status) {
    const absl::Status outcome = InOpenAiTerms(status, endpoint_);
    if (!options_.stream || (!stream_open_ && !outcome.ok())) {
      if (outcome.ok()) {
        exchange_->Respond(JsonResponse(assembler_.Body(), request_id_));
      } else {
        HttpResponse response = ErrorResponse(outcome);
        response.headers.emplace_back("x-request-id", request_id_);
        exchange_->Respond(std::move(response));
      }
    } else {
      OpenStream();
      exchange_->Write(outcome.ok() ? assembler_.EndEvents() : assembler_.ErrorEvents(outcome), nullptr);
      exchange_->EndStream();
    }
    scope_.Finish(client_gone_ ? absl::CancelledError("the client closed the connection") : outcome).IgnoreError();
    stream_->Detach();
    self_.reset();  // the posted task that runs End holds the last reference
  }

  void OpenStream() {
    if (stream_open_) return;
    stream_open_ = true;
    HttpResponse head;
    head.content_type = "text/event-stream";
    head.headers = {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}, {"x-request-id", request_id_}};
    exchange_->StartStream(std::move(head));
  }

  // Only a request the engine took (a rejected call's id may name another
  // request of the same tenant), and once: a client that leaves and a write
  // that fails both call it, and a second cancel could reach a later request
  // of the same tenant and id.
  void Cancel() {
    if (cancelled_.exchange(true)) return;
    if (accepted_) engine_->Cancel(key_);
  }

  CallScope scope_;
  const Endpoint endpoint_;
  const ResponseOptions options_;
  std::shared_ptr<HttpExchange> exchange_;
  scheduler::Engine* engine_;
  const scheduler::RequestKey key_;  // the tenant's name and the request id
  const std::string request_id_;
  std::atomic<bool> accepted_{false};   // the engine took the request
  std::atomic<bool> cancelled_{false};  // the client went away (sent once accepted)
  // Strand only.
  ResponseAssembler assembler_;
  bool stream_open_ = false;
  std::shared_ptr<GenerationStream> stream_;
  std::shared_ptr<OpenAiCall> self_;
  std::atomic<bool> client_gone_{false};
};

// The HTTP end of one image request: the ImageStream's consumer. Images are
// collected as they come (progress events are dropped) and answered at the
// end as one JSON body, on the connection's strand. Alive (self_) from Start
// until the stream has ended.
class OpenAiImageCall final : public ImageConsumer, public std::enable_shared_from_this<OpenAiImageCall> {
 public:
  static void Start(CallScope scope, PreparedImage call, std::shared_ptr<HttpExchange> exchange) {
    const std::string model = call.model->info.name();
    const std::string tenant = scope.tenant();
    DiffusionMetrics* metrics = scope.services().metrics != nullptr ? &scope.services().metrics->diffusion() : nullptr;
    scheduler::DiffusionEngine* engine = call.model->diffusion->engine.get();
    auto self = std::make_shared<OpenAiImageCall>(std::move(scope), std::move(exchange), engine,
                                                  scheduler::RequestKey{call.request.tenant->name, call.request.request_id});
    self->self_ = self;
    self->stream_ = std::make_shared<ImageStream>(call.request.request_id, model, tenant, metrics);
    self->exchange_->OnClientGone([weak = std::weak_ptr<OpenAiImageCall>(self)] {
      if (auto call = weak.lock()) {
        call->client_gone_ = true;
        call->Cancel();
      }
    });
    if (SubmitImages(engine, std::move(call.request), self->stream_)) {
      self->accepted_ = true;
      if (self->cancelled_) engine->Cancel(self->key_);
    }
    self->stream_->Attach(self.get());
  }

  OpenAiImageCall(CallScope scope, std::shared_ptr<HttpExchange> exchange, scheduler::DiffusionEngine* engine,
                  scheduler::RequestKey key)
      : scope_(std::move(scope)),
        exchange_(std::move(exchange)),
        engine_(engine),
        key_(std::move(key)),
        created_(absl::ToUnixSeconds(absl::Now())) {}

 private:
  // ImageConsumer: called with the stream's mutex held; hop onto the strand.
  void StartWrite(const tern::v1::GenerateImageResponse* message) override {
    exchange_->Post([self = shared_from_this(), message] {
      if (message->has_image()) self->images_.push_back(message->image());
      self->stream_->OnWriteDone(true);
    });
  }
  void Finish(const absl::Status& status) override {
    exchange_->Post([self = shared_from_this(), status] { self->End(status); });
  }

  void End(const absl::Status& status) {
    const absl::Status outcome = InOpenAiTerms(status, Endpoint::kImageGenerations);
    HttpResponse response;
    if (outcome.ok()) {
      std::sort(images_.begin(), images_.end(),
                [](const auto& a, const auto& b) { return a.index() < b.index(); });
      response.content_type = "application/json";
      response.body = Dump(ImagesBody(created_, images_));
    } else {
      response = ErrorResponse(outcome);
    }
    response.headers.emplace_back("x-request-id", key_.id);
    exchange_->Respond(std::move(response));
    scope_.Finish(client_gone_ ? absl::CancelledError("the client closed the connection") : outcome).IgnoreError();
    stream_->Detach();
    self_.reset();  // the posted task that runs End holds the last reference
  }

  // Once: both a client that leaves and a write that fails call it, and a
  // second cancel could reach a later request of the same tenant and id.
  void Cancel() {
    if (cancelled_.exchange(true)) return;
    if (accepted_) engine_->Cancel(key_);
  }

  CallScope scope_;
  std::shared_ptr<HttpExchange> exchange_;
  scheduler::DiffusionEngine* engine_;
  const scheduler::RequestKey key_;  // the tenant's name and the request id
  const int64_t created_;
  std::atomic<bool> accepted_{false};   // the engine took the request
  std::atomic<bool> cancelled_{false};  // the client went away (sent once accepted)
  std::atomic<bool> client_gone_{false};
  // Strand only.
  std::vector<tern::v1::GeneratedImage> images_;
  std::shared_ptr<ImageStream> stream_;
  std::shared_ptr<OpenAiImageCall> self_;
};

}  // namespace

OpenAiApi::OpenAiApi(const ServiceContext& services)
    : services_(services), created_(absl::ToUnixSeconds(absl::Now())) {}

void OpenAiApi::Register(HttpRouter& router) const {
  router.HandleAsync("POST", kChatRoute, [this](const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) {
    Completions(request, std::move(exchange), /*chat=*/true);
  });
  router.HandleAsync("POST", kCompletionsRoute,
                     [this](const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) {
                       Completions(request, std::move(exchange), /*chat=*/false);
                     });
  router.HandleAsync("GET", kModelsRoute, [this](const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) {
    ListModels(request, std::move(exchange));
  });
  router.HandlePrefix("GET", kModelPrefix, [this](const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) {
    RetrieveModel(request, std::move(exchange));
  });
  router.HandleAsync("POST", kImagesRoute, [this](const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) {
    ImageGenerations(request, std::move(exchange));
  });
  ServerMetrics* metrics = services_.metrics;
  router.SetErrorResponder([metrics](int status, const std::string& message) {
    if (metrics != nullptr) metrics->RecordHttp("other", status);
    return TransportErrorResponse(status, message);
  });
}

void OpenAiApi::Completions(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange, bool chat) const {
  const Endpoint endpoint = chat ? Endpoint::kChatCompletions : Endpoint::kCompletions;
  CallScope scope(services_, HttpCallInfo(request, chat ? kChatRoute : kCompletionsRoute));
  scope.AssignRequestId("");
  // The key first: a caller without one learns nothing about the body.
  if (auto tenant = scope.Authenticate(); !tenant.ok()) return Reject(scope, *exchange, tenant.status());
  ResponseOptions options;
  absl::StatusOr<PreparedGeneration> call;
  if (chat) {
    absl::StatusOr<ChatCompletionRequest> parsed = ParseChatCompletionRequest(request.body);
    if (!parsed.ok()) return Reject(scope, *exchange, parsed.status());
    options = parsed->options;
    call = PrepareChat(scope, parsed->request);
  } else {
    absl::StatusOr<CompletionRequest> parsed = ParseCompletionRequest(request.body);
    if (!parsed.ok()) return Reject(scope, *exchange, parsed.status());
    options = parsed->options;
    call = PrepareGenerate(scope, parsed->request);
  }
  if (!call.ok()) return Reject(scope, *exchange, InOpenAiTerms(call.status(), endpoint));
  OpenAiCall::Start(std::move(scope), *std::move(call), endpoint, options, std::move(exchange));
}

void OpenAiApi::ListModels(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) const {
  CallScope scope(services_, HttpCallInfo(request, kModelsRoute));
  scope.AssignRequestId("");
  absl::StatusOr<const scheduler::Tenant*> tenant = scope.Authenticate();
  if (!tenant.ok()) return Reject(scope, *exchange, tenant.status());
  json data = json::array();
  for (const tern::v1::ModelInfo& info : ModelsVisibleTo(services_, **tenant)) {
    data.push_back(ModelObject(info, created_));
  }
  exchange->Respond(JsonResponse({{"object", "list"}, {"data", std::move(data)}}, scope.request_id()));
  scope.Finish(absl::OkStatus()).IgnoreError();
}

void OpenAiApi::RetrieveModel(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) const {
  CallScope scope(services_, HttpCallInfo(request, "/v1/models/{model}"));
  scope.AssignRequestId("");
  absl::StatusOr<const scheduler::Tenant*> tenant = scope.Authenticate();
  if (!tenant.ok()) return Reject(scope, *exchange, tenant.status());
  const std::string name = PercentDecode(std::string_view(request.path).substr(std::string_view(kModelPrefix).size()));
  absl::StatusOr<const ServedModel*> model = FindModelVisibleTo(services_, **tenant, name);
  if (!model.ok()) return Reject(scope, *exchange, model.status());
  exchange->Respond(JsonResponse(ModelObject((*model)->info, created_), scope.request_id()));
  scope.Finish(absl::OkStatus()).IgnoreError();
}

void OpenAiApi::ImageGenerations(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) const {
  CallScope scope(services_, HttpCallInfo(request, kImagesRoute));
  scope.AssignRequestId("");
  // The key first: a caller without one learns nothing about the body.
  if (auto tenant = scope.Authenticate(); !tenant.ok()) return Reject(scope, *exchange, tenant.status());
  absl::StatusOr<tern::v1::GenerateImageRequest> parsed = ParseImageGenerationRequest(request.body);
  if (!parsed.ok()) return Reject(scope, *exchange, parsed.status());
  absl::StatusOr<PreparedImage> call = PrepareImage(scope, *parsed);
  if (!call.ok()) return Reject(scope, *exchange, InOpenAiTerms(call.status(), Endpoint::kImageGenerations));
  OpenAiImageCall::Start(std::move(scope), *std::move(call), std::move(exchange));
}

}  // namespace tern::server::openai
