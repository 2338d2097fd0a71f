// Qwen3-MoE (model_type qwen3_moe): GQA with RMSNorm of q and k per head
// before rope, neox rope, every layer sparse, no shared expert; router:
// softmax over all experts, top-k, renormalised with norm_topk_prob.
#include "gqa_common.h"
#include "mote/model/family.h"

namespace mote {
namespace {

void read_config(const ConfigReader& r, ModelConfig& c) {
  gqa::read_attention(r, c);
  c.qk_norm = QkNorm::PerHead;
  c.router = RouterKind::SoftmaxTopk;
  c.n_routed_experts = r.get_int("num_experts", 1);
  c.num_experts_per_tok = r.get_int("num_experts_per_tok", 1);
  c.moe_intermediate_size = r.get_int("moe_intermediate_size", 1);
  c.intermediate_size = r.get_int_or("intermediate_size", c.moe_intermediate_size, 1);
  c.norm_topk_prob = r.get_bool_or("norm_topk_prob", false);
  if (r.get_bool_or("use_sliding_window", false))
    fail("{}: use_sliding_window true is not supported (sliding-window attention)", r.where());
  if (r.get_int_or("decoder_sparse_step", 1, 0) != 1) {
    fail("{}: decoder_sparse_step {} is not supported (supported: 1, every layer sparse)", r.where(),
         r.get_int_or("decoder_sparse_step", 1, 0));
  }
  if (const auto* dense = r.find("mlp_only_layers"); dense != nullptr && !(dense->is_array() && dense->empty())) {
    fail("{}: mlp_only_layers {} is not supported (supported: [], every layer sparse)", r.where(), dense->dump());
  }
}

}  // namespace

extern const Family kQwen3MoeFamily{"qwen3_moe", read_config, TensorNames{}};

}  // namespace mote
