// The trained SoT-R router: says whether a question suits Skeleton-of-Thought
// (a numbered outline whose points expand independently, in parallel) from a
// logistic regression over its lowercase word n-grams, in microseconds and
// with no second model. The weights come from models/sot-router/router.json,
// written by tools/sot/train_router.py, whose `Router.score` is the reference
// this class matches (bit for bit on tests/data/sot/router_scores.json).
//
// Scoring rule (format "tern-sot-router", version 1, tokenizer
// "ascii-alnum-lower-v1"):
//   1. Tokens: the question's bytes; A-Z become a-z; a token is a maximal run
//      of bytes in [a-z0-9]; every other byte (punctuation, whitespace,
//      control, and every byte >= 0x80, so all non-ASCII text) separates.
//   2. Features: for each order n in `features.orders`, each run of n
//      consecutive tokens joined by one space; for n >= 2 the token sequence
//      is first prefixed with `features.bos` (e.g. "<s> how").
//   3. The distinct features present in `weights`, in ascending byte order of
//      their keys; s = their weights summed in that order; k = their count.
//   4. z = bias + s / sqrt(k) when `features.value` is "l2", bias + s when it
//      is "binary"; z = bias when k = 0.
//   5. Score = 1 / (1 + exp(-z)), computed as exp(z) / (1 + exp(z)) for z < 0.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace tern::runtime {

class TrainedRouter {
 public:
  // Reads and validates a router.json. NOT_FOUND when the file cannot be
  // opened; INVALID_ARGUMENT naming the file and the field for malformed
  // JSON, another format, an unknown version or tokenizer, a missing or
  // mistyped field, n-gram orders outside 1..3 or not ascending, a
  // non-finite bias or weight, a weight key that is not a feature of this
  // tokenizer, or a threshold outside [0, 1]. Never crashes on bad input.
  static absl::StatusOr<std::unique_ptr<TrainedRouter>> Load(const std::string& path);

  TrainedRouter(const TrainedRouter&) = delete;
  TrainedRouter& operator=(const TrainedRouter&) = delete;

  // Probability in [0, 1] that the question suits SoT. Any bytes are
  // accepted (invalid UTF-8 included). Thread-safe; allocates only scratch
  // proportional to the question.
  double Score(std::string_view question) const;

  // Score(question) >= threshold().
  bool SuitsSot(std::string_view question) const;

  // The decision threshold the training chose, in [0, 1].
  double threshold() const { return threshold_; }

  // Number of weighted features.
  size_t num_features() const { return weights_.size(); }

 private:
  TrainedRouter() = default;

  // Index of `feature` in byte order of the keys, or -1 when it has no weight.
  int FeatureIndex(std::string_view feature) const;

  std::vector<int> orders_;   // ascending, each in 1..3
  std::string bos_;           // prefix token for orders >= 2; empty: none
  bool l2_value_ = true;      // "l2" (1/sqrt(k) per feature) or "binary" (1)
  double bias_ = 0.0;
  double threshold_ = 0.5;
  std::vector<double> weights_;                         // in byte order of the keys
  absl::flat_hash_map<std::string, int> feature_index_;  // key -> index into weights_
};

}  // namespace tern::runtime
