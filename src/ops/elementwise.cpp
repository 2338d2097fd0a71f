#include "mote/ops/elementwise.h"

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

float dot(const float* a, const float* b, int n) {
  constexpr int kLanes = 16;
  float part[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) part[l] += a[i + l] * b[i + l];
  }
  for (int l = 0; i < n; ++i, ++l) part[l] += a[i] * b[i];
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) part[l] += part[l + width];
  }
  return part[0];
}

void add_scaled(float* y, float a, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace mote
