// The memory-bandwidth ceiling every decode roofline divides by: bytes read
// plus bytes written per second by a plain copy, the best of several.
#pragma once

#include <cstddef>

namespace tern::bench {

// std::memcpy between two host buffers of `bytes`; best of `repeats`.
double HostCopyBandwidth(size_t bytes = size_t(256) << 20, int repeats = 5);

#if defined(TERN_WITH_CUDA)
// cudaMemcpy device to device on the current device, timed with CUDA events;
// the first copy is a warm-up, then the best of `repeats`. 0 when the device
// cannot hold two buffers of `bytes`.
double DeviceCopyBandwidth(size_t bytes = size_t(1) << 30, int repeats = 5);
#endif

}  // namespace tern::bench
