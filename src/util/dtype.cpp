#include "mote/util/dtype.h"

#include <cmath>
#include <cstring>

namespace mote {
namespace {

struct DTypeInfo {
  std::string_view name;
  DType dtype;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {"F32", DType::F32, 4},     {"F16", DType::F16, 2},         {"BF16", DType::BF16, 2},
    {"F64", DType::F64, 8},     {"I64", DType::I64, 8},         {"I32", DType::I32, 4},
    {"I16", DType::I16, 2},     {"I8", DType::I8, 1},           {"U8", DType::U8, 1},
    {"U64", DType::U64, 8},     {"U32", DType::U32, 4},         {"U16", DType::U16, 2},
    {"BOOL", DType::BOOL, 1},   {"F8_E4M3", DType::F8_E4M3, 1}, {"F8_E5M2", DType::F8_E5M2, 1},
    {"MXFP4", DType::MXFP4, 0},
};

const DTypeInfo& info(DType dtype) {
  for (const auto& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  return kDTypes[0];
}

}  // namespace

std::string_view dtype_name(DType dtype) { return info(dtype).name; }
size_t dtype_size(DType dtype) { return info(dtype).size; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& entry : kDTypes) {
    if (entry.name == name && entry.dtype != DType::MXFP4) return entry.dtype;
  }
  return std::nullopt;
}

uint16_t float_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu) != 0)
    return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN stays NaN
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

uint8_t float_to_e4m3(float value) {
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  const float a = std::fabs(value);
  if (std::isnan(value)) return 0x7F;
  if (a >= 448.0f) return sign | 0x7E;
  if (a < std::ldexp(1.0f, -6)) {
    // Subnormal range: multiples of 2^-9 (8 of them make the smallest normal).
    const auto q = static_cast<int>(std::nearbyint(std::ldexp(a, 9)));
    return static_cast<uint8_t>(sign | q);
  }
  int e = 0;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  auto q = static_cast<int>(std::nearbyint((m * 2.0f - 1.0f) * 8.0f));
  int biased = e - 1 + 7;
  if (q == 8) {
    q = 0;
    ++biased;
  }
  if (biased > 15 || (biased == 15 && q == 7)) return sign | 0x7E;
  return static_cast<uint8_t>(sign | biased << 3 | q);
}

}  // namespace mote
