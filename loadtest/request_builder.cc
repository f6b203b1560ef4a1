#include "loadtest/request_builder.h"

#include "absl/strings/str_cat.h"

namespace tern::loadtest {
namespace {

tern::v1::DecodingMode ToProto(DecodingChoice choice) {
  switch (choice) {
    case DecodingChoice::kNormal: return tern::v1::DECODING_MODE_NORMAL;
    case DecodingChoice::kSot: return tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT;
    case DecodingChoice::kAuto: return tern::v1::DECODING_MODE_AUTO;
  }
  return tern::v1::DECODING_MODE_NORMAL;
}

}  // namespace

std::vector<std::string> SyntheticOutline(int points) {
  std::vector<std::string> outline;
  outline.reserve(points);
  for (int i = 1; i <= points; ++i) outline.push_back(absl::StrCat("Part ", i));
  return outline;
}

tern::v1::GenerateRequest BuildGenerateRequest(const LoadOptions& options, const PlannedRequest& planned,
                                               const std::vector<std::string>& prompts) {
  tern::v1::GenerateRequest request;
  request.set_model(options.model);
  request.set_request_id(absl::StrCat("tern-load-", options.seed, "-", planned.index));
  if (planned.token_ids.empty()) {
    request.set_text(prompts.at(planned.prompt));
  } else {
    request.mutable_token_ids()->mutable_ids()->Add(planned.token_ids.begin(), planned.token_ids.end());
  }
  tern::v1::SamplingParams* sampling = request.mutable_sampling();
  sampling->set_max_tokens(planned.max_tokens);
  sampling->set_seed(StreamSeed(options.seed, 1000 + static_cast<uint64_t>(planned.index)));
  if (options.temperature.has_value()) sampling->set_temperature(*options.temperature);
  sampling->set_ignore_eos(options.ignore_eos);

  if (planned.sot && options.sot_as_normal) {
    // The baseline: the same tokens, decoded normally.
    request.set_decoding_mode(ToProto(DecodingChoice::kNormal));
    if (options.sot_outline_points > 0) sampling->set_ignore_eos(true);
    return request;
  }
  const DecodingChoice decoding = planned.sot ? DecodingChoice::kSot : options.decoding_mode;
  request.set_decoding_mode(ToProto(decoding));
  if (decoding == DecodingChoice::kNormal) return request;
  if (options.sot_point_tokens.has_value()) request.mutable_sot()->set_max_point_tokens(*options.sot_point_tokens);
  // An outline turns an AUTO request into SoT, so only SoT requests carry one.
  if (planned.sot && options.sot_outline_points > 0) {
    for (std::string& point : SyntheticOutline(options.sot_outline_points)) {
      request.mutable_sot()->add_outline(std::move(point));
    }
    sampling->set_ignore_eos(true);
  }
  return request;
}

tern::v1::GenerateImageRequest BuildImageRequest(const LoadOptions& options, const PlannedRequest& planned) {
  tern::v1::GenerateImageRequest request;
  request.set_model(options.image_model);
  request.set_request_id(absl::StrCat("tern-load-", options.seed, "-", planned.index));
  request.set_class_label(planned.image_class);
  request.set_steps(planned.image_steps);
  if (options.image_guidance.has_value()) request.set_guidance_scale(*options.image_guidance);
  request.set_seed(StreamSeed(options.seed, 1000 + static_cast<uint64_t>(planned.index)));
  return request;
}

}  // namespace tern::loadtest
