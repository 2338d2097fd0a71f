// Sizes read from files are multiplied before anything is allocated or
// indexed; these helpers refuse results that do not fit instead of wrapping.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace mote {

inline std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

// Product of all dimensions, or nullopt on overflow.
inline std::optional<uint64_t> checked_product(std::span<const int64_t> dims) {
  uint64_t total = 1;
  for (int64_t d : dims) {
    if (d < 0) return std::nullopt;
    auto next = checked_mul(total, static_cast<uint64_t>(d));
    if (!next) return std::nullopt;
    total = *next;
  }
  return total;
}

}  // namespace mote
