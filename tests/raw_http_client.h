// A raw TCP client for HTTP tests: sends bytes as given (malformed requests,
// oversized headers, a body that never comes), reads what comes back until a
// marker appears, the server closes, or a timeout passes, and may walk away
// mid-response. Loopback only; one thread.
#pragma once

#include <chrono>
#include <string>
#include <thread>

#include "boost/asio.hpp"

namespace tern::testing {

class RawHttpClient {
 public:
  explicit RawHttpClient(int port) : socket_(io_) {
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  }

  void Send(const std::string& bytes) { boost::asio::write(socket_, boost::asio::buffer(bytes)); }

  // A POST with a JSON body and, when `bearer` is not empty, an Authorization header.
  void SendPost(const std::string& target, const std::string& body, const std::string& bearer = "") {
    Send("POST " + target + " HTTP/1.1\r\nHost: x\r\n" +
         (bearer.empty() ? std::string() : "Authorization: Bearer " + bearer + "\r\n") +
         "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  }

  // Reads until `until` appears in what was read (or the connection ends or
  // `timeout` passes); returns everything read so far.
  std::string ReadUntil(const std::string& until, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    socket_.non_blocking(true);
    while (received_.find(until) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      char buffer[4096];
      boost::system::error_code ec;
      const size_t n = socket_.read_some(boost::asio::buffer(buffer), ec);
      if (ec == boost::asio::error::would_block) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      if (ec) break;
      received_.append(buffer, n);
    }
    return received_;
  }

  void Close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  std::string received_;
};

}  // namespace tern::testing
