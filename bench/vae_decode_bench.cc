// tern-vae-bench: the VAE decoder of a latent DiT (runtime/dit/vae_decoder.h)
// on the CPU or CUDA DiT ops.
//
//   tern-vae-bench --vae DIR/vae [--backend cuda] [--dtype bfloat16] [--latent-sizes 32,64]
//                  [--batches 1,16] [--iters 10] [--profile] [--json out.json]
//     times Decode (host latents in, host images out; CUDA graphs on) per
//     latent size and batch: ms a decode and ms an image. --profile (cuda)
//     also runs the decodes eagerly on ops that time every op with events
//     (CudaDitOpsOptions::profile) and splits a decode into convolutions
//     and 1x1 linears, the mid-block attention, and the rest (GroupNorm,
//     SiLU, upsampling, residual adds, copies).
//   tern-vae-bench --model DIR --dump out.safetensors [--backend cuda] [--dtype bfloat16]
//     writes "eps" (one DiT step: x = GaussianNoise(42), t = [999, 500],
//     y = [1, null]) and "images" (the decode of GaussianNoise(7) latents),
//     the inputs tools/train/dit/latent_reference.py uses, for its --compare.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/host_info.h"
#include "runtime/base/flag_names.h"
#include "runtime/dit/dit_model.h"
#if defined(TERN_WITH_CUDA)
#include "runtime/dit/cuda_dit_ops.h"
#endif
#include "runtime/dit/dit_ops_factory.h"
#include "runtime/dit/gaussian_noise.h"
#include "runtime/dit/vae_decoder.h"
#include "runtime/model/safetensors.h"

ABSL_FLAG(std::string, vae, "", "A VAE directory (config.json, diffusion_pytorch_model.safetensors) to time");
ABSL_FLAG(std::string, model, "", "A latent DiT directory (either layout) for --dump");
ABSL_FLAG(std::string, dump, "", "Write one DiT step's eps and one VAE decode to this safetensors file");
ABSL_FLAG(std::string, backend, "cuda", "cpu or cuda");
ABSL_FLAG(std::string, dtype, "auto", "float32, bfloat16 or float16 (auto: bfloat16 on cuda, float32 on cpu)");
ABSL_FLAG(std::string, latent_sizes, "32,64", "Latent sides to time (32: 256x256 images, 64: 512x512)");
ABSL_FLAG(std::string, batches, "1,16", "Images a decode");
ABSL_FLAG(int32_t, iters, 10, "Timed decodes per configuration (after 2 untimed: eager, then graph capture)");
ABSL_FLAG(bool, profile, false, "cuda: also split each decode into convolutions, attention and the rest");
ABSL_FLAG(std::string, json, "", "Also write the results here");

namespace {

using namespace tern::runtime;  // NOLINT

int Fail(const std::string& message) {
  std::fprintf(stderr, "tern-vae-bench: %s\n", message.c_str());
  return 1;
}

std::vector<int> Ints(const std::string& list) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int v = 0;
    if (absl::SimpleAtoi(part, &v) && v > 0) out.push_back(v);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<DitOps>> Ops() {
  DitOpsChoice choice;
  choice.backend = absl::GetFlag(FLAGS_backend);
  choice.dtype = absl::GetFlag(FLAGS_dtype);
  return MakeDitOps(choice);
}

int Dump() {
  const std::string dir = absl::GetFlag(FLAGS_model);
  auto config = LoadDitConfig(dir);
  if (!config.ok()) return Fail(std::string(config.status().message()));
  if (!config->has_vae) return Fail(dir + " has no VAE");
  auto ops = Ops();
  if (!ops.ok()) return Fail(std::string(ops.status().message()));
  auto model = DitModel::Load(dir, ops->get());
  if (!model.ok()) return Fail(std::string(model.status().message()));
  auto vae = VaeDecoder::Load((std::filesystem::path(dir) / DitConfig::kVaeDir).string(), config->vae,
                              config->image_size, ops->get());
  if (!vae.ok()) return Fail(std::string(vae.status().message()));
  const int64_t n = config->sample_elements(), m = (*vae)->image_elements();
  const std::vector<float> x = GaussianNoise(42, 2 * n);
  const std::vector<float> t = {999.0f, 500.0f};
  const std::vector<int32_t> y = {1, config->null_class};
  std::vector<float> eps(2 * n), images(2 * m);
  if (auto s = (*model)->Forward({x, t, y, {}}, absl::MakeSpan(eps)); !s.ok()) return Fail(std::string(s.message()));
  const std::vector<float> latents = GaussianNoise(7, 2 * n);
  if (auto s = (*vae)->Decode(latents, absl::MakeSpan(images)); !s.ok()) return Fail(std::string(s.message()));
  const int64_t c = config->in_channels, h = config->image_size, oc = config->vae.out_channels,
                size = (*vae)->image_size();
  const std::vector<TensorSpec> specs = {{"eps", DType::kF32, {2, c, h, h}}, {"images", DType::kF32, {2, oc, size, size}}};
  const absl::Status written = WriteSafetensors(absl::GetFlag(FLAGS_dump), specs, [&](const TensorSpec& spec, uint8_t* out) {
    const std::vector<float>& values = spec.name == "eps" ? eps : images;
    std::memcpy(out, values.data(), values.size() * sizeof(float));
  });
  if (!written.ok()) return Fail(std::string(written.message()));
  std::printf("wrote %s: eps [2, %lld, %lld, %lld], images [2, %lld, %lld, %lld] (%s ops)\n",
              absl::GetFlag(FLAGS_dump).c_str(), (long long)c, (long long)h, (long long)h, (long long)oc,
              (long long)size, (long long)size, (*ops)->name().c_str());
  return 0;
}

// With --profile on the CUDA ops: ms of a decode in convolutions + linears,
// attention and the rest, averaged over `iters` eager decodes on profiling
// ops (after one that sizes the buffers). False when not asked for or not
// available in this build.
struct DecodeSplit {
  double conv_ms = 0, attention_ms = 0, other_ms = 0;
};
bool ProfileDecode(const VaeDecoderConfig& config, int latent, const WeightStore& store, const std::vector<float>& latents,
                   int iters, DecodeSplit* split) {
#if defined(TERN_WITH_CUDA)
  if (!absl::GetFlag(FLAGS_profile) || absl::GetFlag(FLAGS_backend) != "cuda") return false;
  DitOpsChoice choice;
  choice.backend = "cuda";
  choice.dtype = absl::GetFlag(FLAGS_dtype);
  auto dtype_name = DitOpsComputeDType(choice);
  DType dtype;
  if (!dtype_name.ok() || !ParseTorchDType(*dtype_name, &dtype)) return false;
  CudaDitOpsOptions options;
  options.compute_dtype = dtype;
  options.profile = true;
  auto ops = CudaDitOps::Create(options);
  if (!ops.ok()) return false;
  auto vae = VaeDecoder::Create(config, latent, store, ops->get());
  if (!vae.ok()) return false;
  std::vector<float> images(latents.size() / (*vae)->latent_elements() * (*vae)->image_elements());
  for (int i = 0; i <= iters; ++i) {
    if (!(*vae)->Decode(latents, absl::MakeSpan(images)).ok()) return false;
    if (i == 0) continue;
    const CudaDitOps::OpTimes t = (*ops)->op_times();
    split->conv_ms += t.linear_ms / iters;
    split->attention_ms += t.attention_ms / iters;
    split->other_ms += t.other_ms / iters;
  }
  return true;
#else
  (void)config, (void)latent, (void)store, (void)latents, (void)iters, (void)split;
  return false;
#endif
}

int Bench() {
  const std::string dir = absl::GetFlag(FLAGS_vae);
  std::ifstream in(std::filesystem::path(dir) / "config.json");
  if (!in) return Fail("--vae " + dir + ": no config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto config = ParseVaeConfig(text, dir + "/config.json");
  if (!config.ok()) return Fail(std::string(config.status().message()));
  auto ops = Ops();
  if (!ops.ok()) return Fail(std::string(ops.status().message()));
  auto store = WeightStore::Open(dir, "diffusion_pytorch_model");
  if (!store.ok()) return Fail(std::string(store.status().message()));
  std::printf("tern VAE decode on %s, %s ops, dtype %s; host latents in, host images out%s\n",
              tern::bench::CpuModelName().c_str(), (*ops)->name().c_str(), absl::GetFlag(FLAGS_dtype).c_str(),
              (*ops)->name() == "cuda" ? ", CUDA graphs on" : "");
  std::printf("%8s %7s %6s | %12s %12s\n", "latent", "image", "batch", "ms/decode", "ms/image");
  std::string json = "[";
  for (int latent : Ints(absl::GetFlag(FLAGS_latent_sizes))) {
    auto vae = VaeDecoder::Create(*config, latent, **store, ops->get());
    if (!vae.ok()) return Fail(std::string(vae.status().message()));
    for (int batch : Ints(absl::GetFlag(FLAGS_batches))) {
      const std::vector<float> latents = GaussianNoise(uint64_t(batch), batch * (*vae)->latent_elements());
      std::vector<float> images(size_t(batch) * (*vae)->image_elements());
      for (int i = 0; i < 2; ++i) {
        if (auto s = (*vae)->Decode(latents, absl::MakeSpan(images)); !s.ok()) return Fail(std::string(s.message()));
      }
      const int iters = std::max(1, absl::GetFlag(FLAGS_iters));
      const auto begin = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) {
        if (auto s = (*vae)->Decode(latents, absl::MakeSpan(images)); !s.ok()) return Fail(std::string(s.message()));
      }
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count() / iters;
      std::printf("%5dx%-2d %4dx%-3d %6d | %12.3f %12.3f\n", latent, latent, (*vae)->image_size(),
                  (*vae)->image_size(), batch, ms, ms / batch);
      absl::StrAppend(&json, json.size() > 1 ? "," : "", "{\"latent\":", latent, ",\"batch\":", batch,
                      ",\"ms_per_decode\":", ms, ",\"ms_per_image\":", ms / batch);
      DecodeSplit split;
      if (ProfileDecode(*config, latent, **store, latents, iters, &split)) {
        std::printf("%24s profiled eager decode: convolutions + linears %.3f ms, attention %.3f ms, other %.3f ms\n",
                    "", split.conv_ms, split.attention_ms, split.other_ms);
        absl::StrAppend(&json, ",\"profiled_conv_ms\":", split.conv_ms, ",\"profiled_attention_ms\":",
                        split.attention_ms, ",\"profiled_other_ms\":", split.other_ms);
      }
      json += "}";
    }
  }
  json += "]";
  if (!absl::GetFlag(FLAGS_json).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_json)) << "{\"bench\":\"tern_vae_decode\",\"backend\":\"" << (*ops)->name()
                                              << "\",\"dtype\":\"" << absl::GetFlag(FLAGS_dtype)
                                              << "\",\"results\":" << json << "}\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args = tern::base::NormalizeFlagDashes(argc, argv);
  std::vector<char*> arg_ptrs;
  for (auto& arg : args) arg_ptrs.push_back(arg.data());
  absl::ParseCommandLine(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  if (!absl::GetFlag(FLAGS_dump).empty()) {
    if (absl::GetFlag(FLAGS_model).empty()) return Fail("--dump needs --model");
    return Dump();
  }
  if (absl::GetFlag(FLAGS_vae).empty()) return Fail("give --vae DIR (to time) or --model DIR --dump FILE");
  return Bench();
}
