// Small per-vector operations of the forward pass, all fp32.
#pragma once

#include <cmath>
#include <cstddef>

namespace mote {

// out = x / sqrt(mean(x^2) + eps) * weight, over n values. The mean is
// accumulated in double so that it does not depend on summation order.
void rms_norm(const float* x, const float* weight, float eps, float* out, int n);

// out[i] = silu(gate[i]) * up[i], silu(g) = g * sigmoid(g).
void silu_mul(const float* gate, const float* up, float* out, int n);

// In-place softmax over n values.
void softmax(float* x, int n);

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// sum_i a[i] * b[i], summed in 16 interleaved partial sums (two 8-lane
// vectors) folded in a fixed order: vectorised, and the same result
// whatever the batch or the thread.
float dot(const float* a, const float* b, int n);
// out[k] = dot(a, b[k], n) for k < 4, bit for bit, computed together.
void dot4(const float* a, const float* const b[4], int n, float out[4]);

// y[i] += x[i]
void add_in_place(float* y, const float* x, int n);
// y[i] += a * x[i]
void add_scaled(float* y, float a, const float* x, int n);
// add_scaled(y, a[k], x[k], n) for k = 0..3 in turn, bit for bit, in one pass over y.
void add_scaled4(float* y, const float a[4], const float* const x[4], int n);

}  // namespace mote
