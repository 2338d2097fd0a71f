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

// gpt-oss's clamped SwiGLU over n (gate, up) pairs stored interleaved:
// g = min(gate, limit), u = clamp(up, -limit, limit),
// out[i] = (u + 1) * g * sigmoid(alpha * g).
void clamped_swiglu(const float* gate_up, float limit, float alpha, float* out, int n);

// In-place softmax over n values.
void softmax(float* x, int n);

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// sum_i a[i] * b[i], summed in 16 interleaved partial sums (two 8-lane
// vectors) folded in a fixed order: vectorised, and the same result
// whatever the batch or the thread.
float dot(const float* a, const float* b, int n);
// out[k * 4 + j] = dot(a[k], b + j * stride, n) for k < rows (at most 4)
// and j < 4, bit for bit: each loaded vector of a and b used four times.
void dot_block(const float* const a[], int rows, const float* b, size_t stride, int n, float out[16]);

// y[i] += x[i]
void add_in_place(float* y, const float* x, int n);
// y[i] += a * x[i]
void add_scaled(float* y, float a, const float* x, int n);
// For each of `rows` outputs (at most 4): add_scaled(y[k], a[k][s], x + s * stride, n)
// for s = 0 .. count-1 in turn, bit for bit, with blocks of y held in
// registers while the run of vectors x passes: weighted sums of many
// vectors (attention's values) in one pass.
void add_scaled_run(float* const y[], const float* const a[], int rows, const float* x, size_t stride, int count,
                    int n);

}  // namespace mote
