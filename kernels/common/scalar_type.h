// Element types the CUDA kernels are instantiated for. Launchers take a
// ScalarType plus untyped pointers and dispatch once, so callers need no
// templates and the build instantiates each kernel exactly three times.
#pragma once

namespace tern::kernels {

enum class ScalarType { kF32, kF16, kBF16 };

}  // namespace tern::kernels
