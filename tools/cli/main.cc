// tern: command-line client for ternd over gRPC.
//
//   tern [--target HOST:PORT] [--api-key KEY] [--timeout SECONDS]
//        [--tls-ca CA [--tls-cert CERT --tls-key KEY]] COMMAND [ARGS]
//
//   health                       SERVING / NOT_SERVING; exit 0 only when serving
//   models                       the served models, one per line
//   tokenize -m MODEL TEXT       the token ids, space-separated
//   detokenize -m MODEL ID...    the text
//   generate -m MODEL [OPTIONS] PROMPT
//                                streams the completion to stdout
//   chat -m MODEL [--system TEXT] [OPTIONS] MESSAGE
//                                streams the assistant's reply to one user
//                                message (the model's chat template applies)
//   image -m MODEL (--class NAME | --class-label N | PROMPT) [-o FILE]
//                                generates images into PNG files
//
// generate and chat take --mode auto|sot|normal and the Skeleton-of-Thought
// options; see tools/cli/README.md. The target and key may also come from
// TERN_TARGET and TERN_API_KEY. Exit status: 0 OK, 1 the server failed the
// call (or is not serving), 2 bad usage.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "tools/cli/basic_commands.h"
#include "tools/cli/cli_options.h"
#include "tools/cli/generate_command.h"
#include "tools/cli/image_command.h"
#include "tools/cli/live_region.h"
#include "tools/cli/rpc_util.h"

int main(int argc, char** argv) {
  using namespace tern::cli;
  CliOptions defaults;
  if (const char* env = std::getenv("TERN_TARGET")) defaults.target = env;
  if (const char* env = std::getenv("TERN_API_KEY")) defaults.api_key = env;
  bool help = false;
  absl::StatusOr<CliOptions> parsed = ParseCliArgs(std::vector<std::string>(argv + 1, argv + argc), defaults, &help);
  if (help) {
    std::fputs(CliUsage(), stdout);
    return 0;
  }
  if (!parsed.ok()) return UsageError(std::string(parsed.status().message()));
  const CliOptions& options = *parsed;

  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials = ChannelCredentials(options);
  if (!credentials.ok()) return UsageError(std::string(credentials.status().message()));
  auto channel = grpc::CreateChannel(options.target, *credentials);
  if (options.command == "health") return Health(channel, options);
  if (options.command == "models") return Models(channel, options);
  if (options.command == "tokenize") return Tokenize(channel, options);
  if (options.command == "detokenize") return Detokenize(channel, options);
  if (options.command == "generate" || options.command == "chat") {
    Console console;
    // The live view needs a terminal that understands cursor movement.
    const char* term = std::getenv("TERM");
    const bool dumb = term == nullptr || std::string(term) == "dumb";
    console.out_is_tty = isatty(STDOUT_FILENO) && !dumb;
    console.err_is_tty = isatty(STDERR_FILENO);
    console.terminal_size = [] { return TerminalSize(STDOUT_FILENO).value_or(FrameSize{}); };
    auto stub = tern::v1::Llm::NewStub(channel);
    return options.command == "generate" ? RunGenerate(stub.get(), options, console)
                                         : RunChat(stub.get(), options, console);
  }
  if (options.command == "image") {
    Console console;
    console.err_is_tty = isatty(STDERR_FILENO);
    console.terminal_size = [] { return TerminalSize(STDERR_FILENO).value_or(FrameSize{}); };
    auto stub = tern::v1::Diffusion::NewStub(channel);
    return RunImage(stub.get(), options, console);
  }
  return UsageError("unknown command \"" + options.command + "\"");
}
