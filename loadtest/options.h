// tern-load's command line: the option struct and its parser. Parsing is
// strict (unknown flags, malformed numbers and contradictory flags are
// errors) and never touches the network or the file system.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loadtest/stats.h"

namespace tern::loadtest {

enum class ArrivalMode {
  kPoisson,     // open loop, exponential gaps with mean 1 / rate
  kConstant,    // open loop, gaps of exactly 1 / rate
  kClosedLoop,  // `concurrency` requests always in flight
};

enum class PromptFormat { kAuto, kText, kCsv, kJsonl };

// How requests ask to be decoded (GenerateRequest.decoding_mode).
enum class DecodingChoice {
  kNormal,  // DECODING_MODE_NORMAL
  kSot,     // DECODING_MODE_SKELETON_OF_THOUGHT
  kAuto,    // DECODING_MODE_AUTO: the server's router decides
};

// "normal", "skeleton_of_thought", "auto": the names the report uses.
const char* DecodingChoiceName(DecodingChoice choice);

// What the requests speak.
enum class Api {
  kGrpc,    // tern.v1.Llm/Generate streams (ternd's gRPC port)
  kOpenAi,  // streamed OpenAI chat completions (any OpenAI-compatible server)
};

struct TenantWeight {
  std::string api_key;
  double weight = 0;  // > 0; the share of requests is weight / sum of weights
};

struct LoadOptions {
  Api api = Api::kGrpc;
  // gRPC: HOST:PORT; OpenAI: http://HOST:PORT[/prefix] (default http://127.0.0.1:8000).
  std::string target = "127.0.0.1:50051";
  std::string model;                     // required
  int connections = 1;                   // gRPC channels (TCP connections), round-robin
  // gRPC over TLS (any set): the CA of the server's certificate (empty: the
  // system's roots); for mutual TLS the client certificate and its key.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;

  ArrivalMode mode = ArrivalMode::kPoisson;
  double rate = 0;                       // requests/s; open loop only
  int concurrency = 0;                   // closed loop only

  std::optional<double> duration_s;      // stop issuing after this long
  std::optional<int64_t> num_requests;   // stop issuing after this many
  int max_in_flight = 1024;              // hard cap on concurrent streams
  double max_time_s = 0;                 // hard cap on the whole run; in-flight calls are cancelled
  double request_timeout_s = 300;        // per-request gRPC deadline

  std::string prompts_path;              // one of prompts_path / synthetic_prompt_tokens
  PromptFormat prompts_format = PromptFormat::kAuto;
  int synthetic_prompt_tokens = 0;
  int synthetic_token_lo = 100;          // synthetic ids are uniform in [lo, hi]
  int synthetic_token_hi = 999;

  int max_tokens = 128;
  std::optional<int> max_tokens_lo;      // with max_tokens_hi: uniform in [lo, hi] per request
  std::optional<int> max_tokens_hi;
  std::optional<float> temperature;
  bool ignore_eos = false;

  // Skeleton-of-Thought. A request is sent as SKELETON_OF_THOUGHT with
  // probability sot_share (seeded), else as decoding_mode; with decoding_mode
  // kSot every request is.
  DecodingChoice decoding_mode = DecodingChoice::kNormal;
  double sot_share = 0;                  // in [0, 1]
  // > 0: SoT requests supply a synthetic outline of this many points (no
  // skeleton phase), ask for ignore_eos and, with sot_point_tokens, for
  // max_tokens = points * sot_point_tokens, so every point has that length.
  int sot_outline_points = 0;
  std::optional<int> sot_point_tokens;   // sot.max_point_tokens of requests that may run SoT
  // The baseline of a SoT run: the requests sot_share picks are sent as
  // NORMAL with the same max_tokens and ignore_eos, so both runs ask for the
  // same tokens and the other requests are the same.
  bool sot_as_normal = false;

  // Images (tern.v1.Diffusion/GenerateImage, gRPC only). A request is an
  // image request with probability image_share (seeded; 1: all of them), of
  // `image_steps_lo..hi` sampler steps (uniform, seeded), a class drawn
  // uniformly from [0, image_classes) (0: the model's default condition is
  // not used; the class label 0 is sent), and image_guidance when given.
  std::string image_model;
  double image_share = 0;                // in [0, 1]
  int image_steps_lo = 20;
  int image_steps_hi = 20;
  int image_classes = 10;                // class labels drawn from [0, image_classes)
  std::optional<float> image_guidance;

  std::vector<TenantWeight> tenants;     // from --api-key (one) or --tenant-mix (several)
  uint64_t seed = 0;

  Slo slo;
  std::string json_path;
  bool json_requests = false;            // include one record per request in the JSON
  bool force_progress = false;           // progress line even when stderr is not a TTY
};

// Parses argv[1..] (without the program name). The error message names the
// offending flag; the caller prints it with the usage and exits 2. `help`
// is set (and an OK value returned) for -h / --help.
absl::StatusOr<LoadOptions> ParseLoadOptions(const std::vector<std::string>& args, bool* help);

// Parses "keyA:3,keyB:1" (weights > 0; a missing ":W" means 1).
absl::StatusOr<std::vector<TenantWeight>> ParseTenantMix(const std::string& text);

// The usage text, one line per flag.
const char* LoadUsage();

}  // namespace tern::loadtest
