#include "peer_watch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <mpi.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <vector>

#include "mote/util/host.h"

namespace mote {
namespace {

constexpr auto kConnectTime = std::chrono::seconds(5);

// What rank 0 tells the others: where to connect, and the number a
// connection must say first (anything else reaching the port is dropped).
struct Invitation {
  uint16_t port = 0;
  uint64_t token = 0;
  char host[256] = {};
};
struct Hello {
  int32_t rank;
  uint64_t token;
};

// Waits for `events` on fd until the deadline; false when it passed.
bool wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// A connection to rank 0, or -1 (with the reason in `why`).
int connect_to(const std::string& host, uint16_t port, std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int e = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); e != 0) {
    why = gai_strerror(e);
    return -1;
  }
  const auto deadline = std::chrono::steady_clock::now() + kConnectTime;
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int error = 0;
    socklen_t len = sizeof error;
    if ((::connect(fd, a->ai_addr, a->ai_addrlen) == 0 ||
         (errno == EINPROGRESS && wait_for(fd, POLLOUT, deadline) &&
          ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0))) {
      break;
    }
    why = std::strerror(error != 0 ? error : errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  return fd;
}

}  // namespace

PeerWatch::PeerWatch(const MpiSession& mpi, std::function<void(const std::string&)> on_death)
    : on_death_(std::move(on_death)) {
  if (mpi.size() == 1) return;
  const bool root = mpi.rank() == 0;
  Invitation invitation;
  int listener = -1;
  if (root) {
    // Loopback only, unless some rank runs on another host.
    listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(mpi.local_ranks() < mpi.size() ? INADDR_ANY : INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener, mpi.size()) != 0 || ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      spdlog::warn(
          "the ranks are not watched (no socket for them: {}): if one dies, clients see their connections close",
          std::strerror(errno));
      if (listener >= 0) ::close(listener);
      listener = -1;
    } else {
      invitation.port = ntohs(addr.sin_port);
      invitation.token = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
      std::strncpy(invitation.host, host_name().c_str(), sizeof invitation.host - 1);
    }
  }
  MPI_Bcast(&invitation, sizeof invitation, MPI_BYTE, 0, MPI_COMM_WORLD);
  if (invitation.port == 0) return;

  if (!root) {
    const std::string host = invitation.host == host_name() ? "127.0.0.1" : std::string(invitation.host);
    std::string why;
    own_socket_ = connect_to(host, invitation.port, why);
    Hello hello;
    std::memset(&hello, 0, sizeof hello);  // padding included: all of it goes out
    hello.rank = mpi.rank();
    hello.token = invitation.token;
    if (own_socket_ >= 0 && ::send(own_socket_, &hello, sizeof hello, MSG_NOSIGNAL) != sizeof hello) {
      why = std::strerror(errno);
      ::close(own_socket_);
      own_socket_ = -1;
    }
    if (own_socket_ < 0) {
      spdlog::warn("rank {} cannot reach rank 0 at {}:{} ({}): if it dies, clients see their connections close",
                   mpi.rank(), host, invitation.port, why);
    }
    return;
  }

  // Rank 0: take the others' connections, then watch them.
  const auto deadline = std::chrono::steady_clock::now() + kConnectTime;
  while (static_cast<int>(peers_.size()) < mpi.size() - 1 && wait_for(listener, POLLIN, deadline)) {
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    // Whatever else reaches the port must not hold rank 0 up.
    const timeval second{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &second, sizeof second);
    Hello hello{};
    if (wait_for(fd, POLLIN, deadline) && ::recv(fd, &hello, sizeof hello, MSG_WAITALL) == sizeof hello &&
        hello.token == invitation.token && hello.rank > 0 && hello.rank < mpi.size()) {
      peers_[fd] = hello.rank;
    } else {
      ::close(fd);
    }
  }
  ::close(listener);
  if (static_cast<int>(peers_.size()) < mpi.size() - 1)
    spdlog::warn("{} of the {} other ranks are watched: if another dies, clients see their connections close",
                 peers_.size(), mpi.size() - 1);
  if (peers_.empty() || ::pipe2(wake_, O_CLOEXEC) != 0) return;
  thread_ = std::thread([this] { watch(); });
}

PeerWatch::~PeerWatch() {
  stop();
  for (const auto& [fd, rank] : peers_) ::close(fd);
  if (own_socket_ >= 0) ::close(own_socket_);
  for (const int fd : wake_)
    if (fd >= 0) ::close(fd);
}

void PeerWatch::stop() {
  if (!thread_.joinable()) return;
  const char byte = 0;
  while (::write(wake_[1], &byte, 1) < 0 && errno == EINTR) {
  }
  thread_.join();
}

void PeerWatch::watch() {
  std::vector<pollfd> fds;
  fds.push_back({wake_[0], POLLIN, 0});
  for (const auto& [fd, rank] : peers_) fds.push_back({fd, POLLIN, 0});
  for (;;) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    // The others never send after their hello: anything to read is the end.
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      char byte;
      const ssize_t n = ::recv(fds[i].fd, &byte, 1, MSG_DONTWAIT);
      if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) continue;
      on_death_(fmt::format("rank {} died", peers_[fds[i].fd]));
      return;
    }
  }
}

}  // namespace mote
