// Philox4x32-10, the counter-based generator of Salmon et al., "Parallel
// random numbers: as easy as 1, 2, 3" (SC'11), bit-exact with Random123's
// philox4x32_10 and with cuRAND's Philox4_32_10 block function.
//
// Why counter-based: the random number a sequence uses at output position t
// is a pure function of (seed, stream, t). It does not depend on which other
// sequences share the batch, on the thread that samples, on the platform, or
// on whether the sequence was preempted and recomputed; a GPU sampler can
// reproduce it without carrying generator state.
#pragma once

#include <array>
#include <cstdint>

namespace tern::runtime {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// The raw block function: 10 rounds over `counter` under `key`.
PhiloxCounter Philox4x32_10(PhiloxCounter counter, PhiloxKey key);

// The uniform double in [0, 1) that sampling uses for one draw: key = seed
// (low word first), counter = {position low, position high, stream, 0}; the
// top 53 bits of (word0 << 32 | word1) of the block, times 2^-53.
double PhiloxUniform(uint64_t seed, uint32_t stream, uint64_t position);

}  // namespace tern::runtime
