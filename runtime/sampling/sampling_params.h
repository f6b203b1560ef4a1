// The native form of tern.v1.SamplingParams: what one request asks of the
// sampler and of the stop checker. server/ converts the proto into this struct
// (filling defaults from generation_config.json) and the engine carries it with
// each sequence group. Plain data; copy freely.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tern::runtime {

struct SamplingParams {
  // >= 0 and <= 100. 0 means greedy (argmax after penalties).
  float temperature = 1.0f;
  // In (0, 1]. 1 keeps every token.
  float top_p = 1.0f;
  // >= 0. 0 means no limit; a value >= the vocabulary size keeps every token.
  int32_t top_k = 0;
  // In [0, 1]. Keeps tokens whose probability is >= min_p * the top token's.
  float min_p = 0.0f;
  // In (0, 100]. 1 means none. Applied HF-style over prompt + output tokens.
  float repetition_penalty = 1.0f;
  // In [-2, 2]. Subtracted once from the logit of every token already in the output.
  float presence_penalty = 0.0f;
  // In [-2, 2]. Subtracted count times from the logit of a token seen count
  // times in the output.
  float frequency_penalty = 0.0f;
  // Same seed, same prompt, same model: same output. Unset: the engine picks
  // a random seed per request.
  std::optional<uint64_t> seed;
  // Non-empty strings; generation stops when one appears in the output text.
  // The stop string is not returned.
  std::vector<std::string> stop;
  // >= 0. Generation stops at any of these token ids (in addition to EOS).
  std::vector<int32_t> stop_token_ids;
  // >= 1 when set. Unset: bounded only by the model's context.
  std::optional<int32_t> max_tokens;
  // >= 1. Number of completions of the request.
  int32_t n = 1;
  // In [0, 20] when set: return the sampled token's log-probability and this
  // many alternatives. Unset: no logprobs.
  std::optional<int32_t> logprobs;
  // Do not stop at the model's EOS token(s).
  bool ignore_eos = false;
  // Drop special tokens (BOS, EOS, added tokens marked special) from the
  // returned text; their ids are still returned. false: keep their text.
  bool skip_special_tokens = true;

  // OK, or INVALID_ARGUMENT naming the first bad field and its allowed range.
  // Rejects NaN, infinities and out-of-range values; never clamps. Ranges are
  // those of tern.v1.SamplingParams as server/validation enforces them; limits
  // that the server's config may change (the largest n, max_tokens, number
  // and length of stop strings) are the server's to check.
  absl::Status Validate() const;

  // True when any penalty is not neutral, i.e. the logits need a copy that
  // ApplyPenalties can change.
  bool HasPenalties() const {
    return repetition_penalty != 1.0f || presence_penalty != 0.0f || frequency_penalty != 0.0f;
  }
};

}  // namespace tern::runtime
