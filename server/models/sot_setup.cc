#include "server/models/sot_setup.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace tern::server {
namespace {

absl::Status CheckRange(const char* field, int32_t value, int32_t lo, int32_t hi) {
  if (value == 0 || (value >= lo && value <= hi)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("sot.", field, " = ", value, " is not in [", lo, ", ", hi, "]"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServedSot>> MakeServedSot(const tern::v1::ServerConfig& server,
                                                         const tern::v1::ModelConfig& model,
                                                         const runtime::Tokenizer* tokenizer,
                                                         const runtime::ChatTemplateConfig* chat) {
  const tern::v1::SotModelConfig& c = model.sot();
  auto served = std::make_unique<ServedSot>();
  scheduler::SotConfig& config = served->config;
  config.tokenizer = tokenizer;
  config.chat_template = chat;
  RETURN_IF_ERROR(CheckRange("max_skeleton_tokens", c.max_skeleton_tokens(), 1, 4096));
  RETURN_IF_ERROR(CheckRange("max_point_tokens", c.max_point_tokens(), 1, 4096));
  RETURN_IF_ERROR(CheckRange("max_points", c.max_points(), 2, 64));
  if (c.max_skeleton_tokens() > 0) config.max_skeleton_tokens = c.max_skeleton_tokens();
  if (c.max_point_tokens() > 0) config.max_point_tokens = c.max_point_tokens();
  if (c.max_points() > 0) config.max_points = c.max_points();
  runtime::SotPromptTemplates& t = config.templates;
  if (!c.skeleton_prompt().empty()) t.skeleton_user = c.skeleton_prompt();
  if (!c.skeleton_prefill().empty()) t.skeleton_prefill = c.skeleton_prefill();
  if (!c.point_prompt().empty()) t.point_user = c.point_prompt();
  if (!c.point_prefill().empty()) t.point_prefill = c.point_prefill();
  if (!c.router_prompt().empty()) t.router_user = c.router_prompt();
  if (absl::Status valid = t.Validate(); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("sot prompts: ", valid.message()));
  }
  const std::string router_file = !c.router_file().empty() ? c.router_file() : server.sot_router_file();
  std::string router = c.router();
  if (router.empty()) router = router_file.empty() ? "none" : "trained";
  if (router == "none") {
    config.router = scheduler::SotRouterKind::kNone;
  } else if (router == "prompt") {
    config.router = scheduler::SotRouterKind::kPrompt;
  } else if (router == "trained") {
    if (router_file.empty()) {
      return absl::InvalidArgumentError(
          "sot.router is \"trained\" but neither sot.router_file nor the server's sot_router_file names a file");
    }
    ASSIGN_OR_RETURN(served->trained_router, runtime::TrainedRouter::Load(router_file));
    config.router = scheduler::SotRouterKind::kTrained;
    config.trained_router = served->trained_router.get();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("sot.router \"", router, "\" is not one of: none, prompt, trained"));
  }
  return served;
}

}  // namespace tern::server
