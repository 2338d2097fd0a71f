// A MoTE mask set: per (MoE layer, routed expert) switches and gains, and
// the policies that say what "off" and "on" mean (docs/steering.md):
//
//   off, policy reroute (default): selection score -inf before group
//        selection; the token takes the next-best expert; weights
//        renormalised over the new top-k
//   off, policy drop: removed from the chosen top-k after selection, no
//        replacement; the rest renormalised
//   off, policy zero: routing unchanged; the expert's output counts as
//        zero and it is not sent the token
//   on:  selection score +inf, its group always kept; weight from its own
//        sigmoid score (policy natural) or the token's largest weight (max)
//   gain G: the expert's weighted output is multiplied by G
//
// Switches are bitsets, one bit per layer x expert, as they are broadcast.
#pragma once

#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mote {

enum class OffPolicy : uint8_t { Reroute, Drop, Zero };
enum class OnPolicy : uint8_t { Natural, Max };
const char* off_policy_name(OffPolicy p);
const char* on_policy_name(OnPolicy p);
// The policy a name (as off_policy_name / on_policy_name spell it) stands for; nullopt for any other text.
std::optional<OffPolicy> parse_off_policy(std::string_view name);
std::optional<OnPolicy> parse_on_policy(std::string_view name);

// The id a request's own mask travels under (a server's "mask_ini"): only
// the request's coordinator holds that mask, and it checks the experts it
// sends a token to against it (expert ranks check the job's sets).
constexpr int32_t kOwnMaskId = -1;

struct ExpertMask {
  std::string name;  // mask-set name requests refer to
  int32_t id = 0;    // index among the job's mask sets, travels with each token
  int32_t moe_layers = 0;
  int32_t experts = 0;
  std::vector<uint64_t> off_bits, on_bits;
  std::vector<float> gains;  // [moe_layer * experts + expert], 1 = unscaled; empty: all 1
  OffPolicy off_policy = OffPolicy::Reroute;
  OnPolicy on_policy = OnPolicy::Natural;
  float shared_gain = 1.0f;  // 0 switches the shared expert off
  std::string description;   // the entries in mask-file syntax, for provenance

  ExpertMask() = default;
  ExpertMask(int layers, int n_experts);

  size_t index(int layer, int expert) const { return static_cast<size_t>(layer) * experts + expert; }
  bool is_off(int layer, int expert) const { return bit(off_bits, index(layer, expert)); }
  bool is_on(int layer, int expert) const { return bit(on_bits, index(layer, expert)); }
  // No gains held means every gain is 1 (masks of a large scan keep none).
  float gain(int layer, int expert) const { return gains.empty() ? 1.0f : gains[index(layer, expert)]; }
  void set_off(int layer, int expert) { set_bit(off_bits, index(layer, expert)); }
  void set_on(int layer, int expert) { set_bit(on_bits, index(layer, expert)); }
  // Switches off every expert `other` switches off, and on every one it
  // switches on (the union of both switches; gains and policies stay).
  void add_switches(const ExpertMask& other);
  int count_off() const;
  // No expert off or on, no gain other than 1, shared gain 1: the mask steers nothing.
  bool switches_nothing() const;
  int count_on(int layer) const;
  int count_on() const;  // over every layer
  // Its bitsets and gains hold exactly moe_layers x experts entries (a mask that came over the wire).
  bool well_formed() const {
    const size_t n = static_cast<size_t>(moe_layers) * static_cast<size_t>(experts), words = (n + 63) / 64;
    return moe_layers >= 0 && experts >= 0 && off_bits.size() == words && on_bits.size() == words &&
           (gains.empty() || gains.size() == n);
  }

  template <class Archive>
  void serialize(Archive& ar) {
    ar(name, id, moe_layers, experts, off_bits, on_bits, gains, off_policy, on_policy, shared_gain, description);
  }

 private:
  static bool bit(const std::vector<uint64_t>& bits, size_t i) { return (bits[i / 64] >> (i % 64)) & 1u; }
  static void set_bit(std::vector<uint64_t>& bits, size_t i) { bits[i / 64] |= uint64_t{1} << (i % 64); }
};

}  // namespace mote
