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

  // One pass: reject NaN/+inf, find the argmax (first on ties) and count the
  // tokens that can be drawn at all.
  float max_logit = kNegInf;
  int32_t argmax = -1;
  int64_t num_finite = 0;
  for (size_t i = 0; i < work.size(); ++i) {
    const float x = work[i];
    if (std::isnan(x) || x == std::numeric_limits<float>::infinity()) {
      return absl::InvalidArgumentError(absl::StrCat("sampling: logit of token ", i, " is ", x));
    }
    if (x == kNegInf) continue;
    ++num_finite;
    if (x > max_logit) {
      max_logit = x;
      argmax = static_cast<int32_t>(i);
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
  const float temperature = params.temperature;
  const bool top_k_cuts = params.top_k > 0 && params.top_k < num_finite;
  const bool use_top_p = params.top_p < 1.0f;
  const bool use_min_p = params.min_p > 0.0f;
  // p_i >= min_p * p_max  <=>  (logit_i - max) / t >= log(min_p).
  const float log_min_p = use_min_p ? std::log(params.min_p) : kNegInf;
  // Top-p is measured against the mass of the top-k set (all tokens when
  // top-k does not cut); accumulate it here when that is every token.
  const bool mass_is_all = use_top_p && !top_k_cuts;
  double top_k_mass = 0.0;

  // Min-p keeps a most-likely-first prefix, as top-k and top-p do, so the kept
  // set is the prefix of length min(k, top-p length, min-p length) and the
  // filters can run in any order as long as top-p uses the top-k mass. Min-p
  // runs first because it is a cheap threshold that shrinks the rest.
  candidates_.clear();
  candidates_.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    const float x = logits[i];
    if (x == kNegInf) continue;
    const float scaled = (x - max_logit) / temperature;
    if (use_min_p && !(scaled >= log_min_p)) {
      if (mass_is_all) top_k_mass += std::exp(scaled);
      continue;
    }
    const float weight = std::exp(scaled);
    if (mass_is_all) top_k_mass += weight;
    candidates_.push_back({x, static_cast<int32_t>(i), weight});
  }

  bool in_id_order = true;
  if (top_k_cuts) {
    const size_t k = static_cast<size_t>(params.top_k);
    if (candidates_.size() > k) {
      std::nth_element(candidates_.begin(), candidates_.begin() + k, candidates_.end(),
                       Better<Candidate>);
      candidates_.resize(k);
      in_id_order = false;
      if (use_top_p) {
        for (const Candidate& c : candidates_) top_k_mass += c.weight;
      }
    } else if (use_top_p) {
      // Min-p already cut inside the top-k set; top-p still needs its mass.
      top_k_mass = TopKMass(logits, max_logit, temperature, params.top_k);
    }
  }

  if (use_top_p) {
    // Sort only as much of the most-likely-first order as the mass needs:
    // select a chunk with nth_element, sort it, grow the chunk geometrically.
    const double target = static_cast<double>(params.top_p) * top_k_mass;
    const size_t size = candidates_.size();
    size_t keep = size;
    size_t sorted = 0;
    size_t chunk = 64;
    double cumulative = 0.0;
    while (sorted < size && keep == size) {
      const size_t end = std::min(size, sorted + chunk);
      auto first = candidates_.begin() + sorted;
      if (end < size) {
        std::nth_element(first, candidates_.begin() + end, candidates_.end(), Better<Candidate>);
      }
      std::sort(first, candidates_.begin() + end, Better<Candidate>);
      for (size_t j = sorted; j < end; ++j) {
        cumulative += candidates_[j].weight;
        if (cumulative >= target) {
          keep = j + 1;
          break;
        }
      }
      sorted = end;
      chunk *= 4;
    }
    candidates_.resize(keep);
    in_id_order = false;
  }

  if (!in_id_order) {
    std::sort(candidates_.begin(), candidates_.end(),
              [](const Candidate& a, const Candidate& b) { return a.token_id < b.token_id; });
  }

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
  // Only reached when rounding leaves threshold == total.
  return last_positive;
}

double Sampler::TopKMass(absl::Span<const float> logits, float max_logit, float temperature,
                         int32_t k) {
  top_k_scratch_.clear();
  top_k_scratch_.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] != kNegInf) top_k_scratch_.push_back({logits[i], static_cast<int32_t>(i), 0.0f});
  }
  std::nth_element(top_k_scratch_.begin(), top_k_scratch_.begin() + k, top_k_scratch_.end(),
                   Better<Candidate>);
  double mass = 0.0;
  for (int32_t j = 0; j < k; ++j) mass += Weight(top_k_scratch_[j].logit, max_logit, temperature);
  return mass;
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
