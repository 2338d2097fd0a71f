// A 2-D weight matrix as it lies in the file: row-major, in its file dtype
// (F32, F16, BF16, FP8 e4m3 with block scales, or MXFP4), possibly unaligned.
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

// MXFP4 (the OCP microscaling format gpt-oss ships its experts in): two
// e2m1 values per byte, column 2j in the low nibble and 2j+1 in the high
// one, and one e8m0 scale byte per kMxfp4Block values of a row:
// w[r, c] = e2m1(q[r, c]) * 2^(s[r, c / 32] - 127). Scale byte 255 is NaN.
inline constexpr int kMxfp4Block = 32;
inline constexpr uint8_t kE8m0Nan = 255;

struct Weight {
  DType dtype = DType::F32;
  int rows = 0;
  int cols = 0;
  const std::byte* data = nullptr;
  // F8_E4M3: float32 scales [ceil(rows of the stored tensor / 128),
  // ceil(cols / 128)], possibly unaligned, and the stored tensor's row of
  // this weight's row 0 (row slices keep their parent's scale grid).
  // MXFP4: e8m0 bytes [rows, cols / 32] of these rows (scale_row0 is 0).
  const std::byte* scales = nullptr;
  int scale_row0 = 0;

  bool empty() const { return data == nullptr; }
  size_t row_bytes() const {
    return dtype == DType::MXFP4 ? static_cast<size_t>(cols) / 2 : static_cast<size_t>(cols) * dtype_size(dtype);
  }
  size_t bytes() const { return row_bytes() * static_cast<size_t>(rows); }
  int scale_cols() const { return dtype == DType::MXFP4 ? cols / kMxfp4Block : (cols + kFp8Block - 1) / kFp8Block; }
  // Bytes of the block scales that belong to these rows.
  size_t scale_bytes() const {
    if (scales == nullptr || rows == 0) return 0;
    if (dtype == DType::MXFP4) return static_cast<size_t>(rows) * scale_cols();
    const int first = scale_row0 / kFp8Block, last = (scale_row0 + rows - 1) / kFp8Block;
    return static_cast<size_t>(last - first + 1) * scale_cols() * 4;
  }
  // Scale of the block holding element (row, col).
  float scale(int row, int col) const {
    if (dtype == DType::MXFP4) {
      const auto e = static_cast<uint8_t>(scales[static_cast<size_t>(row) * scale_cols() + col / kMxfp4Block]);
      return e8m0_to_float(e);
    }
    float s;
    const size_t at = static_cast<size_t>((scale_row0 + row) / kFp8Block) * scale_cols() + col / kFp8Block;
    std::memcpy(&s, scales + 4 * at, 4);
    return s;
  }
  // Rows [begin, begin + count) as a weight of their own.
  Weight row_slice(int begin, int count) const {
    if (dtype == DType::MXFP4) {
      return {dtype,
              count,
              cols,
              data + static_cast<size_t>(begin) * row_bytes(),
              scales + static_cast<size_t>(begin) * scale_cols(),
              0};
    }
    return {dtype, count, cols, data + static_cast<size_t>(begin) * row_bytes(), scales, scale_row0 + begin};
  }

  // 2^(e - 127), exactly (2^-127 is a float32 subnormal); NaN for 255.
  static float e8m0_to_float(uint8_t e) {
    if (e == kE8m0Nan) return __builtin_nanf("");
    const uint32_t bits = e == 0 ? 0x00400000u : static_cast<uint32_t>(e) << 23;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
};

// The value of an e4m3 (fn) byte: 4 exponent bits (bias 7), 3 mantissa
// bits, no infinities; 0x7F and 0xFF are NaN.
float e4m3_to_float(uint8_t byte);
inline bool e4m3_is_nan(uint8_t byte) { return (byte & 0x7F) == 0x7F; }

// The value of an e2m1 nibble: sign, 2 exponent bits (bias 1), 1 mantissa
// bit: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives.
float e2m1_to_float(uint8_t nibble);

// Widens row `row` of `w` into `out` (w.cols floats).
void widen_row(const Weight& w, int row, float* out);
// Widens a whole 1-D or 2-D tensor (norm weights, biases) into a vector.
std::vector<float> widen_all(const Weight& w);

}  // namespace mote
