#include "server/config/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace tern::server {
namespace {

absl::Status Invalid(const std::string& field, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

absl::StatusOr<std::string> ReadFile(const std::string& field, const std::string& path) {
  if (path.empty()) return Invalid(field, "is required");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Invalid(field, absl::StrCat("cannot read \"", path, "\": ", std::strerror(errno)));
  std::stringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return Invalid(field, absl::StrCat("cannot read \"", path, "\""));
  return bytes.str();
}

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first certificate of `pem`, and how many it holds.
std::unique_ptr<X509, X509Free> FirstCertificate(const std::string& pem, int* count) {
  auto bio = MemoryBio(pem);
  std::unique_ptr<X509, X509Free> first;
  *count = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (first == nullptr) {
      first.reset(cert);
    } else {
      X509_free(cert);
    }
    ++*count;
  }
  ERR_clear_error();  // the end of the PEM stream reads as an error
  return first;
}

}  // namespace

bool TlsConfigured(const tern::v1::ServerConfig& config) {
  const tern::v1::TlsConfig& tls = config.tls();
  return !tls.cert_file().empty() || !tls.key_file().empty() || !tls.client_ca_file().empty();
}

absl::StatusOr<TlsFiles> LoadTlsFiles(const tern::v1::TlsConfig& tls) {
  TlsFiles files;
  auto cert = ReadFile("tls.cert_file", tls.cert_file());
  if (!cert.ok()) return cert.status();
  files.cert_chain_pem = *std::move(cert);
  auto key = ReadFile("tls.key_file", tls.key_file());
  if (!key.ok()) return key.status();
  files.private_key_pem = *std::move(key);

  int certs = 0;
  const auto leaf = FirstCertificate(files.cert_chain_pem, &certs);
  if (leaf == nullptr) {
    return Invalid("tls.cert_file", absl::StrCat("\"", tls.cert_file(), "\" holds no PEM certificate"));
  }
  auto key_bio = MemoryBio(files.private_key_pem);
  std::unique_ptr<EVP_PKEY, KeyFree> private_key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (private_key == nullptr) {
    return Invalid("tls.key_file",
                   absl::StrCat("\"", tls.key_file(), "\" holds no PEM private key (or it is encrypted)"));
  }
  if (X509_check_private_key(leaf.get(), private_key.get()) != 1) {
    ERR_clear_error();
    return Invalid("tls.key_file", absl::StrCat("the key in \"", tls.key_file(),
                                                "\" does not match the certificate in \"", tls.cert_file(), "\""));
  }
  if (!tls.client_ca_file().empty()) {
    auto ca = ReadFile("tls.client_ca_file", tls.client_ca_file());
    if (!ca.ok()) return ca.status();
    int cas = 0;
    if (FirstCertificate(*ca, &cas) == nullptr) {
      return Invalid("tls.client_ca_file",
                     absl::StrCat("\"", tls.client_ca_file(), "\" holds no PEM certificate"));
    }
    files.client_ca_pem = *std::move(ca);
  }
  return files;
}

}  // namespace tern::server
