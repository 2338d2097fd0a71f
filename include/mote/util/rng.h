// A small random number generator that gives the same numbers on every
// platform, for sampling and for synthetic weights.
#pragma once

#include <cstdint>

namespace mote {

// xoshiro256** seeded through splitmix64: small, fast, and the same on every
// platform (unlike std:: distributions).
class Rng {
 public:
  Rng(uint64_t seed, uint64_t stream);
  uint64_t next();
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t s_[4];
};

}  // namespace mote
