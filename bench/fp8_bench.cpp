// FP8 (e4m3, 128x128 block scales) against BF16 kernels on DeepSeek-R1's
// expert and attention shapes, with the same activations and threads:
//  - decode (1 row): effective bandwidth = bytes of weights (+ scales) read
//    per second, over a set of matrices larger than the caches, so it is
//    memory-bound as in a real decode step;
//  - prefill (64 and 512 rows): time of the same product.
// FP8 and BF16 are timed alternately and the medians compared.
// Prints one JSON object per shape and one summary line with the ratios.
//   fp8_bench [--quick]
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "bench_util.h"
#include "mote/io/safetensors_writer.h"
#include "mote/ops/matmul.h"

namespace {

using namespace mote;

struct Matrices {
  std::vector<std::byte> fp8, scales, bf16;
  std::vector<Weight> w8, w16;
};

// `count` distinct random matrices of rows x cols in both formats.
Matrices make(int count, int rows, int cols, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  const size_t n = static_cast<size_t>(rows) * cols;
  const int sr = (rows + kFp8Block - 1) / kFp8Block, sc = (cols + kFp8Block - 1) / kFp8Block;
  Matrices m;
  m.fp8.resize(n * count);
  m.bf16.resize(2 * n * count);
  m.scales.resize(static_cast<size_t>(sr) * sc * 4 * count);
  for (size_t i = 0; i < n * count; ++i) {
    const float v = dist(gen);
    m.fp8[i] = static_cast<std::byte>(float_to_e4m3(v / (0.08f / 448.0f)));
    const uint16_t b = float_to_bf16(v);
    std::memcpy(m.bf16.data() + 2 * i, &b, 2);
  }
  const float s = 0.08f / 448.0f;
  for (size_t i = 0; i < m.scales.size() / 4; ++i) std::memcpy(m.scales.data() + 4 * i, &s, 4);
  for (int k = 0; k < count; ++k) {
    m.w8.push_back(
        {DType::F8_E4M3, rows, cols, m.fp8.data() + n * k, m.scales.data() + static_cast<size_t>(sr) * sc * 4 * k, 0});
    m.w16.push_back({DType::BF16, rows, cols, m.bf16.data() + 2 * n * k});
  }
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  struct Shape {
    const char* name;
    int rows, cols;
  };
  const Shape shapes[] = {
      {"r1.expert_gate_up", 2048, 7168}, {"r1.expert_down", 7168, 2048}, {"r1.q_b_proj", 24576, 1536}};
  double decode_ratio_sum = 0, prefill_ratio_sum = 0;
  int decode_n = 0, prefill_n = 0;
  for (const Shape& s : shapes) {
    const size_t bytes8 = static_cast<size_t>(s.rows) * s.cols;
    // About 400 MB of BF16: well past any cache.
    const int count = std::max(2, static_cast<int>(400'000'000 / (2 * bytes8)));
    const Matrices m = make(count, s.rows, s.cols, 1);
    std::vector<float> x(static_cast<size_t>(512) * s.cols, 0.5f), y(static_cast<size_t>(512) * s.rows);
    const int reps = quick ? 5 : 15;
    const auto [t8, t16] = bench::interleaved_medians(
        reps,
        [&] {
          for (const auto& w : m.w8) matmul(x.data(), 1, w, y.data());
        },
        [&] {
          for (const auto& w : m.w16) matmul(x.data(), 1, w, y.data());
        });
    const double gbps8 = count * static_cast<double>(m.w8[0].bytes() + m.w8[0].scale_bytes()) / t8 / 1e9;
    const double gbps16 = count * static_cast<double>(m.w16[0].bytes()) / t16 / 1e9;
    std::printf(
        "{\"bench\": \"fp8_decode\", \"shape\": \"%s\", \"rows\": %d, \"cols\": %d, \"matrices\": %d, \"threads\": %d, "
        "\"fp8_effective_gbps\": %.2f, \"bf16_effective_gbps\": %.2f, \"fp8_vs_bf16_bandwidth_ratio\": %.3f, "
        "\"fp8_vs_bf16_speedup\": %.3f}\n",
        s.name, s.rows, s.cols, count, omp_get_max_threads(), gbps8, gbps16, gbps8 / gbps16, t16 / t8);
    std::fflush(stdout);
    decode_ratio_sum += gbps8 / gbps16;
    ++decode_n;
    for (const int n : {64, 512}) {
      if (quick && n == 512) continue;
      const int prefill_reps = quick ? 3 : 5;
      const auto [p8, p16] = bench::interleaved_medians(
          prefill_reps, [&] { matmul(x.data(), n, m.w8[0], y.data()); },
          [&] { matmul(x.data(), n, m.w16[0], y.data()); });
      const double flops = 2.0 * n * static_cast<double>(bytes8);
      std::printf(
          "{\"bench\": \"fp8_prefill\", \"shape\": \"%s\", \"tokens\": %d, \"threads\": %d, \"fp8_gflops\": %.2f, "
          "\"bf16_gflops\": %.2f, \"fp8_vs_bf16_time_ratio\": %.3f}\n",
          s.name, n, omp_get_max_threads(), flops / p8 / 1e9, flops / p16 / 1e9, p8 / p16);
      std::fflush(stdout);
      prefill_ratio_sum += p8 / p16;
      ++prefill_n;
    }
  }
  std::printf(
      "{\"bench\": \"fp8_summary\", \"threads\": %d, \"fp8_vs_bf16_decode_bandwidth_ratio\": %.3f, "
      "\"fp8_vs_bf16_prefill_time_ratio\": %.3f}\n",
      omp_get_max_threads(), decode_ratio_sum / decode_n, prefill_ratio_sum / prefill_n);
}
