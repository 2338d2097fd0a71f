// Timing helpers for the benchmarks: medians over repetitions, JSON lines
// on stdout. Machines here are shared and noisy, so compare ratios measured
// in the same run rather than absolute numbers across runs.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace mote::bench {

// Median wall time in seconds of `reps` calls of `fn`, after one warm-up call.
inline double median_seconds(int reps, const std::function<void()>& fn) {
  fn();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace mote::bench
