// A 2-D weight matrix as it lies in the file: row-major, in its file dtype
// (F32, F16, BF16, or FP8 e4m3 with block scales), possibly unaligned.
// Kernels widen it to fp32 on the fly; nothing is converted at load.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "mote/util/dtype.h"

namespace mote {

// FP8 weights carry one float32 scale per block of kFp8Block x kFp8Block
// values (DeepSeek's weight_scale_inv): w[r, c] = e4m3(q[r, c]) * scale[r / 128, c / 128].
inline constexpr int kFp8Block = 128;

struct Weight {
  DType dtype = DType::F32;
  int rows = 0;
  int cols = 0;
  const std::byte* data = nullptr;
  // F8_E4M3 only: float32 scales [ceil(rows of the stored tensor / 128),
  // ceil(cols / 128)], possibly unaligned, and the stored tensor's row of
  // this weight's row 0 (row slices keep their parent's scale grid).
  const std::byte* scales = nullptr;
  int scale_row0 = 0;

  bool empty() const { return data == nullptr; }
  size_t row_bytes() const { return static_cast<size_t>(cols) * dtype_size(dtype); }
  size_t bytes() const { return row_bytes() * static_cast<size_t>(rows); }
  int scale_cols() const { return (cols + kFp8Block - 1) / kFp8Block; }
  // Bytes of the block scales that belong to these rows.
  size_t scale_bytes() const {
    if (scales == nullptr || rows == 0) return 0;
    const int first = scale_row0 / kFp8Block, last = (scale_row0 + rows - 1) / kFp8Block;
    return static_cast<size_t>(last - first + 1) * scale_cols() * 4;
  }
  // Scale of the block holding element (row, col).
  float scale(int row, int col) const {
    float s;
    const size_t at = static_cast<size_t>((scale_row0 + row) / kFp8Block) * scale_cols() + col / kFp8Block;
    std::memcpy(&s, scales + 4 * at, 4);
    return s;
  }
  // Rows [begin, begin + count) as a weight of their own.
  Weight row_slice(int begin, int count) const {
    return {dtype, count, cols, data + static_cast<size_t>(begin) * row_bytes(), scales, scale_row0 + begin};
  }
};

// The value of an e4m3 (fn) byte: 4 exponent bits (bias 7), 3 mantissa
// bits, no infinities; 0x7F and 0xFF are NaN.
float e4m3_to_float(uint8_t byte);
inline bool e4m3_is_nan(uint8_t byte) { return (byte & 0x7F) == 0x7F; }

// Widens row `row` of `w` into `out` (w.cols floats).
void widen_row(const Weight& w, int row, float* out);
// Widens a whole 1-D or 2-D tensor (norm weights, biases) into a vector.
std::vector<float> widen_all(const Weight& w);

}  // namespace mote
