// Placement from a profile: spreads each MoE layer's routed experts over the
// ranks that hold experts so that the tokens each rank expects (from the
// profile's counts) are balanced, within how many experts each rank can
// hold. Longest-first greedy: experts by load, heaviest first (ties to the
// lower id), each to the least-loaded rank with room (ties to the lower
// rank), so the result is deterministic.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mote/results/profile_file.h"

namespace mote {

struct LoadPlacementSpec {
  int world_size = 1;
  int coordinators = 0;  // 0: every rank
  bool coordinator_experts = true;
  std::vector<std::string> classes;  // classes whose tokens count; empty: all
  std::string phase = "all";         // all, prompt or generated
  // Routed experts each rank can hold over all MoE layers (from memory);
  // empty: as many as the contiguous rule gives it, so memory stays even.
  std::vector<int64_t> capacity;
};

struct LoadPlacement {
  int moe_layers = 0, experts = 0;
  std::vector<int> owner;    // [moe_layer * experts + expert] -> rank
  std::vector<int> holders;  // ranks that hold experts
  // Expected tokens per holder over the mean, the busiest rank, per MoE
  // layer: with the contiguous rule and with this placement.
  std::vector<double> before, after;
  std::string json() const;  // {"owner": [...]} as `--placement-file` reads it, and the loads
};

LoadPlacement place_by_load(const ProfileData& profile, const LoadPlacementSpec& spec);

}  // namespace mote
