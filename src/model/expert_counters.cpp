#include "mote/model/expert_counters.h"

#include <cmath>
#include <cstring>

#include <fmt/format.h>

namespace mote {

std::optional<std::vector<int>> phases_named(const std::string& name) {
  if (name == "all") return std::vector<int>{kPromptPhase, kGeneratedPhase};
  if (name == "prompt") return std::vector<int>{kPromptPhase};
  if (name == "generated") return std::vector<int>{kGeneratedPhase};
  return std::nullopt;
}

ExpertCounters::ExpertCounters(int n_classes, int n_layers, int n_experts)
    : classes(n_classes),
      moe_layers(n_layers),
      experts(n_experts),
      tokens(static_cast<size_t>(n_classes) * kPhaseCount * n_layers * n_experts, 0),
      gate_sum(tokens.size(), 0.0) {}

std::optional<std::string> ExpertCounters::first_difference(const ExpertCounters& o, double gate_tolerance) const {
  if (tokens.size() != o.tokens.size())
    return fmt::format("shapes differ ({} vs {} entries)", tokens.size(), o.tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    const double a = gate_sum[i], b = o.gate_sum[i];
    const bool gate_differs = gate_tolerance == 0 ? std::memcmp(&a, &b, sizeof(double)) != 0
                                                  : std::abs(a - b) > gate_tolerance * std::max(1.0, std::abs(a));
    if (tokens[i] != o.tokens[i] || gate_differs) {
      const size_t e = i % experts, l = i / experts % moe_layers, p = i / experts / moe_layers % kPhaseCount,
                   c = i / experts / moe_layers / kPhaseCount;
      return fmt::format("class {} phase {} MoE layer {} expert {}: {} tokens / gate sum {:.17g} vs {} / {:.17g}", c, p,
                         l, e, tokens[i], gate_sum[i], o.tokens[i], o.gate_sum[i]);
    }
  }
  return std::nullopt;
}

}  // namespace mote
