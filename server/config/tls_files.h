// TLS material for ternd's ports: the PEM files a tern.v1.TlsConfig names,
// read and checked once at start-up. The same material configures gRPC's
// SslServerCredentials and the HTTP server's OpenSSL context.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "tern/v1/config.pb.h"

namespace tern::server {

struct TlsFiles {
  std::string cert_chain_pem;  // the server's certificate chain, leaf first
  std::string private_key_pem;
  std::string client_ca_pem;   // empty: no client certificate asked for
  bool mutual() const { return !client_ca_pem.empty(); }
};

// Reads and checks the files of `tls`. INVALID_ARGUMENT naming the field
// ("tls.cert_file", "tls.key_file", "tls.client_ca_file") when a required
// one is unset, a file is missing or unreadable, holds no PEM certificate
// (or private key), or the key does not match the certificate. Never puts a
// key's bytes in a message.
absl::StatusOr<TlsFiles> LoadTlsFiles(const tern::v1::TlsConfig& tls);

// True when the config asks for TLS (any of its fields set).
bool TlsConfigured(const tern::v1::ServerConfig& config);

}  // namespace tern::server
