#include "loadtest/options.h"

#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace tern::loadtest {
namespace {

constexpr double kDrainAfterDurationS = 60;
constexpr double kDefaultMaxTimeS = 600;

absl::Status Bad(const std::string& flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why));
}

absl::StatusOr<double> PositiveDouble(const std::string& flag, const std::string& text) {
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !std::isfinite(value) || value <= 0) {
    return Bad(flag, absl::StrCat("expected a positive number, got \"", text, "\""));
  }
  return value;
}

absl::StatusOr<int64_t> IntInRange(const std::string& flag, const std::string& text, int64_t lo,
                                   int64_t hi) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < lo || value > hi) {
    return Bad(flag, absl::StrCat("expected an integer in [", lo, ", ", hi, "], got \"", text, "\""));
  }
  return value;
}

// "LO:HI" with lo <= hi, both in [min, max].
absl::Status ParseRange(const std::string& flag, absl::string_view text, int64_t min, int64_t max,
                        int* lo, int* hi) {
  const std::vector<std::string> parts = absl::StrSplit(text, ':');
  int64_t a = 0;
  int64_t b = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &a) || !absl::SimpleAtoi(parts[1], &b) ||
      a < min || b > max || a > b) {
    return Bad(flag, absl::StrCat("expected LO:HI with ", min, " <= LO <= HI <= ", max, ", got \"",
                                  text, "\""));
  }
  *lo = static_cast<int>(a);
  *hi = static_cast<int>(b);
  return absl::OkStatus();
}

}  // namespace

const char* DecodingChoiceName(DecodingChoice choice) {
  switch (choice) {
    case DecodingChoice::kNormal: return "normal";
    case DecodingChoice::kSot: return "skeleton_of_thought";
    case DecodingChoice::kAuto: return "auto";
  }
  return "normal";
}

absl::StatusOr<std::vector<TenantWeight>> ParseTenantMix(const std::string& text) {
  std::vector<TenantWeight> tenants;
  std::set<std::string> seen;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    TenantWeight tenant;
    const size_t colon = entry.rfind(':');
    tenant.api_key = std::string(colon == absl::string_view::npos ? entry : entry.substr(0, colon));
    tenant.weight = 1;
    if (colon != absl::string_view::npos) {
      const std::string weight(entry.substr(colon + 1));
      if (!absl::SimpleAtod(weight, &tenant.weight) || !std::isfinite(tenant.weight) ||
          tenant.weight <= 0) {
        return Bad("--tenant-mix", absl::StrCat("weight \"", weight, "\" is not a positive number"));
      }
    }
    if (tenant.api_key.empty()) return Bad("--tenant-mix", "empty API key in \"" + text + "\"");
    if (!seen.insert(tenant.api_key).second) {
      return Bad("--tenant-mix", "API key listed twice: " + tenant.api_key);
    }
    tenants.push_back(std::move(tenant));
  }
  return tenants;
}

absl::StatusOr<LoadOptions> ParseLoadOptions(const std::vector<std::string>& args, bool* help) {
  *help = false;
  LoadOptions o;
  std::string arrival;
  std::string api_key;
  std::string tenant_mix;

  // Flags that take a value; each handler parses the text into `o`.
  using Handler = std::function<absl::Status(const std::string& flag, const std::string& value)>;
  const auto set_string = [](std::string* out) {
    return [out](const std::string&, const std::string& v) {
      *out = v;
      return absl::OkStatus();
    };
  };
  const auto set_positive = [](double* out) {
    return [out](const std::string& f, const std::string& v) -> absl::Status {
      absl::StatusOr<double> value = PositiveDouble(f, v);
      if (!value.ok()) return value.status();
      *out = *value;
      return absl::OkStatus();
    };
  };
  const auto set_optional_positive = [](std::optional<double>* out) {
    return [out](const std::string& f, const std::string& v) -> absl::Status {
      absl::StatusOr<double> value = PositiveDouble(f, v);
      if (!value.ok()) return value.status();
      *out = *value;
      return absl::OkStatus();
    };
  };
  const auto set_int = [](int* out, int64_t lo, int64_t hi) {
    return [out, lo, hi](const std::string& f, const std::string& v) -> absl::Status {
      absl::StatusOr<int64_t> value = IntInRange(f, v, lo, hi);
      if (!value.ok()) return value.status();
      *out = static_cast<int>(*value);
      return absl::OkStatus();
    };
  };
  double duration = 0;
  double max_time_value = 0;
  std::string api;
  const std::map<std::string, Handler> valued = {
      {"--api", set_string(&api)},
      {"--target", set_string(&o.target)},
      {"--model", set_string(&o.model)},
      {"--connections", set_int(&o.connections, 1, 64)},
      {"--rate", set_positive(&o.rate)},
      {"--arrival", set_string(&arrival)},
      {"--concurrency", set_int(&o.concurrency, 1, 100000)},
      {"--duration", set_positive(&duration)},
      {"--requests",
       [&](const std::string& f, const std::string& v) -> absl::Status {
         absl::StatusOr<int64_t> n = IntInRange(f, v, 1, int64_t{1} << 40);
         if (!n.ok()) return n.status();
         o.num_requests = *n;
         return absl::OkStatus();
       }},
      {"--max-in-flight", set_int(&o.max_in_flight, 1, 100000)},
      {"--max-time", set_positive(&max_time_value)},
      {"--timeout", set_positive(&o.request_timeout_s)},
      {"--prompts", set_string(&o.prompts_path)},
      {"--prompts-format",
       [&](const std::string& f, const std::string& v) -> absl::Status {
         static const std::map<std::string, PromptFormat> kFormats = {
             {"auto", PromptFormat::kAuto}, {"text", PromptFormat::kText},
             {"csv", PromptFormat::kCsv}, {"jsonl", PromptFormat::kJsonl}};
         const auto it = kFormats.find(v);
         if (it == kFormats.end()) return Bad(f, "expected auto, text, csv or jsonl, got \"" + v + "\"");
         o.prompts_format = it->second;
         return absl::OkStatus();
       }},
      {"--synthetic-prompt-tokens", set_int(&o.synthetic_prompt_tokens, 1, 1 << 20)},
      {"--synthetic-token-range",
       [&](const std::string& f, const std::string& v) {
         return ParseRange(f, v, 0, (int64_t{1} << 31) - 1, &o.synthetic_token_lo, &o.synthetic_token_hi);
       }},
      {"--max-tokens", set_int(&o.max_tokens, 1, 1 << 20)},
      {"--max-tokens-dist",
       [&](const std::string& f, const std::string& v) -> absl::Status {
         constexpr absl::string_view kUniform = "uniform:";
         if (v.rfind(kUniform.data(), 0) != 0) {
           return Bad(f, "expected uniform:LO:HI, got \"" + v + "\"");
         }
         int lo = 0;
         int hi = 0;
         absl::Status status = ParseRange(f, absl::string_view(v).substr(kUniform.size()), 1, 1 << 20, &lo, &hi);
         if (!status.ok()) return status;
         o.max_tokens_lo = lo;
         o.max_tokens_hi = hi;
         return absl::OkStatus();
       }},
      {"--temperature",
       [&](const std::string& f, const std::string& v) -> absl::Status {
         double t = 0;
         if (!absl::SimpleAtod(v, &t) || !std::isfinite(t) || t < 0) {
           return Bad(f, "expected a number >= 0, got \"" + v + "\"");
         }
         o.temperature = static_cast<float>(t);
         return absl::OkStatus();
       }},
      {"--decoding-mode",
       [&](const std::string& f, const std::string& v) -> absl::Status {
         static const std::map<std::string, DecodingChoice> kModes = {
             {"normal", DecodingChoice::kNormal}, {"sot", DecodingChoice::kSot}, {"auto", DecodingChoice::kAuto}};
         const auto it = kModes.find(v);
         if (it == kModes.end()) return Bad(f, "expected normal, sot or auto, got \"" + v + "\"");
         o.decoding_mode = it->second;
         return absl::OkStatus();
       }},
      {"--sot-share",
       [&](const std::string& f, const std::string& v) -> absl::Status {
         double share = 0;
         if (!absl::SimpleAtod(v, &share) || !std::isfinite(share) || share < 0 || share > 1) {
           return Bad(f, "expected a fraction in [0, 1], got \"" + v + "\"");
         }
         o.sot_share = share;
         return absl::OkStatus();
       }},
      {"--sot-outline-points", set_int(&o.sot_outline_points, 1, 64)},
      {"--sot-point-tokens",
       [&](const std::string& f, const std::string& v) -> absl::Status {
         absl::StatusOr<int64_t> n = IntInRange(f, v, 1, 4096);
         if (!n.ok()) return n.status();
         o.sot_point_tokens = static_cast<int>(*n);
         return absl::OkStatus();
       }},
      {"--image-model", set_string(&o.image_model)},
      {"--image-share",
       [&](const std::string& f, const std::string& v) -> absl::Status {
         double share = 0;
         if (!absl::SimpleAtod(v, &share) || !std::isfinite(share) || share < 0 || share > 1) {
           return Bad(f, "expected a fraction in [0, 1], got \"" + v + "\"");
         }
         o.image_share = share;
         return absl::OkStatus();
       }},
      {"--image-steps",
       [&](const std::string& f, const std::string& v) -> absl::Status {
         if (v.find(':') != std::string::npos) return ParseRange(f, v, 1, 1000, &o.image_steps_lo, &o.image_steps_hi);
         absl::StatusOr<int64_t> n = IntInRange(f, v, 1, 1000);
         if (!n.ok()) return n.status();
         o.image_steps_lo = o.image_steps_hi = static_cast<int>(*n);
         return absl::OkStatus();
       }},
      {"--image-classes", set_int(&o.image_classes, 1, 100000)},
      {"--image-guidance",
       [&](const std::string& f, const std::string& v) -> absl::Status {
         double g = 0;
         if (!absl::SimpleAtod(v, &g) || !std::isfinite(g) || g < 0 || g > 100) {
           return Bad(f, "expected a guidance scale in [0, 100], got \"" + v + "\"");
         }
         o.image_guidance = static_cast<float>(g);
         return absl::OkStatus();
       }},
      {"--api-key", set_string(&api_key)},
      {"--tls-ca", set_string(&o.tls_ca)},
      {"--tls-cert", set_string(&o.tls_cert)},
      {"--tls-key", set_string(&o.tls_key)},
      {"--tenant-mix", set_string(&tenant_mix)},
      {"--seed",
       [&](const std::string& f, const std::string& v) -> absl::Status {
         if (!absl::SimpleAtoi(v, &o.seed)) return Bad(f, "expected an unsigned integer, got \"" + v + "\"");
         return absl::OkStatus();
       }},
      {"--slo-ttft-ms", set_optional_positive(&o.slo.ttft_ms)},
      {"--slo-tpot-ms", set_optional_positive(&o.slo.tpot_ms)},
      {"--json", set_string(&o.json_path)},
  };
  const std::map<std::string, bool*> switches = {
      {"--ignore-eos", &o.ignore_eos},
      {"--sot-as-normal", &o.sot_as_normal},
      {"--json-requests", &o.json_requests},
      {"--progress", &o.force_progress},
  };

  std::set<std::string> given;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    if (flag == "-h" || flag == "--help") {
      *help = true;
      return o;
    }
    std::optional<std::string> inline_value;
    if (const size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    if (!given.insert(flag).second) return Bad(flag, "given more than once");
    if (const auto sw = switches.find(flag); sw != switches.end()) {
      if (inline_value.has_value()) return Bad(flag, "takes no value");
      *sw->second = true;
      continue;
    }
    const auto handler = valued.find(flag);
    if (handler == valued.end()) {
      if (flag.rfind("-", 0) == 0) return Bad(flag, "unknown flag");
      return absl::InvalidArgumentError("unexpected argument \"" + flag + "\" (all options are --flags)");
    }
    std::string value;
    if (inline_value.has_value()) {
      value = *inline_value;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return Bad(flag, "needs a value");
    }
    absl::Status status = handler->second(flag, value);
    if (!status.ok()) return status;
  }

  // Cross-flag rules.
  const bool images = given.count("--image-model") > 0;
  const bool only_images = images && o.image_share >= 1.0;
  for (const char* flag : {"--image-share", "--image-steps", "--image-classes", "--image-guidance"}) {
    if (given.count(flag) && !images) return Bad(flag, "needs --image-model");
  }
  if (images && o.image_model.empty()) return Bad("--image-model", "must not be empty");
  if (images && !given.count("--image-share")) return Bad("--image-model", "needs --image-share F (1: images only)");
  if (o.model.empty() && !only_images) return Bad("--model", "required (unless --image-share 1)");
  if (api.empty() || api == "grpc") {
    o.api = Api::kGrpc;
  } else if (api == "openai") {
    o.api = Api::kOpenAi;
  } else {
    return Bad("--api", "expected grpc or openai, got \"" + api + "\"");
  }
  if (o.target.empty()) return Bad("--target", "must not be empty");
  if (o.api == Api::kOpenAi) {
    if (!given.count("--target")) o.target = "http://127.0.0.1:8000";
    if (o.target.rfind("http://", 0) != 0) {
      return Bad("--target", "with --api openai, give the server's http://HOST:PORT, got \"" + o.target + "\"");
    }
    if (given.count("--connections")) {
      return Bad("--connections", "applies to --api grpc (with --api openai each request has its own connection)");
    }
    if (given.count("--synthetic-prompt-tokens")) {
      return Bad("--synthetic-prompt-tokens", "needs --api grpc (chat completions take text prompts)");
    }
    if (images) return Bad("--image-model", "needs --api grpc (tern.v1.Diffusion/GenerateImage)");
  } else if (o.target.rfind("http://", 0) == 0 || o.target.rfind("https://", 0) == 0) {
    return Bad("--target", "with --api grpc, give HOST:PORT (an http:// URL needs --api openai)");
  }
  const bool open_loop = given.count("--rate") > 0;
  const bool closed_loop = given.count("--concurrency") > 0;
  if (open_loop == closed_loop) {
    return absl::InvalidArgumentError("give exactly one of --rate (open loop) or --concurrency (closed loop)");
  }
  if (closed_loop) {
    if (!arrival.empty()) return Bad("--arrival", "applies to --rate only");
    o.mode = ArrivalMode::kClosedLoop;
    if (o.concurrency > o.max_in_flight) {
      return Bad("--concurrency", absl::StrCat("exceeds --max-in-flight (", o.max_in_flight, ")"));
    }
  } else if (arrival.empty() || arrival == "poisson") {
    o.mode = ArrivalMode::kPoisson;
  } else if (arrival == "constant") {
    o.mode = ArrivalMode::kConstant;
  } else {
    return Bad("--arrival", "expected poisson or constant, got \"" + arrival + "\"");
  }
  if (given.count("--duration")) o.duration_s = duration;
  if (!o.duration_s.has_value() && !o.num_requests.has_value()) {
    return absl::InvalidArgumentError("give --duration SECONDS or --requests N (or both)");
  }
  if (given.count("--max-time")) {
    o.max_time_s = max_time_value;
  } else {
    o.max_time_s = o.duration_s.has_value() ? *o.duration_s + kDrainAfterDurationS : kDefaultMaxTimeS;
  }
  const bool from_file = !o.prompts_path.empty();
  const bool synthetic = o.synthetic_prompt_tokens > 0;
  if (from_file && synthetic) {
    return absl::InvalidArgumentError("give exactly one of --prompts FILE or --synthetic-prompt-tokens N");
  }
  if (!from_file && !synthetic && !only_images) {
    return absl::InvalidArgumentError("give exactly one of --prompts FILE or --synthetic-prompt-tokens N");
  }
  if (given.count("--prompts-format") && !from_file) return Bad("--prompts-format", "needs --prompts");
  if (given.count("--synthetic-token-range") && !synthetic) {
    return Bad("--synthetic-token-range", "needs --synthetic-prompt-tokens");
  }
  if (given.count("--max-tokens") && given.count("--max-tokens-dist")) {
    return absl::InvalidArgumentError("give one of --max-tokens or --max-tokens-dist");
  }
  if (o.decoding_mode == DecodingChoice::kSot && given.count("--sot-share")) {
    return Bad("--sot-share", "--decoding-mode sot already sends every request as Skeleton-of-Thought");
  }
  const bool some_sot = o.decoding_mode == DecodingChoice::kSot || o.sot_share > 0;
  if (given.count("--sot-outline-points") && !some_sot) {
    return Bad("--sot-outline-points", "needs --sot-share > 0 or --decoding-mode sot");
  }
  if (given.count("--sot-as-normal") && o.sot_share <= 0) return Bad("--sot-as-normal", "needs --sot-share > 0");
  if (given.count("--sot-point-tokens") && !some_sot && o.decoding_mode != DecodingChoice::kAuto) {
    return Bad("--sot-point-tokens", "needs --sot-share > 0 or --decoding-mode sot or auto");
  }
  const bool tls = given.count("--tls-ca") || given.count("--tls-cert") || given.count("--tls-key");
  if (tls && o.api == Api::kOpenAi) return Bad("--tls-ca", "TLS applies to --api grpc");
  if (given.count("--tls-cert") != given.count("--tls-key")) {
    return Bad(given.count("--tls-cert") ? "--tls-cert" : "--tls-key", "--tls-cert and --tls-key go together");
  }
  if (!api_key.empty() && !tenant_mix.empty()) {
    return absl::InvalidArgumentError("give one of --api-key or --tenant-mix");
  }
  if (given.count("--api-key") && api_key.empty()) return Bad("--api-key", "must not be empty");
  if (given.count("--tenant-mix")) {
    absl::StatusOr<std::vector<TenantWeight>> tenants = ParseTenantMix(tenant_mix);
    if (!tenants.ok()) return tenants.status();
    o.tenants = *std::move(tenants);
  } else {
    // One tenant: the given key, or none (no authorization header).
    o.tenants.push_back({api_key, 1});
  }
  if (given.count("--json-requests") && o.json_path.empty()) return Bad("--json-requests", "needs --json");
  return o;
}

const char* LoadUsage() {
  return R"(usage: tern-load --model NAME (--rate R | --concurrency C) (--duration S | --requests N)
                 (--prompts FILE | --synthetic-prompt-tokens N) [options]
       tern-load --image-model NAME --image-share 1 (--rate R | --concurrency C) ... [options]
target
  --api grpc|openai             tern.v1 gRPC Generate streams (default), or streamed OpenAI chat
                                completions to any OpenAI-compatible server
  --target HOST:PORT            ternd's gRPC address (default 127.0.0.1:50051); with --api openai
                                the server's http://HOST:PORT (default http://127.0.0.1:8000)
  --model NAME                  model name as ListModels reports it (required)
  --connections N               gRPC channels to spread streams over, 1..64 (default 1)
  --tls-ca FILE                 gRPC over TLS, trusting this CA (PEM) for the server's certificate
  --tls-cert FILE --tls-key FILE  and presenting this client certificate (mutual TLS)
load shape
  --rate R                      open loop: R requests/s
  --arrival poisson|constant    gaps for --rate: exponential or fixed (default poisson)
  --concurrency C               closed loop: keep C requests in flight
  --duration S                  stop issuing requests after S seconds
  --requests N                  stop issuing after N requests
  --seed N                      seeds arrivals, prompt choice, lengths and tenants (default 0)
hard caps
  --max-in-flight N             never more than N streams open (default 1024)
  --max-time S                  cancel whatever is in flight and stop after S seconds
                                (default: duration + 60, or 600 with --requests only)
  --timeout S                   per-request gRPC deadline (default 300)
prompts
  --prompts FILE                prompts: text (one per line), .csv (a request/prompt/text column)
                                or .jsonl (objects with a prompt/text/request field)
  --prompts-format F            auto (by extension), text, csv or jsonl (default auto)
  --synthetic-prompt-tokens N   send N random token ids per prompt instead
  --synthetic-token-range LO:HI the ids' range, inclusive (default 100:999)
output length
  --max-tokens M                sampling.max_tokens (default 128)
  --max-tokens-dist uniform:LO:HI  draw max_tokens per request, inclusive
  --ignore-eos                  ask the server not to stop at EOS
  --temperature T               sampling.temperature (default: the model's)
decoding (Skeleton-of-Thought)
  --decoding-mode normal|sot|auto  decoding_mode of the requests (default normal; auto: the
                                server's router decides)
  --sot-share F                 send this fraction of requests (seeded) as Skeleton-of-Thought,
                                the rest as --decoding-mode; the report shows both classes
  --sot-outline-points N        SoT requests supply an outline of N synthetic points (no
                                skeleton phase) and ask for ignore_eos
  --sot-point-tokens L          sot.max_point_tokens; with --sot-outline-points, SoT requests
                                ask for max_tokens = N * L, so every point is L tokens long
  --sot-as-normal               the baseline of a --sot-share run: the same requests, those
                                picked for SoT sent as NORMAL with the same max_tokens
images (tern.v1.Diffusion/GenerateImage; mixed with LLM requests or alone)
  --image-model NAME            the diffusion model to ask for images
  --image-share F               this fraction of requests (seeded) are image requests; 1: images
                                only (then --model and prompts may be left out)
  --image-steps N|LO:HI         sampler steps per image request, fixed or uniform (default 20)
  --image-classes K             class labels drawn uniformly from [0, K) (default 10)
  --image-guidance G            guidance_scale of image requests (default: the model's)
tenants
  --api-key K                   send "authorization: Bearer K"
  --tenant-mix "kA:3,kB:1"      pick the API key per request by weight
report
  --slo-ttft-ms X               goodput counts requests with TTFT <= X ms ...
  --slo-tpot-ms X               ... and TPOT <= X ms
  --json OUT                    write the report as JSON to OUT
  --json-requests               include one record per request in the JSON
  --progress                    show the progress line even when stderr is not a TTY
)";
}

}  // namespace tern::loadtest
