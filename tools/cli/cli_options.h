// tern's command line: the option struct and its parser. Parsing touches
// neither the network nor the environment: main() passes TERN_TARGET and
// TERN_API_KEY in as defaults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tern::cli {

// --mode: how generate and chat ask to be decoded (GenerateRequest.decoding_mode).
enum class ModeFlag {
  kAuto,    // DECODING_MODE_AUTO: the server's router decides
  kSot,     // DECODING_MODE_SKELETON_OF_THOUGHT
  kNormal,  // DECODING_MODE_NORMAL
};

struct CliOptions {
  std::string target = "localhost:50051";
  std::string api_key;
  double timeout_seconds = 30;           // the call's deadline
  // TLS (any set): the CA that signed the server's certificate (empty: the
  // system's roots), and for mutual TLS the client's certificate and key.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  bool tls() const { return !tls_ca.empty() || !tls_cert.empty() || !tls_key.empty(); }
  std::string command;                   // health, models, tokenize, detokenize, generate, chat, image
  std::string model;
  std::vector<std::string> args;         // the command's positional arguments

  // generate and chat.
  std::optional<int> max_tokens;
  std::optional<float> temperature;
  std::string system;                    // chat only: the system message; empty sends none
  ModeFlag mode = ModeFlag::kAuto;
  std::vector<std::string> outline;      // Skeleton-of-Thought points to expand, in order
  bool ordered = false;                  // stream the points one after another
  std::optional<int> max_point_tokens;   // in [1, 4096]
  bool json = false;                     // one JSON object on stdout instead of the text

  // image.
  std::string class_name;                // --class: one of the model's class names
  std::optional<int> class_label;        // --class-label: the class by number
  std::string output = "image.png";      // -o: the file (or the stem of numbered files)
  std::optional<int> steps;              // in [1, 1000]
  std::optional<float> guidance;         // >= 0
  std::string sampler;                   // ddim, dpm++2m, euler, schedule; empty: the model's default
  std::optional<uint64_t> seed;
  int count = 1;                         // images, in [1, 16]
};

// Parses argv[1..]. Flags may come before or after the command; `--flag
// value` and `--flag=value` both work. A repeated flag takes its last value,
// except --outline, whose points add up. `help` is set (and the options
// returned) for -h / --help. The error message is printed by the caller,
// which exits 2.
absl::StatusOr<CliOptions> ParseCliArgs(const std::vector<std::string>& args, CliOptions defaults, bool* help);

// Splits one --outline value at ';' into trimmed points; an empty point is an error.
absl::StatusOr<std::vector<std::string>> ParseOutline(const std::string& value);

const char* CliUsage();

}  // namespace tern::cli
