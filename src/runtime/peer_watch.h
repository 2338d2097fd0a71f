// Rank 0 of a server watches the other ranks. A rank that dies leaves the
// survivors waiting in MPI until mpirun kills them a moment later; the
// HTTP threads still answer, so the clients of the requests in flight can
// be told (a 500) instead of losing the connection. Each rank opens a TCP
// connection to rank 0 at start and never uses it: the kernel closes it
// when the process ends, however it ends, and rank 0 sees that at once
// (ranks on rank 0's host connect over loopback, the others to its host
// name; one that cannot connect is named in a warning and not watched).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "mote/expert_parallel/mpi_session.h"

namespace mote {

class PeerWatch {
 public:
  // Every rank calls it (it is collective). On rank 0, on_death is called
  // once, from the watch's own thread, with a message naming the rank.
  PeerWatch(const MpiSession& mpi, std::function<void(const std::string&)> on_death);
  ~PeerWatch();
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

  // Rank 0: stops watching. Called once the job's requests are done and
  // before anything lets the other ranks end.
  void stop();

 private:
  void watch();

  std::function<void(const std::string&)> on_death_;
  std::map<int, int> peers_;  // rank 0: socket -> rank
  int own_socket_ = -1;       // the other ranks: their connection
  int wake_[2] = {-1, -1};    // a pipe that ends the watch
  std::thread thread_;
};

}  // namespace mote
