#include "mote/ops/weight.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace mote {

namespace {

float bf16_to_float(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &wide, sizeof f);
  return f;
}

float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {
      // Subnormal: shift until the implicit bit appears.
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while ((mantissa & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | ((mantissa & 0x3FF) << 13);
    }
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace

float e4m3_to_float(uint8_t byte) {
  const int exponent = (byte >> 3) & 0xF;
  const int mantissa = byte & 0x7;
  float magnitude;
  if (e4m3_is_nan(byte)) {
    magnitude = std::numeric_limits<float>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -9);  // subnormal: m/8 * 2^-6
  } else {
    magnitude = std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);  // (1 + m/8) * 2^(e-7)
  }
  return (byte & 0x80) ? -magnitude : magnitude;
}

float e2m1_to_float(uint8_t nibble) {
  static constexpr float kValues[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float magnitude = kValues[nibble & 7];
  return (nibble & 8) ? -magnitude : magnitude;
}

void widen_row(const Weight& w, int row, float* out) {
  const std::byte* p = w.data + static_cast<size_t>(row) * w.row_bytes();
  for (int i = 0; i < w.cols; ++i) {
    switch (w.dtype) {
      case DType::F32:
        std::memcpy(&out[i], p + 4 * static_cast<size_t>(i), 4);
        break;
      case DType::BF16: {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * static_cast<size_t>(i), 2);
        out[i] = bf16_to_float(bits);
        break;
      }
      case DType::F16: {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * static_cast<size_t>(i), 2);
        out[i] = f16_to_float(bits);
        break;
      }
      case DType::F8_E4M3:
        out[i] = e4m3_to_float(static_cast<uint8_t>(p[i])) * w.scale(row, i);
        break;
      case DType::MXFP4: {
        const auto byte = static_cast<uint8_t>(p[i / 2]);
        out[i] = e2m1_to_float(i % 2 == 0 ? byte & 0xF : byte >> 4) * w.scale(row, i);
        break;
      }
      default:
        out[i] = 0.0f;  // the loader admits only the dtypes above
    }
  }
}

std::vector<float> widen_all(const Weight& w) {
  std::vector<float> out(static_cast<size_t>(w.rows) * static_cast<size_t>(w.cols));
  for (int r = 0; r < w.rows; ++r) widen_row(w, r, out.data() + static_cast<size_t>(r) * static_cast<size_t>(w.cols));
  return out;
}

}  // namespace mote
