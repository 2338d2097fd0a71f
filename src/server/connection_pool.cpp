#include "connection_pool.h"

namespace mote {

ConnectionPool::ConnectionPool(size_t threads) : limit_(threads) {
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

ConnectionPool::~ConnectionPool() { shutdown(); }

void ConnectionPool::enqueue(std::function<void()> connection) {
  std::unique_lock lock(mutex_);
  room_.wait(lock, [&] { return held_ < limit_ || closing_; });
  ++held_;
  waiting_.push_back(std::move(connection));
  work_.notify_one();
}

void ConnectionPool::close() {
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
  }
  room_.notify_all();
}

void ConnectionPool::shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (ended_) return;
    ended_ = closing_ = true;
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
