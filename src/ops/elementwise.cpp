#include "mote/ops/elementwise.h"

#include <cstring>

#include <cmath>

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

void add_in_place(float* y, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += x[i];
}

namespace {
// GCC/Clang vector extensions: 8 floats, lowered to whatever SIMD the
// target has, with the same lane arithmetic everywhere.
typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec4 __attribute__((vector_size(16)));

inline Vec8 load8(const float* p) {
  Vec8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The 16 partial sums of dot() folded in its fixed order, plus its tail.
inline float fold(Vec8 acc0, Vec8 acc1, float tail) {
  const Vec8 sum8 = acc0 + acc1;
  const Vec4 sum4 = __builtin_shufflevector(sum8, sum8, 0, 1, 2, 3) + __builtin_shufflevector(sum8, sum8, 4, 5, 6, 7);
  const float sum2a = sum4[0] + sum4[2], sum2b = sum4[1] + sum4[3];
  return (sum2a + sum2b) + tail;
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
  if (i + 8 <= n) {
    acc0 += load8(a + i) * load8(b + i);
    i += 8;
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return fold(acc0, acc1, tail);
}

void dot4(const float* a, const float* const b[4], int n, float out[4]) {
  // dot() four times, interleaved: eight independent accumulators instead of
  // two dependent chains, and each load of `a` used four times.
  Vec8 acc0[4] = {}, acc1[4] = {};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const Vec8 a0 = load8(a + i), a1 = load8(a + i + 8);
    for (int k = 0; k < 4; ++k) {
      acc0[k] += a0 * load8(b[k] + i);
      acc1[k] += a1 * load8(b[k] + i + 8);
    }
  }
  if (i + 8 <= n) {
    const Vec8 a0 = load8(a + i);
    for (int k = 0; k < 4; ++k) acc0[k] += a0 * load8(b[k] + i);
    i += 8;
  }
  for (int k = 0; k < 4; ++k) {
    float tail = 0.0f;
    for (int j = i; j < n; ++j) tail += a[j] * b[k][j];
    out[k] = fold(acc0[k], acc1[k], tail);
  }
}

void add_scaled(float* y, float a, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

void add_scaled4(float* y, const float a[4], const float* const x[4], int n) {
  const float a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
  const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
  for (int i = 0; i < n; ++i) y[i] = (((y[i] + a0 * x0[i]) + a1 * x1[i]) + a2 * x2[i]) + a3 * x3[i];
}

}  // namespace mote
