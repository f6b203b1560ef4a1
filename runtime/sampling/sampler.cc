#include "runtime/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/sampling/penalties.h"

namespace tern::runtime {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Most likely first; equal logits: lower id first. A strict weak order, so
// nth_element and sort give the same set on every standard library.
template <typename T>
bool Better(const T& a, const T& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.token_id < b.token_id);
}

// Division rather than multiplication by 1/temperature: for a denormal
// temperature 1/t overflows and 0 * inf would be NaN at the max logit.
inline float Weight(float logit, float max_logit, float temperature) {
  return std::exp((logit - max_logit) / temperature);
}

}  // namespace

absl::StatusOr<SampledToken> Sampler::Sample(absl::Span<const float> logits,
                                             const SamplingParams& params,
                                             const SequenceSamplingState& state) {
  if (logits.empty()) return absl::InvalidArgumentError("sampling: empty logits row");
  absl::Span<const float> work = logits;
  if (params.HasPenalties()) {
    penalized_.assign(logits.begin(), logits.end());
    RETURN_IF_ERROR(ApplyPenalties(absl::MakeSpan(penalized_), params, state));
    work = penalized_;
  }

  // One pass: find the argmax (first on ties), count the tokens that can be
  // drawn at all, and note NaN/+inf without a branch per element.
  constexpr float kInf = std::numeric_limits<float>::infinity();
  float max_logit = kNegInf;
  int32_t argmax = -1;
  int64_t num_finite = 0;
  bool bad = false;
  for (size_t i = 0; i < work.size(); ++i) {
    const float x = work[i];
    bad |= !(x < kInf);  // NaN or +inf
    num_finite += x != kNegInf;
    if (x > max_logit) {
      max_logit = x;
      argmax = static_cast<int32_t>(i);
    }
  }
  if (bad) {
    for (size_t i = 0; i < work.size(); ++i) {
      if (!(work[i] < kInf)) {
        return absl::InvalidArgumentError(
            absl::StrCat("sampling: logit of token ", i, " is ", work[i]));
      }
    }
  }
  if (argmax < 0) return absl::InvalidArgumentError("sampling: every logit is -inf");

  SampledToken result;
  if (params.temperature == 0.0f || num_finite == 1) {
    result.token_id = argmax;
  } else {
    result.token_id =
        SampleFromFiltered(work, max_logit, num_finite, params, state.NextUniform());
  }
  if (params.logprobs.has_value()) FillLogprobs(logits, *params.logprobs, &result);
  return result;
}

int32_t Sampler::SampleFromFiltered(absl::Span<const float> logits, float max_logit,
                                    int64_t num_finite, const SamplingParams& params,
                                    double uniform) {
  // Every filter keeps a most-likely-first prefix, so the kept set is the
  // prefix of length min(k, top-p length, min-p length), with the top-p length
  // measured against the mass of the top-k set. Weights are relative to the
  // max (the max weighs 1), so min-p is the threshold weight >= min_p.
  const float temperature = params.temperature;
  const bool top_k_cuts = params.top_k > 0 && params.top_k < num_finite;
  const bool use_top_p = params.top_p < 1.0f;
  const float min_p = params.min_p;

  if (top_k_cuts) {
    SelectTopK(logits, params.top_k);
    for (Candidate& c : candidates_) c.weight = Weight(c.logit, max_logit, temperature);
    if (use_top_p) {
      double mass = 0.0;
      for (const Candidate& c : candidates_) mass += c.weight;
      std::sort(candidates_.begin(), candidates_.end(), Better<Candidate>);
      KeepTopP(static_cast<double>(params.top_p) * mass);
    }
    KeepMinP(min_p);
  } else if (use_top_p) {
    // The exact mass needs every weight. Tokens lighter than
    // t = (1 - top_p) * mass / (2 * num_finite) weigh less than (1 - top_p) *
    // mass together, so the nucleus lies within the heavier ones: collect only
    // those (and those min-p keeps) before sorting.
    weights_.resize(logits.size());
    double mass = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) {
      weights_[i] = Weight(logits[i], max_logit, temperature);
      mass += weights_[i];
    }
    const double light = (1.0 - params.top_p) * mass / (2.0 * static_cast<double>(num_finite));
    const float floor = std::max(static_cast<float>(light), min_p);
    candidates_.clear();
    candidates_.reserve(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) {
      if (weights_[i] > 0.0f && weights_[i] >= floor) {
        candidates_.push_back({logits[i], static_cast<int32_t>(i), weights_[i]});
      }
    }
    PartialSortUntilMass(static_cast<double>(params.top_p) * mass);
    KeepMinP(min_p);
  } else if (min_p > 0.0f) {
    candidates_.clear();
    candidates_.reserve(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) {
      const float w = Weight(logits[i], max_logit, temperature);
      if (w > 0.0f && w >= min_p) candidates_.push_back({logits[i], static_cast<int32_t>(i), w});
    }
  } else {
    // No filter: draw straight from the row.
    weights_.resize(logits.size());
    double total = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) {
      weights_[i] = Weight(logits[i], max_logit, temperature);
      total += weights_[i];
    }
    const double threshold = uniform * total;
    double cumulative = 0.0;
    int32_t last_positive = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      if (weights_[i] <= 0.0f) continue;
      last_positive = static_cast<int32_t>(i);
      cumulative += weights_[i];
      if (threshold < cumulative) return last_positive;
    }
    return last_positive;  // only when rounding leaves threshold == total
  }

  // The draw walks the kept tokens in ascending id order.
  std::sort(candidates_.begin(), candidates_.end(),
            [](const Candidate& a, const Candidate& b) { return a.token_id < b.token_id; });
  double total = 0.0;
  for (const Candidate& c : candidates_) total += c.weight;
  const double threshold = uniform * total;
  double cumulative = 0.0;
  int32_t last_positive = candidates_.front().token_id;
  for (const Candidate& c : candidates_) {
    if (c.weight <= 0.0f) continue;
    last_positive = c.token_id;
    cumulative += c.weight;
    if (threshold < cumulative) return c.token_id;
  }
  return last_positive;  // only when rounding leaves threshold == total
}

void Sampler::SelectTopK(absl::Span<const float> logits, int32_t k) {
  candidates_.clear();
  candidates_.reserve(logits.size());
  const size_t size = static_cast<size_t>(k);
  if (k <= kHeapTopKLimit) {
    // A heap of the k best with the worst on top: after the first few
    // thousand tokens nearly every logit fails the first comparison.
    auto worse_on_top = [](const Candidate& a, const Candidate& b) { return Better(a, b); };
    for (size_t i = 0; i < logits.size(); ++i) {
      const float x = logits[i];
      if (x == kNegInf) continue;
      if (candidates_.size() < size) {
        candidates_.push_back({x, static_cast<int32_t>(i), 0.0f});
        std::push_heap(candidates_.begin(), candidates_.end(), worse_on_top);
      } else if (x > candidates_.front().logit) {  // ids ascend: a tie never wins
        std::pop_heap(candidates_.begin(), candidates_.end(), worse_on_top);
        candidates_.back() = {x, static_cast<int32_t>(i), 0.0f};
        std::push_heap(candidates_.begin(), candidates_.end(), worse_on_top);
      }
    }
    return;
  }
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] != kNegInf) candidates_.push_back({logits[i], static_cast<int32_t>(i), 0.0f});
  }
  std::nth_element(candidates_.begin(), candidates_.begin() + size, candidates_.end(),
                   Better<Candidate>);
  candidates_.resize(size);
}

void Sampler::KeepTopP(double target) {
  double cumulative = 0.0;
  for (size_t j = 0; j < candidates_.size(); ++j) {
    cumulative += candidates_[j].weight;
    if (cumulative >= target) {
      candidates_.resize(j + 1);
      return;
    }
  }
}

void Sampler::PartialSortUntilMass(double target) {
  // Sort only as much of the most-likely-first order as the mass needs:
  // select a chunk with nth_element, sort it, grow the chunk geometrically.
  const size_t size = candidates_.size();
  size_t sorted = 0;
  size_t chunk = 64;
  double cumulative = 0.0;
  while (sorted < size) {
    const size_t end = std::min(size, sorted + chunk);
    auto first = candidates_.begin() + sorted;
    if (end < size) {
      std::nth_element(first, candidates_.begin() + end, candidates_.end(), Better<Candidate>);
    }
    std::sort(first, candidates_.begin() + end, Better<Candidate>);
    for (size_t j = sorted; j < end; ++j) {
      cumulative += candidates_[j].weight;
      if (cumulative >= target) {
        candidates_.resize(j + 1);
        return;
      }
    }
    sorted = end;
    chunk *= 4;
  }
}

void Sampler::KeepMinP(float min_p) {
  if (min_p <= 0.0f) return;
  candidates_.erase(std::remove_if(candidates_.begin(), candidates_.end(),
                                   [min_p](const Candidate& c) { return !(c.weight >= min_p); }),
                    candidates_.end());
}

void Sampler::FillLogprobs(absl::Span<const float> raw, int32_t num_top,
                           SampledToken* token) const {
  // One pass for the max and the num_top best (insertion into a short sorted
  // list: after the first few tokens almost every logit fails the first
  // comparison), one pass for the normalizer.
  std::vector<TokenLogprob>& top = token->top_logprobs;
  top.clear();
  top.reserve(static_cast<size_t>(std::max(num_top, 0)));
  float max_logit = kNegInf;
  for (size_t i = 0; i < raw.size(); ++i) {
    const float x = raw[i];
    if (x == kNegInf) continue;
    max_logit = std::max(max_logit, x);
    if (num_top <= 0) continue;
    // Strict > keeps the lower id first among equal logits (ids ascend).
    if (top.size() == static_cast<size_t>(num_top) && !(x > top.back().logprob)) continue;
    if (top.size() < static_cast<size_t>(num_top)) top.push_back({});
    size_t j = top.size() - 1;
    while (j > 0 && x > top[j - 1].logprob) {
      top[j] = top[j - 1];
      --j;
    }
    top[j] = {static_cast<int32_t>(i), x};  // logprob holds the logit until normalized
  }
  double sum = 0.0;
  for (const float x : raw) {
    if (x != kNegInf) sum += std::exp(x - max_logit);
  }
  const float log_normalizer = max_logit + static_cast<float>(std::log(sum));
  for (TokenLogprob& t : top) t.logprob -= log_normalizer;
  token->logprob = raw[token->token_id] - log_normalizer;
}

}  // namespace tern::runtime
