// FNV-1a, 64-bit: the fingerprints of jobs, scans, models and checkpoint
// parts. Not cryptographic; it tells changed inputs apart, it does not
// resist someone forging them.
#pragma once

#include <cstdint>
#include <string_view>

namespace mote {

inline constexpr uint64_t kFnv1aBasis = 0xcbf29ce484222325ull;

// FNV-1a of `bytes`, continuing from `h` (kFnv1aBasis to start).
inline uint64_t fnv1a(uint64_t h, std::string_view bytes) {
  for (const unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace mote
