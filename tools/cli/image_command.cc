#include "tools/cli/image_command.h"

#include <algorithm>
#include <chrono>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "tools/cli/rpc_util.h"

namespace tern::cli {
namespace {

tern::v1::Sampler SamplerOf(const std::string& name) {
  if (name == "ddim") return tern::v1::SAMPLER_DDIM;
  if (name == "dpm++2m") return tern::v1::SAMPLER_DPM_SOLVER_PP_2M;
  if (name == "euler") return tern::v1::SAMPLER_EULER;
  if (name == "schedule") return tern::v1::SAMPLER_SCHEDULE;
  return tern::v1::SAMPLER_UNSPECIFIED;
}

bool WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

}  // namespace

tern::v1::GenerateImageRequest MakeImageRequest(const CliOptions& options) {
  tern::v1::GenerateImageRequest request;
  request.set_model(options.model);
  if (!options.class_name.empty()) {
    request.set_class_name(options.class_name);
  } else if (options.class_label.has_value()) {
    request.set_class_label(*options.class_label);
  } else if (!options.args.empty()) {
    request.set_prompt(options.args[0]);
  }
  if (options.steps.has_value()) request.set_steps(*options.steps);
  if (options.guidance.has_value()) request.set_guidance_scale(*options.guidance);
  request.set_sampler(SamplerOf(options.sampler));
  if (options.seed.has_value()) request.set_seed(*options.seed);
  request.set_batch(options.count);
  return request;
}

std::string ImageFileName(const std::string& output, int index, int count) {
  if (count <= 1) return output;
  const size_t slash = output.find_last_of('/');
  const size_t dot = output.find_last_of('.');
  const bool has_extension = dot != std::string::npos && (slash == std::string::npos || dot > slash + 1);
  if (!has_extension) return absl::StrCat(output, "-", index);
  return absl::StrCat(output.substr(0, dot), "-", index, output.substr(dot));
}

std::string ProgressLine(int step, int total_steps, double elapsed_seconds, int width) {
  const std::string tail = absl::StrFormat("  %d/%d steps  %.1f s", step, total_steps, elapsed_seconds);
  const int bar = std::min(40, width - static_cast<int>(tail.size()) - 2);
  if (bar < 5) return tail.substr(2);
  const int filled = total_steps > 0 ? std::clamp(bar * step / total_steps, 0, bar) : 0;
  return absl::StrCat("[", std::string(filled, '#'), std::string(bar - filled, '.'), "]", tail);
}

int RunImage(tern::v1::Diffusion::StubInterface* stub, const CliOptions& options, const Console& console) {
  const auto start = std::chrono::steady_clock::now();
  grpc::ClientContext context;
  PrepareContext(options, &context);
  const tern::v1::GenerateImageRequest request = MakeImageRequest(options);
  std::unique_ptr<grpc::ClientReaderInterface<tern::v1::GenerateImageResponse>> reader =
      stub->GenerateImage(&context, request);
  nlohmann::json images = nlohmann::json::array();
  std::string request_id;
  bool progress_shown = false;
  bool write_failed = false;
  tern::v1::GenerateImageResponse response;
  const int width = console.terminal_size().columns > 0 ? console.terminal_size().columns : 80;
  while (reader->Read(&response)) {
    if (!response.request_id().empty()) request_id = response.request_id();
    if (response.has_progress() && console.err_is_tty) {
      const auto& p = response.progress();
      std::fprintf(console.err, "\r%s", ProgressLine(p.step(), p.total_steps(), p.elapsed_seconds(), width).c_str());
      std::fflush(console.err);
      progress_shown = true;
    }
    if (response.has_image()) {
      const tern::v1::GeneratedImage& image = response.image();
      const std::string path = ImageFileName(options.output, image.index(), options.count);
      if (!WriteFile(path, image.png())) {
        std::fprintf(console.err, "%stern: cannot write %s\n", progress_shown ? "\n" : "", path.c_str());
        write_failed = true;
        context.TryCancel();
        break;
      }
      images.push_back({{"index", image.index()},
                        {"file", path},
                        {"width", image.width()},
                        {"height", image.height()},
                        {"seed", image.seed()},
                        {"png_bytes", image.png().size()}});
    }
  }
  const grpc::Status status = reader->Finish();
  if (progress_shown) std::fputs("\n", console.err);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (write_failed) return 1;
  if (options.json) {
    nlohmann::json result = {{"request_id", request_id},
                             {"status", StatusCodeName(status.error_code())},
                             {"images", images},
                             {"elapsed_s", elapsed}};
    if (!status.ok()) result["error"] = status.error_message();
    std::fprintf(console.out, "%s\n", result.dump().c_str());
    return status.ok() ? 0 : 1;
  }
  if (!status.ok()) return ReportError(status, console.err);
  for (const auto& image : images) {
    std::fprintf(console.out, "%s\n", image["file"].get<std::string>().c_str());
  }
  if (console.err_is_tty) {
    std::fprintf(console.err, "tern: %zu image(s) in %.2f s\n", images.size(), elapsed);
  }
  return 0;
}

}  // namespace tern::cli
