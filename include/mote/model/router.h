// The routers of the supported families, with MoTE's expert switches.
//
// Sigmoid (DeepSeek-V3): the switches act on the selection score
//   s  = sigmoid(u)                       weights come from s
//   c  = s + e_score_correction_bias      selection uses c only
//   c[e] = -inf for experts switched off, +inf for experts forced on
//   group score = sum of the top-2 c per group; keep topk_group groups
//   I = top-k of c within kept groups;  w_i = s_i / sum_I s * routed_scaling_factor
//
// Softmax (DeepSeek-V2, Qwen3-MoE, OLMoE) and top-k-then-softmax (Mixtral):
// the switches act on the logit u: reroute sets u_e = -inf before the
// softmax, on forces e into the top-k (with the max policy u_e = max u);
//   p = softmax(u); [V2 group-limited: groups scored by their best p]
//   I = top-k of p;  w_i = p_i [/ sum_I p if norm_topk_prob] * routed_scaling_factor
//   Mixtral: I = top-k of u;  w = softmax(u_I)
// drop removes switched-off experts from I after selection on the unmasked
// scores (the survivors renormalised where the family renormalises); zero
// and gain act on the output.
#pragma once

#include <cstdint>
#include <vector>

#include "mote/model/config.h"
#include "mote/model/expert_mask.h"

namespace mote {

class Router {
 public:
  explicit Router(const ModelConfig& config);
  int top_k() const { return top_k_; }

  // Routes one token of MoE layer `moe_layer` from its router logits
  // (n_routed values) and selection bias (null where the family has none),
  // applying `mask` (may be null). Writes top_k slots in
  // selection order (best first): expert id (-1 for a slot left empty by
  // the drop policy or by too few selectable experts), its weight (gain and
  // on-policy applied), and whether the expert is sent the token (false for
  // experts switched off with the zero policy: routed, output zero).
  void route(const float* logits, const float* bias, int moe_layer, const ExpertMask* mask, int32_t* experts,
             float* weights, uint8_t* dispatch, float* scratch) const;
  // Floats of scratch space route() needs.
  int scratch_size() const { return 3 * n_experts_ + n_group_; }

 private:
  RouterKind kind_;
  int n_experts_, n_group_, per_group_, topk_group_, top_k_;
  bool normalize_;
  float scale_;
};

}  // namespace mote
