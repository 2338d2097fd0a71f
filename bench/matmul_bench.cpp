// mote's matmul kernel (weights in file dtype, widened on the fly) against
// OpenBLAS sgemm on fp32 copies of the same weights, for decode (1 row) and
// prefill (many rows) shapes of the bundled model and of DeepSeek-V3.
// Prints one JSON object per line.
#include <cblas.h>
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <random>

#include "bench_util.h"
#include "mote/io/safetensors_writer.h"
#include "mote/ops/matmul.h"

int main() {
  using namespace mote;
  struct Shape {
    const char* name;
    int rows, cols;
  };
  const Shape shapes[] = {{"tiny.expert_up", 128, 256},   {"tiny.lm_head", 4096, 256},
                          {"tiny.dense_down", 256, 512},  {"dsv3.expert_up", 2048, 7168},
                          {"dsv3.expert_down", 7168, 2048}};
  std::mt19937 gen(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (const Shape& s : shapes) {
    const size_t count = static_cast<size_t>(s.rows) * s.cols;
    std::vector<uint16_t> bf16(count);
    for (auto& v : bf16) v = float_to_bf16(dist(gen));
    const Weight w{DType::BF16, s.rows, s.cols, reinterpret_cast<const std::byte*>(bf16.data())};
    const std::vector<float> fp32 = widen_all(w);
    for (const int n : {1, 8, 64}) {
      std::vector<float> x(static_cast<size_t>(n) * s.cols, 0.5f), y(static_cast<size_t>(n) * s.rows);
      const int reps = count * n > 50'000'000 ? 5 : 30;
      const double ours = bench::median_seconds(reps, [&] { matmul(x.data(), n, w, y.data()); });
      const double blas = bench::median_seconds(reps, [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, s.rows, s.cols, 1.0f, x.data(), s.cols, fp32.data(), s.cols,
                    0.0f, y.data(), s.rows);
      });
      const double flops = 2.0 * n * static_cast<double>(count);
      std::printf(
          "{\"bench\": \"matmul\", \"shape\": \"%s\", \"rows\": %d, \"cols\": %d, \"tokens\": %d, \"threads\": %d, "
          "\"mote_bf16_s\": %.3e, \"openblas_fp32_s\": %.3e, \"mote_gflops\": %.2f, \"openblas_gflops\": %.2f, "
          "\"mote_weight_gbps\": %.2f, \"speedup_vs_openblas\": %.3f}\n",
          s.name, s.rows, s.cols, n, omp_get_max_threads(), ours, blas, flops / ours / 1e9, flops / blas / 1e9,
          static_cast<double>(count) * 2 / ours / 1e9, blas / ours);
      std::fflush(stdout);
    }
  }
}
