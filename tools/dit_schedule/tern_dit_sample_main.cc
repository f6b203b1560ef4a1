// tern-dit-sample: a class-conditional DiT's images straight from the
// pipeline (runtime/dit/dit_pipeline.h) on the CPU ops, without the daemon,
// for sampler-schedule search and quality tables (tools/dit_schedule/):
//
//   tern-dit-sample --model DIR (--schedule FILE | --sampler dpmpp2m --steps 20)
//                   [--guidance 3] [--classes 0-9 | 1,4,7] [--per-class 10]
//                   [--seed-base 100000] [--seed-stride 100] [--attention-plan FILE] --out FILE
//
// --attention-plan follows a DiTFastAttn plan (runtime/dit/dit_attention_plan.h)
// for its step count (tools/dit_fastattn/search_plan.py --check-bin compares
// these images with PyTorch's under the same plan).
//
// Image j of class c has noise seed seed_base + seed_stride c + j (the seeds
// of tools/eval/eval_dit.py and tools/device/dit_quality.sh when left at
// their defaults). --out gets the images' uint8 pixels, class by class and
// seed by seed, each [channels, height, width], no header; stdout gets one
// JSON line: images, channels, height, width, steps, sampler, seconds
// (generation alone, model loading excluded) and images_per_second.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/dit_attention_plan.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/dit_pipeline.h"
#include "runtime/dit/sampler_schedule.h"
#include "runtime/dit/samplers.h"
#include "tools/common/tool_flags.h"

ABSL_FLAG(std::string, model, "", "DiT model directory (a pixel-space class-conditional model)");
ABSL_FLAG(std::string, schedule, "", "sampler schedule file (runtime/dit/README.md); excludes --sampler/--steps");
ABSL_FLAG(std::string, sampler, "dpmpp2m", "ddim, dpmpp2m or euler (without --schedule)");
ABSL_FLAG(int32_t, steps, 20, "sampler steps (without --schedule)");
ABSL_FLAG(std::string, attention_plan, "", "a DiTFastAttn attention plan file (runtime/dit/README.md)");
ABSL_FLAG(double, guidance, 3.0, "classifier-free guidance scale (1: none)");
ABSL_FLAG(std::string, classes, "0-9", "classes: a range A-B or a list A,B,C");
ABSL_FLAG(int32_t, per_class, 10, "images per class");
ABSL_FLAG(uint64_t, seed_base, 100000, "seed of class 0's first image");
ABSL_FLAG(uint64_t, seed_stride, 100, "seed distance between classes");
ABSL_FLAG(std::string, out, "", "file for the images' uint8 pixels");

namespace {

using tern::runtime::DiffusionSamplerKind;

int Fail(const std::string& message) {
  std::fprintf(stderr, "tern-dit-sample: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("tern-dit-sample --model DIR (--schedule FILE | --sampler S --steps N) --out FILE");
  tern::tools::ParseToolCommandLine(argc, argv);
  const std::string out_path = absl::GetFlag(FLAGS_out);
  if (absl::GetFlag(FLAGS_model).empty() || out_path.empty()) return Fail("--model and --out are required");
  const std::optional<std::vector<int32_t>> class_list = tern::tools::ParseClassList(absl::GetFlag(FLAGS_classes));
  if (!class_list) {
    return Fail(absl::StrCat("--classes ", absl::GetFlag(FLAGS_classes), ": not a range A-B or a list A,B,C"));
  }
  const std::vector<int32_t>& classes = *class_list;
  if (absl::GetFlag(FLAGS_per_class) < 1) return Fail("--per-class must be >= 1");

  tern::runtime::CpuDitOps ops;
  tern::runtime::DitModelOptions model_options;
  if (!absl::GetFlag(FLAGS_attention_plan).empty()) {
    auto dit_config = tern::runtime::LoadDitConfig(absl::GetFlag(FLAGS_model));
    if (!dit_config.ok()) return Fail(dit_config.status().ToString());
    auto plan = tern::runtime::LoadDitAttentionPlan(absl::GetFlag(FLAGS_attention_plan), *dit_config);
    if (!plan.ok()) return Fail(plan.status().ToString());
    model_options.attention_plan = std::make_shared<const tern::runtime::DitAttentionPlan>(*std::move(plan));
    // Every image's two rows in one batch.
    model_options.attention_cache_rows = int32_t(2 * classes.size()) * absl::GetFlag(FLAGS_per_class);
  }
  auto model = tern::runtime::DitModel::Load(absl::GetFlag(FLAGS_model), &ops, model_options);
  if (!model.ok()) return Fail(model.status().ToString());
  const tern::runtime::DitConfig& config = (*model)->config();
  if (!config.pixel_space) return Fail("the model is a latent model; this tool writes pixel-space models' images");
  auto pipeline = tern::runtime::DitPipeline::Create(model->get());
  if (!pipeline.ok()) return Fail(pipeline.status().ToString());

  tern::runtime::DitGenerateRequest request;
  request.num_images = absl::GetFlag(FLAGS_per_class);
  request.guidance_scale = absl::GetFlag(FLAGS_guidance);
  if (!absl::GetFlag(FLAGS_schedule).empty()) {
    auto schedule = tern::runtime::LoadSamplerSchedule(absl::GetFlag(FLAGS_schedule),
                                                       config.noise_schedule.num_train_timesteps);
    if (!schedule.ok()) return Fail(schedule.status().ToString());
    request.sampler = DiffusionSamplerKind::kSchedule;
    request.num_steps = schedule->num_steps();
    request.schedule = std::make_shared<const tern::runtime::SamplerSchedule>(*std::move(schedule));
  } else {
    auto kind = tern::runtime::ParseDiffusionSamplerKind(absl::GetFlag(FLAGS_sampler));
    if (!kind.ok()) return Fail(kind.status().ToString());
    if (*kind == DiffusionSamplerKind::kSchedule) return Fail("--sampler schedule: give --schedule FILE");
    request.sampler = *kind;
    request.num_steps = absl::GetFlag(FLAGS_steps);
  }

  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  if (!out) return Fail(absl::StrCat(out_path, ": cannot write"));
  // The whole set is one batch (each sample's result is the same as alone:
  // runtime/dit/README.md, batch invariance).
  std::vector<tern::runtime::DitGenerateRequest> requests;
  for (int32_t c : classes) {
    request.class_label = c;
    request.seed = absl::GetFlag(FLAGS_seed_base) + absl::GetFlag(FLAGS_seed_stride) * uint64_t(c);
    requests.push_back(request);
  }
  const auto start = std::chrono::steady_clock::now();
  auto images = (*pipeline)->GenerateBatch(requests);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!images.ok()) return Fail(images.status().ToString());
  int64_t count = 0;
  for (const auto& per_request : *images) {
    for (const tern::runtime::DitImage& image : per_request) {
      out.write(reinterpret_cast<const char*>(image.pixels.data()), std::streamsize(image.pixels.size()));
      ++count;
    }
  }
  out.close();
  if (!out) return Fail(absl::StrCat(out_path, ": write failed"));
  const nlohmann::json summary = {{"images", count},
                                  {"channels", config.output_channels()},
                                  {"height", config.output_size()},
                                  {"width", config.output_size()},
                                  {"steps", request.num_steps},
                                  {"sampler", tern::runtime::DiffusionSamplerName(request.sampler)},
                                  {"guidance", request.guidance_scale},
                                  {"seconds", seconds},
                                  {"images_per_second", double(count) / seconds}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}
