// What generate and chat print about a finished stream besides its text: the
// one-line summary (stderr) and the --json object (stdout). Pure.
#pragma once

#include <string>

#include "nlohmann/json.hpp"
#include "tools/cli/stream_assembly.h"

namespace tern::cli {

// "tern: decoding=skeleton_of_thought router=trained:skeleton_of_thought
// points=4 fell_back=no skeleton=0.41s expansion=1.20s prompt_tokens=31
// completion_tokens=412 cached_prompt_tokens=0 ttft=0.05s elapsed=1.70s",
// key=value pairs on one line; the router keys only when the stream carried
// a SotReport, and the points and phase times only when the router did not
// choose normal decoding.
std::string SummaryLine(const StreamAssembly& stream);

// One object: request_id, status (the gRPC code name) and error (when not
// OK), decoding_mode (the proto enum name the server reported, or null),
// text (StreamAssembly::FinalText), parts (skeleton, points, answer: part,
// index, text, tokens, finish_reason), usage and sot (protobuf's JSON
// mapping with the proto field names, or null), ttft_s, elapsed_s.
nlohmann::json ResultJson(const StreamAssembly& stream, int status_code, const std::string& error);

}  // namespace tern::cli
