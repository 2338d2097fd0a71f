#include "mote/runtime/load_placement.h"

#include <algorithm>
#include <numeric>

#include <nlohmann/json.hpp>

#include "mote/expert_parallel/placement.h"
#include "mote/model/expert_counters.h"
#include "mote/util/error.h"
#include "mote/util/stop_signal.h"

namespace mote {
namespace {

double max_over_mean(const std::vector<double>& load) {
  const double total = std::accumulate(load.begin(), load.end(), 0.0);
  if (total <= 0) return 1.0;
  return *std::max_element(load.begin(), load.end()) / (total / static_cast<double>(load.size()));
}

}  // namespace

LoadPlacement place_by_load(const ProfileData& profile, const LoadPlacementSpec& spec) {
  const int layers = profile.moe_layers, experts = profile.experts;
  const int coordinators = coordinator_count(spec.coordinators, spec.world_size);
  // The contiguous rule checks the world size and coordinators and names the holders.
  const Placement contiguous =
      Placement::by_rule("contiguous", layers, experts, spec.world_size, spec.coordinator_experts, coordinators);
  LoadPlacement p;
  p.moe_layers = layers;
  p.experts = experts;
  for (int r = 0; r < spec.world_size; ++r) {
    // As Placement::by_rule picks them: coordinators too unless they hold none.
    if (spec.coordinator_experts || r >= coordinators) p.holders.push_back(r);
  }
  const int h = static_cast<int>(p.holders.size());

  const auto named = phases_named(spec.phase);
  if (!named) fail("--phase '{}' is not one of all, prompt, generated", spec.phase);
  const std::vector<int>& phases = *named;
  std::vector<int> classes;
  for (const std::string& name : spec.classes) {
    const auto it = std::find(profile.classes.begin(), profile.classes.end(), name);
    if (it == profile.classes.end()) fail("the profile has no class '{}'", name);
    classes.push_back(static_cast<int>(it - profile.classes.begin()));
  }
  if (classes.empty()) {
    classes.resize(profile.classes.size());
    std::iota(classes.begin(), classes.end(), 0);
  }
  // Expected tokens of every (layer, expert).
  std::vector<double> load(static_cast<size_t>(layers) * experts, 0.0);
  for (int c : classes) {
    for (int ph : phases) {
      for (int l = 0; l < layers; ++l) {
        for (int e = 0; e < experts; ++e) {
          load[static_cast<size_t>(l) * experts + e] += static_cast<double>(
              profile.counts[((static_cast<size_t>(c) * kPhaseCount + ph) * layers + l) * experts + e]);
        }
      }
    }
  }

  // Experts per holder per layer: the capacity over all layers, spread evenly.
  std::vector<int> cap(static_cast<size_t>(h));
  for (int i = 0; i < h; ++i) {
    const int r = p.holders[i];
    if (spec.capacity.empty()) {
      cap[i] = (experts + h - 1) / h;
    } else {
      if (spec.capacity.size() != static_cast<size_t>(spec.world_size))
        fail("capacity must be given for each of the {} ranks", spec.world_size);
      cap[i] =
          static_cast<int>(std::min<int64_t>(experts, std::max<int64_t>(0, spec.capacity[r] / std::max(layers, 1))));
    }
  }
  if (std::accumulate(cap.begin(), cap.end(), 0) < experts) {
    fail("the {} routed experts of each MoE layer do not fit: the {} ranks holding experts have room for {} per layer",
         experts, h, std::accumulate(cap.begin(), cap.end(), 0));
  }

  p.owner.assign(load.size(), 0);
  std::vector<int> order(static_cast<size_t>(experts));
  for (int l = 0; l < layers; ++l) {
    stop_point("planning the placement");
    const double* layer_load = &load[static_cast<size_t>(l) * experts];
    std::vector<double> before(static_cast<size_t>(h), 0.0), after(static_cast<size_t>(h), 0.0);
    for (int e = 0; e < experts; ++e) {
      const int r = contiguous.owner(l, e);
      before[static_cast<size_t>(std::find(p.holders.begin(), p.holders.end(), r) - p.holders.begin())] +=
          layer_load[e];
    }
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return layer_load[a] > layer_load[b]; });
    std::vector<int> held(static_cast<size_t>(h), 0);
    for (int e : order) {
      int best = -1;
      for (int i = 0; i < h; ++i) {
        if (held[i] >= cap[i]) continue;
        if (best < 0 || after[i] < after[best]) best = i;
      }
      after[best] += layer_load[e];
      ++held[best];
      p.owner[static_cast<size_t>(l) * experts + e] = p.holders[best];
    }
    p.before.push_back(max_over_mean(before));
    p.after.push_back(max_over_mean(after));
  }
  return p;
}

std::string LoadPlacement::json() const {
  nlohmann::ordered_json j;
  j["owner"] = nlohmann::json::array();
  for (int l = 0; l < moe_layers; ++l) {
    j["owner"].push_back(std::vector<int>(owner.begin() + static_cast<std::ptrdiff_t>(l) * experts,
                                          owner.begin() + static_cast<std::ptrdiff_t>(l + 1) * experts));
  }
  j["holders"] = holders;
  j["max_over_mean_tokens_contiguous"] = before;
  j["max_over_mean_tokens"] = after;
  // One row per line: readable, and diffs stay small.
  std::string text = "{\n  \"owner\": [\n";
  for (int l = 0; l < moe_layers; ++l)
    text += "    " + j["owner"][static_cast<size_t>(l)].dump() + (l + 1 < moe_layers ? ",\n" : "\n");
  text += "  ],\n  \"holders\": " + j["holders"].dump() +
          ",\n  \"max_over_mean_tokens_contiguous\": " + j["max_over_mean_tokens_contiguous"].dump() +
          ",\n  \"max_over_mean_tokens\": " + j["max_over_mean_tokens"].dump() + "\n}\n";
  return text;
}

}  // namespace mote
