// What every tern command does around a call: the deadline and API key on
// the context, and a failed status printed as "tern: CODE: message".
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "tools/cli/cli_options.h"

namespace tern::cli {

// "OK", "CANCELLED", ..., "UNAUTHENTICATED"; "CODE_<n>" past them.
std::string StatusCodeName(int code);

// Sets the deadline (--timeout) and the authorization header (--api-key).
void PrepareContext(const CliOptions& options, grpc::ClientContext* context);

// The channel's credentials: plaintext, or TLS with --tls-ca (and the
// client certificate of --tls-cert/--tls-key). INVALID_ARGUMENT naming the
// flag when a file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(const CliOptions& options);

// Prints the failed `status` to `err`; returns exit status 1.
int ReportError(const grpc::Status& status, std::FILE* err);

}  // namespace tern::cli
