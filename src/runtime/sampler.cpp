#include "mote/runtime/sampler.h"

#include <algorithm>
#include <cmath>

namespace mote {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ splitmix64(stream);
  for (auto& s : s_) s = splitmix64(x);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

int32_t argmax(const float* logits, int vocab) {
  int32_t best = 0;
  for (int32_t i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

int32_t Sampler::sample(const float* logits, int vocab, Rng& rng) {
  if (params_.temperature <= 0.0f) return argmax(logits, vocab);
  const double max_logit = logits[argmax(logits, vocab)];
  probs_.resize(static_cast<size_t>(vocab));
  double total = 0.0;
  for (int32_t i = 0; i < vocab; ++i) {
    const double p = std::exp((logits[i] - max_logit) / params_.temperature);
    probs_[i] = {p, i};
    total += p;
  }
  size_t kept = probs_.size();
  double kept_mass = total;
  if (params_.top_p < 1.0f) {
    std::sort(probs_.begin(), probs_.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    double cumulative = 0.0;
    for (kept = 0; kept < probs_.size();) {
      cumulative += probs_[kept].first;
      ++kept;
      if (cumulative >= params_.top_p * total) break;
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
