// Next-token choice: greedy (temperature 0, ties to the lowest id) or
// temperature + top-p sampling from a per-request random stream, so that a
// request samples the same tokens whatever else is in its batch.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "mote/util/rng.h"

namespace mote {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  float top_p = 1.0f;        // nucleus mass kept, in (0, 1]
};

class Sampler {
 public:
  explicit Sampler(SamplingParams params) : params_(params) {}
  int32_t sample(const float* logits, int vocab, Rng& rng) { return sample(logits, vocab, rng, params_); }
  // With a request's own parameters.
  int32_t sample(const float* logits, int vocab, Rng& rng, const SamplingParams& params);

 private:
  SamplingParams params_;
  std::vector<std::pair<double, int32_t>> probs_;
};

int32_t argmax(const float* logits, int vocab);

}  // namespace mote
