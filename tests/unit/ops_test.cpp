// Each op against a plain double-precision reference, with tolerances, and
// the matmul against OpenBLAS.
#include <cblas.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#ifdef __F16C__
#include <immintrin.h>
#endif

#include "mote/io/safetensors_writer.h"
#include "mote/ops/elementwise.h"
#include "mote/ops/matmul.h"
#include "mote/ops/rope.h"
#include "mote/runtime/sampler.h"

namespace mote {
namespace {

struct TestMatrix {
  std::vector<std::byte> bytes;
  std::vector<float> widened;  // exact fp32 value of every element
  Weight weight;
};

TestMatrix random_matrix(DType dtype, int rows, int cols, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  TestMatrix m;
  m.bytes.resize(static_cast<size_t>(rows) * cols * dtype_size(dtype) + 1);  // +1: an unaligned start below
  std::byte* base = m.bytes.data() + 1;
  for (int i = 0; i < rows * cols; ++i) {
    const float v = dist(gen);
    if (dtype == DType::BF16) {
      const uint16_t b = float_to_bf16(v);
      std::memcpy(base + 2 * i, &b, 2);
    } else if (dtype == DType::F16) {
#ifdef __F16C__
      const uint16_t h = _cvtss_sh(v, 0);
#else
      const uint16_t h = 0x3C00;  // 1.0: without F16C the test still checks the kernel's f16 path
#endif
      std::memcpy(base + 2 * i, &h, 2);
    } else {
      std::memcpy(base + 4 * i, &v, 4);
    }
  }
  m.weight = {dtype, rows, cols, base};
  m.widened = widen_all(m.weight);
  return m;
}

std::vector<float> random_vector(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

class MatmulTest : public testing::TestWithParam<DType> {};

TEST_P(MatmulTest, MatchesOpenBlasAndDoesNotDependOnBatch) {
  for (const auto& [n, rows, cols] :
       {std::tuple{1, 7, 13}, std::tuple{5, 33, 64}, std::tuple{16, 130, 257}, std::tuple{3, 256, 512},
        // several token blocks and column chunks, each with a remainder
        std::tuple{200, 37, 1100}}) {
    const TestMatrix w = random_matrix(GetParam(), rows, cols, static_cast<uint32_t>(rows * cols));
    const auto x = random_vector(static_cast<size_t>(n) * cols, 99);
    std::vector<float> y(static_cast<size_t>(n) * rows), ref(y.size());
    matmul(x.data(), n, w.weight, y.data());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x.data(), cols, w.widened.data(), cols,
                0.0f, ref.data(), rows);
    for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-4f * std::sqrt(static_cast<float>(cols)));

    // Every row alone gives the same bits as in the batch.
    for (int t = 0; t < n; ++t) {
      std::vector<float> alone(rows);
      matmul(x.data() + static_cast<size_t>(t) * cols, 1, w.weight, alone.data());
      for (int r = 0; r < rows; ++r)
        ASSERT_EQ(alone[r], y[static_cast<size_t>(t) * rows + r]) << "row " << t << " out " << r;
    }
  }
}

TEST_P(MatmulTest, ByColumnsMatchesReference) {
  // Enough columns for several 64- and 24-column tiles, a part-filled
  // vector and a scalar tail, with 0, 8 or 16 columns of whole groups of 8
  // after the last 24; enough tokens for a full tile of 4 and a remainder.
  for (const int cols : {150, 166, 158}) {
    const int n = 7, rows = 19;
    const TestMatrix w = random_matrix(GetParam(), rows, cols, 5);
    const auto x = random_vector(static_cast<size_t>(n) * rows, 6);
    std::vector<float> y(static_cast<size_t>(n) * cols);
    matmul_by_columns(x.data(), rows, n, w.weight, y.data(), cols);
    for (int t = 0; t < n; ++t) {
      for (int c = 0; c < cols; ++c) {
        double ref = 0;
        for (int r = 0; r < rows; ++r) ref += static_cast<double>(x[t * rows + r]) * w.widened[r * cols + c];
        EXPECT_NEAR(y[t * cols + c], ref, 1e-4);
#if defined(__AVX2__) && defined(__FMA__)
        // The order every build with AVX2 keeps, 8 or 16 lanes at a time: one
        // fused multiply-add per row, in row order, for the columns of whole
        // groups of 8; a separate multiply and add for the rest.
        float exact = 0.0f;
        for (int r = 0; r < rows; ++r) {
          const float activation = x[t * rows + r], weight = w.widened[r * cols + c];
          exact = c < cols / 8 * 8 ? std::fma(activation, weight, exact) : exact + activation * weight;
        }
        EXPECT_EQ(y[t * cols + c], exact) << "token " << t << " column " << c;
#endif
      }
      // Alone, the same bits as in the batch.
      std::vector<float> alone(cols);
      matmul_by_columns(x.data() + static_cast<size_t>(t) * rows, rows, 1, w.weight, alone.data(), cols);
      for (int c = 0; c < cols; ++c)
        ASSERT_EQ(alone[c], y[static_cast<size_t>(t) * cols + c]) << "token " << t << " column " << c;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, MatmulTest, testing::Values(DType::F32, DType::F16, DType::BF16),
                         [](const testing::TestParamInfo<DType>& param) {
                           return std::string(dtype_name(param.param));
                         });

// MXFP4 with random nibbles and scales around 2^0, against the weights
// widen_row decodes, whose own values are checked by hand first.
TEST(Ops, Mxfp4DecodesLowNibbleFirstWithE8m0Scales) {
  const std::vector<uint8_t> blocks{0x21, 0xF8, 0x7E, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  const std::vector<uint8_t> scales{128};
  const Weight w{DType::MXFP4, 1, 32, reinterpret_cast<const std::byte*>(blocks.data()),
                 reinterpret_cast<const std::byte*>(scales.data())};
  const auto v = widen_all(w);
  const std::vector<float> expected{1.0f, 2.0f, -0.0f, -12.0f, -8.0f, 12.0f, 0.0f, 0.0f};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(v[i], expected[i]) << "column " << i;
  EXPECT_EQ(Weight::e8m0_to_float(0), std::ldexp(1.0f, -127));
  EXPECT_EQ(Weight::e8m0_to_float(254), std::ldexp(1.0f, 127));
  EXPECT_TRUE(std::isnan(Weight::e8m0_to_float(kE8m0Nan)));
  EXPECT_EQ(w.row_bytes(), 16u);
  EXPECT_EQ(w.scale_bytes(), 1u);
}

TEST(Ops, Mxfp4MatmulMatchesOpenBlasAndDoesNotDependOnBatch) {
  for (const auto& [n, rows, cols] : {std::tuple{1, 7, 32}, std::tuple{2, 5, 64}, std::tuple{5, 33, 64},
                                      std::tuple{16, 130, 256}, std::tuple{200, 37, 1088}}) {
    std::mt19937 gen(static_cast<uint32_t>(rows * cols));
    std::vector<uint8_t> blocks(static_cast<size_t>(rows) * cols / 2 + 1),
        scales(static_cast<size_t>(rows) * cols / 32 + 1);
    for (auto& b : blocks) b = static_cast<uint8_t>(gen());
    for (auto& e : scales) e = static_cast<uint8_t>(120 + gen() % 12);
    // Unaligned, as tensors in a file may be.
    const Weight w{DType::MXFP4, rows, cols, reinterpret_cast<const std::byte*>(blocks.data() + 1),
                   reinterpret_cast<const std::byte*>(scales.data() + 1)};
    const auto widened = widen_all(w);
    const auto x = random_vector(static_cast<size_t>(n) * cols, 7);
    std::vector<float> y(static_cast<size_t>(n) * rows), ref(y.size());
    matmul(x.data(), n, w, y.data());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x.data(), cols, widened.data(), cols,
                0.0f, ref.data(), rows);
    for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-3f * std::sqrt(static_cast<float>(cols)));
    for (int t = 0; t < n; ++t) {
      std::vector<float> alone(rows);
      matmul(x.data() + static_cast<size_t>(t) * cols, 1, w, alone.data());
      for (int r = 0; r < rows; ++r)
        ASSERT_EQ(alone[r], y[static_cast<size_t>(t) * rows + r]) << "row " << t << " out " << r;
    }
    // A slice of rows reads its own scales.
    const Weight tail = w.row_slice(rows / 2, rows - rows / 2);
    std::vector<float> part(static_cast<size_t>(tail.rows));
    matmul(x.data(), 1, tail, part.data());
    for (int r = 0; r < tail.rows; ++r) ASSERT_EQ(part[r], y[static_cast<size_t>(rows / 2 + r)]);
  }
}

TEST(Ops, RmsNorm) {
  const auto x = random_vector(100, 1);
  const auto w = random_vector(100, 2);
  std::vector<float> out(100);
  rms_norm(x.data(), w.data(), 1e-6f, out.data(), 100);
  double ms = 0;
  for (float v : x) ms += static_cast<double>(v) * v;
  const double inv = 1.0 / std::sqrt(ms / 100 + 1e-6);
  for (int i = 0; i < 100; ++i) EXPECT_NEAR(out[i], w[i] * x[i] * inv, 1e-5);
}

TEST(Ops, SoftmaxAndSiluMul) {
  std::vector<float> x{1.0f, 2.0f, 3.0f, -1000.0f};
  softmax(x.data(), 4);
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(x[0], std::exp(1.0) / z, 1e-7);
  EXPECT_NEAR(x[2], std::exp(3.0) / z, 1e-7);
  EXPECT_EQ(x[3], 0.0f);
  const float g[2] = {1.5f, -2.0f}, u[2] = {2.0f, 3.0f};
  float out[2];
  silu_mul(g, u, out, 2);
  EXPECT_NEAR(out[0], 1.5 / (1 + std::exp(-1.5)) * 2.0, 1e-6);
  EXPECT_NEAR(out[1], -2.0 / (1 + std::exp(2.0)) * 3.0, 1e-6);
}

TEST(Ops, RopeRotatesPairsByPositionTimesFrequency) {
  const Rope rope(RopeParams{.dim = 8, .theta = 10000.0, .neox = false, .yarn = std::nullopt});
  float cos_v[4], sin_v[4];
  rope.angles(7, cos_v, sin_v);
  std::vector<float> x{1, 0, 0, 1, 1, 1, 2, -1};
  const auto orig = x;
  rope.apply(x.data(), cos_v, sin_v);
  for (int i = 0; i < 4; ++i) {
    const double angle = 7.0 / std::pow(10000.0, 2.0 * i / 8);
    EXPECT_NEAR(x[2 * i], orig[2 * i] * std::cos(angle) - orig[2 * i + 1] * std::sin(angle), 1e-5);
    EXPECT_NEAR(x[2 * i + 1], orig[2 * i] * std::sin(angle) + orig[2 * i + 1] * std::cos(angle), 1e-5);
  }
}

TEST(Ops, YarnBlendsFrequenciesAndScalesMagnitude) {
  const Rope rope(RopeParams{.dim = 64, .theta = 10000.0, .yarn = YarnScaling{40.0, 4096, 32.0, 1.0, 1.0, 1.0}});
  float cos_v[32], sin_v[32];
  rope.angles(1000, cos_v, sin_v);
  // High-frequency pairs keep their frequency; the lowest are divided by the factor.
  EXPECT_NEAR(cos_v[0], std::cos(1000.0), 1e-4);
  const double slowest = 1.0 / std::pow(10000.0, 62.0 / 64) / 40.0;
  EXPECT_NEAR(cos_v[31], std::cos(1000.0 * slowest), 1e-4);
  EXPECT_NEAR(cos_v[5] * cos_v[5] + sin_v[5] * sin_v[5], 1.0, 1e-5);  // mscale == mscale_all_dim: magnitude 1
}

TEST(Sampler, GreedyAndSeededSampling) {
  std::vector<float> logits{0.1f, 2.0f, 2.0f, -1.0f};
  Sampler greedy({0.0f, 1.0f});
  Rng rng(1, 0);
  EXPECT_EQ(greedy.sample(logits.data(), 4, rng), 1);  // ties go to the lowest id

  Sampler hot({1.0f, 1.0f});
  std::vector<int> draws_a, draws_b;
  Rng a(42, 3), b(42, 3), other(42, 4);
  for (int i = 0; i < 50; ++i) {
    draws_a.push_back(hot.sample(logits.data(), 4, a));
    draws_b.push_back(hot.sample(logits.data(), 4, b));
  }
  EXPECT_EQ(draws_a, draws_b);
  std::vector<int> draws_other;
  for (int i = 0; i < 50; ++i) draws_other.push_back(hot.sample(logits.data(), 4, other));
  EXPECT_NE(draws_a, draws_other);

  // top_p 0.5 keeps only the two tied best tokens.
  Sampler nucleus({1.0f, 0.5f});
  for (int i = 0; i < 100; ++i) {
    const int t = nucleus.sample(logits.data(), 4, a);
    EXPECT_TRUE(t == 1 || t == 2) << t;
  }
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

// The vectorised dot product against a double-precision sum, for every
// length around its 8- and 16-wide steps, and its fixed order: the result
// does not depend on where the vectors sit in memory.
TEST(Ops, DotMatchesADoubleSumAtEveryLength) {
  std::vector<float> a(200), b(200), a2(208), b2(208);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
    b[i] = std::cos(0.11f * static_cast<float>(i)) - 0.25f;
  }
  for (int n = 0; n <= 200; ++n) {
    double want = 0.0, magnitude = 0.0;
    for (int i = 0; i < n; ++i) {
      want += static_cast<double>(a[i]) * b[i];
      magnitude += std::abs(static_cast<double>(a[i]) * b[i]);
    }
    const float got = dot(a.data(), b.data(), n);
    EXPECT_NEAR(got, want, 1e-6 * magnitude + 1e-7) << "n = " << n;
    std::copy_n(a.begin(), n, a2.begin() + 3);
    std::copy_n(b.begin(), n, b2.begin() + 5);
    EXPECT_EQ(dot(a2.data() + 3, b2.data() + 5, n), got) << "n = " << n;
  }
}

// The blocked forms are the one-at-a-time ones, bit for bit, at every
// length around their steps and for every row count: attention uses either,
// depending on how many positions a query has left.
TEST(Ops, BlockedFormsMatchOneAtATimeBitForBit) {
  constexpr int kMax = 200, kStride = kMax + 3, kCount = 7;
  std::vector<float> q(4 * kMax), x(kCount * kStride), p(4 * kCount);
  for (size_t i = 0; i < q.size(); ++i) q[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.11f * static_cast<float>(i)) - 0.25f;
  for (size_t i = 0; i < p.size(); ++i) p[i] = std::sin(1.3f * static_cast<float>(i)) * 0.4f;
  // A negative zero must stay one, as in add_scaled.
  x[0] = -0.0f;
  p[0] = 1.0f;
  const float* queries[4] = {q.data(), q.data() + kMax, q.data() + 2 * kMax, q.data() + 3 * kMax};
  const float* weights[4] = {p.data(), p.data() + kCount, p.data() + 2 * kCount, p.data() + 3 * kCount};
  for (int rows = 1; rows <= 4; ++rows) {
    for (int n = 0; n <= kMax; ++n) {
      float block[16];
      dot_block(queries, rows, x.data(), kStride, n, block);
      std::vector<std::vector<float>> one(static_cast<size_t>(rows), std::vector<float>(static_cast<size_t>(n), 0.0f));
      std::vector<std::vector<float>> run = one;
      float* run_rows[4];
      for (int k = 0; k < rows; ++k) {
        for (int j = 0; j < 4; ++j)
          EXPECT_EQ(block[k * 4 + j], dot(queries[k], x.data() + j * kStride, n))
              << "n = " << n << ", row " << k << ", column " << j;
        for (int s = 0; s < kCount; ++s) add_scaled(one[k].data(), weights[k][s], x.data() + s * kStride, n);
        run_rows[k] = run[k].data();
      }
      add_scaled_run(run_rows, weights, rows, x.data(), kStride, kCount, n);
      for (int k = 0; k < rows; ++k) {
        EXPECT_EQ(run[k], one[k]) << "n = " << n << ", rows = " << rows << ", row " << k;
        if (n > 0) {
          EXPECT_EQ(std::signbit(run[k][0]), std::signbit(one[k][0])) << "n = " << n;
        }
      }
    }
  }
}

}  // namespace
}  // namespace mote
