// STREAM-style read bandwidth: every thread sums its share of a buffer much
// larger than the caches; the figure decode speed is held against.
//   read_bandwidth [MIB] [REPS]     (threads: OMP_NUM_THREADS)
// Prints one JSON object with the median over REPS passes.
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench_util.h"

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1024;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 9;
  const size_t n = mib * (1u << 20) / sizeof(float);
  std::vector<float> buffer(n);
  // First touch by the threads that read it later.
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) buffer[i] = static_cast<float>(i & 1023);
  volatile float sink = 0;
  const double seconds = mote::bench::median_seconds(reps, [&] {
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
      const size_t threads = static_cast<size_t>(omp_get_num_threads()), me = static_cast<size_t>(omp_get_thread_num());
      const size_t begin = n / threads * me / 64 * 64, end = me + 1 == threads ? n : n / threads * (me + 1) / 64 * 64;
      total += mote::bench::sum_floats(&buffer[begin], end - begin);
    }
    sink = total;
  });
  std::printf("{\"bench\": \"read_bandwidth\", \"threads\": %d, \"buffer_mib\": %zu, \"read_bandwidth_gbs\": %.2f}\n",
              omp_get_max_threads(), mib, static_cast<double>(n) * sizeof(float) / seconds / 1e9);
}
