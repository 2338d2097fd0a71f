#include "mote/runtime/random_mask.h"

#include <algorithm>

#include "mote/runtime/sampler.h"
#include "mote/util/error.h"

namespace mote {
namespace {

// Fisher-Yates with our own generator, so the same seed gives the same mask everywhere.
void shuffle(std::vector<int>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const auto j = static_cast<size_t>(rng.next() % i);
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace

ExpertMask random_mask(const ModelConfig& config, const RandomMaskSpec& spec, const std::string& name) {
  const int layers = static_cast<int>(config.moe_layers().size());
  const int experts = config.n_routed_experts;
  ExpertMask mask(layers, experts);
  mask.name = name;
  mask.off_policy = spec.off_policy;
  const auto allowed = [&](int l, int e) {
    return spec.exclude == nullptr || (!spec.exclude->is_off(l, e) && !spec.exclude->is_on(l, e));
  };
  Rng rng(spec.seed, 0x6d61736b);  // "mask"
  if (spec.like != nullptr) {
    for (int l = 0; l < layers; ++l) {
      int want = 0;
      for (int e = 0; e < experts; ++e) want += spec.like->is_off(l, e);
      std::vector<int> pool;
      for (int e = 0; e < experts; ++e) {
        if (allowed(l, e)) pool.push_back(e);
      }
      if (want > static_cast<int>(pool.size())) fail("MoE layer {}: {} experts wanted but only {} are not excluded", l, want, pool.size());
      shuffle(pool, rng);
      for (int i = 0; i < want; ++i) mask.set_off(l, pool[i]);
    }
  } else {
    std::vector<int> pool;
    for (int l = 0; l < layers; ++l) {
      for (int e = 0; e < experts; ++e) {
        if (allowed(l, e)) pool.push_back(l * experts + e);
      }
    }
    if (spec.count < 0 || spec.count > static_cast<int>(pool.size())) {
      fail("{} random experts wanted but {} are available", spec.count, pool.size());
    }
    shuffle(pool, rng);
    for (int i = 0; i < spec.count; ++i) mask.set_off(pool[i] / experts, pool[i] % experts);
  }
  return mask;
}

}  // namespace mote
