// Debian 12's Abseil (20220623) has its own absl::string_view, distinct from
// std::string_view. Heterogeneous lookups in absl::flat_hash_map<std::string,
// ...> take the absl type; this converts without copying.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace tern::runtime {

inline absl::string_view ToAbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace tern::runtime
