#include "runtime/sot/trained_router.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/tokenizer/string_view_compat.h"

namespace tern::runtime {
namespace {

using nlohmann::json;

constexpr char kFormat[] = "tern-sot-router";
constexpr int kVersion = 1;
constexpr char kTokenizer[] = "ascii-alnum-lower-v1";
constexpr int kMaxOrder = 3;

// Step 1 of the scoring rule, per byte: the lowercased byte when it belongs
// to a token, 0 when it separates tokens.
constexpr char TokenByte(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return static_cast<char>(c - 'A' + 'a');
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return static_cast<char>(c);
  return 0;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (TokenByte(static_cast<unsigned char>(c)) != c) return false;
  }
  return true;
}

double Sigmoid(double z) {
  // Written as tools/sot/train_router.py writes it, so both give the same bits.
  if (z >= 0.0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

// Field errors name the file, then the field.
class Errors {
 public:
  explicit Errors(const std::string& path) : path_(path) {}
  absl::Status Invalid(std::string_view field, std::string_view why) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", ToAbslView(field), ": ", ToAbslView(why)));
  }

 private:
  const std::string& path_;
};

// A finite JSON number, or an error naming `field`.
absl::StatusOr<double> FiniteNumber(const Errors& errors, const json& value, std::string_view field) {
  if (!value.is_number()) return errors.Invalid(field, "not a number");
  const double x = value.get<double>();
  if (!std::isfinite(x)) return errors.Invalid(field, "not a finite number");
  return x;
}

// The member `name` of `object`, or an error when it is missing.
absl::StatusOr<const json*> Member(const Errors& errors, const json& object, const char* name,
                                   std::string_view field) {
  const auto it = object.find(name);
  if (it == object.end()) return errors.Invalid(field, "missing");
  return &*it;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TrainedRouter>> TrainedRouter::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the router file"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::NotFoundError(absl::StrCat(path, ": cannot read the router file"));

  const Errors errors(path);
  json doc;
  try {
    doc = json::parse(text.str());
  } catch (const json::exception& e) {
    // nlohmann's message gives the line and column of the first bad byte.
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", e.what()));
  }
  if (!doc.is_object()) return errors.Invalid("(root)", "not a JSON object");

  auto format = Member(errors, doc, "format", "format");
  if (!format.ok()) return format.status();
  if (!(*format)->is_string() || (*format)->get<std::string>() != kFormat) {
    return errors.Invalid("format", absl::StrCat("not \"", kFormat, "\""));
  }
  auto version = Member(errors, doc, "version", "version");
  if (!version.ok()) return version.status();
  if (!(*version)->is_number_integer() || (*version)->get<int64_t>() != kVersion) {
    return errors.Invalid("version", absl::StrCat((*version)->dump(), " is not a known version (", kVersion, ")"));
  }

  std::unique_ptr<TrainedRouter> router(new TrainedRouter());

  auto features = Member(errors, doc, "features", "features");
  if (!features.ok()) return features.status();
  if (!(*features)->is_object()) return errors.Invalid("features", "not an object");
  const json& spec = **features;
  auto tokenizer = Member(errors, spec, "tokenizer", "features.tokenizer");
  if (!tokenizer.ok()) return tokenizer.status();
  if (!(*tokenizer)->is_string() || (*tokenizer)->get<std::string>() != kTokenizer) {
    return errors.Invalid("features.tokenizer", absl::StrCat("not \"", kTokenizer, "\""));
  }
  auto orders = Member(errors, spec, "orders", "features.orders");
  if (!orders.ok()) return orders.status();
  if (!(*orders)->is_array() || (*orders)->empty()) {
    return errors.Invalid("features.orders", "not a non-empty array");
  }
  for (const json& order : **orders) {
    if (!order.is_number_integer() || order.get<int64_t>() < 1 || order.get<int64_t>() > kMaxOrder) {
      return errors.Invalid("features.orders", absl::StrCat("each order must be an integer in 1..", kMaxOrder));
    }
    const int n = order.get<int>();
    if (!router->orders_.empty() && n <= router->orders_.back()) {
      return errors.Invalid("features.orders", "not strictly ascending");
    }
    router->orders_.push_back(n);
  }
  auto bos = Member(errors, spec, "bos", "features.bos");
  if (!bos.ok()) return bos.status();
  if (!(*bos)->is_null()) {
    if (!(*bos)->is_string()) return errors.Invalid("features.bos", "neither a string nor null");
    router->bos_ = (*bos)->get<std::string>();
    if (router->bos_.empty() || router->bos_.find(' ') != std::string::npos) {
      return errors.Invalid("features.bos", "empty or holds a space");
    }
  }
  auto value = Member(errors, spec, "value", "features.value");
  if (!value.ok()) return value.status();
  if (!(*value)->is_string() ||
      ((*value)->get<std::string>() != "l2" && (*value)->get<std::string>() != "binary")) {
    return errors.Invalid("features.value", "not \"l2\" or \"binary\"");
  }
  router->l2_value_ = (*value)->get<std::string>() == "l2";

  auto bias = Member(errors, doc, "bias", "bias");
  if (!bias.ok()) return bias.status();
  auto bias_value = FiniteNumber(errors, **bias, "bias");
  if (!bias_value.ok()) return bias_value.status();
  router->bias_ = *bias_value;

  auto threshold = Member(errors, doc, "threshold", "threshold");
  if (!threshold.ok()) return threshold.status();
  auto threshold_value = FiniteNumber(errors, **threshold, "threshold");
  if (!threshold_value.ok()) return threshold_value.status();
  if (*threshold_value < 0.0 || *threshold_value > 1.0) return errors.Invalid("threshold", "outside [0, 1]");
  router->threshold_ = *threshold_value;

  auto weights = Member(errors, doc, "weights", "weights");
  if (!weights.ok()) return weights.status();
  if (!(*weights)->is_object() || (*weights)->empty()) return errors.Invalid("weights", "not a non-empty object");
  // nlohmann's object is a std::map: iteration is in byte order of the keys,
  // the order the scoring rule sums in.
  router->weights_.reserve((*weights)->size());
  router->feature_index_.reserve((*weights)->size());
  for (const auto& [key, weight] : (*weights)->items()) {
    const std::string field = absl::StrCat("weights[", json(key).dump(), "]");
    // A key is n tokens joined by single spaces, n one of the orders; for
    // n >= 2 the first may be the bos marker.
    std::vector<std::string_view> parts;
    for (size_t start = 0;;) {
      const size_t space = key.find(' ', start);
      parts.push_back(std::string_view(key).substr(start, space == std::string::npos ? space : space - start));
      if (space == std::string::npos) break;
      start = space + 1;
    }
    bool ok = std::find(router->orders_.begin(), router->orders_.end(), static_cast<int>(parts.size())) !=
              router->orders_.end();
    for (size_t i = 0; ok && i < parts.size(); ++i) {
      ok = IsToken(parts[i]) || (i == 0 && parts.size() >= 2 && !router->bos_.empty() && parts[i] == router->bos_);
    }
    if (!ok) return errors.Invalid(field, "not a feature of this tokenizer and these orders");
    auto w = FiniteNumber(errors, weight, field);
    if (!w.ok()) return w.status();
    router->feature_index_.emplace(key, static_cast<int>(router->weights_.size()));
    router->weights_.push_back(*w);
  }
  return router;
}

int TrainedRouter::FeatureIndex(std::string_view feature) const {
  const auto it = feature_index_.find(ToAbslView(feature));
  return it == feature_index_.end() ? -1 : it->second;
}

double TrainedRouter::Score(std::string_view question) const {
  std::string lowered(question.size(), '\0');
  std::transform(question.begin(), question.end(), lowered.begin(),
                 [](char c) { return TokenByte(static_cast<unsigned char>(c)); });
  std::vector<std::string_view> tokens;
  if (!bos_.empty()) tokens.push_back(bos_);  // tokens[0] only for orders >= 2
  const size_t first_token = tokens.size();
  for (size_t i = 0; i < lowered.size();) {
    if (lowered[i] == '\0') {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < lowered.size() && lowered[end] != '\0') ++end;
    tokens.push_back(std::string_view(lowered).substr(i, end - i));
    i = end;
  }

  std::vector<int> ids;
  std::string key;
  for (int n : orders_) {
    const size_t begin = n == 1 ? first_token : 0;
    for (size_t i = begin; i + n <= tokens.size(); ++i) {
      key.assign(tokens[i]);
      for (int j = 1; j < n; ++j) {
        key.push_back(' ');
        key.append(tokens[i + j]);
      }
      const int id = FeatureIndex(key);
      if (id >= 0) ids.push_back(id);
    }
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());

  double z = bias_;
  if (!ids.empty()) {
    double sum = 0.0;
    for (int id : ids) sum += weights_[id];
    z += l2_value_ ? sum / std::sqrt(static_cast<double>(ids.size())) : sum;
  }
  return Sigmoid(z);
}

bool TrainedRouter::SuitsSot(std::string_view question) const { return Score(question) >= threshold_; }

}  // namespace tern::runtime
