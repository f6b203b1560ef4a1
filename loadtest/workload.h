// The workload: when each request is sent and what it asks for. Everything
// is drawn from --seed through fixed, portable transforms of std::mt19937_64
// (whose sequence the C++ standard fixes), so a seed gives the same arrivals,
// prompts, lengths, tenants and decodings on every platform. Each aspect draws from its
// own stream: changing --max-tokens-dist does not move the arrivals.
// Single-threaded: one Workload per run, used by the dispatcher only.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "loadtest/options.h"

namespace tern::loadtest {

// A uniform double in [0, 1) from the top 53 bits of one draw.
double UniformUnit(std::mt19937_64& rng);
// A uniform integer in [lo, hi] (lo <= hi), by rejection so it is unbiased.
int64_t UniformInt(std::mt19937_64& rng, int64_t lo, int64_t hi);

// Arrival offsets in seconds from the start of the run, non-decreasing.
class ArrivalProcess {
 public:
  // `rate` (requests/s, > 0) is ignored for kClosedLoop, where every offset
  // is 0: requests go as soon as the in-flight cap allows.
  ArrivalProcess(ArrivalMode mode, double rate, uint64_t seed);
  double Next();

 private:
  ArrivalMode mode_;
  double rate_;
  std::mt19937_64 rng_;
  int64_t issued_ = 0;
  double last_ = 0;
};

// One request to send.
struct PlannedRequest {
  int64_t index = 0;
  double arrival_s = 0;          // offset from the start of the run
  int prompt = -1;               // index into the prompt list; -1 for synthetic
  std::vector<int32_t> token_ids;  // synthetic prompt ids; empty for text prompts
  int max_tokens = 0;            // with a synthetic SoT outline: points * point tokens when given
  int tenant = 0;                // index into LoadOptions::tenants
  bool sot = false;              // sent as SKELETON_OF_THOUGHT (else as --decoding-mode)
  // An image request (--image-share) of image_steps steps for class image_class.
  bool image = false;
  int image_steps = 0;
  int image_class = 0;
};

class Workload {
 public:
  // `num_prompts` is the size of the loaded prompt list (0 with synthetic prompts).
  Workload(const LoadOptions& options, int num_prompts);
  // The next request, in order of arrival. Unbounded: the caller stops.
  PlannedRequest Next();

 private:
  const LoadOptions& options_;
  int num_prompts_;
  ArrivalProcess arrivals_;
  std::mt19937_64 prompt_rng_;
  std::mt19937_64 length_rng_;
  std::mt19937_64 tenant_rng_;
  std::mt19937_64 decoding_rng_;
  std::mt19937_64 image_rng_;
  std::vector<double> tenant_cdf_;  // cumulative weights / total, last == 1
  int64_t next_index_ = 0;
};

// SplitMix64 of seed + stream: independent, well-mixed seeds per stream.
uint64_t StreamSeed(uint64_t seed, uint64_t stream);

}  // namespace tern::loadtest
