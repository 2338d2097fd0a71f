// Watches the other ranks on rank 0's host while a server runs. A rank
// that dies leaves the survivors waiting in MPI until mpirun kills them a
// moment later; the HTTP threads still answer, so the clients of the
// requests in flight can be told (a 500) instead of losing the connection.
// Ranks on other hosts are not watched: their death ends the server all
// the same, but its clients see the connection close.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mote/expert_parallel/mpi_session.h"

namespace mote {

class PeerWatch {
 public:
  // Calls on_death once, from its own thread, with a message naming the
  // first rank found dead; looks every `interval` (a read of /proc per peer).
  PeerWatch(std::vector<MpiSession::Peer> peers, std::function<void(const std::string&)> on_death,
            std::chrono::milliseconds interval = std::chrono::milliseconds(100));
  ~PeerWatch();
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

 private:
  void watch();

  struct Watched {
    MpiSession::Peer peer;
    std::string start_time;  // tells a reused process id from the rank's own
  };
  std::vector<Watched> peers_;
  std::function<void(const std::string&)> on_death_;
  std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace mote
