// What the GQA families share: num_key_value_heads, head_dim (default
// hidden / heads), neox rope (without scaling, but where the family reads
// rope_scaling itself), every layer an MoE layer and no shared experts.
#pragma once

#include "../config_reader.h"
#include "mote/model/config.h"

namespace mote::gqa {

enum class RopeScaling { Refused, AsConfigured };

inline void read_attention(const ConfigReader& r, ModelConfig& c, RopeScaling scaling = RopeScaling::Refused) {
  c.attention = AttentionKind::Gqa;
  c.rope_neox = true;
  c.num_key_value_heads = r.get_int_or("num_key_value_heads", c.num_attention_heads, 1);
  c.head_dim = r.get_int_or("head_dim", c.hidden_size / c.num_attention_heads, 2);
  c.first_k_dense_replace = 0;
  c.n_shared_experts = 0;
  c.n_group = 1;
  c.topk_group = 1;
  c.routed_scaling_factor = 1.0;
  if (scaling == RopeScaling::Refused && r.find("rope_scaling") != nullptr)
    fail("{}: rope_scaling is not supported for {} (only null)", r.where(), c.model_type);
}

}  // namespace mote::gqa
