// Version and source revision compiled into the binaries.
#pragma once

#include <string>

namespace tern::server {

std::string BuildVersion();
std::string BuildGitSha();

}  // namespace tern::server
