// CudaBackend::MoeFfn: routing and the sort by expert on the device, then
// one grouped cuBLAS GEMM for every expert's gate and up and one for down
// (dense experts), or one linear per expert and projection (quantized
// experts), and the weighted combine.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/elementwise/elementwise.h"
#include "kernels/moe/moe_routing.h"
#include "runtime/base/check.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_backend_impl.h"
#include "runtime/cuda/cuda_backend_weights.h"
#include "runtime/model/quantized_weight.h"

namespace tern::runtime {

void CudaBackend::MoeFfn(Tensor x, Tensor router_logits, const MoeWeights& experts, Tensor out) {
  // Routing and the stable sort by expert run on the device; the host reads
  // back only the per-expert row offsets (one small copy and one wait per
  // layer) to size one grouped GEMM call for gate and up and one for down.
  // That wait rules out graphs for MoE models.
  Impl& m = *impl_;
  m.graphs_enabled = false;
  CHECK(m.mode == Impl::Mode::kEager) << "MoeFfn cannot be recorded into a graph";
  if (m.Skip()) return;  // the step failed already
  const int32_t num_experts = int32_t(router_logits.cols);
  const int32_t top_k = experts.top_k;
  const int64_t tokens = x.rows;
  const int64_t hidden = x.cols;
  const int64_t n = tokens * top_k;
  if (tokens == 0) return;
  const int64_t inter = experts.gate[0]->out_features();

  // Routing outputs: ids, weights, offsets, sorted tokens, sorted weights, entry rows.
  m.RecordAllocation(m.moe_routing.Reserve(size_t(5 * n + num_experts + 1) * sizeof(int32_t)), "moe routing buffers",
                     size_t(5 * n + num_experts + 1) * sizeof(int32_t));
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
  m.moe_offsets_host.resize(size_t(num_experts) + 1);
  m.Record(cudaMemcpyAsync(m.moe_offsets_host.data(), offsets, (num_experts + 1) * sizeof(int32_t),
                           cudaMemcpyDeviceToHost, m.stream),
           "moe offsets");
  m.Record(cudaStreamSynchronize(m.stream), "moe offsets");
  if (!m.errors.ok()) return;

  Tensor in = Scratch(100, n, hidden);
  Tensor gate_up = Scratch(101, n, 2 * inter);
  Tensor act = Scratch(102, n, inter);
  Tensor expert_out = Scratch(103, n, hidden);
  if (m.Skip()) return;
  m.Record(kernels::LaunchGatherRows(m.type, n, hidden, sorted_tokens, x.data, x.stride, in.data, in.stride, m.stream),
           "moe gather");

  if (experts.gate[0]->scheme().scheme != WeightScheme::kDense) {
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
    m.Record(kernels::LaunchMoeCombine(m.type, tokens, top_k, hidden, entry_rows, sorted_weights, expert_out.data,
                                       expert_out.stride, out.data, out.stride, m.stream),
             "moe combine");
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
  m.Record(kernels::LaunchMoeCombine(m.type, tokens, top_k, hidden, entry_rows, sorted_weights, expert_out.data,
                                     expert_out.stride, out.data, out.stride, m.stream),
           "moe combine");
}

}  // namespace tern::runtime
