// A 2-D weight matrix as it lies in the file: row-major, in its file dtype
// (F32, F16 or BF16), possibly unaligned. Kernels widen it to fp32 on the fly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mote/io/safetensors.h"

namespace mote {

struct Weight {
  DType dtype = DType::F32;
  int rows = 0;
  int cols = 0;
  const std::byte* data = nullptr;

  bool empty() const { return data == nullptr; }
  size_t row_bytes() const { return static_cast<size_t>(cols) * dtype_size(dtype); }
  size_t bytes() const { return row_bytes() * static_cast<size_t>(rows); }
  // Rows [begin, begin + count) as a weight of their own.
  Weight row_slice(int begin, int count) const {
    return {dtype, count, cols, data + static_cast<size_t>(begin) * row_bytes()};
  }
};

// Widens row `row` of `w` into `out` (w.cols floats).
void widen_row(const Weight& w, int row, float* out);
// Widens a whole 1-D or 2-D tensor (norm weights, biases) into a vector.
std::vector<float> widen_all(const Weight& w);

}  // namespace mote
