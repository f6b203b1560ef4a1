#include "runtime/dit/vae_decoder.h"

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

// Workspace slots (DitOps::Scratch), apart from DitModel's.
enum Slot : int {
  kLatents = 100,  // [B*h*w, latent_channels]
  kPool0,          // four activations [B*H*W, C] the decoder rotates through
  kPool1,
  kPool2,
  kPool3,
  kQkv,            // [B*H*W, 3 C] the mid-block attention's q, k, v
  kAttention,      // [B*H*W, C] its output before to_out
};
constexpr int kPoolSize = 4;

void AddResnet(std::vector<DitTensorSpec>* layout, const std::string& p, int64_t in, int64_t out) {
  layout->push_back({p + "norm1.weight", {in}});
  layout->push_back({p + "norm1.bias", {in}});
  layout->push_back({p + "conv1.weight", {out, in, 3, 3}});
  layout->push_back({p + "conv1.bias", {out}});
  layout->push_back({p + "norm2.weight", {out}});
  layout->push_back({p + "norm2.bias", {out}});
  layout->push_back({p + "conv2.weight", {out, out, 3, 3}});
  layout->push_back({p + "conv2.bias", {out}});
  if (in != out) {
    layout->push_back({p + "conv_shortcut.weight", {out, in, 1, 1}});
    layout->push_back({p + "conv_shortcut.bias", {out}});
  }
}

void AddMidBlock(std::vector<DitTensorSpec>* layout, const std::string& p, int64_t c, bool attention) {
  AddResnet(layout, p + "resnets.0.", c, c);
  if (attention) {
    const std::string a = p + "attentions.0.";
    layout->push_back({a + "group_norm.weight", {c}});
    layout->push_back({a + "group_norm.bias", {c}});
    for (const char* part : {"to_q", "to_k", "to_v", "to_out.0"}) {
      layout->push_back({a + part + ".weight", {c, c}});
      layout->push_back({a + part + ".bias", {c}});
    }
  }
  AddResnet(layout, p + "resnets.1.", c, c);
}

void AddConv(std::vector<DitTensorSpec>* layout, const std::string& p, int64_t out, int64_t in, int64_t k) {
  layout->push_back({p + ".weight", {out, in, k, k}});
  layout->push_back({p + ".bias", {out}});
}

}  // namespace

std::vector<DitTensorSpec> VaeTensorLayout(const VaeDecoderConfig& c, bool encoder) {
  std::vector<DitTensorSpec> layout;
  const int64_t latent = c.latent_channels;
  const std::vector<int32_t>& channels = c.block_out_channels;
  const size_t blocks = channels.size();
  if (encoder) {
    // diffusers' Encoder (double_z) and quant_conv; tern never reads them.
    AddConv(&layout, "encoder.conv_in", channels[0], c.out_channels, 3);
    for (size_t i = 0; i < blocks; ++i) {
      const int64_t in = i == 0 ? channels[0] : channels[i - 1], out = channels[i];
      for (int32_t j = 0; j < c.layers_per_block; ++j) {
        AddResnet(&layout, absl::StrCat("encoder.down_blocks.", i, ".resnets.", j, "."), j == 0 ? in : out, out);
      }
      if (i + 1 < blocks) AddConv(&layout, absl::StrCat("encoder.down_blocks.", i, ".downsamplers.0.conv"), out, out, 3);
    }
    AddMidBlock(&layout, "encoder.mid_block.", channels.back(), c.mid_block_attention);
    layout.push_back({"encoder.conv_norm_out.weight", {channels.back()}});
    layout.push_back({"encoder.conv_norm_out.bias", {channels.back()}});
    AddConv(&layout, "encoder.conv_out", 2 * latent, channels.back(), 3);
    AddConv(&layout, "quant_conv", 2 * latent, 2 * latent, 1);
  }
  if (c.post_quant_conv) AddConv(&layout, "post_quant_conv", latent, latent, 1);
  AddConv(&layout, "decoder.conv_in", channels.back(), latent, 3);
  AddMidBlock(&layout, "decoder.mid_block.", channels.back(), c.mid_block_attention);
  int64_t prev = channels.back();
  for (size_t i = 0; i < blocks; ++i) {
    const int64_t out = channels[blocks - 1 - i];
    for (int32_t j = 0; j <= c.layers_per_block; ++j) {
      AddResnet(&layout, absl::StrCat("decoder.up_blocks.", i, ".resnets.", j, "."), j == 0 ? prev : out, out);
    }
    if (i + 1 < blocks) AddConv(&layout, absl::StrCat("decoder.up_blocks.", i, ".upsamplers.0.conv"), out, out, 3);
    prev = out;
  }
  layout.push_back({"decoder.conv_norm_out.weight", {channels[0]}});
  layout.push_back({"decoder.conv_norm_out.bias", {channels[0]}});
  AddConv(&layout, "decoder.conv_out", c.out_channels, channels[0], 3);
  return layout;
}

struct VaeResnetWeights {
  int32_t in = 0, out = 0;
  std::unique_ptr<DitTable> norm1, norm2;  // [2, C]: gamma, beta
  std::unique_ptr<DitConv> conv1, conv2, shortcut;
};

struct VaeDecoder::Weights {
  std::unique_ptr<DitConv> post_quant_conv;  // null without one
  std::unique_ptr<DitConv> conv_in;
  VaeResnetWeights mid[2];
  std::unique_ptr<DitTable> attention_norm;  // null without the mid-block attention
  std::unique_ptr<DitLinear> attention_qkv, attention_out;
  struct UpBlock {
    int32_t channels = 0;
    std::vector<VaeResnetWeights> resnets;
    std::unique_ptr<DitConv> upsample;  // null in the last block
  };
  std::vector<UpBlock> up;
  std::unique_ptr<DitTable> norm_out;
  std::unique_ptr<DitConv> conv_out;
};

namespace {

class Loader {
 public:
  Loader(const WeightStore& store, DitOps* ops) : store_(store), ops_(ops) {}

  absl::StatusOr<TensorView> Get(const std::string& name, const std::vector<int64_t>& shape) const {
    return store_.GetWithShape(name, shape);
  }
  absl::StatusOr<std::unique_ptr<DitConv>> Conv(const std::string& p, int64_t out, int64_t in, int64_t k) const {
    ASSIGN_OR_RETURN(const TensorView weight, Get(p + ".weight", {out, in, k, k}));
    ASSIGN_OR_RETURN(const TensorView bias, Get(p + ".bias", {out}));
    return ops_->PrepareConv2d(weight, &bias);
  }
  // A GroupNorm's weight and bias as one [2, C] table.
  absl::StatusOr<std::unique_ptr<DitTable>> Norm(const std::string& p, int64_t c) const {
    ASSIGN_OR_RETURN(const TensorView weight, Get(p + ".weight", {c}));
    ASSIGN_OR_RETURN(const TensorView bias, Get(p + ".bias", {c}));
    for (const TensorView* t : {&weight, &bias}) {
      if (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16) {
        return absl::InvalidArgumentError(absl::StrCat("tensor \"", t->name, "\" has dtype ",
                                                       DTypeSafetensorsName(t->dtype), "; expected F32, F16 or BF16"));
      }
    }
    std::vector<float> values(size_t(2 * c));
    ConvertToFloat(weight.dtype, weight.data, size_t(c), values.data());
    ConvertToFloat(bias.dtype, bias.data, size_t(c), values.data() + c);
    return ops_->UploadTable(values, 2, c);
  }
  absl::StatusOr<VaeResnetWeights> Resnet(const std::string& p, int32_t in, int32_t out) const {
    VaeResnetWeights r;
    r.in = in;
    r.out = out;
    ASSIGN_OR_RETURN(r.norm1, Norm(p + "norm1", in));
    ASSIGN_OR_RETURN(r.conv1, Conv(p + "conv1", out, in, 3));
    ASSIGN_OR_RETURN(r.norm2, Norm(p + "norm2", out));
    ASSIGN_OR_RETURN(r.conv2, Conv(p + "conv2", out, out, 3));
    if (in != out) {
      ASSIGN_OR_RETURN(r.shortcut, Conv(p + "conv_shortcut", out, in, 1));
    } else if (store_.Contains(p + "conv_shortcut.weight")) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", p, "conv_shortcut.weight\" is present, but the block keeps ",
                                                     in, " channels (no shortcut convolution)"));
    }
    return r;
  }
  // An attention projection, stored as a linear [C, C] or (older
  // checkpoints) a 1x1 convolution [C, C, 1, 1]; current or deprecated name.
  absl::StatusOr<TensorView> Projection(const std::string& p, const char* name, const char* deprecated,
                                        const char* suffix, int64_t c) const {
    std::string full = absl::StrCat(p, name, suffix);
    if (!store_.Contains(full) && store_.Contains(absl::StrCat(p, deprecated, suffix))) {
      full = absl::StrCat(p, deprecated, suffix);
    }
    ASSIGN_OR_RETURN(TensorView view, store_.Get(full));
    const bool weight = std::string(suffix) == ".weight";
    if (weight && view.shape == std::vector<int64_t>{c, c, 1, 1}) view.shape = {c, c};
    const std::vector<int64_t> want = weight ? std::vector<int64_t>{c, c} : std::vector<int64_t>{c};
    if (view.shape != want) {
      TensorView expected;
      expected.shape = want;
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", full, "\" has shape ", view.ShapeString(),
                                                     ", expected ", expected.ShapeString()));
    }
    return view;
  }
  DitOps* ops() const { return ops_; }

 private:
  const WeightStore& store_;
  DitOps* ops_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<VaeDecoder>> VaeDecoder::Load(const std::string& vae_dir,
                                                            const VaeDecoderConfig& config, int32_t latent_size,
                                                            DitOps* ops) {
  ASSIGN_OR_RETURN(const auto store, WeightStore::Open(vae_dir, "diffusion_pytorch_model"));
  return Create(config, latent_size, *store, ops);
}

absl::StatusOr<std::unique_ptr<VaeDecoder>> VaeDecoder::Create(const VaeDecoderConfig& c, int32_t latent_size,
                                                              const WeightStore& store, DitOps* ops) {
  if (latent_size < 1) return absl::InvalidArgumentError(absl::StrCat("VAE latent size ", latent_size, " is not >= 1"));
  const Loader load(store, ops);
  auto w = std::make_unique<Weights>();
  const int32_t latent = c.latent_channels, top = c.top_channels();
  if (c.post_quant_conv) {
    ASSIGN_OR_RETURN(w->post_quant_conv, load.Conv("post_quant_conv", latent, latent, 1));
  }
  ASSIGN_OR_RETURN(w->conv_in, load.Conv("decoder.conv_in", top, latent, 3));
  ASSIGN_OR_RETURN(w->mid[0], load.Resnet("decoder.mid_block.resnets.0.", top, top));
  ASSIGN_OR_RETURN(w->mid[1], load.Resnet("decoder.mid_block.resnets.1.", top, top));
  if (c.mid_block_attention) {
    const std::string a = "decoder.mid_block.attentions.0.";
    ASSIGN_OR_RETURN(w->attention_norm, load.Norm(a + "group_norm", top));
    std::vector<TensorView> weights, biases;
    const char* names[3][2] = {{"to_q", "query"}, {"to_k", "key"}, {"to_v", "value"}};
    for (const auto& name : names) {
      ASSIGN_OR_RETURN(TensorView weight, load.Projection(a, name[0], name[1], ".weight", top));
      ASSIGN_OR_RETURN(TensorView bias, load.Projection(a, name[0], name[1], ".bias", top));
      weights.push_back(std::move(weight));
      // [C] read as C rows of 1: stack as [1, C] rows instead.
      bias.shape = {1, top};
      biases.push_back(std::move(bias));
    }
    std::vector<uint8_t> weight_storage, bias_storage;
    ASSIGN_OR_RETURN(const TensorView qkv_weight, StackTensorRows(weights, a + "to_q/to_k/to_v.weight", &weight_storage));
    ASSIGN_OR_RETURN(TensorView qkv_bias, StackTensorRows(biases, a + "to_q/to_k/to_v.bias", &bias_storage));
    qkv_bias.shape = {3 * int64_t(top)};
    ASSIGN_OR_RETURN(w->attention_qkv, ops->PrepareLinear(qkv_weight, &qkv_bias));
    ASSIGN_OR_RETURN(const TensorView out_weight, load.Projection(a, "to_out.0", "proj_attn", ".weight", top));
    ASSIGN_OR_RETURN(const TensorView out_bias, load.Projection(a, "to_out.0", "proj_attn", ".bias", top));
    ASSIGN_OR_RETURN(w->attention_out, ops->PrepareLinear(out_weight, &out_bias));
  }
  const size_t blocks = c.block_out_channels.size();
  int32_t prev = top;
  for (size_t i = 0; i < blocks; ++i) {
    Weights::UpBlock block;
    block.channels = c.block_out_channels[blocks - 1 - i];
    for (int32_t j = 0; j <= c.layers_per_block; ++j) {
      ASSIGN_OR_RETURN(VaeResnetWeights r, load.Resnet(absl::StrCat("decoder.up_blocks.", i, ".resnets.", j, "."),
                                                       j == 0 ? prev : block.channels, block.channels));
      block.resnets.push_back(std::move(r));
    }
    if (i + 1 < blocks) {
      ASSIGN_OR_RETURN(block.upsample, load.Conv(absl::StrCat("decoder.up_blocks.", i, ".upsamplers.0.conv"),
                                                 block.channels, block.channels, 3));
    }
    prev = block.channels;
    w->up.push_back(std::move(block));
  }
  ASSIGN_OR_RETURN(w->norm_out, load.Norm("decoder.conv_norm_out", c.block_out_channels[0]));
  ASSIGN_OR_RETURN(w->conv_out, load.Conv("decoder.conv_out", c.out_channels, c.block_out_channels[0], 3));
  return std::unique_ptr<VaeDecoder>(new VaeDecoder(c, latent_size, ops, std::move(w)));
}

VaeDecoder::VaeDecoder(const VaeDecoderConfig& config, int32_t latent_size, DitOps* ops,
                       std::unique_ptr<Weights> weights)
    : config_(config), latent_size_(latent_size), ops_(ops), weights_(std::move(weights)) {}

VaeDecoder::~VaeDecoder() = default;

absl::Status VaeDecoder::Decode(absl::Span<const float> latents, absl::Span<float> images) {
  const int64_t per_latent = latent_elements(), per_image = image_elements();
  if (latents.size() % per_latent != 0 || int64_t(images.size()) != int64_t(latents.size()) / per_latent * per_image) {
    return absl::InvalidArgumentError(absl::StrCat("vae decode: ", latents.size(), " latent and ", images.size(),
                                                   " image values; expected ", per_latent, " and ", per_image,
                                                   " a sample"));
  }
  const int64_t batch = int64_t(latents.size()) / per_latent;
  if (batch == 0) return absl::OkStatus();
  const VaeDecoderConfig& c = config_;
  const Weights& w = *weights_;
  DitOps& ops = *ops_;
  const float eps = static_cast<float>(c.norm_eps);
  const int32_t groups = c.norm_num_groups;

  // Planar latents / scaling_factor -> NHWC.
  const int64_t latent_channels = c.latent_channels, cells = int64_t(latent_size_) * latent_size_;
  host_in_.resize(latents.size());
  const float inverse_scale = static_cast<float>(1.0 / c.scaling_factor);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t ch = 0; ch < latent_channels; ++ch) {
      const float* src = latents.data() + (b * latent_channels + ch) * cells;
      float* dst = host_in_.data() + b * cells * latent_channels + ch;
      for (int64_t p = 0; p < cells; ++p) dst[p * latent_channels] = inverse_scale * src[p];
    }
  }

  RETURN_IF_ERROR(ops.BeginStep({{}, {}, DitPass::kVaeDecode, batch, {latent_size_, latent_size_}}));
  DitImageShape shape{latent_size_, latent_size_};
  int64_t rows = batch * shape.pixels();
  Tensor z = ops.Scratch(kLatents, rows, latent_channels);
  ops.CopyFromHost(host_in_.data(), z);

  // The pool: x lives in one slot; ops write to the others.
  int current = 0;
  const auto slot = [&current](int k) { return kPool0 + (current + k) % kPoolSize; };
  Tensor x;
  const auto conv = [&](Tensor in, const DitConv& weights, int k) {
    Tensor out = ops.Scratch(slot(k), rows, weights.out_channels());
    ops.Conv2d(in, shape, weights, out);
    return out;
  };
  Tensor latent_in = z;
  if (w.post_quant_conv != nullptr) latent_in = conv(z, *w.post_quant_conv, 1);
  x = conv(latent_in, *w.conv_in, 2);
  current = (current + 2) % kPoolSize;

  const auto resnet = [&](const VaeResnetWeights& r) {
    Tensor a = ops.Scratch(slot(1), rows, r.in);
    ops.GroupNorm(x, groups, eps, *r.norm1, /*silu=*/true, a);
    Tensor h = ops.Scratch(slot(2), rows, r.out);
    ops.Conv2d(a, shape, *r.conv1, h);
    ops.GroupNorm(h, groups, eps, *r.norm2, /*silu=*/true, h);
    a = ops.Scratch(slot(1), rows, r.out);
    ops.Conv2d(h, shape, *r.conv2, a);
    if (r.shortcut != nullptr) {
      Tensor skip = ops.Scratch(slot(2), rows, r.out);
      ops.Conv2d(x, shape, *r.shortcut, skip);
      ops.Add(a, skip);  // (skip + h): one rounding, commutative
    } else {
      ops.Add(a, x);
    }
    x = a;
    current = (current + 1) % kPoolSize;
  };

  resnet(w.mid[0]);
  if (w.attention_norm != nullptr) {
    const int64_t ch = c.top_channels();
    Tensor normed = ops.Scratch(slot(1), rows, ch);
    ops.GroupNorm(x, groups, eps, *w.attention_norm, /*silu=*/false, normed);
    Tensor qkv = ops.Scratch(kQkv, rows, 3 * ch);
    ops.Linear(normed, *w.attention_qkv, qkv);
    Tensor attended = ops.Scratch(kAttention, rows, ch);
    ops.Attention(qkv, {1, int32_t(ch), static_cast<float>(1.0 / std::sqrt(double(ch)))}, attended);
    Tensor out = ops.Scratch(slot(1), rows, ch);
    ops.Linear(attended, *w.attention_out, out);
    ops.Add(out, x);
    x = out;
    current = (current + 1) % kPoolSize;
  }
  resnet(w.mid[1]);

  for (const Weights::UpBlock& block : w.up) {
    for (const VaeResnetWeights& r : block.resnets) resnet(r);
    if (block.upsample != nullptr) {
      Tensor up = ops.Scratch(slot(1), 4 * rows, block.channels);
      ops.Upsample2x(x, shape, up);
      shape = {2 * shape.height, 2 * shape.width};
      rows *= 4;
      x = conv(up, *block.upsample, 2);
      current = (current + 2) % kPoolSize;
    }
  }
  Tensor normed = ops.Scratch(slot(1), rows, c.block_out_channels[0]);
  ops.GroupNorm(x, groups, eps, *w.norm_out, /*silu=*/true, normed);
  Tensor out = ops.Scratch(slot(2), rows, c.out_channels);
  ops.Conv2d(normed, shape, *w.conv_out, out);
  RETURN_IF_ERROR(ops.FinishStep());
  host_out_.resize(size_t(rows) * size_t(c.out_channels));
  ops.ReadToHost(out, host_out_.data());

  // NHWC -> planar.
  const int64_t pixels = shape.pixels(), out_channels = c.out_channels;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t ch = 0; ch < out_channels; ++ch) {
      float* dst = images.data() + (b * out_channels + ch) * pixels;
      const float* src = host_out_.data() + b * pixels * out_channels + ch;
      for (int64_t p = 0; p < pixels; ++p) dst[p] = src[p * out_channels];
    }
  }
  return absl::OkStatus();
}

size_t VaeDecoder::weight_bytes() const {
  const Weights& w = *weights_;
  const auto resnet = [](const VaeResnetWeights& r) {
    return PreparedBytes(r.norm1, r.norm2, r.conv1, r.conv2, r.shortcut);
  };
  size_t total = PreparedBytes(w.post_quant_conv, w.conv_in, w.attention_norm, w.attention_qkv, w.attention_out,
                               w.norm_out, w.conv_out) +
                 resnet(w.mid[0]) + resnet(w.mid[1]);
  for (const Weights::UpBlock& block : w.up) {
    total += PreparedBytes(block.upsample);
    for (const VaeResnetWeights& r : block.resnets) total += resnet(r);
  }
  return total;
}

}  // namespace tern::runtime
