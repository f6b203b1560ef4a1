// generate and chat: the request built from the options (sampling,
// decoding mode, Skeleton-of-Thought options), its stream read to the end
// and shown by a StreamPrinter. Returns the exit status: 0 OK, 1 the server
// failed the call, 2 bad usage.
#pragma once

#include "tern/v1/llm.grpc.pb.h"
#include "tools/cli/cli_options.h"
#include "tools/cli/stream_printer.h"

namespace tern::cli {

// The requests as sent; options.args[0] is the prompt (generate) or the
// user message (chat).
tern::v1::GenerateRequest MakeGenerateRequest(const CliOptions& options);
tern::v1::ChatRequest MakeChatRequest(const CliOptions& options);

int RunGenerate(tern::v1::Llm::StubInterface* stub, const CliOptions& options, const Console& console);
int RunChat(tern::v1::Llm::StubInterface* stub, const CliOptions& options, const Console& console);

}  // namespace tern::cli
