// CudaBackend::MoeFfn: routing and the sort by expert on the device, then the
// experts' linears, and the weighted combine. Decode-sized steps of dense
// experts (up to MoeDeviceMaxTokens tokens) run the expert GEMM, which reads
// the per-expert row offsets on the device: nothing waits on the host, and
// the step can be a graph. Larger steps read the offsets back (one wait per
// layer) to size one grouped cuBLAS GEMM call for gate and up and one for
// down (dense experts), or one linear per expert and projection (quantized
// experts).
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "kernels/elementwise/elementwise.h"
#include "kernels/moe/moe_expert_gemm.h"
#include "kernels/moe/moe_routing.h"
#include "runtime/base/check.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_backend_impl.h"
#include "runtime/cuda/cuda_backend_weights.h"
#include "runtime/model/quantized_weight.h"

namespace tern::runtime {
namespace {

bool DenseExperts(const MoeWeights& experts) {
  return !experts.gate.empty() && experts.gate[0]->scheme().scheme == WeightScheme::kDense;
}

}  // namespace

int64_t CudaBackend::MoeDeviceMaxTokens(const MoeWeights& experts) const {
  if (!options_.moe_device_experts || !DenseExperts(experts) || impl_->type == kernels::ScalarType::kF32 || experts.top_k <= 0) return 0;
  // The expert GEMM's 16-byte rows: hidden and intermediate sizes in multiples of 8.
  const int64_t hidden = experts.gate[0]->in_features(), inter = experts.gate[0]->out_features();
  if (hidden % 8 != 0 || inter % 8 != 0) return 0;
  return kernels::MoeExpertGemmMaxRows(int32_t(experts.gate.size())) / experts.top_k;
}

void CudaBackend::MoeFfn(Tensor x, Tensor router_logits, const MoeWeights& experts, Tensor out) {
  Impl& m = *impl_;
  if (m.Skip()) return;  // the step failed already, or a graph replays it
  const int32_t num_experts = int32_t(router_logits.cols);
  const int32_t top_k = experts.top_k;
  const int64_t tokens = x.rows;
  const int64_t hidden = x.cols;
  const int64_t n = tokens * top_k;
  if (tokens == 0) return;
  const int64_t inter = experts.gate[0]->out_features();
  const bool on_device = tokens <= MoeDeviceMaxTokens(experts);
  if (!on_device) {
    // The offsets come back to the host: this step's key never becomes a graph.
    CHECK(m.mode == Impl::Mode::kEager) << "a MoE layer of " << tokens << " tokens cannot be recorded into a graph";
    m.host_bound_keys.insert(m.step_key);
    m.step_graphable = false;
  }

  // Routing outputs: ids, weights, sorted tokens, sorted weights, entry rows, offsets.
  const size_t routing_bytes = size_t(5 * n + num_experts + 1) * sizeof(int32_t);
  m.ReserveTracked(m.moe_routing, routing_bytes, "moe routing buffers");
  if (m.Skip()) return;
  auto* base = static_cast<int32_t*>(m.moe_routing.data());
  int32_t* topk_ids = base;
  float* topk_weights = reinterpret_cast<float*>(base + n);
  int32_t* sorted_tokens = base + 2 * n;
  float* sorted_weights = reinterpret_cast<float*>(base + 3 * n);
  int32_t* entry_rows = base + 4 * n;
  int32_t* offsets = base + 5 * n;
  const kernels::MoeRoutingParams routing{tokens, num_experts, top_k, router_logits.stride};
  m.Record(kernels::LaunchMoeRoute(m.type, routing, router_logits.data, topk_ids, topk_weights, offsets,
                                   sorted_tokens, sorted_weights, entry_rows, m.stream),
           "moe routing");

  Tensor in = Scratch(100, n, hidden);
  Tensor gate_up = Scratch(101, n, 2 * inter);
  Tensor act = Scratch(102, n, inter);
  Tensor expert_out = Scratch(103, n, hidden);
  if (m.Skip()) return;
  m.Record(kernels::LaunchGatherRows(m.type, n, hidden, sorted_tokens, x.data, x.stride, in.data, in.stride, m.stream),
           "moe gather");
  const auto combine = [&] {
    m.Record(kernels::LaunchMoeCombine(m.type, tokens, top_k, hidden, entry_rows, sorted_weights, expert_out.data,
                                       expert_out.stride, out.data, out.stride, m.stream),
             "moe combine");
  };

  if (on_device) {
    const void* const* table = MoeExpertTable(experts);
    if (m.Skip()) return;
    const auto expert_gemm = [&](int projection, const Tensor& from, int64_t k, void* to, int64_t to_stride,
                                 int64_t features, const char* op) {
      const kernels::MoeExpertGemmParams p{n, num_experts, features, k, from.stride, to_stride};
      m.Record(kernels::LaunchMoeExpertGemm(m.type, p, from.data, table + projection * num_experts, offsets, to,
                                            m.stream),
               op);
    };
    const auto column = [&](const Tensor& t, int64_t col) {
      return static_cast<void*>(static_cast<uint8_t*>(t.data) + col * int64_t(m.element_bytes));
    };
    expert_gemm(0, in, hidden, gate_up.data, gate_up.stride, inter, "moe gate");
    expert_gemm(1, in, hidden, column(gate_up, inter), gate_up.stride, inter, "moe up");
    SiluMul(gate_up, act);
    expert_gemm(2, act, inter, expert_out.data, expert_out.stride, hidden, "moe down");
    combine();
    return;
  }

  m.moe_offsets_host.resize(size_t(num_experts) + 1);
  m.Record(cudaMemcpyAsync(m.moe_offsets_host.data(), offsets, (num_experts + 1) * sizeof(int32_t),
                           cudaMemcpyDeviceToHost, m.stream),
           "moe offsets");
  m.Record(cudaStreamSynchronize(m.stream), "moe offsets");
  if (!m.errors.ok()) return;

  if (!DenseExperts(experts)) {
    // Quantized experts: one weight-only linear per expert and projection.
    for (int32_t e = 0; e < num_experts; ++e) {
      const int32_t row = m.moe_offsets_host[e];
      const int32_t rows = m.moe_offsets_host[e + 1] - row;
      if (rows == 0) continue;
      Linear(in.Rows(row, rows), *experts.gate[e], gate_up.Rows(row, rows).Columns(0, inter));
      Linear(in.Rows(row, rows), *experts.up[e], gate_up.Rows(row, rows).Columns(inter, inter));
    }
    SiluMul(gate_up, act);
    for (int32_t e = 0; e < num_experts; ++e) {
      const int32_t row = m.moe_offsets_host[e];
      const int32_t rows = m.moe_offsets_host[e + 1] - row;
      if (rows > 0) Linear(act.Rows(row, rows), *experts.down[e], expert_out.Rows(row, rows));
    }
    combine();
    return;
  }
  // Groups: gate and up of every expert with rows, then down.
  const auto at = [&](const Tensor& t, int64_t row, int64_t col) {
    return static_cast<void*>(static_cast<uint8_t*>(t.data) + (row * t.stride + col) * int64_t(m.element_bytes));
  };
  Impl::GroupedGemm& first = m.moe_first;
  Impl::GroupedGemm& second = m.moe_second;
  first.Clear();
  second.Clear();
  for (int32_t e = 0; e < num_experts; ++e) {
    const int32_t row = m.moe_offsets_host[e];
    const int32_t rows = m.moe_offsets_host[e + 1] - row;
    if (rows == 0) continue;
    const auto& gate = static_cast<const CudaLinear&>(*experts.gate[e]);
    const auto& up = static_cast<const CudaLinear&>(*experts.up[e]);
    const auto& down = static_cast<const CudaLinear&>(*experts.down[e]);
    first.Add(gate.weight(), inter, hidden, at(in, row, 0), in.stride, rows, at(gate_up, row, 0), gate_up.stride);
    first.Add(up.weight(), inter, hidden, at(in, row, 0), in.stride, rows, at(gate_up, row, inter), gate_up.stride);
    second.Add(down.weight(), hidden, inter, at(act, row, 0), act.stride, rows, at(expert_out, row, 0),
               expert_out.stride);
  }
  m.GroupedGemmRun(first, "moe gate/up");
  SiluMul(gate_up, act);
  m.GroupedGemmRun(second, "moe down");
  combine();
}

const void* const* CudaBackend::MoeExpertTable(const MoeWeights& experts) {
  Impl& m = *impl_;
  std::vector<const void*> pointers;
  for (const auto* projection : {&experts.gate, &experts.up, &experts.down}) {
    for (const auto& weight : *projection) pointers.push_back(static_cast<const CudaLinear&>(*weight).weight());
  }
  // Keyed by the layer's address and checked against its weights: a model
  // loaded where an earlier one lived gets its own table.
  Impl::MoeExpertTable& table = m.moe_expert_tables[&experts];
  if (table.pointers == pointers && table.device.data() != nullptr) {
    return static_cast<const void* const*>(table.device.data());
  }
  if (m.mode != Impl::Mode::kEager) {
    // A layer's first pass is eager (a graph key runs eagerly before it is recorded).
    m.Record(cudaErrorStreamCaptureUnsupported, "moe expert table: first built during graph capture");
    return nullptr;
  }
  const size_t bytes = pointers.size() * sizeof(void*);
  m.ReserveTracked(table.device, bytes, "moe expert table");
  if (m.Skip()) return nullptr;
  // Synchronous, once per layer.
  m.Record(cudaMemcpy(table.device.data(), pointers.data(), bytes, cudaMemcpyHostToDevice), "moe expert table");
  table.pointers = std::move(pointers);
  return static_cast<const void* const*>(table.device.data());
}

}  // namespace tern::runtime
