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
#include "mote/model/expert_mask.h"

namespace mote {

class Router {
 public:
  explicit Router(const ModelConfig& config);
  int top_k() const { return top_k_; }

  // Routes one token of MoE layer `moe_layer` from its router logits
  // (n_routed values), applying `mask` (may be null). Writes top_k slots in
  // selection order (best first): expert id (-1 for a slot left empty by
  // the drop policy or by too few selectable experts), its weight (gain and
  // on-policy applied), and whether the expert is sent the token (false for
  // experts switched off with the zero policy: routed, output zero).
  void route(const float* logits, const float* bias, int moe_layer, const ExpertMask* mask, int32_t* experts,
             float* weights, uint8_t* dispatch, float* scratch) const;
  // Floats of scratch space route() needs.
  int scratch_size() const { return 2 * n_experts_ + n_group_; }

 private:
  int n_experts_, n_group_, per_group_, topk_group_, top_k_;
  bool normalize_;
  float scale_;
};

}  // namespace mote
