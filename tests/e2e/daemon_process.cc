#include "tests/e2e/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "nlohmann/json.hpp"

extern char** environ;

namespace tern::testing {
namespace {

std::string MakeTempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "ternd-test-XXXXXX").string();
  char* made = mkdtemp(pattern.data());
  return made ? std::string(made) : std::string();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

// Waits for `pid` up to `timeout`; fills result on exit and returns true.
bool WaitFor(pid_t pid, std::chrono::milliseconds timeout, ProcessResult* result) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status)) result->exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) result->signal = WTERMSIG(status);
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

std::string BinaryPath(const std::string& name) {
  // TERN_BIN_DIR in the environment wins, so a relocated bundle of binaries
  // (tools/device/bundle.sh) runs the same tests.
  const char* env = std::getenv("TERN_BIN_DIR");
  return std::string(env != nullptr && *env != '\0' ? env : TERN_BIN_DIR) + "/" + name;
}

ProcessResult RunProcess(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  ProcessResult result;
  const std::string dir = MakeTempDir();
  const std::string log = dir + "/out.log";
  const pid_t pid = Spawn(argv, log);
  if (pid < 0) {
    result.output = "spawn failed: " + argv[0];
    return result;
  }
  if (!WaitFor(pid, timeout, &result)) {
    kill(pid, SIGKILL);
    WaitFor(pid, std::chrono::seconds(5), &result);
    result.exit_code = -1;
  }
  result.output = ReadFile(log);
  std::filesystem::remove_all(dir);
  return result;
}

std::optional<DaemonProcess> DaemonProcess::Start(const std::vector<std::string>& extra_args,
                                                  std::string* error) {
  DaemonProcess daemon;
  daemon.dir_ = MakeTempDir();
  daemon.log_path_ = daemon.dir_ + "/ternd.log";
  const std::string ports_file = daemon.dir_ + "/ports.json";
  std::vector<std::string> argv = {BinaryPath("ternd"), "--host",      "127.0.0.1",
                                   "--grpc-port",       "0",           "--http-port",
                                   "0",                 "--ports-file", ports_file};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  daemon.pid_ = Spawn(argv, daemon.log_path_);
  if (daemon.pid_ < 0) {
    *error = "cannot spawn " + argv[0];
    return std::nullopt;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::filesystem::exists(ports_file)) {
      const auto ports = nlohmann::json::parse(ReadFile(ports_file), nullptr, false);
      if (!ports.is_discarded()) {
        daemon.grpc_port_ = ports.value("grpc_port", 0);
        daemon.http_port_ = ports.value("http_port", 0);
        return daemon;
      }
    }
    ProcessResult exited;
    if (WaitFor(daemon.pid_, std::chrono::milliseconds(0), &exited)) {
      *error = "ternd exited with " + std::to_string(exited.exit_code) + ": " + daemon.Output();
      daemon.pid_ = -1;
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  *error = "ternd did not write its ports file within 30 s: " + daemon.Output();
  return std::nullopt;
}

DaemonProcess::DaemonProcess(DaemonProcess&& other) noexcept
    : pid_(other.pid_),
      grpc_port_(other.grpc_port_),
      http_port_(other.http_port_),
      dir_(std::move(other.dir_)),
      log_path_(std::move(other.log_path_)) {
  other.pid_ = -1;
  other.dir_.clear();
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) Stop(SIGKILL, std::chrono::seconds(5));
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

ProcessResult DaemonProcess::Stop(int signal, std::chrono::milliseconds timeout) {
  ProcessResult result;
  if (pid_ <= 0) return result;
  kill(pid_, signal);
  if (!WaitFor(pid_, timeout, &result)) {
    kill(pid_, SIGKILL);
    ProcessResult killed;
    WaitFor(pid_, std::chrono::seconds(5), &killed);
    result.exit_code = -1;
  }
  pid_ = -1;
  result.output = Output();
  return result;
}

std::string DaemonProcess::Output() const { return ReadFile(log_path_); }

HttpReply HttpGet(int port, const std::string& path) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  HttpReply reply;
  boost::system::error_code ec;
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
  if (ec) return reply;
  http::request<http::empty_body> request{http::verb::get, path, 11};
  request.set(http::field::host, "127.0.0.1");
  http::write(socket, request, ec);
  if (ec) return reply;
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(socket, buffer, response, ec);
  if (ec) return reply;
  reply.status = response.result_int();
  reply.body = response.body();
  return reply;
}

}  // namespace tern::testing
