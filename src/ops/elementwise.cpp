#include "mote/ops/elementwise.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace mote {

void rms_norm(const float* x, const float* weight, float eps, float* out, int n) {
  double sum_sq = 0.0;
  for (int i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  const auto mean = static_cast<float>(sum_sq / n);
  const float inv = 1.0f / std::sqrt(mean + eps);
  for (int i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inv);
}

void silu_mul(const float* gate, const float* up, float* out, int n) {
  for (int i = 0; i < n; ++i) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

void clamped_swiglu(const float* gate_up, float limit, float alpha, float* out, int n) {
  for (int i = 0; i < n; ++i) {
    const float g = std::min(gate_up[2 * i], limit);
    const float u = std::clamp(gate_up[2 * i + 1], -limit, limit);
    out[i] = (u + 1.0f) * (g * sigmoid(alpha * g));
  }
}

#if defined(__AVX512F__)
// glibc's vector math library (libmvec): expf on 16 lanes, within 1 ulp like
// expf itself. Attention's softmax spent more time in one expf call per
// score than in the score's dot product.
extern "C" __m512 _ZGVeN16v_expf(__m512 x);

// GCC 12's 512-bit intrinsics start from an undefined register and warn about it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
void softmax(float* x, int n) {
  __m512 max16 = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int i = 0;
  for (; i + 16 <= n; i += 16) max16 = _mm512_max_ps(max16, _mm512_loadu_ps(x + i));
  float max_value = _mm512_reduce_max_ps(max16);  // max is exact: any order gives the same value
  for (int j = i; j < n; ++j) max_value = std::max(max_value, x[j]);
  // The sum in doubles, 16 lanes folded in a fixed order: the same for a row
  // whatever the batch or thread.
  const __m512 shift = _mm512_set1_ps(max_value);
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  for (i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 e = _ZGVeN16v_expf(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), shift));
    _mm512_mask_storeu_ps(x + i, m, e);
    const __m512 kept = _mm512_maskz_mov_ps(m, e);
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(kept)));
    hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(kept, 1)));
  }
  double lanes[8];
  _mm512_storeu_pd(lanes, _mm512_add_pd(lo, hi));
  const double sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  const auto inv = static_cast<float>(1.0 / sum);
  for (i = 0; i < n; ++i) x[i] *= inv;
}
#pragma GCC diagnostic pop
#else
void softmax(float* x, int n) {
  float max_value = x[0];
  for (int i = 1; i < n; ++i) max_value = std::max(max_value, x[i]);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_value);
    sum += x[i];
  }
  const auto inv = static_cast<float>(1.0 / sum);
  for (int i = 0; i < n; ++i) x[i] *= inv;
}
#endif

void add_in_place(float* y, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += x[i];
}

namespace {
// GCC/Clang vector extensions: 8 floats, lowered to whatever SIMD the
// target has, with the same lane arithmetic everywhere.
typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec4 __attribute__((vector_size(16)));
// 16 lanes: lanes 0-7 are dot()'s first 8-lane accumulator, 8-15 its second.
typedef float Vec16 __attribute__((vector_size(64)));

// One vector of lanes from p, unaligned.
template <typename V>
inline V load_lanes(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline Vec16 load16(const float* p) { return load_lanes<Vec16>(p); }
inline Vec8 load8(const float* p) { return load_lanes<Vec8>(p); }

// The 16 partial sums of dot() folded in its fixed order, plus its tail.
inline float fold(Vec8 acc0, Vec8 acc1, float tail) {
  const Vec8 sum8 = acc0 + acc1;
  const Vec4 sum4 = __builtin_shufflevector(sum8, sum8, 0, 1, 2, 3) + __builtin_shufflevector(sum8, sum8, 4, 5, 6, 7);
  const float sum2a = sum4[0] + sum4[2], sum2b = sum4[1] + sum4[3];
  return (sum2a + sum2b) + tail;
}

// dot()'s end from index i on (both accumulators filled up to i): one more
// 8-lane step into the first where it fits, the rest summed on its own,
// then the fixed fold.
inline float dot_rest(Vec8 acc0, Vec8 acc1, const float* a, const float* b, int i, int n) {
  if (i + 8 <= n) {
    acc0 += load8(a + i) * load8(b + i);
    i += 8;
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return fold(acc0, acc1, tail);
}

}  // namespace

float dot(const float* a, const float* b, int n) {
  // Two 8-lane accumulators (16 partial sums) kept in registers, folded in a
  // fixed order; the tail is summed on its own and added last.
  Vec8 acc0 = {}, acc1 = {};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 += load8(a + i) * load8(b + i);
    acc1 += load8(a + i + 8) * load8(b + i + 8);
  }
  return dot_rest(acc0, acc1, a, b, i, n);
}

namespace {

// Rows of a held in registers with 4 columns of b: 16 accumulators of 512
// bits. GCC lowers a 16-lane vector without 512-bit registers through the
// stack, so 256-bit targets take dot()'s two 8-lane accumulators in two
// passes over the row instead, 2 rows x 4 columns x 8 lanes at a time.
#ifdef __AVX512F__
constexpr int kDotRows = 4;

template <int Rows>
void dot_rows(const float* const a[], const float* b, size_t stride, int n, float out[16]) {
  Vec16 acc[Rows][4];
  for (int k = 0; k < Rows; ++k)
    for (int j = 0; j < 4; ++j) acc[k][j] = Vec16{};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    Vec16 bv[4];
    for (int j = 0; j < 4; ++j) bv[j] = load16(b + j * stride + i);
    for (int k = 0; k < Rows; ++k) {
      const Vec16 av = load16(a[k] + i);
      for (int j = 0; j < 4; ++j) acc[k][j] += av * bv[j];
    }
  }
  // The rest exactly as dot() does it.
  for (int k = 0; k < Rows; ++k)
    for (int j = 0; j < 4; ++j) {
      const Vec8 acc0 = __builtin_shufflevector(acc[k][j], acc[k][j], 0, 1, 2, 3, 4, 5, 6, 7);
      const Vec8 acc1 = __builtin_shufflevector(acc[k][j], acc[k][j], 8, 9, 10, 11, 12, 13, 14, 15);
      out[k * 4 + j] = dot_rest(acc0, acc1, a[k], b + j * stride, i, n);
    }
}
#else
constexpr int kDotRows = 2;

template <int Rows>
void dot_rows(const float* const a[], const float* b, size_t stride, int n, float out[8]) {
  const int wide = n / 16 * 16;
  Vec8 sums[2][Rows][4];  // dot()'s acc0 (lanes 0-7 of every 16) and acc1 (8-15)
#pragma GCC unroll 2
  for (int half = 0; half < 2; ++half) {
    Vec8 acc[Rows][4];
#pragma GCC unroll 4
    for (int k = 0; k < Rows; ++k)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[k][j] = Vec8{};
    for (int i = 8 * half; i < wide; i += 16) {
      Vec8 bv[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) bv[j] = load8(b + j * stride + i);
#pragma GCC unroll 4
      for (int k = 0; k < Rows; ++k) {
        Vec8 av = load8(a[k] + i);
        __asm__("" : "+x"(av));  // one load, not one per multiply (see matmul.cpp)
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) acc[k][j] += av * bv[j];
      }
    }
    for (int k = 0; k < Rows; ++k)
      for (int j = 0; j < 4; ++j) sums[half][k][j] = acc[k][j];
  }
  for (int k = 0; k < Rows; ++k)
    for (int j = 0; j < 4; ++j) out[k * 4 + j] = dot_rest(sums[0][k][j], sums[1][k][j], a[k], b + j * stride, wide, n);
}
#endif

}  // namespace

void dot_block(const float* const a[], int rows, const float* b, size_t stride, int n, float out[16]) {
  for (int k0 = 0; k0 < rows; k0 += kDotRows) {
    const int k = std::min(kDotRows, rows - k0);
    switch (k) {
      case 1:
        dot_rows<1>(a + k0, b, stride, n, out + 4 * k0);
        break;
      case 2:
        dot_rows<2>(a + k0, b, stride, n, out + 4 * k0);
        break;
      case 3:
        dot_rows<3>(a + k0, b, stride, n, out + 4 * k0);
        break;
      default:
        dot_rows<kDotRows>(a + k0, b, stride, n, out + 4 * k0);
        break;
    }
  }
}

void add_scaled(float* y, float a, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

namespace {

// Vectors per output row held in registers: 4 of 16 lanes with 512-bit
// registers (16 accumulators), 2 of 8 lanes otherwise (8 accumulators; a
// 16-lane vector would go through the stack there, as in dot_rows).
#ifdef __AVX512F__
using RunVec = Vec16;
constexpr int kRunVectors = 4;
#else
using RunVec = Vec8;
constexpr int kRunVectors = 2;
#endif
constexpr int kRunWidth = sizeof(RunVec) / sizeof(float);

template <int Rows, int Vectors>
void add_scaled_block(float* const y[], const float* const a[], const float* x, size_t stride, int count) {
  RunVec acc[Rows][Vectors];
#pragma GCC unroll 4
  for (int k = 0; k < Rows; ++k)
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) acc[k][v] = load_lanes<RunVec>(y[k] + kRunWidth * v);
  for (int s = 0; s < count; ++s) {
    const float* xs = x + static_cast<size_t>(s) * stride;
    RunVec xv[Vectors];
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) xv[v] = load_lanes<RunVec>(xs + kRunWidth * v);
#pragma GCC unroll 4
    for (int k = 0; k < Rows; ++k) {
      const float w = a[k][s];
#pragma GCC unroll 4
      for (int v = 0; v < Vectors; ++v) acc[k][v] += w * xv[v];
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < Rows; ++k)
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) std::memcpy(y[k] + kRunWidth * v, &acc[k][v], sizeof(RunVec));
}

template <int Vectors>
void add_scaled_block_rows(float* const y[], const float* const a[], int rows, const float* x, size_t stride,
                           int count) {
  switch (rows) {
    case 1:
      return add_scaled_block<1, Vectors>(y, a, x, stride, count);
    case 2:
      return add_scaled_block<2, Vectors>(y, a, x, stride, count);
    case 3:
      return add_scaled_block<3, Vectors>(y, a, x, stride, count);
    default:
      return add_scaled_block<4, Vectors>(y, a, x, stride, count);
  }
}

}  // namespace

void add_scaled_run(float* const y[], const float* const a[], int rows, const float* x, size_t stride, int count,
                    int n) {
  int i = 0;
  float* yi[4];
  const auto at = [&](int offset) {
    for (int k = 0; k < rows; ++k) yi[k] = y[k] + offset;
  };
  for (; i + kRunWidth * kRunVectors <= n; i += kRunWidth * kRunVectors) {
    at(i);
    add_scaled_block_rows<kRunVectors>(yi, a, rows, x + i, stride, count);
  }
  for (; i + kRunWidth <= n; i += kRunWidth) {
    at(i);
    add_scaled_block_rows<1>(yi, a, rows, x + i, stride, count);
  }
  if (i < n)
    for (int k = 0; k < rows; ++k)
      for (int s = 0; s < count; ++s) add_scaled(y[k] + i, a[k][s], x + static_cast<size_t>(s) * stride + i, n - i);
}

}  // namespace mote
