// The model families mote runs. Each has one file in src/model/families/
// that says how it is put together from the shared parts (attention kind,
// router kind, rope layout, shared experts) while reading its config.json
// keys, refusing the options mote does not implement by name, and one table
// of its Hugging Face tensor names. A new family touches its file, the list
// in family.cpp, its tests and docs.
#pragma once

#include <string>
#include <string_view>

#include "mote/model/config.h"

namespace mote {

class ConfigReader;

// Tensor names, relative to "model.layers.L." unless said otherwise;
// null where the family has no such tensor. `experts` and its projections
// form "model.layers.L.<experts>.E.<gate>.weight".
struct TensorNames {
  const char* embed = "model.embed_tokens.weight";
  const char* final_norm = "model.norm.weight";
  const char* lm_head = "lm_head.weight";
  const char* input_norm = "input_layernorm.weight";
  const char* post_attention_norm = "post_attention_layernorm.weight";
  // MLA
  const char* q_a = "self_attn.q_a_proj.weight";
  const char* q_a_norm = "self_attn.q_a_layernorm.weight";
  const char* q_b = "self_attn.q_b_proj.weight";
  const char* kv_a = "self_attn.kv_a_proj_with_mqa.weight";
  const char* kv_a_norm = "self_attn.kv_a_layernorm.weight";
  const char* kv_b = "self_attn.kv_b_proj.weight";
  // MLA without q_lora_rank, and GQA
  const char* q = "self_attn.q_proj.weight";
  const char* k = "self_attn.k_proj.weight";
  const char* v = "self_attn.v_proj.weight";
  const char* q_norm = "self_attn.q_norm.weight";
  const char* k_norm = "self_attn.k_norm.weight";
  const char* o = "self_attn.o_proj.weight";
  // One sink logit per head (gpt-oss); q/k/v/o biases are the weights'
  // names with ".bias" for ".weight".
  const char* sinks = "self_attn.sinks";
  // Feed-forward blocks. With ModelConfig::experts_stacked, a layer's
  // experts are "model.layers.L.<experts>.<gate>_blocks" (gate and up
  // interleaved), "_scales" and "_bias", and the same for <down>.
  const char* dense = "mlp";
  const char* router = "mlp.gate.weight";
  const char* router_bias = "mlp.gate.e_score_correction_bias";
  const char* shared = "mlp.shared_experts";
  const char* experts = "mlp.experts";
  const char* gate = "gate_proj";
  const char* up = "up_proj";
  const char* down = "down_proj";
};

struct Family {
  std::string_view model_type;
  // Reads the family's keys into `c` (the common ones are read already).
  void (*read_config)(const ConfigReader& r, ModelConfig& c);
  TensorNames names;
};

// The family of a model_type, or null.
const Family* find_family(std::string_view model_type);
const Family& family_of(const ModelConfig& config);
// "deepseek_v3, deepseek_v2, ..." for messages.
std::string supported_families();

}  // namespace mote
