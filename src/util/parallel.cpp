#include "mote/util/parallel.h"

#include <immintrin.h>
#include <linux/futex.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <mutex>
#include <thread>
#include <vector>

namespace mote {
namespace {

// The claim word: loop generation (20 bits), task count (22), next task (22).
constexpr int kTaskBits = 22;
constexpr uint64_t kTaskMask = (uint64_t{1} << kTaskBits) - 1;
constexpr uint64_t kGenMask = (uint64_t{1} << 20) - 1;
constexpr uint64_t pack(uint64_t gen, uint64_t tasks, uint64_t next) {
  return gen << (2 * kTaskBits) | tasks << kTaskBits | next;
}

// How long an idle worker watches for the next loop before it sleeps: long
// enough to catch the next product of a decode step without a wake-up,
// short enough not to take a core from another process for long.
constexpr auto kSpin = std::chrono::microseconds(100);

// With OMP_PLACES and OMP_PROC_BIND set, the OpenMP runtime binds the
// calling thread to the first place, and a thread it creates would inherit
// that one place: worker i goes to the i-th place after it instead, as
// OMP_PROC_BIND=close places OpenMP's own threads.
void bind_to_place(std::thread& worker, int index) {
  const int places = omp_get_num_places();
  if (places <= 0 || omp_get_proc_bind() == omp_proc_bind_false) return;
  const int place = (std::max(omp_get_place_num(), 0) + index) % places;
  std::vector<int> ids(static_cast<size_t>(omp_get_place_num_procs(place)));
  if (ids.empty()) return;
  omp_get_place_proc_ids(place, ids.data());
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const int id : ids) {
    if (id >= 0 && id < CPU_SETSIZE) CPU_SET(id, &set);
  }
  pthread_setaffinity_np(worker.native_handle(), sizeof set, &set);
}

// Sleep while *word == expected / wake every sleeper: the kernel's futex on
// the 32-bit wake counter.
void futex_wait(std::atomic<uint32_t>& word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void futex_wake_all(std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

class Pool {
 public:
  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    std::lock_guard lock(resize_mutex_);
    if (!workers_.empty()) {
      stop_.store(true, std::memory_order_release);
      wake_.fetch_add(1, std::memory_order_seq_cst);
      futex_wake_all(wake_);
      for (auto& w : workers_) w.join();
      workers_.clear();
      stop_.store(false, std::memory_order_release);
    }
    // The wake count as of now, not as of when a new thread first runs: a
    // stop or a loop published before then must still wake it.
    const uint32_t seen = wake_.load(std::memory_order_seq_cst);
    for (int i = 1; i < threads; ++i) {
      workers_.emplace_back([this, i, seen] { work(i, seen); });
      bind_to_place(workers_.back(), i);
    }
  }

  void run(int tasks, const std::function<void(int, int)>& fn, bool parallel) {
    bool expected = false;
    if (!parallel || in_task_ || workers_.empty() || tasks <= 1 || tasks > static_cast<int>(kTaskMask) ||
        !busy_.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      for (int t = 0; t < tasks; ++t) fn(t, 0);
      return;
    }
    gen_ = (gen_ + 1) & kGenMask;
    if (gen_ == 0) gen_ = 1;
    fn_.store(&fn, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    claim_.store(pack(gen_, static_cast<uint64_t>(tasks), 0), std::memory_order_release);
    // seq_cst here and in the worker's sleep: either the worker sees the new
    // value before it sleeps, or this sees the worker asleep and wakes it.
    wake_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake_all(wake_);
    in_task_ = true;
    int mine = 0;
    for (int t; (t = claim(gen_)) >= 0; ++mine) fn(t, 0);
    in_task_ = false;
    // Wait only for the tasks workers have claimed and not yet finished.
    const int others = tasks - mine;
    for (int spins = 0; done_.load(std::memory_order_acquire) < others; ++spins) {
      if (spins < 4096) {
        _mm_pause();
      } else {
        sched_yield();
      }
    }
    busy_.store(false, std::memory_order_release);
  }

 private:
  // The next task of loop `gen`, or -1 when it has none left (or is over).
  int claim(uint64_t gen) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    for (;;) {
      const uint64_t next = c & kTaskMask, tasks = (c >> kTaskBits) & kTaskMask;
      if ((c >> (2 * kTaskBits)) != gen || next >= tasks) return -1;
      if (claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire))
        return static_cast<int>(next);
    }
  }

  void work(int index, uint32_t seen) {
    in_task_ = true;  // a task's own parallel loops run on its thread
    for (;;) {
      const auto start = std::chrono::steady_clock::now();
      uint32_t now = wake_.load(std::memory_order_acquire);
      for (int i = 0; now == seen; ++i) {
        _mm_pause();
        now = wake_.load(std::memory_order_acquire);
        if (now == seen && (i & 63) == 63 && std::chrono::steady_clock::now() - start > kSpin) {
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          if (wake_.load(std::memory_order_seq_cst) == seen) futex_wait(wake_, seen);
          sleepers_.fetch_sub(1, std::memory_order_acq_rel);
          now = wake_.load(std::memory_order_acquire);
        }
      }
      seen = now;
      if (stop_.load(std::memory_order_acquire)) return;
      const uint64_t gen = claim_.load(std::memory_order_acquire) >> (2 * kTaskBits);
      for (int t; (t = claim(gen)) >= 0;) {
        // The loop cannot end while this task is unfinished, so fn_ is its own.
        (*fn_.load(std::memory_order_relaxed))(t, index);
        done_.fetch_add(1, std::memory_order_release);
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex resize_mutex_;
  std::atomic<bool> busy_{false}, stop_{false};
  std::atomic<uint64_t> claim_{0};
  std::atomic<uint32_t> wake_{0};
  std::atomic<int> sleepers_{0}, done_{0};
  std::atomic<const std::function<void(int, int)>*> fn_{nullptr};
  uint64_t gen_ = 0;
  static thread_local bool in_task_;
};

thread_local bool Pool::in_task_ = false;

Pool& pool() {
  static Pool* p = [] {
    auto* created = new Pool();  // never destroyed: workers may outlive static destruction order
    created->resize(std::max(1, omp_get_max_threads()));
    return created;
  }();
  return *p;
}

}  // namespace

void parallel_for(int tasks, const std::function<void(int, int)>& fn, bool parallel) {
  pool().run(tasks, fn, parallel);
}

int parallel_threads() { return pool().threads(); }

void set_parallel_threads(int threads) {
  if (threads != pool().threads()) pool().resize(std::max(1, threads));
}

}  // namespace mote
