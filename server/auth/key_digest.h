// SHA-256 digests of API keys, which is how ternd keeps and compares them:
// a key given in the config in clear is hashed at startup, a hashed key
// (TenantConfig.api_key_sha256) is the hex digest `printf %s KEY | sha256sum`
// prints, and a presented key is hashed and compared with every configured
// digest in time that does not depend on the bytes (CRYPTO_memcmp), so the
// timing of a rejection tells nothing about any configured key.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tern::server {

using KeyDigest = std::array<uint8_t, 32>;

KeyDigest Sha256(std::string_view key);

// 64 hex digits, either case; nullopt for anything else.
std::optional<KeyDigest> ParseHexDigest(std::string_view hex);

// Equal digests, compared in constant time.
bool DigestsEqual(const KeyDigest& a, const KeyDigest& b);

}  // namespace tern::server
