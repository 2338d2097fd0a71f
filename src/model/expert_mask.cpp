#include "mote/model/expert_mask.h"

#include "mote/util/error.h"

namespace mote {

const char* off_policy_name(OffPolicy p) {
  switch (p) {
    case OffPolicy::Reroute:
      return "reroute";
    case OffPolicy::Drop:
      return "drop";
    case OffPolicy::Zero:
      return "zero";
  }
  return "?";
}

const char* on_policy_name(OnPolicy p) { return p == OnPolicy::Max ? "max" : "natural"; }

std::optional<OffPolicy> parse_off_policy(std::string_view name) {
  for (const OffPolicy p : {OffPolicy::Reroute, OffPolicy::Drop, OffPolicy::Zero}) {
    if (name == off_policy_name(p)) return p;
  }
  return std::nullopt;
}

std::optional<OnPolicy> parse_on_policy(std::string_view name) {
  for (const OnPolicy p : {OnPolicy::Natural, OnPolicy::Max}) {
    if (name == on_policy_name(p)) return p;
  }
  return std::nullopt;
}

ExpertMask::ExpertMask(int layers, int n_experts)
    : moe_layers(layers),
      experts(n_experts),
      off_bits((static_cast<size_t>(layers) * n_experts + 63) / 64, 0),
      on_bits(off_bits.size(), 0),
      gains(static_cast<size_t>(layers) * n_experts, 1.0f) {}

void ExpertMask::add_switches(const ExpertMask& other) {
  if (other.moe_layers != moe_layers || other.experts != experts) {
    fail("mask '{}' is for {} MoE layers x {} experts, not {} x {}", other.name, other.moe_layers, other.experts,
         moe_layers, experts);
  }
  for (size_t i = 0; i < off_bits.size(); ++i) off_bits[i] |= other.off_bits[i];
  for (size_t i = 0; i < on_bits.size(); ++i) on_bits[i] |= other.on_bits[i];
}

int ExpertMask::count_off() const {
  int n = 0;
  for (int l = 0; l < moe_layers; ++l)
    for (int e = 0; e < experts; ++e) n += is_off(l, e);
  return n;
}

bool ExpertMask::switches_nothing() const {
  for (const uint64_t b : off_bits)
    if (b != 0) return false;
  for (const uint64_t b : on_bits)
    if (b != 0) return false;
  for (const float g : gains)
    if (g != 1.0f) return false;
  return shared_gain == 1.0f;
}

int ExpertMask::count_on() const {
  int n = 0;
  for (int l = 0; l < moe_layers; ++l) n += count_on(l);
  return n;
}

int ExpertMask::count_on(int layer) const {
  int n = 0;
  for (int e = 0; e < experts; ++e) n += is_on(layer, e);
  return n;
}

}  // namespace mote
