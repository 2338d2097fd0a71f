// OLMoE (model_type olmoe): multi-head attention with one RMSNorm over the
// whole q projection and one over the whole k projection (not per head),
// neox rope, every layer sparse, no shared expert; router: softmax over all
// experts, top-k, weights not renormalised unless norm_topk_prob.
#include "gqa_common.h"
#include "mote/model/family.h"

namespace mote {
namespace {

void read_config(const ConfigReader& r, ModelConfig& c) {
  gqa::read_attention(r, c);
  c.qk_norm = QkNorm::Whole;
  c.router = RouterKind::SoftmaxTopk;
  c.n_routed_experts = r.get_int("num_experts", 1);
  c.num_experts_per_tok = r.get_int("num_experts_per_tok", 1);
  c.moe_intermediate_size = r.get_int("intermediate_size", 1);
  c.intermediate_size = c.moe_intermediate_size;
  c.norm_topk_prob = r.get_bool_or("norm_topk_prob", false);
  if (r.find("clip_qkv") != nullptr) fail("{}: clip_qkv is not supported (supported: null)", r.where());
}

}  // namespace

extern const Family kOlmoeFamily{"olmoe", read_config, TensorNames{}};

}  // namespace mote
