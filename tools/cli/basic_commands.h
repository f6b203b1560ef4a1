// The one-shot commands: health, models, tokenize, detokenize. Each prints
// its result to stdout (with --json one object: {"status": "OK" or the gRPC
// code, the result's fields, "error" when the call failed}) and returns the
// exit status (0 OK, 1 the server failed the call or is not serving, 2 bad
// usage).
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "grpcpp/grpcpp.h"
#include "tools/cli/cli_options.h"

namespace tern::cli {

int Health(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options);
int Models(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options);
int Tokenize(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options);
int Detokenize(const std::shared_ptr<grpc::Channel>& channel, const CliOptions& options);

// Prints `error` (when not empty) and the usage to `err`; returns 2.
int UsageError(const std::string& error, std::FILE* err = stderr);

}  // namespace tern::cli
