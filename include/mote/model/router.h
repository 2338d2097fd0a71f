// The DeepSeek-V3 router (sigmoid scores, bias-corrected selection, grouped
// top-k), with MoTE's expert switches applied to the selection score:
//
//   s  = sigmoid(u)                       weights come from s
//   c  = s + e_score_correction_bias      selection uses c only
//   c[e] = -inf for experts switched off, +inf for experts forced on
//   group score = sum of the top-2 c per group; keep topk_group groups
//   I = top-k of c within kept groups;  w_i = s_i / sum_I s * routed_scaling_factor
#pragma once

#include <cstdint>
#include <vector>

#include "mote/model/config.h"

namespace mote {

// Expert switches of one mask set, one entry per (MoE layer, routed expert).
struct ExpertMask {
  int moe_layers = 0;
  int experts = 0;
  std::vector<uint8_t> off;  // 1 = never select
  std::vector<uint8_t> on;   // 1 = always select

  ExpertMask() = default;
  ExpertMask(int layers, int n_experts)
      : moe_layers(layers), experts(n_experts), off(static_cast<size_t>(layers) * n_experts, 0), on(off) {}
  bool is_off(int layer, int e) const { return off[static_cast<size_t>(layer) * experts + e] != 0; }
  bool is_on(int layer, int e) const { return on[static_cast<size_t>(layer) * experts + e] != 0; }
};

class Router {
 public:
  explicit Router(const ModelConfig& config);
  int top_k() const { return top_k_; }

  // Routes one token of MoE layer `moe_layer` from its router logits
  // (n_routed values). Writes up to top_k experts in selection order (best
  // first) and their weights; returns how many were chosen (fewer than top_k
  // only when switches leave fewer selectable experts in the kept groups).
  int route(const float* logits, const float* bias, int moe_layer, const ExpertMask* mask, int32_t* experts,
            float* weights, float* scratch) const;
  // Floats of scratch space route() needs.
  int scratch_size() const { return 2 * n_experts_ + n_group_; }

 private:
  int n_experts_, n_group_, per_group_, topk_group_, top_k_;
  bool normalize_;
  float scale_;
};

}  // namespace mote
