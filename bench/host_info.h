// What a benchmark report says about the machine it ran on.
#pragma once

#include <string>

namespace tern::bench {

// The CPU's model name from /proc/cpuinfo, or "unknown CPU".
std::string CpuModelName();

}  // namespace tern::bench
