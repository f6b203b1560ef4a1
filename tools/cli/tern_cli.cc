// tern: command-line client for ternd over gRPC.
//
//   tern [--target HOST:PORT] [--api-key KEY] [--timeout SECONDS] COMMAND [ARGS]
//
//   health                       SERVING / NOT_SERVING; exit 0 only when serving
//   models                       the served models, one per line
//   tokenize -m MODEL TEXT       the token ids, space-separated
//   detokenize -m MODEL ID...    the text
//   generate -m MODEL [--max-tokens N] [--temperature T] PROMPT
//                                streams the completion to stdout
//   chat -m MODEL [--system TEXT] [--max-tokens N] [--temperature T] MESSAGE
//                                streams the assistant's reply to one user
//                                message (the model's chat template applies)
//
// The target and key may also come from TERN_TARGET and TERN_API_KEY.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tern/v1/llm.grpc.pb.h"
#include "tern/v1/models.grpc.pb.h"

namespace {

struct CliOptions {
  std::string target = "localhost:50051";
  std::string api_key;
  double timeout_seconds = 30;
  std::string command;
  std::string model;
  int max_tokens = 0;
  double temperature = -1;
  std::string system;  // chat: the system message; empty sends none
  std::vector<std::string> args;
};

constexpr const char kUsage[] =
    "usage: tern [--target HOST:PORT] [--api-key KEY] [--timeout S] COMMAND [ARGS]\n"
    "commands:\n"
    "  health                      print SERVING or NOT_SERVING (exit 0 only when serving)\n"
    "  models                      list served models\n"
    "  tokenize -m MODEL TEXT      print token ids, space-separated\n"
    "  detokenize -m MODEL ID...   print the text of token ids\n"
    "  generate -m MODEL [--max-tokens N] [--temperature T] PROMPT\n"
    "  chat -m MODEL [--system TEXT] [--max-tokens N] [--temperature T] MESSAGE\n";

int Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "tern: %s\n", error.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

bool ParseArgs(int argc, char** argv, CliOptions* options, std::string* error) {
  if (const char* env = std::getenv("TERN_TARGET")) options->target = env;
  if (const char* env = std::getenv("TERN_API_KEY")) options->api_key = env;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    const auto eq = arg.find('=');
    const bool has_inline = arg.rfind("--", 0) == 0 && eq != std::string::npos;
    if (has_inline) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    auto take = [&](std::string* out) {
      if (has_inline) {
        *out = value;
        return true;
      }
      if (i + 1 >= argc) {
        *error = arg + " needs a value";
        return false;
      }
      *out = argv[++i];
      return true;
    };
    std::string text;
    if (arg == "--target") {
      if (!take(&options->target)) return false;
    } else if (arg == "--api-key") {
      if (!take(&options->api_key)) return false;
    } else if (arg == "--timeout") {
      if (!take(&text)) return false;
      options->timeout_seconds = std::atof(text.c_str());
    } else if (arg == "-m" || arg == "--model") {
      if (!take(&options->model)) return false;
    } else if (arg == "--max-tokens") {
      if (!take(&text)) return false;
      options->max_tokens = std::atoi(text.c_str());
    } else if (arg == "--temperature") {
      if (!take(&text)) return false;
      options->temperature = std::atof(text.c_str());
    } else if (arg == "--system") {
      if (!take(&options->system)) return false;
    } else if (arg == "-h" || arg == "--help") {
      *error = "";
      return false;
    } else if (arg.size() > 1 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9')) {
      *error = "unknown flag " + arg;
      return false;
    } else if (options->command.empty()) {
      options->command = arg;
    } else {
      options->args.push_back(arg);
    }
  }
  if (options->command.empty()) {
    *error = "no command given";
    return false;
  }
  return true;
}

void Prepare(grpc::ClientContext* context, const CliOptions& options) {
  if (!options.api_key.empty()) context->AddMetadata("authorization", "Bearer " + options.api_key);
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(options.timeout_seconds * 1000)));
}

int ReportError(const grpc::Status& status) {
  static const char* kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                 "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                 "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int code = status.error_code();
  std::fprintf(stderr, "tern: %s: %s\n", code >= 0 && code <= 16 ? kNames[code] : "?",
               status.error_message().c_str());
  return 1;
}

int Health(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  Prepare(&context, options);
  grpc::health::v1::HealthCheckRequest request;
  if (!options.args.empty()) request.set_service(options.args[0]);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    std::puts("NOT_SERVING");
    return ReportError(status);
  }
  const bool serving = response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  std::puts(serving ? "SERVING" : "NOT_SERVING");
  return serving ? 0 : 1;
}

int Models(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options) {
  auto stub = tern::v1::Models::NewStub(channel);
  grpc::ClientContext context;
  Prepare(&context, options);
  tern::v1::ListModelsResponse response;
  const grpc::Status status = stub->ListModels(&context, {}, &response);
  if (!status.ok()) return ReportError(status);
  for (const auto& model : response.models()) {
    std::printf("%s\t%s\t%s\t%s\tcontext=%d\t%s\n", model.name().c_str(), model.architecture().c_str(),
                model.dtype().c_str(), model.backend().c_str(), model.context_length(),
                model.path().c_str());
  }
  return 0;
}

int Tokenize(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options) {
  if (options.model.empty() || options.args.size() != 1) return Usage("tokenize needs -m MODEL and one TEXT");
  auto stub = tern::v1::Llm::NewStub(channel);
  grpc::ClientContext context;
  Prepare(&context, options);
  tern::v1::TokenizeRequest request;
  request.set_model(options.model);
  request.set_text(options.args[0]);
  tern::v1::TokenizeResponse response;
  const grpc::Status status = stub->Tokenize(&context, request, &response);
  if (!status.ok()) return ReportError(status);
  for (int i = 0; i < response.ids_size(); ++i) std::printf(i ? " %d" : "%d", response.ids(i));
  std::printf("\n");
  return 0;
}

int Detokenize(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options) {
  if (options.model.empty()) return Usage("detokenize needs -m MODEL");
  auto stub = tern::v1::Llm::NewStub(channel);
  grpc::ClientContext context;
  Prepare(&context, options);
  tern::v1::DetokenizeRequest request;
  request.set_model(options.model);
  for (const auto& id : options.args) {
    char* end = nullptr;
    const long value = std::strtol(id.c_str(), &end, 10);
    if (end == id.c_str() || *end != '\0') return Usage("\"" + id + "\" is not a token id");
    request.add_ids(static_cast<int32_t>(value));
  }
  tern::v1::DetokenizeResponse response;
  const grpc::Status status = stub->Detokenize(&context, request, &response);
  if (!status.ok()) return ReportError(status);
  std::printf("%s\n", response.text().c_str());
  return 0;
}

// Writes each chunk's text to stdout as it arrives; a newline after a
// stream that ended OK.
int PrintStream(grpc::ClientReaderInterface<tern::v1::GenerateResponse>* reader) {
  tern::v1::GenerateResponse response;
  while (reader->Read(&response)) {
    for (const auto& choice : response.choices()) std::fwrite(choice.text().data(), 1, choice.text().size(), stdout);
    std::fflush(stdout);
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return ReportError(status);
  std::printf("\n");
  return 0;
}

void SetSampling(const CliOptions& options, tern::v1::SamplingParams* sampling) {
  if (options.max_tokens > 0) sampling->set_max_tokens(options.max_tokens);
  if (options.temperature >= 0) sampling->set_temperature(options.temperature);
}

int Generate(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options) {
  if (options.model.empty() || options.args.size() != 1) return Usage("generate needs -m MODEL and one PROMPT");
  auto stub = tern::v1::Llm::NewStub(channel);
  grpc::ClientContext context;
  Prepare(&context, options);
  tern::v1::GenerateRequest request;
  request.set_model(options.model);
  request.set_text(options.args[0]);
  SetSampling(options, request.mutable_sampling());
  return PrintStream(stub->Generate(&context, request).get());
}

int Chat(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options) {
  if (options.model.empty() || options.args.size() != 1) return Usage("chat needs -m MODEL and one MESSAGE");
  auto stub = tern::v1::Llm::NewStub(channel);
  grpc::ClientContext context;
  Prepare(&context, options);
  tern::v1::ChatRequest request;
  request.set_model(options.model);
  if (!options.system.empty()) {
    auto* system = request.add_messages();
    system->set_role("system");
    system->set_content(options.system);
  }
  auto* user = request.add_messages();
  user->set_role("user");
  user->set_content(options.args[0]);
  SetSampling(options, request.mutable_sampling());
  return PrintStream(stub->Chat(&context, request).get());
}

}  // namespace

int main(int argc, char** argv) {
  CliOptions options;
  std::string error;
  if (!ParseArgs(argc, argv, &options, &error)) return Usage(error);
  if (!options.system.empty() && options.command != "chat") return Usage("--system applies to chat only");
  auto channel = grpc::CreateChannel(options.target, grpc::InsecureChannelCredentials());
  if (options.command == "health") return Health(channel, options);
  if (options.command == "models") return Models(channel, options);
  if (options.command == "tokenize") return Tokenize(channel, options);
  if (options.command == "detokenize") return Detokenize(channel, options);
  if (options.command == "generate") return Generate(channel, options);
  if (options.command == "chat") return Chat(channel, options);
  return Usage("unknown command \"" + options.command + "\"");
}
