// What DeepSeek-V2 and V3 share: MLA attention with interleaved rope (and
// YaRN), first_k_dense_replace dense layers, shared experts.
#pragma once

#include "../config_reader.h"
#include "mote/model/config.h"

namespace mote::deepseek {

inline void read_mla_and_moe(const ConfigReader& r, ModelConfig& c) {
  const std::string& where = r.where();
  c.attention = AttentionKind::Mla;
  c.rope_neox = false;
  c.intermediate_size = r.get_int("intermediate_size", 1);
  c.moe_intermediate_size = r.get_int("moe_intermediate_size", 1);
  c.q_lora_rank = r.get_int_or("q_lora_rank", 0, 1);
  c.kv_lora_rank = r.get_int("kv_lora_rank", 1);
  c.qk_nope_head_dim = r.get_int("qk_nope_head_dim", 1);
  c.qk_rope_head_dim = r.get_int("qk_rope_head_dim", 2);
  if (c.qk_rope_head_dim % 2 != 0) fail("{}: key 'qk_rope_head_dim' = {} must be even", where, c.qk_rope_head_dim);
  c.v_head_dim = r.get_int("v_head_dim", 1);
  const int kv_heads = r.get_int_or("num_key_value_heads", c.num_attention_heads, 1);
  if (kv_heads != c.num_attention_heads) {
    fail("{}: num_key_value_heads {} differs from num_attention_heads {}; MLA models have one KV head per query head",
         where, kv_heads, c.num_attention_heads);
  }
  c.n_routed_experts = r.get_int("n_routed_experts", 1);
  c.n_shared_experts = r.get_int_or("n_shared_experts", 0, 0);
  c.num_experts_per_tok = r.get_int("num_experts_per_tok", 1);
  c.n_group = r.get_int_or("n_group", 1, 1);
  c.topk_group = r.get_int_or("topk_group", 1, 1);
  c.first_k_dense_replace = r.get_int_or("first_k_dense_replace", 0, 0);
  c.moe_layer_freq = r.get_int_or("moe_layer_freq", 1, 1);
  c.routed_scaling_factor = r.get_double_or("routed_scaling_factor", 1.0);
  if (!(c.routed_scaling_factor > 0.0 && c.routed_scaling_factor <= 1e6)) {
    fail("{}: key 'routed_scaling_factor' = {} must be in (0, 1e6]", where, c.routed_scaling_factor);
  }
  c.norm_topk_prob = r.get_bool_or("norm_topk_prob", false);
  c.scoring_func = r.get_string_or("scoring_func", "softmax");
  c.topk_method = r.get_string_or("topk_method", "greedy");
  c.num_nextn_predict_layers = r.get_int_or("num_nextn_predict_layers", 0, 0);
}

}  // namespace mote::deepseek
