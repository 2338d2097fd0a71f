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

// The phases a --phase name counts: "all", "prompt" or "generated";
// nullopt for any other name.
std::optional<std::vector<int>> phases_named(const std::string& name);

struct ExpertCounters {
  int classes = 0, moe_layers = 0, experts = 0;
  // Every class counted as class 0: a rank's own record, checked against
  // the others' on totals. Per-class totals come from the requests' own
  // counts, so the ranks' records need not grow with the classes (20,000
  // classes of the bundled model would be 100 MB per record).
  bool pooled = false;
  std::vector<uint64_t> tokens;  // [class, phase, moe_layer, expert]
  std::vector<double> gate_sum;  // same shape

  ExpertCounters() = default;
  ExpertCounters(int n_classes, int n_layers, int n_experts);
  static ExpertCounters pooled_classes(int n_layers, int n_experts) {
    ExpertCounters c(1, n_layers, n_experts);
    c.pooled = true;
    return c;
  }
  size_t index(int cls, int phase, int layer, int expert) const {
    return ((static_cast<size_t>(cls) * kPhaseCount + phase) * moe_layers + layer) * experts + expert;
  }
  void add(int cls, int phase, int layer, int expert, float weight) {
    const size_t i = index(pooled ? 0 : cls, phase, layer, expert);
    ++tokens[i];
    gate_sum[i] += weight;
  }
  // Where two counters differ, described; nullopt when they are equal bit
  // for bit, or with `gate_tolerance`, when the token counts are and the
  // gate sums are within that relative difference (sums in another order).
  std::optional<std::string> first_difference(const ExpertCounters& other, double gate_tolerance = 0) const;
};

}  // namespace mote
