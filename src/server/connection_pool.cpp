#include "connection_pool.h"

namespace mote {

ConnectionPool::ConnectionPool(size_t threads, std::shared_ptr<std::atomic<bool>> stopping)
    : limit_(threads), stopping_(std::move(stopping)) {
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

ConnectionPool::~ConnectionPool() { shutdown(); }

void ConnectionPool::enqueue(std::function<void()> connection) {
  std::unique_lock lock(mutex_);
  // The server's stop flag is not this pool's to be notified of: look at it now and then.
  while (!room_.wait_for(lock, std::chrono::milliseconds(100), [&] { return held_ < limit_ || ended_; }) &&
         !stopping_->load()) {
  }
  ++held_;
  waiting_.push_back(std::move(connection));
  work_.notify_one();
}

void ConnectionPool::shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (ended_) return;
    ended_ = true;
  }
  work_.notify_all();
  room_.notify_all();
  for (auto& t : threads_) t.join();
}

void ConnectionPool::work() {
  for (;;) {
    std::function<void()> connection;
    {
      std::unique_lock lock(mutex_);
      work_.wait(lock, [&] { return ended_ || !waiting_.empty(); });
      if (waiting_.empty()) return;
      connection = std::move(waiting_.front());
      waiting_.pop_front();
    }
    connection();
    {
      std::lock_guard lock(mutex_);
      --held_;
    }
    room_.notify_one();
  }
}

}  // namespace mote
