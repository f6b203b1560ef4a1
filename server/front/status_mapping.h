// The one table that says what a tern status means on each transport.
//
// tern's handlers end with an absl::Status. gRPC carries its code as is (both
// follow google.rpc.Code; server/grpc/status_conversion.h). HTTP needs a
// status line and, for the OpenAI-compatible API, an error object
// {"error": {"message", "type", "param", "code"}} whose `type` follows from
// the HTTP status. Errors the HTTP transport finds itself (a body over the
// limit: 413, headers over the limit: 431, no such route: 404) have an HTTP
// status but no tern status; they take their `type` from the same table.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace tern::server {

// The HTTP status of a tern status code (200 for OK):
//   INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE -> 400
//   UNAUTHENTICATED -> 401, PERMISSION_DENIED -> 403, NOT_FOUND -> 404
//   ALREADY_EXISTS, ABORTED -> 409, RESOURCE_EXHAUSTED -> 429,
//   CANCELLED -> 499 (client closed the request), UNIMPLEMENTED -> 501,
//   UNAVAILABLE -> 503, DEADLINE_EXCEEDED -> 504,
//   INTERNAL, UNKNOWN, DATA_LOSS -> 500.
int HttpStatusOf(absl::StatusCode code);

// OpenAI's error `type` for an HTTP status: "invalid_request_error" (400,
// 405, 409, 413, 431 and other 4xx), "authentication_error" (401),
// "permission_error" (403), "not_found_error" (404), "rate_limit_error"
// (429), "timeout_error" (504), "service_unavailable_error" (503),
// "server_error" (other 5xx).
const char* OpenAiErrorType(int http_status);

// The status code's name in lower case ("invalid_argument", "not_found"):
// the OpenAI error's `code` when nothing more specific applies.
std::string StatusCodeSlug(absl::StatusCode code);

}  // namespace tern::server
