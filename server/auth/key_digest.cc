#include "server/auth/key_digest.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "runtime/base/check.h"

namespace tern::server {

KeyDigest Sha256(std::string_view key) {
  KeyDigest digest;
  unsigned int size = 0;
  CHECK(EVP_Digest(key.data(), key.size(), digest.data(), &size, EVP_sha256(), nullptr) == 1 &&
        size == digest.size())
      << "SHA-256 failed";
  return digest;
}

std::optional<KeyDigest> ParseHexDigest(std::string_view hex) {
  KeyDigest digest;
  if (hex.size() != 2 * digest.size()) return std::nullopt;
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < digest.size(); ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    digest[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return digest;
}

bool DigestsEqual(const KeyDigest& a, const KeyDigest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace tern::server
