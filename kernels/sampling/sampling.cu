// One CTA per row; see sampling.h for the semantics. Every threshold is found
// with passes over the row (radix selects over the order-preserving integer
// key of the logit, id-ordered block scans), never a sort, so the cost is a
// fixed number of passes over the vocabulary whatever k, top_p or min_p are.
#include "kernels/sampling/sampling.h"

#include <climits>
#include <cstdint>

#include "kernels/common/dispatch.cuh"

namespace tern::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kItems = 16;  // consecutive ids per thread in an id-ordered scan tile
constexpr int kUnroll = 16;  // loads in flight per thread in a pass over a row
constexpr int kBins = 256;
// Radix histograms are kept in this many copies (warp w adds into copy
// w % kCopies), so warps contend for a shared-memory address kCopies times
// less often; the copies are summed before the bins are walked.
constexpr int kCopies = 8;
constexpr unsigned kFull = 0xffffffffu;
constexpr int32_t kAllIds = INT_MAX;

struct SampleShared {
  unsigned int count[kCopies][kBins];
  double mass[kCopies][kBins];
  double dscratch[kWarps];
  unsigned long long uscratch[kWarps];
  long long lscratch[kWarps];
  int chosen_bin;
  double chosen_above;
  long long found_id;
  int top_count;
  int top_ids[kMaxSampledLogprobs];
  float top_values[kMaxSampledLogprobs];
};

__device__ __forceinline__ float Inf() { return __int_as_float(0x7f800000); }

// Larger float, larger key; -0 and +0 share a key (they compare equal).
__device__ __forceinline__ uint32_t OrderedKey(float x) {
  const uint32_t u = x == 0.0f ? 0u : __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Calls f(i, row(i)) for every id of the row, each thread taking ids
// threadIdx.x + k * kThreads. Loads are issued kUnroll at a time before any
// is used: one CTA streams a whole row, and a loop with one load in flight
// per thread is bound by memory latency, not bandwidth.
template <typename Row, typename F>
__device__ __forceinline__ void ForEach(int64_t vocab, Row row, F f) {
  int64_t i = threadIdx.x;
  for (; i + int64_t(kUnroll - 1) * kThreads < vocab; i += int64_t(kUnroll) * kThreads) {
    float x[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) x[u] = row(i + int64_t(u) * kThreads);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) f(i + int64_t(u) * kThreads, x[u]);
  }
  for (; i < vocab; i += kThreads) f(i, row(i));
}

template <typename T>
__device__ __forceinline__ T Shuffle(T v, int offset) {
  return __shfl_xor_sync(kFull, v, offset);
}

// Every thread gets op over the block. Safe to call back to back.
template <typename T, typename Op>
__device__ T BlockReduce(T v, Op op, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = op(v, Shuffle(v, o));
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = scratch[0];
  for (int w = 1; w < kWarps; ++w) r = op(r, scratch[w]);
  return r;
}

__device__ double BlockSum(double v, SampleShared& s) {
  return BlockReduce(v, [](double a, double b) { return a + b; }, s.dscratch);
}
__device__ long long BlockSumLL(long long v, SampleShared& s) {
  return BlockReduce(v, [](long long a, long long b) { return a + b; }, s.lscratch);
}
__device__ long long BlockMinLL(long long v, SampleShared& s) {
  return BlockReduce(v, [](long long a, long long b) { return a < b ? a : b; }, s.lscratch);
}
__device__ long long BlockMaxLL(long long v, SampleShared& s) {
  return BlockReduce(v, [](long long a, long long b) { return a > b ? a : b; }, s.lscratch);
}
__device__ unsigned long long BlockMaxU(unsigned long long v, SampleShared& s) {
  return BlockReduce(v, [](unsigned long long a, unsigned long long b) { return a > b ? a : b; }, s.uscratch);
}

// Exclusive prefix sum over threads in order; *total gets the block's sum.
__device__ double BlockExclusiveSum(double v, double* total, SampleShared& s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  double inclusive = v;
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(kFull, inclusive, o);
    if (lane >= o) inclusive += y;
  }
  double exclusive = __shfl_up_sync(kFull, inclusive, 1);
  if (lane == 0) exclusive = 0.0;
  __syncthreads();
  if (lane == 31) s.dscratch[warp] = inclusive;
  __syncthreads();
  double before = 0.0, all = 0.0;
  for (int w = 0; w < kWarps; ++w) {
    if (w < warp) before += s.dscratch[w];
    all += s.dscratch[w];
  }
  *total = all;
  return before + exclusive;
}

// Radix select in the order (key descending): the key v of the element at
// which the running count (kMass false) or weight (kMass true) of the
// elements taken best first reaches `target`. `element(i, &key, &w)` says
// whether id i takes part. On success *above = count or weight of elements
// with key > v and *eq_count = elements with key == v. False when the total
// stays under target (rounding): the caller keeps everything.
template <bool kMass, typename Row, typename Element>
__device__ bool RadixSelect(int64_t vocab, Row row, Element element, double target, SampleShared& s,
                            uint32_t* key_out, double* above_out, uint32_t* eq_count) {
  uint32_t prefix = 0, mask = 0;
  double above = 0.0;
  uint32_t eq = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < kCopies * kBins; b += kThreads) {
      s.count[b / kBins][b % kBins] = 0;
      s.mass[b / kBins][b % kBins] = 0.0;
    }
    __syncthreads();
    unsigned int* count = s.count[(threadIdx.x >> 5) % kCopies];
    double* mass = s.mass[(threadIdx.x >> 5) % kCopies];
    // Runs of one bin are summed in registers: on the first digit nearly
    // every logit shares a handful of bins, and per-element atomics to one
    // shared address would serialize.
    int run_bin = -1;
    unsigned run_count = 0;
    double run_mass = 0.0;
    ForEach(vocab, row, [&](int64_t i, float x) {
      uint32_t key;
      float w;
      if (!element(i, x, &key, &w) || (key & mask) != prefix) return;
      const int bin = int((key >> shift) & 0xffu);
      if (bin != run_bin) {
        if (run_count > 0) {
          atomicAdd(&count[run_bin], run_count);
          if (kMass) atomicAdd(&mass[run_bin], run_mass);
        }
        run_bin = bin;
        run_count = 0;
        run_mass = 0.0;
      }
      ++run_count;
      if (kMass) run_mass += double(w);
    });
    if (run_count > 0) {
      atomicAdd(&count[run_bin], run_count);
      if (kMass) atomicAdd(&mass[run_bin], run_mass);
    }
    __syncthreads();
    for (int b = threadIdx.x; b < kBins; b += kThreads) {
      for (int c = 1; c < kCopies; ++c) {
        s.count[0][b] += s.count[c][b];
        if (kMass) s.mass[0][b] += s.mass[c][b];
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      double acc = above;
      int chosen = -1;
      for (int b = kBins - 1; b >= 0; --b) {
        if (s.count[0][b] == 0) continue;
        const double v = kMass ? s.mass[0][b] : double(s.count[0][b]);
        if (acc + v >= target) {
          chosen = b;
          break;
        }
        acc += v;
      }
      s.chosen_bin = chosen;
      s.chosen_above = acc;
    }
    __syncthreads();
    const int chosen = s.chosen_bin;
    if (chosen < 0) return false;
    above = s.chosen_above;
    eq = s.count[0][chosen];
    prefix |= uint32_t(chosen) << shift;
    mask |= 0xffu << shift;
    __syncthreads();  // everyone has read the bins before the next pass clears them
  }
  *key_out = prefix;
  *above_out = above;
  *eq_count = eq;
  return true;
}

// The lowest id at which the id-ordered running sum of contrib(i, row(i))
// >= 0 reaches target (> target when strict), or -1. *last_positive (when not
// null) gets the largest id with contrib > 0, or -1.
template <typename Row, typename Contrib>
__device__ long long FindInIdOrder(int64_t vocab, Row row, Contrib contrib, double target, bool strict,
                                   SampleShared& s, long long* last_positive) {
  const auto reached = [&](double c) { return strict ? c > target : c >= target; };
  __syncthreads();  // a previous call's readers are done with found_id
  if (threadIdx.x == 0) s.found_id = LLONG_MAX;
  double carry = 0.0;
  long long last = -1;
  for (int64_t base = 0; base < vocab; base += int64_t(kThreads) * kItems) {
    const int64_t start = base + int64_t(threadIdx.x) * kItems;
    float x[kItems];
#pragma unroll
    for (int j = 0; j < kItems; ++j) x[j] = start + j < vocab ? row(start + j) : 0.0f;
    double values[kItems];
    double local = 0.0;
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const int64_t i = start + j;
      values[j] = i < vocab ? contrib(i, x[j]) : 0.0;
      local += values[j];
      if (values[j] > 0.0) last = i;
    }
    double total;
    const double before = carry + BlockExclusiveSum(local, &total, s);
    if (!reached(before) && reached(before + local)) {
      double c = before;
      long long hit = -1, last_here = -1;
#pragma unroll
      for (int j = 0; j < kItems; ++j) {
        if (values[j] > 0.0) last_here = start + j;
        c += values[j];
        if (hit < 0 && reached(c)) hit = start + j;
      }
      atomicMin(&s.found_id, hit >= 0 ? hit : last_here);
    }
    __syncthreads();
    const long long found = s.found_id;
    if (found != LLONG_MAX) {
      if (last_positive != nullptr) *last_positive = -1;
      return found;
    }
    carry += total;
  }
  if (last_positive != nullptr) *last_positive = BlockMaxLL(last, s);
  return -1;
}

// Which tokens the filters keep: a (key, id) threshold each for top-k and
// top-p in the order (key descending, id ascending), and min-p on weights.
struct Filter {
  float max_logit;
  float temperature;
  float min_p;
  uint32_t k_key = 0;
  int32_t k_cut = kAllIds;
  uint32_t p_key = 0;
  int32_t p_cut = kAllIds;

  __device__ float Weight(float x) const { return expf(__fdiv_rn(__fsub_rn(x, max_logit), temperature)); }
  __device__ static bool Within(uint32_t key, int64_t i, uint32_t t_key, int32_t t_cut) {
    return key > t_key || (key == t_key && i <= t_cut);
  }
  __device__ bool KeptByK(uint32_t key, int64_t i) const { return Within(key, i, k_key, k_cut); }
  // The drawable weight of token i, 0 when a filter drops it.
  __device__ float Kept(float x, int64_t i) const {
    if (x == -Inf()) return 0.0f;
    const uint32_t key = OrderedKey(x);
    if (!Within(key, i, k_key, k_cut) || !Within(key, i, p_key, p_cut)) return 0.0f;
    const float w = Weight(x);
    if (min_p > 0.0f && !(w >= min_p)) return 0.0f;
    return w;
  }
};

// The id cut among tokens of key `key` (id ascending) that a select with
// `remaining` still to take from `eq_count` tied tokens needs.
template <typename Row>
__device__ int32_t TieCutByCount(int64_t vocab, Row row, uint32_t key, double remaining, uint32_t eq_count,
                                 SampleShared& s) {
  if (remaining >= double(eq_count)) return kAllIds;
  const long long id = FindInIdOrder(
      vocab, row, [&](int64_t, float x) { return x != -Inf() && OrderedKey(x) == key ? 1.0 : 0.0; }, remaining,
      false, s, nullptr);
  return id < 0 ? kAllIds : int32_t(id);
}

template <typename E>
struct RowView {
  const E* p;
  __device__ float operator()(int64_t i) const { return ToFloat<E>(p[i]); }
};

__device__ void WriteError(SampledRow* out, int32_t status, int32_t detail, float value) {
  if (threadIdx.x != 0) return;
  out->token_id = -1;
  out->status = status;
  out->detail = detail;
  out->detail_value = value;
  out->logprob = 0.0f;
  out->num_top = 0;
}

// Raw-distribution logprobs of `token` and the num_logprobs best tokens.
template <typename R>
__device__ void FillLogprobs(int64_t vocab, RowView<R> raw, int32_t token, int32_t num_logprobs, SampleShared& s,
                             SampledRow* out) {
  unsigned long long best = 0;
  long long finite = 0;
  ForEach(vocab, raw, [&](int64_t i, float x) {
    if (x == -Inf()) return;
    ++finite;
    const unsigned long long packed = (static_cast<unsigned long long>(OrderedKey(x)) << 32) | uint32_t(~uint32_t(i));
    best = packed > best ? packed : best;
  });
  best = BlockMaxU(best, s);
  finite = BlockSumLL(finite, s);
  const float max_logit = finite > 0 ? raw(int64_t(~uint32_t(best & 0xffffffffu))) : 0.0f;
  double sum = 0.0;
  ForEach(vocab, raw, [&](int64_t, float x) {
    if (x != -Inf()) sum += double(expf(__fsub_rn(x, max_logit)));
  });
  sum = BlockSum(sum, s);
  const float log_normalizer = __fadd_rn(max_logit, float(log(sum)));

  const int32_t n = int32_t(finite < num_logprobs ? finite : num_logprobs);
  if (threadIdx.x == 0) s.top_count = 0;
  if (n > 0) {
    const auto element = [&](int64_t, float x, uint32_t* key, float* w) {
      *key = OrderedKey(x);
      *w = 1.0f;
      return x != -Inf();
    };
    uint32_t key = 0, eq = 0;
    double above = 0.0;
    RadixSelect<false>(vocab, raw, element, double(n), s, &key, &above, &eq);
    const int32_t cut = TieCutByCount(vocab, raw, key, double(n) - above, eq, s);
    ForEach(vocab, raw, [&](int64_t i, float x) {
      if (x == -Inf() || !Filter::Within(OrderedKey(x), i, key, cut)) return;
      const int slot = atomicAdd(&s.top_count, 1);
      if (slot < kMaxSampledLogprobs) {
        s.top_ids[slot] = int(i);
        s.top_values[slot] = x;
      }
    });
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const int count = s.top_count < n ? s.top_count : n;
    // Insertion sort of at most 20: best first, lower id first on ties.
    for (int a = 1; a < count; ++a) {
      const int id = s.top_ids[a];
      const float v = s.top_values[a];
      int b = a;
      while (b > 0 && (s.top_values[b - 1] < v || (s.top_values[b - 1] == v && s.top_ids[b - 1] > id))) {
        s.top_ids[b] = s.top_ids[b - 1];
        s.top_values[b] = s.top_values[b - 1];
        --b;
      }
      s.top_ids[b] = id;
      s.top_values[b] = v;
    }
    for (int a = 0; a < count; ++a) {
      out->top_ids[a] = s.top_ids[a];
      out->top_logprobs[a] = __fsub_rn(s.top_values[a], log_normalizer);
    }
    out->num_top = count;
    out->logprob = __fsub_rn(raw(token), log_normalizer);
  }
}

template <typename E, typename R>
__device__ void SampleRow(int64_t vocab, RowView<E> row, RowView<R> raw, const SamplingRowParams& prm,
                          SampleShared& s, SampledRow* out) {
  // Pass 1: argmax (lowest id on ties), finite count, the first NaN/+inf.
  unsigned long long best = 0;
  long long finite = 0;
  long long bad = LLONG_MAX;
  ForEach(vocab, row, [&](int64_t i, float x) {
    if (!(x < Inf())) {
      bad = i < bad ? i : bad;
    } else if (x != -Inf()) {
      ++finite;
      const unsigned long long packed =
          (static_cast<unsigned long long>(OrderedKey(x)) << 32) | uint32_t(~uint32_t(i));
      best = packed > best ? packed : best;
    }
  });
  bad = BlockMinLL(bad, s);
  if (bad != LLONG_MAX) return WriteError(out, kNonFiniteLogit, int32_t(bad), row(bad));
  finite = BlockSumLL(finite, s);
  if (finite == 0) return WriteError(out, kNoFiniteLogit, 0, 0.0f);
  best = BlockMaxU(best, s);
  const int32_t argmax = int32_t(~uint32_t(best & 0xffffffffu));

  int32_t token = argmax;
  if (prm.temperature != 0.0f && finite > 1) {
    Filter f;
    f.max_logit = row(argmax);
    f.temperature = prm.temperature;
    f.min_p = prm.min_p;
    if (prm.top_k > 0 && prm.top_k < finite) {
      const auto element = [&](int64_t, float x, uint32_t* key, float* w) {
        *key = OrderedKey(x);
        *w = 1.0f;
        return x != -Inf();
      };
      double above = 0.0;
      uint32_t eq = 0;
      RadixSelect<false>(vocab, row, element, double(prm.top_k), s, &f.k_key, &above, &eq);
      f.k_cut = TieCutByCount(vocab, row, f.k_key, double(prm.top_k) - above, eq, s);
    }
    if (prm.top_p < 1.0f) {
      double mass = 0.0;
      ForEach(vocab, row, [&](int64_t i, float x) {
        if (x != -Inf() && f.KeptByK(OrderedKey(x), i)) mass += double(f.Weight(x));
      });
      mass = BlockSum(mass, s);
      const double target = double(prm.top_p) * mass;
      const auto element = [&](int64_t i, float x, uint32_t* key, float* w) {
        *key = OrderedKey(x);
        if (x == -Inf() || !f.KeptByK(*key, i)) return false;
        *w = f.Weight(x);
        return true;
      };
      uint32_t key = 0, eq = 0;
      double above = 0.0;
      if (RadixSelect<true>(vocab, row, element, target, s, &key, &above, &eq)) {
        f.p_key = key;
        f.p_cut = kAllIds;
        if (eq > 1) {
          const long long id = FindInIdOrder(
              vocab, row,
              [&](int64_t i, float x) {
                if (x == -Inf()) return 0.0;
                const uint32_t k = OrderedKey(x);
                return k == key && f.KeptByK(k, i) ? double(f.Weight(x)) : 0.0;
              },
              target - above, false, s, nullptr);
          if (id >= 0) f.p_cut = int32_t(id);
        }
      }
    }
    // The draw: inverse CDF over the kept tokens in ascending id order.
    double total = 0.0;
    ForEach(vocab, row, [&](int64_t i, float x) { total += double(f.Kept(x, i)); });
    total = BlockSum(total, s);
    long long last_positive = -1;
    const long long id = FindInIdOrder(
        vocab, row, [&](int64_t i, float x) { return double(f.Kept(x, i)); }, prm.uniform * total, true, s,
        &last_positive);
    token = int32_t(id >= 0 ? id : last_positive);
  }

  if (threadIdx.x == 0) {
    out->token_id = token;
    out->status = kSampleOk;
    out->detail = 0;
    out->detail_value = 0.0f;
    out->logprob = 0.0f;
    out->num_top = 0;
  }
  if (prm.num_logprobs >= 0) FillLogprobs(vocab, raw, token, prm.num_logprobs, s, out);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) SampleRowsKernel(SampleRowsParams p) {
  __shared__ SampleShared s;
  const int64_t row_index = blockIdx.x;
  const SamplingRowParams prm = p.rows[row_index];
  const T* logits = static_cast<const T*>(p.logits) + row_index * p.row_stride;
  SampledRow* out = p.out + row_index;
  const RowView<T> raw{logits};
  if (prm.workspace_row < 0) return SampleRow(p.vocab, raw, raw, prm, s, out);

  // Penalties: an fp32 copy of the row, then one thread per CSR entry.
  float* work = p.workspace + int64_t(prm.workspace_row) * p.vocab;
  ForEach(p.vocab, raw, [&](int64_t i, float x) { work[i] = x; });
  __syncthreads();
  long long out_of_vocab = LLONG_MAX;
  const int32_t begin = p.penalty_indptr[row_index], end = p.penalty_indptr[row_index + 1];
  for (int32_t e = begin + int32_t(threadIdx.x); e < end; e += kThreads) {
    const SamplingPenalty pen = p.penalties[e];
    if (pen.token_id < 0 || pen.token_id >= p.vocab) {
      out_of_vocab = e < out_of_vocab ? e : out_of_vocab;
      continue;
    }
    float x = work[pen.token_id];
    if (prm.repetition_penalty != 1.0f && (pen.in_prompt != 0 || pen.output_count > 0)) {
      x = x > 0.0f ? __fdiv_rn(x, prm.repetition_penalty) : __fmul_rn(x, prm.repetition_penalty);
    }
    if ((prm.frequency_penalty != 0.0f || prm.presence_penalty != 0.0f) && pen.output_count > 0) {
      x = __fsub_rn(x, __fadd_rn(__fmul_rn(prm.frequency_penalty, float(pen.output_count)), prm.presence_penalty));
    }
    work[pen.token_id] = x;
  }
  out_of_vocab = BlockMinLL(out_of_vocab, s);  // its barriers also publish the writes above
  if (out_of_vocab != LLONG_MAX) {
    return WriteError(out, kPenaltyOutOfVocab, p.penalties[out_of_vocab].token_id, 0.0f);
  }
  SampleRow(p.vocab, RowView<float>{work}, raw, prm, s, out);
}

}  // namespace

cudaError_t LaunchSampleRows(ScalarType type, const SampleRowsParams& params, cudaStream_t stream) {
  if (params.num_rows == 0) return cudaSuccess;
  if (params.num_rows < 0 || params.vocab <= 0 || params.vocab > INT_MAX || params.row_stride < params.vocab) {
    return cudaErrorInvalidValue;
  }
  TERN_DISPATCH_SCALAR(type, T, SampleRowsKernel<T><<<params.num_rows, kThreads, 0, stream>>>(params));
  return cudaGetLastError();
}

}  // namespace tern::kernels
