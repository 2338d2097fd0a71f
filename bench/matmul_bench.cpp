// mote's matmul kernel (weights in file dtype, widened on the fly) against
// OpenBLAS sgemm on fp32 copies of the same weights, on the expert and
// attention products of the bundled model, of DeepSeek-V2-Lite and of
// DeepSeek-R1, at 1, 64 and 512 rows; and MLA's fold of each head's key
// projection into its query (y = q_nope W_k per head, matmul_by_columns)
// on V2-Lite's and R1's heads, against one sgemm per head.
//   matmul_bench [--engine mote|openblas|both] [--rows LIST] [--shapes PREFIX] [--reps N]
// Prints one JSON object per (shape, rows). Both engines keep worker threads
// spinning for a while after a call, so run them in separate processes
// (--engine) when the figures are compared: in one process each slows the
// other.
#include <cblas.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>

#include "bench_util.h"
#include "mote/io/safetensors_writer.h"
#include "mote/ops/matmul.h"
#include "mote/util/parallel.h"

extern "C" void openblas_set_num_threads(int);

int main(int argc, char** argv) {
  using namespace mote;
  std::string engine = "both", prefix;
  std::vector<int> row_counts{1, 64, 512};
  int reps_override = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--engine") {
      engine = v;
    } else if (a == "--shapes") {
      prefix = v;
    } else if (a == "--reps") {
      reps_override = std::atoi(v.c_str());
    } else if (a == "--rows") {
      row_counts.clear();
      std::stringstream ss(v);
      for (std::string item; std::getline(ss, item, ',');) row_counts.push_back(std::atoi(item.c_str()));
    } else {
      std::fprintf(stderr,
                   "usage: matmul_bench [--engine mote|openblas|both] [--rows LIST] [--shapes PREFIX] [--reps N]\n");
      return 2;
    }
  }
  const bool run_mote = engine != "openblas", run_blas = engine != "mote";
  openblas_set_num_threads(omp_get_max_threads());
  struct Shape {
    const char* name;
    int rows, cols;
  };
  // Weight rows x columns (y = x W^T).
  const Shape shapes[] = {{"tiny.expert_up", 128, 256},
                          {"tiny.lm_head", 4096, 256},
                          {"tiny.dense_down", 256, 512},
                          {"v2lite.expert_up", 1408, 2048},
                          {"v2lite.expert_down", 2048, 1408},
                          {"v2lite.q_proj", 3072, 2048},
                          {"v2lite.o_proj", 2048, 2048},
                          {"r1.expert_up", 2048, 7168},
                          {"r1.expert_down", 7168, 2048},
                          // 128 MB, larger than the caches: decode's streaming against the read bandwidth
                          {"stream.large", 16384, 4096}};
  std::mt19937 gen(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (const Shape& s : shapes) {
    if (!std::string(s.name).starts_with(prefix)) continue;
    const size_t count = static_cast<size_t>(s.rows) * s.cols;
    std::vector<uint16_t> bf16(count);
    for (auto& v : bf16) v = float_to_bf16(dist(gen));
    const Weight w{DType::BF16, s.rows, s.cols, reinterpret_cast<const std::byte*>(bf16.data())};
    const std::vector<float> fp32 = widen_all(w);
    for (const int n : row_counts) {
      std::vector<float> x(static_cast<size_t>(n) * s.cols), y(static_cast<size_t>(n) * s.rows);
      for (auto& v : x) v = dist(gen);
      const double flops = 2.0 * n * static_cast<double>(count);
      const int reps = reps_override > 0 ? reps_override : std::clamp(static_cast<int>(2e9 / flops), 5, 50);
      const double ours = run_mote ? bench::median_seconds(reps, [&] { matmul(x.data(), n, w, y.data()); }) : 0;
      const double blas = run_blas ? bench::median_seconds(reps,
                                                           [&] {
                                                             cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n,
                                                                         s.rows, s.cols, 1.0f, x.data(), s.cols,
                                                                         fp32.data(), s.cols, 0.0f, y.data(), s.rows);
                                                           })
                                   : 0;
      std::printf(
          "{\"bench\": \"matmul\", \"shape\": \"%s\", \"rows\": %d, \"cols\": %d, \"tokens\": %d, \"threads\": %d",
          s.name, s.rows, s.cols, n, omp_get_max_threads());
      if (run_mote)
        std::printf(", \"mote_bf16_s\": %.3e, \"mote_gflops\": %.2f, \"mote_weight_gbps\": %.2f", ours,
                    flops / ours / 1e9, static_cast<double>(count) * 2.0 / ours / 1e9);
      if (run_blas) std::printf(", \"openblas_fp32_s\": %.3e, \"openblas_gflops\": %.2f", blas, flops / blas / 1e9);
      if (run_mote && run_blas) std::printf(", \"speedup_vs_openblas\": %.3f", blas / ours);
      std::printf("}\n");
      std::fflush(stdout);
    }
  }
  // The fold, as MlaAttention runs it: heads in parallel, each a product of
  // [tokens, nope] activations (rows of a [tokens, heads * 192] query) with
  // that head's [nope, rank] slice of kv_b.
  struct Fold {
    const char* name;
    int heads, nope = 128, rank = 512, qk = 192;
  };
  const Fold folds[] = {{"v2lite.mla_fold", 16}, {"r1.mla_fold", 128}};
  for (const Fold& f : folds) {
    if (!std::string(f.name).starts_with(prefix)) continue;
    const size_t count = static_cast<size_t>(f.heads) * f.nope * f.rank;
    std::vector<uint16_t> bf16(count);
    for (auto& v : bf16) v = float_to_bf16(dist(gen));
    const Weight all{DType::BF16, f.heads * f.nope, f.rank, reinterpret_cast<const std::byte*>(bf16.data())};
    const std::vector<float> fp32 = widen_all(all);
    for (const int n : row_counts) {
      std::vector<float> q(static_cast<size_t>(n) * f.heads * f.qk), y(static_cast<size_t>(n) * f.heads * f.rank);
      for (auto& v : q) v = dist(gen);
      const size_t qs = static_cast<size_t>(f.heads) * f.qk, ys = static_cast<size_t>(f.heads) * f.rank;
      const double flops = 2.0 * n * static_cast<double>(count);
      const int reps = reps_override > 0 ? reps_override : std::clamp(static_cast<int>(2e9 / flops), 5, 50);
      const double ours =
          run_mote ? bench::median_seconds(reps,
                                           [&] {
                                             parallel_for(f.heads, [&](int h, int) {
                                               matmul_by_columns(q.data() + static_cast<size_t>(h) * f.qk, qs, n,
                                                                 all.row_slice(h * f.nope, f.nope),
                                                                 y.data() + static_cast<size_t>(h) * f.rank, ys);
                                             });
                                           })
                   : 0;
      const double blas =
          run_blas ? bench::median_seconds(reps,
                                           [&] {
                                             for (int h = 0; h < f.heads; ++h) {
                                               cblas_sgemm(
                                                   CblasRowMajor, CblasNoTrans, CblasNoTrans, n, f.rank, f.nope, 1.0f,
                                                   q.data() + static_cast<size_t>(h) * f.qk, static_cast<int>(qs),
                                                   fp32.data() + static_cast<size_t>(h) * f.nope * f.rank, f.rank, 0.0f,
                                                   y.data() + static_cast<size_t>(h) * f.rank, static_cast<int>(ys));
                                             }
                                           })
                   : 0;
      std::printf(
          "{\"bench\": \"matmul_fold\", \"shape\": \"%s\", \"heads\": %d, \"nope\": %d, \"rank\": %d, \"tokens\": %d, "
          "\"threads\": %d",
          f.name, f.heads, f.nope, f.rank, n, omp_get_max_threads());
      if (run_mote) std::printf(", \"mote_bf16_s\": %.3e, \"mote_gflops\": %.2f", ours, flops / ours / 1e9);
      if (run_blas) std::printf(", \"openblas_fp32_s\": %.3e, \"openblas_gflops\": %.2f", blas, flops / blas / 1e9);
      if (run_mote && run_blas) std::printf(", \"speedup_vs_openblas\": %.3f", blas / ours);
      std::printf("}\n");
      std::fflush(stdout);
    }
  }
}
