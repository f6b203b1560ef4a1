#include "tools/cli/cli_options.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tern::cli {
namespace {

absl::Status Bad(const std::string& message) { return absl::InvalidArgumentError(message); }

absl::StatusOr<int> PositiveInt(const std::string& flag, const std::string& text, int max) {
  int value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < 1 || value > max) {
    return Bad(absl::StrCat(flag, ": expected an integer in [1, ", max, "], got \"", text, "\""));
  }
  return value;
}

absl::StatusOr<double> NonNegative(const std::string& flag, const std::string& text) {
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !std::isfinite(value) || value < 0) {
    return Bad(absl::StrCat(flag, ": expected a number >= 0, got \"", text, "\""));
  }
  return value;
}

bool IsTextCommand(const std::string& command) { return command == "generate" || command == "chat"; }

absl::StatusOr<int> IntInRange(const std::string& flag, const std::string& text, int lo, int hi) {
  int value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < lo || value > hi) {
    return Bad(absl::StrCat(flag, ": expected an integer in [", lo, ", ", hi, "], got \"", text, "\""));
  }
  return value;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseOutline(const std::string& value) {
  std::vector<std::string> points;
  for (absl::string_view piece : absl::StrSplit(value, ';')) {
    const absl::string_view point = absl::StripAsciiWhitespace(piece);
    if (point.empty()) return Bad("--outline: empty point in \"" + value + "\" (points are separated by ';')");
    points.emplace_back(point);
  }
  return points;
}

absl::StatusOr<CliOptions> ParseCliArgs(const std::vector<std::string>& args, CliOptions defaults, bool* help) {
  *help = false;
  CliOptions o = std::move(defaults);
  std::vector<std::string> given;  // the generate/chat-only flags seen, for the checks below
  std::vector<std::string> image_given;  // the image-only flags seen
  bool mode_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    std::optional<std::string> inline_value;
    if (const size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    std::string value;
    auto take = [&]() -> absl::Status {
      if (inline_value.has_value()) {
        value = *inline_value;
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return Bad(arg + " needs a value");
      }
      return absl::OkStatus();
    };
    auto no_value = [&]() -> absl::Status {
      return inline_value.has_value() ? Bad(arg + " takes no value") : absl::OkStatus();
    };
    absl::Status status;
    if (arg == "--target") {
      if ((status = take()).ok()) o.target = value;
    } else if (arg == "--api-key") {
      if ((status = take()).ok()) o.api_key = value;
    } else if (arg == "--tls-ca") {
      if ((status = take()).ok()) o.tls_ca = value;
    } else if (arg == "--tls-cert") {
      if ((status = take()).ok()) o.tls_cert = value;
    } else if (arg == "--tls-key") {
      if ((status = take()).ok()) o.tls_key = value;
    } else if (arg == "--timeout") {
      if ((status = take()).ok()) {
        absl::StatusOr<double> seconds = NonNegative(arg, value);
        if (seconds.ok() && *seconds > 0) {
          o.timeout_seconds = *seconds;
        } else {
          status = Bad("--timeout: expected a positive number of seconds, got \"" + value + "\"");
        }
      }
    } else if (arg == "-m" || arg == "--model") {
      if ((status = take()).ok()) o.model = value;
    } else if (arg == "--max-tokens") {
      if ((status = take()).ok()) {
        absl::StatusOr<int> n = PositiveInt(arg, value, 1 << 30);
        if (n.ok()) o.max_tokens = *n;
        status = n.status();
      }
      given.push_back(arg);
    } else if (arg == "--temperature") {
      if ((status = take()).ok()) {
        absl::StatusOr<double> t = NonNegative(arg, value);
        if (t.ok()) o.temperature = static_cast<float>(*t);
        status = t.status();
      }
      given.push_back(arg);
    } else if (arg == "--system") {
      if ((status = take()).ok()) o.system = value;
    } else if (arg == "--mode") {
      if ((status = take()).ok()) {
        if (value == "auto") {
          o.mode = ModeFlag::kAuto;
        } else if (value == "sot") {
          o.mode = ModeFlag::kSot;
        } else if (value == "normal") {
          o.mode = ModeFlag::kNormal;
        } else {
          status = Bad("--mode: expected auto, sot or normal, got \"" + value + "\"");
        }
      }
      mode_given = true;
      given.push_back(arg);
    } else if (arg == "--outline") {
      if ((status = take()).ok()) {
        absl::StatusOr<std::vector<std::string>> points = ParseOutline(value);
        if (points.ok()) o.outline.insert(o.outline.end(), points->begin(), points->end());
        status = points.status();
      }
      given.push_back(arg);
    } else if (arg == "--ordered") {
      if ((status = no_value()).ok()) o.ordered = true;
      given.push_back(arg);
    } else if (arg == "--max-point-tokens") {
      if ((status = take()).ok()) {
        absl::StatusOr<int> n = PositiveInt(arg, value, 4096);
        if (n.ok()) o.max_point_tokens = *n;
        status = n.status();
      }
      given.push_back(arg);
    } else if (arg == "--json") {
      if ((status = no_value()).ok()) o.json = true;
    } else if (arg == "--class") {
      if ((status = take()).ok()) o.class_name = value;
      image_given.push_back(arg);
    } else if (arg == "--class-label") {
      if ((status = take()).ok()) {
        absl::StatusOr<int> n = IntInRange(arg, value, 0, 1 << 20);
        if (n.ok()) o.class_label = *n;
        status = n.status();
      }
      image_given.push_back(arg);
    } else if (arg == "-o" || arg == "--output") {
      if ((status = take()).ok()) {
        if (value.empty()) status = Bad(arg + ": empty file name");
        o.output = value;
      }
      image_given.push_back(arg);
    } else if (arg == "--steps") {
      if ((status = take()).ok()) {
        absl::StatusOr<int> n = IntInRange(arg, value, 1, 1000);
        if (n.ok()) o.steps = *n;
        status = n.status();
      }
      image_given.push_back(arg);
    } else if (arg == "--guidance") {
      if ((status = take()).ok()) {
        absl::StatusOr<double> g = NonNegative(arg, value);
        if (g.ok()) o.guidance = static_cast<float>(*g);
        status = g.status();
      }
      image_given.push_back(arg);
    } else if (arg == "--sampler") {
      if ((status = take()).ok()) {
        if (value == "ddim" || value == "dpm++2m" || value == "euler" || value == "schedule") {
          o.sampler = value;
        } else {
          status = Bad("--sampler: expected ddim, dpm++2m, euler or schedule, got \"" + value + "\"");
        }
      }
      image_given.push_back(arg);
    } else if (arg == "--seed") {
      if ((status = take()).ok()) {
        uint64_t seed = 0;
        if (absl::SimpleAtoi(value, &seed)) {
          o.seed = seed;
        } else {
          status = Bad("--seed: expected an unsigned integer, got \"" + value + "\"");
        }
      }
      image_given.push_back(arg);
    } else if (arg == "--count") {
      if ((status = take()).ok()) {
        absl::StatusOr<int> n = IntInRange(arg, value, 1, 16);
        if (n.ok()) o.count = *n;
        status = n.status();
      }
      image_given.push_back(arg);
    } else if (arg == "-h" || arg == "--help") {
      *help = true;
      return o;
    } else if (arg.size() > 1 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9')) {
      status = Bad("unknown flag " + arg);
    } else if (o.command.empty()) {
      o.command = arg;
    } else {
      o.args.push_back(arg);
    }
    if (!status.ok()) return status;
  }
  if (o.command.empty()) return Bad("no command given");
  if (o.tls_cert.empty() != o.tls_key.empty()) return Bad("--tls-cert and --tls-key go together (mutual TLS)");
  if (!o.system.empty() && o.command != "chat") return Bad("--system applies to chat only");
  if (!IsTextCommand(o.command) && !given.empty()) {
    return Bad(given.front() + " applies to generate and chat only");
  }
  if (o.command != "image" && !image_given.empty()) return Bad(image_given.front() + " applies to image only");
  if (o.command == "image") {
    if (o.args.size() > 1) return Bad("image takes one prompt; quote it");
    const int conditions = int(!o.class_name.empty()) + int(o.class_label.has_value()) + int(!o.args.empty());
    if (conditions != 1) {
      return Bad("image needs exactly one of --class NAME, --class-label N or a text prompt");
    }
  }
  if (o.mode == ModeFlag::kNormal && mode_given) {
    for (const std::string& flag : given) {
      if (flag == "--outline" || flag == "--ordered" || flag == "--max-point-tokens") {
        return Bad(flag + " asks for Skeleton-of-Thought, which --mode normal turns off");
      }
    }
  }
  return o;
}

const char* CliUsage() {
  return R"(usage: tern [--target HOST:PORT] [--api-key KEY] [--timeout S]
            [--tls-ca CA.pem [--tls-cert CERT.pem --tls-key KEY.pem]] [--json] COMMAND [ARGS]
commands:
  health                      print SERVING or NOT_SERVING (exit 0 only when serving)
  models                      list served models
  tokenize -m MODEL TEXT      print token ids, space-separated
  detokenize -m MODEL ID...   print the text of token ids
  generate -m MODEL [OPTIONS] PROMPT
  chat -m MODEL [--system TEXT] [OPTIONS] MESSAGE
  image -m MODEL (--class NAME | --class-label N | PROMPT) [IMAGE OPTIONS]
                              generate images (PNG), progress on a terminal
generate and chat options:
  --max-tokens N              sampling.max_tokens
  --temperature T             sampling.temperature (0: greedy)
  --mode auto|sot|normal      decoding: auto lets the server's router choose (default),
                              sot is Skeleton-of-Thought, normal is plain decoding
  --outline "a;b;c"           Skeleton-of-Thought on these points (no skeleton phase);
                              may be repeated, points add up
  --ordered                   stream the points one after another
  --max-point-tokens N        most tokens per point, 1..4096
  --json                      print one JSON object (text, parts, usage, sot report)
image options:
  -o, --output FILE           where the PNG goes (default image.png); with --count N > 1,
                              FILE's stem gets -0, -1, ... before the extension
  --steps N                   sampler steps, 1..1000 (default: the model's)
  --guidance G                classifier-free guidance scale (1 disables it)
  --sampler ddim|dpm++2m|euler
  --seed S                    same seed, same request: same image
  --count N                   images, 1..16
  --json                      print one JSON object (files, seeds, sizes, time)
TLS: --tls-ca trusts the CA of ternd's certificate (without it, the system's roots);
--tls-cert and --tls-key present a client certificate (mutual TLS).
--json (any command): one JSON object on stdout: {"status": "OK" or the gRPC code, the
command's result, "error" when the call failed}.
The target and key may also come from TERN_TARGET and TERN_API_KEY.
Exit status: 0 OK, 1 the server failed the call (or health: not serving), 2 bad usage.
)";
}

}  // namespace tern::cli
