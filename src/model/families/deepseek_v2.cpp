// DeepSeek-V2 and V2-Lite (model_type deepseek_v2): V3's MLA, rope and
// shared experts, with a softmax router: top-k of the softmax scores
// (topk_method greedy), or only within the topk_group groups whose best
// score is highest (group_limited_greedy; V3 sums a group's top two
// instead). Weights are the scores, renormalised only with norm_topk_prob,
// times routed_scaling_factor. No e_score_correction_bias.
#include "deepseek_common.h"
#include "mote/model/family.h"

namespace mote {
namespace {

void read_config(const ConfigReader& r, ModelConfig& c) {
  deepseek::read_mla_and_moe(r, c);
  c.router_bias = false;
  if (c.scoring_func != "softmax")
    fail("{}: scoring_func '{}' is not supported for deepseek_v2 (supported: softmax)", r.where(), c.scoring_func);
  if (c.topk_method == "greedy") {
    c.router = RouterKind::SoftmaxTopk;
    c.n_group = 1;
    c.topk_group = 1;
  } else if (c.topk_method == "group_limited_greedy") {
    c.router = RouterKind::SoftmaxGroupMax;
  } else {
    fail("{}: topk_method '{}' is not supported for deepseek_v2 (supported: greedy, group_limited_greedy)", r.where(),
         c.topk_method);
  }
}

TensorNames names() {
  TensorNames n;
  n.router_bias = nullptr;
  return n;
}

}  // namespace

extern const Family kDeepseekV2Family{"deepseek_v2", read_config, names()};

}  // namespace mote
