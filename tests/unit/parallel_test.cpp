#include "mote/util/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace mote {
namespace {

// Restores the thread count a test changed.
struct ThreadCount {
  explicit ThreadCount(int n) : before(parallel_threads()) { set_parallel_threads(n); }
  ~ThreadCount() { set_parallel_threads(before); }
  int before;
};

TEST(Parallel, EveryTaskRunsOnceOnAThreadOfThePool) {
  for (const int threads : {1, 2, 3}) {
    ThreadCount scope(threads);
    ASSERT_EQ(parallel_threads(), threads);
    for (const int tasks : {0, 1, 2, 7, 1000}) {
      for (int round = 0; round < 50; ++round) {
        std::vector<std::atomic<int>> runs(static_cast<size_t>(tasks));
        std::atomic<bool> bad_thread{false};
        parallel_for(tasks, [&](int task, int thread) {
          runs[static_cast<size_t>(task)].fetch_add(1);
          if (thread < 0 || thread >= threads) bad_thread = true;
        });
        for (int t = 0; t < tasks; ++t)
          ASSERT_EQ(runs[static_cast<size_t>(t)].load(), 1) << threads << " threads, task " << t;
        ASSERT_FALSE(bad_thread);
      }
    }
  }
}

TEST(Parallel, ALoopInsideATaskRunsOnItsThread) {
  ThreadCount scope(2);
  std::atomic<int> inner{0}, wrong{0};
  parallel_for(8, [&](int, int outer_thread) {
    const auto me = std::this_thread::get_id();
    parallel_for(5, [&](int, int thread) {
      inner.fetch_add(1);
      if (thread != 0 || std::this_thread::get_id() != me) wrong.fetch_add(1);
    });
    (void)outer_thread;
  });
  EXPECT_EQ(inner.load(), 40);
  EXPECT_EQ(wrong.load(), 0);
}

TEST(Parallel, LoopsFromTwoThreadsAtOnceBothComplete) {
  ThreadCount scope(2);
  std::atomic<long> sum{0};
  const auto many_loops = [&] {
    for (int i = 0; i < 200; ++i) parallel_for(16, [&](int task, int) { sum.fetch_add(task); });
  };
  std::thread other(many_loops);
  many_loops();
  other.join();
  EXPECT_EQ(sum.load(), 2L * 200 * (15 * 16 / 2));
}

}  // namespace
}  // namespace mote
