// The threads that answer a server's connections, at most one connection
// each. httplib's own pool queues every connection it accepts without
// bound, so a flood of idle clients would hold a descriptor each until
// the process runs out of them (and then fail the record's writes too).
// This one makes the accept loop wait while every thread is busy: further
// clients wait in the kernel's listen backlog, and each held connection
// ends by httplib's timeouts (idle keep-alive, read, write) if its client
// stalls.
#pragma once

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace mote {

class ConnectionPool : public httplib::TaskQueue {
 public:
  // `stopping`: set by the server when it stops, after which the accept
  // loop no longer waits (it is about to end and must not hold stop() up).
  ConnectionPool(size_t threads, std::shared_ptr<std::atomic<bool>> stopping);
  ~ConnectionPool() override;

  // From httplib's accept loop: waits until a thread is free.
  void enqueue(std::function<void()> connection) override;
  // From httplib once it has stopped accepting: finishes the connections
  // held and ends the threads.
  void shutdown() override;

 private:
  void work();

  size_t limit_;
  std::shared_ptr<std::atomic<bool>> stopping_;
  std::mutex mutex_;
  std::condition_variable work_, room_;
  std::deque<std::function<void()>> waiting_;
  size_t held_ = 0;  // connections accepted and not yet closed
  bool ended_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace mote
