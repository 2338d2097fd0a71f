#include "mote/model/router.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "mote/ops/elementwise.h"

namespace mote {

Router::Router(const ModelConfig& c)
    : n_experts_(c.n_routed_experts),
      n_group_(c.n_group),
      per_group_(c.experts_per_group()),
      topk_group_(c.topk_group),
      top_k_(c.num_experts_per_tok),
      normalize_(c.norm_topk_prob),
      scale_(static_cast<float>(c.routed_scaling_factor)) {}

void Router::route(const float* logits, const float* bias, int moe_layer, const ExpertMask* mask, int32_t* experts,
                   float* weights, uint8_t* dispatch, float* scratch) const {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  float* score = scratch;                  // s
  float* choice = scratch + n_experts_;    // c, then -inf once taken or outside kept groups
  float* group_score = choice + n_experts_;

  for (int e = 0; e < n_experts_; ++e) {
    score[e] = sigmoid(logits[e]);
    choice[e] = score[e] + bias[e];
    if (mask != nullptr) {
      // Only rerouting changes selection; drop and zero act after it.
      if (mask->off_policy == OffPolicy::Reroute && mask->is_off(moe_layer, e)) choice[e] = -kInf;
      if (mask->is_on(moe_layer, e)) choice[e] = kInf;
    }
  }

  // Group score: sum of the two best selection scores. A group holding a
  // forced expert scores +inf (computing it as a sum could give inf - inf).
  for (int g = 0; g < n_group_; ++g) {
    float best = -kInf, second = -kInf;
    bool forced = false;
    for (int e = g * per_group_; e < (g + 1) * per_group_; ++e) {
      forced |= choice[e] == kInf;
      if (choice[e] > best) {
        second = best;
        best = choice[e];
      } else if (choice[e] > second) {
        second = choice[e];
      }
    }
    group_score[g] = forced ? kInf : best + second;
  }
  // Keep the topk_group best groups (lower index wins ties); mask the rest.
  for (int kept = 0; kept < topk_group_; ++kept) {
    int best_group = -1;
    for (int g = 0; g < n_group_; ++g) {
      if (std::isnan(group_score[g])) continue;
      if (best_group < 0 || group_score[g] > group_score[best_group]) best_group = g;
    }
    if (best_group < 0) break;
    group_score[best_group] = std::numeric_limits<float>::quiet_NaN();  // marks "kept"
  }
  for (int g = 0; g < n_group_; ++g) {
    if (std::isnan(group_score[g])) continue;
    for (int e = g * per_group_; e < (g + 1) * per_group_; ++e) choice[e] = -kInf;
  }

  // Top-k by selection score, best first, lower index wins ties. Switched-off
  // and dropped experts stay at -inf and are never taken.
  int chosen = 0;
  for (; chosen < top_k_; ++chosen) {
    int best = -1;
    for (int e = 0; e < n_experts_; ++e) {
      if (choice[e] == -kInf) continue;
      if (best < 0 || choice[e] > choice[best]) best = e;
    }
    if (best < 0) break;
    experts[chosen] = best;
    weights[chosen] = score[best];
    choice[best] = -kInf;
  }

  // Drop: switched-off experts leave the top-k without replacement.
  if (mask != nullptr && mask->off_policy == OffPolicy::Drop) {
    int kept = 0;
    for (int i = 0; i < chosen; ++i) {
      if (mask->is_off(moe_layer, experts[i])) continue;
      experts[kept] = experts[i];
      weights[kept] = weights[i];
      ++kept;
    }
    chosen = kept;
  }
  for (int i = chosen; i < top_k_; ++i) {
    experts[i] = -1;
    weights[i] = 0.0f;
  }

  if (normalize_ && top_k_ > 1) {
    float sum = 0.0f;
    for (int i = 0; i < chosen; ++i) sum += weights[i];
    sum += 1e-20f;
    for (int i = 0; i < chosen; ++i) weights[i] = weights[i] / sum * scale_;
  } else {
    for (int i = 0; i < chosen; ++i) weights[i] *= scale_;
  }

  for (int i = 0; i < top_k_; ++i) dispatch[i] = experts[i] >= 0;
  if (mask == nullptr) return;
  if (mask->on_policy == OnPolicy::Max) {
    float largest = 0.0f;
    for (int i = 0; i < chosen; ++i) largest = std::max(largest, weights[i]);
    for (int i = 0; i < chosen; ++i) {
      if (mask->is_on(moe_layer, experts[i])) weights[i] = largest;
    }
  }
  for (int i = 0; i < chosen; ++i) {
    weights[i] *= mask->gain(moe_layer, experts[i]);
    if (mask->off_policy == OffPolicy::Zero && mask->is_off(moe_layer, experts[i])) dispatch[i] = 0;
  }
}

}  // namespace mote
