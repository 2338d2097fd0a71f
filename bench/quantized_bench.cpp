// Quantized weights against BF16 kernels on the shapes they ship in, with
// the same activations and threads:
//   --format fp8:   DeepSeek-R1's e4m3 with 128x128 block scales, on its
//                   expert and attention shapes;
//   --format mxfp4: gpt-oss's e2m1 with an e8m0 scale per 32 values, on
//                   gpt-oss-120b's (and -20b's) expert shapes.
//  - decode (1 row): effective bandwidth = bytes of weights (+ scales) read
//    per second, over a set of matrices larger than the caches, so it is
//    memory-bound as in a real decode step;
//  - prefill (64 and 512 rows): time of the same product.
// The format and BF16 are timed alternately and the medians compared.
// Prints one JSON object per shape and one summary line with the ratios
// (fp8_vs_bf16_... or mxfp4_vs_bf16_...).
//   quantized_bench [--format fp8|mxfp4] [--quick]
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
  std::vector<std::byte> quantized, scales, bf16;
  std::vector<Weight> wq, w16;
};

// `count` distinct random matrices of rows x cols, quantized and in BF16.
Matrices make(bool mxfp4, int count, int rows, int cols, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  const size_t n = static_cast<size_t>(rows) * cols;
  const size_t q_bytes = mxfp4 ? n / 2 : n;
  const size_t s_bytes =
      mxfp4 ? n / kMxfp4Block
            : static_cast<size_t>((rows + kFp8Block - 1) / kFp8Block) * ((cols + kFp8Block - 1) / kFp8Block) * 4;
  Matrices m;
  m.quantized.resize(q_bytes * count);
  m.bf16.resize(2 * n * count);
  m.scales.resize(s_bytes * count);
  const float fp8_scale = 0.08f / 448.0f;
  for (size_t i = 0; i < n * count; ++i) {
    const float v = dist(gen);
    if (mxfp4) {
      // Random codes: the values matter less than the bytes read.
      if (i % 2 == 0) m.quantized[i / 2] = static_cast<std::byte>(gen());
    } else {
      m.quantized[i] = static_cast<std::byte>(float_to_e4m3(v / fp8_scale));
    }
    const uint16_t b = float_to_bf16(v);
    std::memcpy(m.bf16.data() + 2 * i, &b, 2);
  }
  for (size_t i = 0; i < m.scales.size(); i += mxfp4 ? 1 : 4) {
    if (mxfp4)
      m.scales[i] = static_cast<std::byte>(120 + gen() % 4);
    else
      std::memcpy(m.scales.data() + i, &fp8_scale, 4);
  }
  for (int k = 0; k < count; ++k) {
    m.wq.push_back({mxfp4 ? DType::MXFP4 : DType::F8_E4M3, rows, cols, m.quantized.data() + q_bytes * k,
                    m.scales.data() + s_bytes * k, 0});
    m.w16.push_back({DType::BF16, rows, cols, m.bf16.data() + 2 * n * k});
  }
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string format = "fp8";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--format" && i + 1 < argc) {
      format = argv[++i];
    } else {
      std::fprintf(stderr, "usage: quantized_bench [--format fp8|mxfp4] [--quick]\n");
      return 2;
    }
  }
  if (format != "fp8" && format != "mxfp4") {
    std::fprintf(stderr, "quantized_bench: --format must be fp8 or mxfp4\n");
    return 2;
  }
  const bool mxfp4 = format == "mxfp4";
  const char* f = format.c_str();
  struct Shape {
    const char* name;
    int rows, cols;
  };
  const std::vector<Shape> shapes =
      mxfp4 ? std::vector<Shape>{{"gpt-oss.expert_gate_up", 5760, 2880}, {"gpt-oss.expert_down", 2880, 2880}}
            : std::vector<Shape>{
                  {"r1.expert_gate_up", 2048, 7168}, {"r1.expert_down", 7168, 2048}, {"r1.q_b_proj", 24576, 1536}};
  double decode_ratio_sum = 0, prefill_ratio_sum = 0;
  int decode_n = 0, prefill_n = 0;
  for (const Shape& s : shapes) {
    const size_t values = static_cast<size_t>(s.rows) * s.cols;
    // About 400 MB of BF16: well past any cache.
    const int count = std::max(2, static_cast<int>(400'000'000 / (2 * values)));
    const Matrices m = make(mxfp4, count, s.rows, s.cols, 1);
    std::vector<float> x(static_cast<size_t>(512) * s.cols, 0.5f), y(static_cast<size_t>(512) * s.rows);
    const int reps = quick ? 5 : 15;
    const auto [tq, t16] = bench::interleaved_medians(
        reps,
        [&] {
          for (const auto& w : m.wq) matmul(x.data(), 1, w, y.data());
        },
        [&] {
          for (const auto& w : m.w16) matmul(x.data(), 1, w, y.data());
        });
    const double gbps_q = count * static_cast<double>(m.wq[0].bytes() + m.wq[0].scale_bytes()) / tq / 1e9;
    const double gbps16 = count * static_cast<double>(m.w16[0].bytes()) / t16 / 1e9;
    std::printf(
        "{\"bench\": \"%s_decode\", \"shape\": \"%s\", \"rows\": %d, \"cols\": %d, \"matrices\": %d, \"threads\": %d, "
        "\"%s_effective_gbps\": %.2f, \"bf16_effective_gbps\": %.2f, \"%s_vs_bf16_bandwidth_ratio\": %.3f, "
        "\"%s_vs_bf16_speedup\": %.3f}\n",
        f, s.name, s.rows, s.cols, count, omp_get_max_threads(), f, gbps_q, gbps16, f, gbps_q / gbps16, f, t16 / tq);
    std::fflush(stdout);
    decode_ratio_sum += gbps_q / gbps16;
    ++decode_n;
    for (const int n : {64, 512}) {
      if (quick && n == 512) continue;
      const int prefill_reps = quick ? 3 : 5;
      const auto [pq, p16] = bench::interleaved_medians(
          prefill_reps, [&] { matmul(x.data(), n, m.wq[0], y.data()); },
          [&] { matmul(x.data(), n, m.w16[0], y.data()); });
      const double flops = 2.0 * n * static_cast<double>(values);
      std::printf(
          "{\"bench\": \"%s_prefill\", \"shape\": \"%s\", \"tokens\": %d, \"threads\": %d, \"%s_gflops\": %.2f, "
          "\"bf16_gflops\": %.2f, \"%s_vs_bf16_time_ratio\": %.3f}\n",
          f, s.name, n, omp_get_max_threads(), f, flops / pq / 1e9, flops / p16 / 1e9, f, pq / p16);
      std::fflush(stdout);
      prefill_ratio_sum += pq / p16;
      ++prefill_n;
    }
  }
  std::printf(
      "{\"bench\": \"%s_summary\", \"threads\": %d, \"%s_vs_bf16_decode_bandwidth_ratio\": %.3f, "
      "\"%s_vs_bf16_prefill_time_ratio\": %.3f}\n",
      f, omp_get_max_threads(), f, decode_ratio_sum / decode_n, f, prefill_ratio_sum / prefill_n);
}
