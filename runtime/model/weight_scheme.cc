#include "runtime/model/weight_scheme.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace tern::runtime {
namespace {

constexpr char kSpellings[] =
    "auto, w8a16[-g<N>][-asym], w4a16[-g<N>][-asym] (N = 32, 64, 128 or 256; w4a16 defaults to 128, "
    "w8a16 to one group per output channel, as does -channel), fp8 (w8a8-fp8), int8 (w8a8-int8), "
    "or mixed:<plan file>";

absl::Status NotAScheme(const std::string& text, const std::string& why = "") {
  return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not a weight scheme", why.empty() ? "" : " (", why,
                                                 why.empty() ? "" : ")", "; use one of: ", kSpellings));
}

}  // namespace

std::string WeightSchemeRequest::ToString() const {
  switch (kind) {
    case Kind::kAuto:
      return "auto";
    case Kind::kUniform:
      return uniform.ToString();
    case Kind::kMixed:
      return "mixed:" + plan_path;
  }
  return "?";
}

absl::StatusOr<LinearScheme> ParseLinearScheme(const std::string& text) {
  LinearScheme s;
  if (text == "dense") return s;
  if (text == "fp8" || text == "w8a8-fp8") {
    s.scheme = WeightScheme::kW8A8Fp8;
    return s;
  }
  if (text == "int8" || text == "w8a8-int8") {
    s.scheme = WeightScheme::kW8A8Int8;
    return s;
  }
  if (text == "w8a8") return NotAScheme(text, "ambiguous: say w8a8-fp8 or w8a8-int8");
  const std::vector<std::string> parts = absl::StrSplit(text, '-');
  if (parts[0] == "w8a16") {
    s.scheme = WeightScheme::kW8A16;
    s.group_size = 0;
  } else if (parts[0] == "w4a16") {
    s.scheme = WeightScheme::kW4A16;
    s.group_size = 128;
  } else {
    return NotAScheme(text);
  }
  bool grouped = false;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    if (part == "asym" && s.symmetric) {
      s.symmetric = false;
    } else if (part == "channel" && !grouped) {
      s.group_size = 0;
      grouped = true;
    } else if (part.size() > 1 && part[0] == 'g' && !grouped) {
      int64_t group = 0;
      if (!absl::SimpleAtoi(part.substr(1), &group) || (group != 32 && group != 64 && group != 128 && group != 256)) {
        return NotAScheme(text, absl::StrCat("group size \"", part.substr(1), "\" is not 32, 64, 128 or 256"));
      }
      s.group_size = group;
      grouped = true;
    } else {
      return NotAScheme(text, absl::StrCat("unexpected \"-", part, "\""));
    }
  }
  return s;
}

absl::StatusOr<WeightSchemeRequest> ParseWeightSchemeRequest(const std::string& text) {
  WeightSchemeRequest request;
  if (text.empty() || text == "auto") return request;
  if (absl::StartsWith(text, "mixed:")) {
    request.kind = WeightSchemeRequest::Kind::kMixed;
    request.plan_path = std::string(text.substr(6));
    if (request.plan_path.empty()) return NotAScheme(text, "mixed: needs the path of a plan file");
    return request;
  }
  if (text == "dense") return NotAScheme(text, "say auto to keep the checkpoint as stored");
  auto scheme = ParseLinearScheme(text);
  if (!scheme.ok()) return scheme.status();
  request.kind = WeightSchemeRequest::Kind::kUniform;
  request.uniform = *scheme;
  return request;
}

absl::StatusOr<MixedPrecisionPlan> ParseMixedPrecisionPlan(const std::string& json_text, const std::string& source) {
  const auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("mixed-precision plan ", source, ": ", why));
  };
  const nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return bad("not a JSON object");
  MixedPrecisionPlan plan;
  for (const auto& [key, value] : doc.items()) {
    if (key == "default") {
      if (!value.is_string()) return bad("\"default\" is not a string");
      auto scheme = ParseLinearScheme(value.get<std::string>());
      if (!scheme.ok()) return bad(absl::StrCat("default: ", scheme.status().message()));
      plan.default_scheme = *scheme;
    } else if (key == "layers") {
      if (!value.is_object()) return bad("\"layers\" is not an object of module name -> scheme");
      for (const auto& [module, layer_scheme] : value.items()) {
        if (!layer_scheme.is_string()) return bad(absl::StrCat("layers.", module, " is not a string"));
        auto scheme = ParseLinearScheme(layer_scheme.get<std::string>());
        if (!scheme.ok()) return bad(absl::StrCat("layers.", module, ": ", scheme.status().message()));
        plan.layers[module] = *scheme;
      }
    } else {
      return bad(absl::StrCat("unknown key \"", key, "\" (expected \"default\" and \"layers\")"));
    }
  }
  return plan;
}

absl::StatusOr<MixedPrecisionPlan> LoadMixedPrecisionPlan(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("mixed-precision plan ", path, " cannot be read"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseMixedPrecisionPlan(text.str(), path);
}

}  // namespace tern::runtime
