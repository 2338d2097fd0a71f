// Next-token choice: greedy (temperature 0, ties to the lowest id) or
// temperature + top-p sampling from a per-request random stream, so that a
// request samples the same tokens whatever else is in its batch.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

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

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  float top_p = 1.0f;        // nucleus mass kept, in (0, 1]
};

class Sampler {
 public:
  explicit Sampler(SamplingParams params) : params_(params) {}
  int32_t sample(const float* logits, int vocab, Rng& rng);

 private:
  SamplingParams params_;
  std::vector<std::pair<double, int32_t>> probs_;
};

int32_t argmax(const float* logits, int vocab);

}  // namespace mote
