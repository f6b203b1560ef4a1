#include "tools/cli/basic_commands.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tern/v1/llm.grpc.pb.h"
#include "tern/v1/models.grpc.pb.h"
#include "tools/cli/rpc_util.h"

namespace tern::cli {
namespace {

using json = nlohmann::ordered_json;

// --json: one object on stdout, {"status": "OK" or the gRPC code, the
// command's `result` fields, "error": message when the call failed}. A
// failed call also gets its usual line on stderr. Returns the exit status:
// `ok_exit` (0, or 1 for a health check that is not serving) for a
// successful call, else 1.
int PrintJson(const grpc::Status& status, const json& result, int ok_exit = 0) {
  json out = {{"status", StatusCodeName(status.error_code())}};
  for (const auto& [key, value] : result.items()) out[key] = value;
  if (!status.ok()) out["error"] = status.error_message();
  std::puts(out.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
  return status.ok() ? ok_exit : ReportError(status, stderr);
}

// A response message as JSON with its proto field names, every field
// present (an empty list stays an empty list).
json MessageJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(message, &text, options).ok()) return json::object();
  return json::parse(text, nullptr, false);
}

}  // namespace

int UsageError(const std::string& error, std::FILE* err) {
  if (!error.empty()) std::fprintf(err, "tern: %s\n", error.c_str());
  std::fputs(CliUsage(), err);
  return 2;
}

int Health(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  PrepareContext(options, &context);
  grpc::health::v1::HealthCheckRequest request;
  if (!options.args.empty()) request.set_service(options.args[0]);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (options.json) {
    const bool serving = status.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
    const std::string health = status.ok() ? grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status())
                                           : "NOT_SERVING";
    return PrintJson(status, {{"service", request.service()}, {"health", health}}, serving ? 0 : 1);
  }
  if (!status.ok()) {
    std::puts("NOT_SERVING");
    return ReportError(status, stderr);
  }
  const bool serving = response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  std::puts(serving ? "SERVING" : "NOT_SERVING");
  return serving ? 0 : 1;
}

int Models(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options) {
  auto stub = tern::v1::Models::NewStub(channel);
  grpc::ClientContext context;
  PrepareContext(options, &context);
  tern::v1::ListModelsResponse response;
  const grpc::Status status = stub->ListModels(&context, {}, &response);
  if (options.json) return PrintJson(status, status.ok() ? MessageJson(response) : json{{"models", json::array()}});
  if (!status.ok()) return ReportError(status, stderr);
  for (const auto& model : response.models()) {
    std::printf("%s\t%s\t%s\t%s\tcontext=%d\t%s\n", model.name().c_str(), model.architecture().c_str(),
                model.dtype().c_str(), model.backend().c_str(), model.context_length(), model.path().c_str());
  }
  return 0;
}

int Tokenize(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options) {
  if (options.model.empty() || options.args.size() != 1) return UsageError("tokenize needs -m MODEL and one TEXT");
  auto stub = tern::v1::Llm::NewStub(channel);
  grpc::ClientContext context;
  PrepareContext(options, &context);
  tern::v1::TokenizeRequest request;
  request.set_model(options.model);
  request.set_text(options.args[0]);
  tern::v1::TokenizeResponse response;
  const grpc::Status status = stub->Tokenize(&context, request, &response);
  if (options.json) return PrintJson(status, status.ok() ? MessageJson(response) : json::object());
  if (!status.ok()) return ReportError(status, stderr);
  for (int i = 0; i < response.ids_size(); ++i) std::printf(i ? " %d" : "%d", response.ids(i));
  std::printf("\n");
  return 0;
}

int Detokenize(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options) {
  if (options.model.empty()) return UsageError("detokenize needs -m MODEL");
  auto stub = tern::v1::Llm::NewStub(channel);
  grpc::ClientContext context;
  PrepareContext(options, &context);
  tern::v1::DetokenizeRequest request;
  request.set_model(options.model);
  for (const auto& id : options.args) {
    char* end = nullptr;
    const long value = std::strtol(id.c_str(), &end, 10);
    if (end == id.c_str() || *end != '\0') return UsageError("\"" + id + "\" is not a token id");
    request.add_ids(static_cast<int32_t>(value));
  }
  tern::v1::DetokenizeResponse response;
  const grpc::Status status = stub->Detokenize(&context, request, &response);
  if (options.json) return PrintJson(status, status.ok() ? MessageJson(response) : json::object());
  if (!status.ok()) return ReportError(status, stderr);
  std::printf("%s\n", response.text().c_str());
  return 0;
}

}  // namespace tern::cli
