// DaemonProcess: runs the real ternd binary as a child process on loopback
// ports chosen by the kernel, for end-to-end tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace tern::testing {

struct ProcessResult {
  int exit_code = -1;       // -1 when killed by a signal
  int signal = 0;           // the signal that ended it, or 0
  std::string output;       // stdout and stderr together
};

// Runs `argv` to completion (with a timeout) and captures its output.
ProcessResult RunProcess(const std::vector<std::string>& argv, std::chrono::seconds timeout);

class DaemonProcess {
 public:
  // Starts ternd with `extra_args` plus --grpc-port 0 --http-port 0
  // --host 127.0.0.1 --ports-file; waits until the ports file appears.
  // Returns nullopt (and fills `error`) if it exits or times out first.
  static std::optional<DaemonProcess> Start(const std::vector<std::string>& extra_args,
                                            std::string* error);
  DaemonProcess(DaemonProcess&& other) noexcept;
  DaemonProcess& operator=(DaemonProcess&&) = delete;
  ~DaemonProcess();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  std::string grpc_target() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  pid_t pid() const { return pid_; }

  // Sends `signal` and waits up to `timeout` for exit. The result's
  // exit_code is -1 if it did not exit in time (it is then killed).
  ProcessResult Stop(int signal, std::chrono::milliseconds timeout);
  // Output so far.
  std::string Output() const;

 private:
  DaemonProcess() = default;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int http_port_ = 0;
  std::string dir_;       // temp dir with the ports file and the log
  std::string log_path_;
};

// Path of a built binary (ternd, tern): $TERN_BIN_DIR/name when that is set,
// else the build tree's bin/ directory.
std::string BinaryPath(const std::string& name);

// GET http://127.0.0.1:port/path; returns status code and body.
struct HttpReply {
  int status = 0;
  std::string body;
};
HttpReply HttpGet(int port, const std::string& path);

}  // namespace tern::testing
