#include "tools/cli/generate_command.h"

#include <memory>
#include <optional>

#include "tools/cli/basic_commands.h"
#include "tools/cli/rpc_util.h"

namespace tern::cli {
namespace {

tern::v1::DecodingMode ToProto(ModeFlag mode) {
  switch (mode) {
    case ModeFlag::kAuto: return tern::v1::DECODING_MODE_AUTO;
    case ModeFlag::kSot: return tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT;
    case ModeFlag::kNormal: return tern::v1::DECODING_MODE_NORMAL;
  }
  return tern::v1::DECODING_MODE_AUTO;
}

void SetSampling(const CliOptions& options, tern::v1::SamplingParams* sampling) {
  if (options.max_tokens.has_value()) sampling->set_max_tokens(*options.max_tokens);
  if (options.temperature.has_value()) sampling->set_temperature(*options.temperature);
}

// The Skeleton-of-Thought options; none when no flag gives one, so a plain
// request stays plain on the wire.
std::optional<tern::v1::SkeletonOfThought> SotOptions(const CliOptions& options) {
  if (options.outline.empty() && !options.ordered && !options.max_point_tokens.has_value()) return std::nullopt;
  tern::v1::SkeletonOfThought sot;
  for (const std::string& point : options.outline) sot.add_outline(point);
  sot.set_ordered(options.ordered);
  if (options.max_point_tokens.has_value()) sot.set_max_point_tokens(*options.max_point_tokens);
  return sot;
}

int ReadStream(grpc::ClientReaderInterface<tern::v1::GenerateResponse>* reader, StreamPrinter* printer) {
  tern::v1::GenerateResponse response;
  while (reader->Read(&response)) printer->OnMessage(response, Clock::now());
  return printer->Finish(reader->Finish(), Clock::now());
}

}  // namespace

tern::v1::GenerateRequest MakeGenerateRequest(const CliOptions& options) {
  tern::v1::GenerateRequest request;
  request.set_model(options.model);
  request.set_text(options.args.at(0));
  SetSampling(options, request.mutable_sampling());
  request.set_decoding_mode(ToProto(options.mode));
  if (std::optional<tern::v1::SkeletonOfThought> sot = SotOptions(options)) *request.mutable_sot() = *std::move(sot);
  return request;
}

tern::v1::ChatRequest MakeChatRequest(const CliOptions& options) {
  tern::v1::ChatRequest request;
  request.set_model(options.model);
  if (!options.system.empty()) {
    tern::v1::ChatMessage* system = request.add_messages();
    system->set_role("system");
    system->set_content(options.system);
  }
  tern::v1::ChatMessage* user = request.add_messages();
  user->set_role("user");
  user->set_content(options.args.at(0));
  SetSampling(options, request.mutable_sampling());
  request.set_decoding_mode(ToProto(options.mode));
  if (std::optional<tern::v1::SkeletonOfThought> sot = SotOptions(options)) *request.mutable_sot() = *std::move(sot);
  return request;
}

int RunGenerate(tern::v1::Llm::StubInterface* stub, const CliOptions& options, const Console& console) {
  if (options.model.empty() || options.args.size() != 1) {
    return UsageError("generate needs -m MODEL and one PROMPT", console.err);
  }
  const tern::v1::GenerateRequest request = MakeGenerateRequest(options);
  grpc::ClientContext context;
  PrepareContext(options, &context);
  StreamPrinter printer(console, options.json, options.outline, Clock::now());
  return ReadStream(stub->Generate(&context, request).get(), &printer);
}

int RunChat(tern::v1::Llm::StubInterface* stub, const CliOptions& options, const Console& console) {
  if (options.model.empty() || options.args.size() != 1) {
    return UsageError("chat needs -m MODEL and one MESSAGE", console.err);
  }
  const tern::v1::ChatRequest request = MakeChatRequest(options);
  grpc::ClientContext context;
  PrepareContext(options, &context);
  StreamPrinter printer(console, options.json, options.outline, Clock::now());
  return ReadStream(stub->Chat(&context, request).get(), &printer);
}

}  // namespace tern::cli
