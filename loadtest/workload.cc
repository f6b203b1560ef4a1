#include "loadtest/workload.h"

#include <cmath>
#include <limits>

namespace tern::loadtest {

uint64_t StreamSeed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double UniformUnit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

int64_t UniformInt(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  if (span == 0) return static_cast<int64_t>(rng());  // the full 64-bit range
  // Reject the top partial block so every value is equally likely.
  const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % span;
  uint64_t draw = rng();
  while (draw >= limit) draw = rng();
  return lo + static_cast<int64_t>(draw % span);
}

ArrivalProcess::ArrivalProcess(ArrivalMode mode, double rate, uint64_t seed)
    : mode_(mode), rate_(rate), rng_(StreamSeed(seed, 0)) {}

double ArrivalProcess::Next() {
  switch (mode_) {
    case ArrivalMode::kClosedLoop:
      return 0;
    case ArrivalMode::kConstant:
      // i / rate rather than a running sum: no drift over long runs.
      return static_cast<double>(issued_++) / rate_;
    case ArrivalMode::kPoisson: {
      // The first request goes at 0; then exponential gaps by inversion.
      if (issued_++ == 0) return 0;
      last_ += -std::log1p(-UniformUnit(rng_)) / rate_;
      return last_;
    }
  }
  return 0;
}

Workload::Workload(const LoadOptions& options, int num_prompts)
    : options_(options),
      num_prompts_(num_prompts),
      arrivals_(options.mode, options.rate, options.seed),
      prompt_rng_(StreamSeed(options.seed, 1)),
      length_rng_(StreamSeed(options.seed, 2)),
      tenant_rng_(StreamSeed(options.seed, 3)),
      decoding_rng_(StreamSeed(options.seed, 4)),
      image_rng_(StreamSeed(options.seed, 5)) {
  double total = 0;
  for (const TenantWeight& t : options.tenants) total += t.weight;
  double running = 0;
  for (const TenantWeight& t : options.tenants) {
    running += t.weight;
    tenant_cdf_.push_back(running / total);
  }
  if (!tenant_cdf_.empty()) tenant_cdf_.back() = 1.0;
}

PlannedRequest Workload::Next() {
  PlannedRequest r;
  r.index = next_index_++;
  r.arrival_s = arrivals_.Next();
  if (tenant_cdf_.size() > 1) {
    const double u = UniformUnit(tenant_rng_);
    while (r.tenant + 1 < static_cast<int>(tenant_cdf_.size()) && u >= tenant_cdf_[r.tenant]) ++r.tenant;
  }
  if (options_.synthetic_prompt_tokens > 0) {
    r.token_ids.reserve(options_.synthetic_prompt_tokens);
    for (int i = 0; i < options_.synthetic_prompt_tokens; ++i) {
      r.token_ids.push_back(static_cast<int32_t>(
          UniformInt(prompt_rng_, options_.synthetic_token_lo, options_.synthetic_token_hi)));
    }
  } else if (num_prompts_ > 0) {
    r.prompt = static_cast<int>(UniformInt(prompt_rng_, 0, num_prompts_ - 1));
  }
  r.max_tokens = options_.max_tokens_lo.has_value()
                     ? static_cast<int>(UniformInt(length_rng_, *options_.max_tokens_lo, *options_.max_tokens_hi))
                     : options_.max_tokens;
  if (options_.decoding_mode == DecodingChoice::kSot) {
    r.sot = true;
  } else if (options_.sot_share > 0) {
    r.sot = UniformUnit(decoding_rng_) < options_.sot_share;
  }
  // A synthetic outline fixes each point's length; max_tokens must leave
  // every point its full share (the server divides max_tokens among them).
  if (r.sot && options_.sot_outline_points > 0 && options_.sot_point_tokens.has_value()) {
    r.max_tokens = options_.sot_outline_points * *options_.sot_point_tokens;
  }
  // Images draw from their own stream, three draws per request whatever the
  // outcome: the text requests of a mixed run are those of a text-only run
  // with the same seed, less the ones that became images.
  if (options_.image_share > 0) {
    r.image = UniformUnit(image_rng_) < options_.image_share;
    r.image_steps = static_cast<int>(UniformInt(image_rng_, options_.image_steps_lo, options_.image_steps_hi));
    r.image_class = static_cast<int>(UniformInt(image_rng_, 0, options_.image_classes - 1));
  }
  return r;
}

}  // namespace tern::loadtest
