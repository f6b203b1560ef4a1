// One rotate-half RoPE pair, shared by RopeKernel and the fused RoPE + KV
// append: out[0], out[half] from in[0], in[half] at angle position *
// inv_freq, in fp32, with cos and sin rounded to T first as Hugging Face
// does. in and out may be the same (in place).
#pragma once

#include "kernels/common/dispatch.cuh"

namespace tern::kernels {

template <typename T, typename Index>
__device__ __forceinline__ void RotatePair(float position, float inv_freq, const T* in, Index half, T* out) {
  float s, c;
  sincosf(position * inv_freq, &s, &c);
  const float cr = ToFloat(FromFloat<T>(c));
  const float sr = ToFloat(FromFloat<T>(s));
  const float a = ToFloat(in[0]);
  const float b = ToFloat(in[half]);
  out[0] = FromFloat<T>(a * cr - b * sr);
  out[half] = FromFloat<T>(b * cr + a * sr);
}

}  // namespace tern::kernels
