// Mixtral (model_type mixtral): GQA without q/k norms, neox rope, every
// layer sparse (block_sparse_moe), no shared expert; router: the top-k
// logits, softmax over those k. Experts name their projections w1 (gate),
// w3 (up) and w2 (down).
#include "gqa_common.h"
#include "mote/model/family.h"

namespace mote {
namespace {

void read_config(const ConfigReader& r, ModelConfig& c) {
  gqa::read_attention(r, c);
  c.qk_norm = QkNorm::None;
  c.router = RouterKind::TopkSoftmax;
  c.n_routed_experts = r.get_int("num_local_experts", 1);
  c.num_experts_per_tok = r.get_int("num_experts_per_tok", 1);
  c.moe_intermediate_size = r.get_int("intermediate_size", 1);
  c.intermediate_size = c.moe_intermediate_size;
  c.norm_topk_prob = true;
  if (r.find("sliding_window") != nullptr)
    fail("{}: sliding_window {} is not supported (supported: null)", r.where(), r.find("sliding_window")->dump());
}

TensorNames names() {
  TensorNames n;
  n.router = "block_sparse_moe.gate.weight";
  n.router_bias = nullptr;
  n.experts = "block_sparse_moe.experts";
  n.gate = "w1";
  n.up = "w3";
  n.down = "w2";
  n.q_norm = nullptr;
  n.k_norm = nullptr;
  return n;
}

}  // namespace

extern const Family kMixtralFamily{"mixtral", read_config, names()};

}  // namespace mote
