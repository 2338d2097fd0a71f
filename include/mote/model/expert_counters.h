// fTRI activation counters: tokens routed and gate-weight sums per
// (prompt class, phase, MoE layer, routed expert). Shards count what their
// experts actually processed; the coordinator counts its routing decisions;
// the two must agree exactly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mote {

enum Phase : uint8_t { kPromptPhase = 0, kGeneratedPhase = 1 };
inline constexpr int kPhaseCount = 2;

struct ExpertCounters {
  int classes = 0, moe_layers = 0, experts = 0;
  std::vector<uint64_t> tokens;  // [class, phase, moe_layer, expert]
  std::vector<double> gate_sum;  // same shape

  ExpertCounters() = default;
  ExpertCounters(int n_classes, int n_layers, int n_experts);
  size_t index(int cls, int phase, int layer, int expert) const {
    return ((static_cast<size_t>(cls) * kPhaseCount + phase) * moe_layers + layer) * experts + expert;
  }
  void add(int cls, int phase, int layer, int expert, float weight) {
    const size_t i = index(cls, phase, layer, expert);
    ++tokens[i];
    gate_sum[i] += weight;
  }
  // Where two counters differ, described; nullopt when they are equal bit for bit.
  std::optional<std::string> first_difference(const ExpertCounters& other) const;
};

}  // namespace mote
