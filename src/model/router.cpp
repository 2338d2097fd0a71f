#include "mote/model/router.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "mote/ops/elementwise.h"

namespace mote {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Softmax of `n` logits into `out`; -inf logits get exactly 0.
void softmax_into(const float* logits, int n, float* out) {
  float top = -kInf;
  for (int i = 0; i < n; ++i) top = std::max(top, logits[i]);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    out[i] = logits[i] == -kInf ? 0.0f : std::exp(logits[i] - top);
    sum += out[i];
  }
  for (int i = 0; i < n; ++i) out[i] /= sum;
}

}  // namespace

Router::Router(const ModelConfig& c)
    : kind_(c.router),
      n_experts_(c.n_routed_experts),
      n_group_(c.n_group),
      per_group_(c.experts_per_group()),
      topk_group_(c.topk_group),
      top_k_(c.num_experts_per_tok),
      normalize_(c.norm_topk_prob),
      scale_(static_cast<float>(c.routed_scaling_factor)) {}

void Router::route(const float* logits, const float* bias, int moe_layer, const ExpertMask* mask, int32_t* experts,
                   float* weights, uint8_t* dispatch, float* scratch) const {
  float* score = scratch;                // what weights come from: sigmoid, softmax, or the (masked) logit
  float* choice = scratch + n_experts_;  // selection key, then -inf once taken or outside kept groups
  float* group_score = choice + n_experts_;
  float* logit = group_score + n_group_;  // the logits with the mask's reroute/max applied

  const bool reroute = mask != nullptr && mask->off_policy == OffPolicy::Reroute;
  const auto is_off = [&](int e) { return mask != nullptr && mask->is_off(moe_layer, e); };
  const auto is_on = [&](int e) { return mask != nullptr && mask->is_on(moe_layer, e); };

  if (kind_ == RouterKind::SigmoidGrouped) {
    for (int e = 0; e < n_experts_; ++e) {
      score[e] = sigmoid(logits[e]);
      choice[e] = bias != nullptr ? score[e] + bias[e] : score[e];
      // Only rerouting changes selection; drop and zero act after it.
      if (reroute && is_off(e)) choice[e] = -kInf;
      if (is_on(e)) choice[e] = kInf;
    }
  } else {
    // Softmax routers: the mask acts on the logit u. Reroute: u = -inf (no
    // probability mass); on with the max policy: u = the token's largest logit.
    float largest = -kInf;
    for (int e = 0; e < n_experts_; ++e) largest = std::max(largest, logits[e]);
    for (int e = 0; e < n_experts_; ++e) {
      logit[e] = logits[e];
      if (reroute && is_off(e)) logit[e] = -kInf;
      if (is_on(e) && mask->on_policy == OnPolicy::Max) logit[e] = largest;
    }
    if (kind_ == RouterKind::TopkSoftmax) {
      std::copy(logit, logit + n_experts_, score);
    } else {
      softmax_into(logit, n_experts_, score);
    }
    for (int e = 0; e < n_experts_; ++e) {
      choice[e] = kind_ == RouterKind::TopkSoftmax ? logit[e] : (logit[e] == -kInf ? -kInf : score[e]);
      if (is_on(e)) choice[e] = kInf;
    }
  }

  if (kind_ == RouterKind::SigmoidGrouped || kind_ == RouterKind::SoftmaxGroupMax) {
    // Group score: V3 sums a group's two best selection scores, V2 takes the
    // best. A group holding a forced expert scores +inf (a sum could give
    // inf - inf).
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
      group_score[g] = forced ? kInf : kind_ == RouterKind::SigmoidGrouped ? best + second : best;
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
      if (is_off(experts[i])) continue;
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

  if (kind_ == RouterKind::TopkSoftmax) {
    // Mixtral: softmax over the chosen logits.
    if (chosen > 0) softmax_into(weights, chosen, weights);
  } else if (normalize_ && top_k_ > 1) {
    float sum = 0.0f;
    for (int i = 0; i < chosen; ++i) sum += weights[i];
    if (kind_ == RouterKind::SigmoidGrouped) sum += 1e-20f;
    for (int i = 0; i < chosen; ++i) weights[i] = weights[i] / sum * scale_;
  } else {
    for (int i = 0; i < chosen; ++i) weights[i] *= scale_;
  }

  for (int i = 0; i < top_k_; ++i) dispatch[i] = experts[i] >= 0;
  if (mask == nullptr) return;
  if (kind_ == RouterKind::SigmoidGrouped && mask->on_policy == OnPolicy::Max) {
    float largest = 0.0f;
    for (int i = 0; i < chosen; ++i) largest = std::max(largest, weights[i]);
    for (int i = 0; i < chosen; ++i) {
      if (is_on(experts[i])) weights[i] = largest;
    }
  }
  for (int i = 0; i < chosen; ++i) {
    weights[i] *= mask->gain(moe_layer, experts[i]);
    if (mask->off_policy == OffPolicy::Zero && is_off(experts[i])) dispatch[i] = 0;
  }
}

}  // namespace mote
