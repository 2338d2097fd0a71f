#include "mote/runtime/random_mask.h"

#include <algorithm>
#include <functional>

#include "mote/util/error.h"
#include "mote/util/rng.h"

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

namespace {

// Experts forced on: per layer at most top-k, within at most topk_group of
// the router's groups (more would be dropped by the selection, or refused).
ExpertMask random_on_mask(const ModelConfig& config, const RandomMaskSpec& spec, ExpertMask mask, Rng& rng,
                          const std::function<bool(int, int)>& allowed) {
  const int layers = mask.moe_layers, experts = mask.experts, top_k = config.num_experts_per_tok;
  const int groups = config.n_group > 1 ? config.n_group : 1;
  const int group_size = experts / groups;
  const int max_groups = groups > 1 && config.topk_group > 0 ? config.topk_group : groups;
  std::vector<int> on_count(static_cast<size_t>(layers), 0);
  std::vector<std::vector<uint8_t>> group_used(static_cast<size_t>(layers),
                                               std::vector<uint8_t>(static_cast<size_t>(groups), 0));
  const auto accept = [&](int l, int e) {
    const int g = e / group_size;
    auto& used = group_used[static_cast<size_t>(l)];
    const int in_use = static_cast<int>(std::count(used.begin(), used.end(), 1));
    if (on_count[static_cast<size_t>(l)] >= top_k || (!used[static_cast<size_t>(g)] && in_use >= max_groups))
      return false;
    used[static_cast<size_t>(g)] = 1;
    ++on_count[static_cast<size_t>(l)];
    mask.set_on(l, e);
    return true;
  };
  if (spec.like != nullptr) {
    for (int l = 0; l < layers; ++l) {
      const int want = spec.like->count_on(l);
      if (want > top_k) fail("MoE layer {}: {} experts to force on, more than the router's top-k ({})", l, want, top_k);
      std::vector<int> pool;
      for (int e = 0; e < experts; ++e) {
        if (allowed(l, e)) pool.push_back(e);
      }
      shuffle(pool, rng);
      int got = 0;
      for (size_t i = 0; i < pool.size() && got < want; ++i) got += accept(l, pool[i]);
      if (got < want)
        fail("MoE layer {}: cannot force {} experts on within {} groups outside the excluded ones", l, want,
             max_groups);
    }
  } else {
    std::vector<int> pool;
    for (int l = 0; l < layers; ++l) {
      for (int e = 0; e < experts; ++e) {
        if (allowed(l, e)) pool.push_back(l * experts + e);
      }
    }
    shuffle(pool, rng);
    int got = 0;
    for (size_t i = 0; i < pool.size() && got < spec.count; ++i) got += accept(pool[i] / experts, pool[i] % experts);
    if (spec.count < 0 || got < spec.count) {
      fail("{} random experts to force on, but at most {} fit (top-k {} per layer, within {} groups)", spec.count, got,
           top_k, max_groups);
    }
  }
  return mask;
}

}  // namespace

ExpertMask random_mask(const ModelConfig& config, const RandomMaskSpec& spec, const std::string& name) {
  const int layers = static_cast<int>(config.moe_layers().size());
  const int experts = config.n_routed_experts;
  ExpertMask mask(layers, experts);
  mask.name = name;
  mask.off_policy = spec.off_policy;
  mask.on_policy = spec.on_policy;
  const std::function<bool(int, int)> allowed = [&](int l, int e) {
    return spec.exclude == nullptr || (!spec.exclude->is_off(l, e) && !spec.exclude->is_on(l, e));
  };
  Rng rng(spec.seed, 0x6d61736b);  // "mask"
  if (spec.on) return random_on_mask(config, spec, std::move(mask), rng, allowed);
  if (spec.like != nullptr) {
    for (int l = 0; l < layers; ++l) {
      int want = 0;
      for (int e = 0; e < experts; ++e) want += spec.like->is_off(l, e);
      std::vector<int> pool;
      for (int e = 0; e < experts; ++e) {
        if (allowed(l, e)) pool.push_back(e);
      }
      if (want > static_cast<int>(pool.size()))
        fail("MoE layer {}: {} experts wanted but only {} are not excluded", l, want, pool.size());
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
