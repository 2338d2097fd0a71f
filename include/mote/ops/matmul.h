// Matrix products of fp32 activations with weights in their file dtype.
//
// Determinism: every output element is computed by one thread, accumulating
// over the inner dimension in a fixed order that does not depend on how many
// rows are in the batch, on the thread count, or on its neighbours. The same
// token therefore gets bit-identical results alone or in any batch, which
// the expert-parallel runtime relies on.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

#include "mote/ops/weight.h"

namespace mote {

// y[t, o] = sum_i x[t, i] * w[o, i] for t < n, o < w.rows (y = x W^T).
// x rows are x_stride floats apart, y rows y_stride floats apart.
void matmul(const float* x, size_t x_stride, int n, const Weight& w, float* y, size_t y_stride);
inline void matmul(const float* x, int n, const Weight& w, float* y) {
  matmul(x, static_cast<size_t>(w.cols), n, w, y, static_cast<size_t>(w.rows));
}

// One product y = x W^T of a group.
struct MatmulJob {
  const float* x;
  size_t x_stride;
  int n;
  const Weight* w;
  float* y;
  size_t y_stride;
};

// Several independent products in one parallel region (the same results as
// calling matmul for each): the experts of a layer, or gate and up.
void matmul_group(std::span<const MatmulJob> jobs);

// y[t, c] = sum_r x[t, r] * w[r, c] for t < n, c < w.cols (y = x W), used by
// MLA to fold the key up-projection into the query.
void matmul_by_columns(const float* x, size_t x_stride, int n, const Weight& w, float* y, size_t y_stride);

// Bytes of weights the kernels have streamed since start, for reporting the
// memory bandwidth a run achieved.
uint64_t weight_bytes_streamed();

}  // namespace mote
