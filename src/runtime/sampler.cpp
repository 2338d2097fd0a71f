#include "mote/runtime/sampler.h"

#include <algorithm>
#include <cmath>

namespace mote {

int32_t argmax(const float* logits, int vocab) {
  int32_t best = 0;
  for (int32_t i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

int32_t Sampler::sample(const float* logits, int vocab, Rng& rng, const SamplingParams& params) {
  if (params.temperature <= 0.0f) return argmax(logits, vocab);
  const double max_logit = logits[argmax(logits, vocab)];
  probs_.resize(static_cast<size_t>(vocab));
  double total = 0.0;
  for (int32_t i = 0; i < vocab; ++i) {
    const double p = std::exp((logits[i] - max_logit) / params.temperature);
    probs_[i] = {p, i};
    total += p;
  }
  size_t kept = probs_.size();
  double kept_mass = total;
  if (params.top_p < 1.0f) {
    std::sort(probs_.begin(), probs_.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    double cumulative = 0.0;
    for (kept = 0; kept < probs_.size();) {
      cumulative += probs_[kept].first;
      ++kept;
      if (cumulative >= params.top_p * total) break;
    }
    kept_mass = cumulative;
  }
  const double target = rng.uniform() * kept_mass;
  double cumulative = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    cumulative += probs_[i].first;
    if (target < cumulative) return probs_[i].second;
  }
  return probs_[kept - 1].second;
}

}  // namespace mote
