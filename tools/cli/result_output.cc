#include "tools/cli/result_output.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/json_util.h"
#include "tools/cli/rpc_util.h"

namespace tern::cli {
namespace {

// The proto's JSON mapping with field names as in the .proto and every
// field printed, parsed back for embedding.
nlohmann::json ProtoJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(message, &text, options).ok()) return nullptr;
  return nlohmann::json::parse(text, nullptr, false);
}

std::string Lower(const std::string& name) { return absl::AsciiStrToLower(name); }

nlohmann::json PartJson(tern::v1::ChoicePart part, int index, const PartText& text) {
  return {{"part", tern::v1::ChoicePart_Name(part)},
          {"index", index},
          {"text", text.text},
          {"tokens", text.tokens},
          {"finish_reason", tern::v1::FinishReason_Name(text.finish)}};
}

}  // namespace

std::string SummaryLine(const StreamAssembly& stream) {
  std::string line = "tern:";
  const tern::v1::DecodingMode used = stream.decoding_used();
  absl::StrAppend(&line, " decoding=",
                  used == tern::v1::DECODING_MODE_AUTO
                      ? std::string("unknown")
                      : Lower(tern::v1::DecodingMode_Name(used).substr(std::string("DECODING_MODE_").size())));
  if (stream.has_sot()) {
    const tern::v1::SotReport& sot = stream.sot();
    if (sot.router_decision() == tern::v1::ROUTER_DECISION_NOT_ROUTED) {
      absl::StrAppend(&line, " router=not_routed");
    } else {
      absl::StrAppend(&line, " router=", sot.router().empty() ? "?" : sot.router(), ":",
                      Lower(tern::v1::RouterDecision_Name(sot.router_decision())
                                .substr(std::string("ROUTER_DECISION_").size())),
                      absl::StrFormat(" router_time=%.3fs", sot.router_seconds()));
    }
    // Routed to normal decoding: no skeleton was written, nothing to say about one.
    if (sot.router_decision() != tern::v1::ROUTER_DECISION_NORMAL) {
      absl::StrAppend(&line, " points=", sot.points_size(), " fell_back=", sot.fell_back() ? "yes" : "no",
                      absl::StrFormat(" skeleton=%.2fs expansion=%.2fs", sot.skeleton_seconds(),
                                      sot.expansion_seconds()));
    }
  }
  if (stream.has_usage()) {
    const tern::v1::Usage& usage = stream.usage();
    absl::StrAppend(&line, " prompt_tokens=", usage.prompt_tokens(), " completion_tokens=", usage.completion_tokens(),
                    " cached_prompt_tokens=", usage.cached_prompt_tokens());
  }
  if (stream.ttft_s().has_value()) absl::StrAppend(&line, absl::StrFormat(" ttft=%.2fs", *stream.ttft_s()));
  absl::StrAppend(&line, absl::StrFormat(" elapsed=%.2fs", stream.elapsed_s()));
  return line;
}

nlohmann::json ResultJson(const StreamAssembly& stream, int status_code, const std::string& error) {
  nlohmann::json j;
  j["request_id"] = stream.request_id();
  j["status"] = StatusCodeName(status_code);
  if (status_code != 0) j["error"] = error;
  j["decoding_mode"] = stream.decoding_used() == tern::v1::DECODING_MODE_AUTO
                           ? nlohmann::json(nullptr)
                           : nlohmann::json(tern::v1::DecodingMode_Name(stream.decoding_used()));
  j["text"] = stream.FinalText();
  nlohmann::json parts = nlohmann::json::array();
  if (stream.has_skeleton()) parts.push_back(PartJson(tern::v1::CHOICE_PART_SKELETON, 0, stream.skeleton()));
  for (const auto& [index, part] : stream.points()) parts.push_back(PartJson(tern::v1::CHOICE_PART_POINT, index, part));
  for (const auto& [index, part] : stream.answer()) {
    parts.push_back(PartJson(tern::v1::CHOICE_PART_ANSWER, index, part));
  }
  j["parts"] = std::move(parts);
  j["usage"] = stream.has_usage() ? ProtoJson(stream.usage()) : nlohmann::json(nullptr);
  j["sot"] = stream.has_sot() ? ProtoJson(stream.sot()) : nlohmann::json(nullptr);
  j["ttft_s"] = stream.ttft_s().has_value() ? nlohmann::json(*stream.ttft_s()) : nlohmann::json(nullptr);
  j["elapsed_s"] = stream.elapsed_s();
  return j;
}

}  // namespace tern::cli
