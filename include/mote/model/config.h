// The model's hyper-parameters, read from config.json in one place and
// printed at start. Everything the forward pass needs to know about the
// architecture lives here; options mote does not implement are refused by
// name when the file is read, not discovered half-way through a job.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mote/ops/rope.h"

namespace mote {

// DeepSeek-V3/R1's FP8 weights: e4m3 values with one float32 scale per
// block of block_rows x block_cols (w = fp8 * scale_inv). The only scheme
// accepted is the one DeepSeek ships (dynamic activations, 128 x 128).
struct Fp8Quantization {
  int block_rows = 128;
  int block_cols = 128;
};

// gpt-oss's experts (quant_method mxfp4): every expert's projections stored
// as MXFP4 blocks and e8m0 scales, the other tensors in bf16.
struct Mxfp4Quantization {};

// How a family is put together from the shared parts (filled in by the
// family's file in src/model/families/).
enum class AttentionKind { Mla, Gqa };       // latent attention, or grouped-query/multi-head
enum class QkNorm { None, PerHead, Whole };  // GQA: RMSNorm of q and k per head, or over the whole projection
enum class RouterKind {
  SigmoidGrouped,   // DeepSeek-V3: sigmoid + bias, groups scored by their top-2 sum, top-k
  SoftmaxTopk,      // softmax over all experts, top-k (DeepSeek-V2 greedy, Qwen3-MoE, OLMoE)
  SoftmaxGroupMax,  // DeepSeek-V2 group_limited_greedy: groups scored by their best softmax score
  TopkSoftmax,      // Mixtral: top-k of the logits, softmax over the chosen k
};

struct ModelConfig {
  std::string model_type;
  AttentionKind attention = AttentionKind::Mla;
  RouterKind router = RouterKind::SigmoidGrouped;
  QkNorm qk_norm = QkNorm::None;
  bool rope_neox = false;    // rotate halves (i, i + d/2); DeepSeek rotates interleaved pairs (2i, 2i+1)
  bool router_bias = false;  // e_score_correction_bias present (selection only)
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;      // dense layers' FFN width
  int moe_intermediate_size = 0;  // each routed expert's FFN width
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  // GQA/MHA: key-value heads and the width of every head.
  int num_key_value_heads = 0;
  int head_dim = 0;

  // MLA. q_lora_rank 0 means queries are projected directly (q_proj).
  int q_lora_rank = 0;
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;

  // MoE and router.
  int n_routed_experts = 0;
  int n_shared_experts = 0;
  int num_experts_per_tok = 0;
  int n_group = 1;
  int topk_group = 1;
  int first_k_dense_replace = 0;
  int num_nextn_predict_layers = 0;  // multi-token-prediction layers: loaded by nobody, tolerated in the files
  int moe_layer_freq = 1;
  double routed_scaling_factor = 1.0;
  bool norm_topk_prob = true;
  std::string scoring_func;
  std::string topk_method;

  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int max_position_embeddings = 0;
  std::optional<YarnScaling> yarn;
  bool tie_word_embeddings = false;
  std::vector<int> eos_token_ids;
  int bos_token_id = -1;
  std::optional<Fp8Quantization> fp8;  // set by quantization_config
  std::optional<Mxfp4Quantization> mxfp4;

  // gpt-oss's attention: q/k/v/o biases, one learned sink logit per head
  // (an extra softmax column, then dropped), and layers that attend to the
  // last `sliding_window` positions only.
  bool attention_bias = false;
  bool attention_sinks = false;
  int sliding_window = 0;
  std::vector<uint8_t> sliding_layers;  // per decoder layer; empty: none

  // gpt-oss's MoE block: the router a Linear with bias (the bias is part of
  // the logits); each layer's experts stored stacked, gate and up rows
  // interleaved in one gate_up_proj, with biases; the clamped SwiGLU
  // (up + 1) * g * sigmoid(alpha g), g = min(gate, limit), up within +-limit.
  bool router_logit_bias = false;
  bool experts_stacked = false;
  float swiglu_limit = 0.0f;  // 0: the plain SwiGLU silu(gate) * up
  float swiglu_alpha = 1.0f;

  int qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Dimensions rope rotates: MLA's rope part, or a whole GQA head.
  int rope_dim() const { return attention == AttentionKind::Mla ? qk_rope_head_dim : head_dim; }
  RopeParams rope() const { return {rope_dim(), rope_theta, rope_neox, yarn}; }
  // Floats per token, layer and sequence in the KV cache.
  int kv_entry_size() const {
    return attention == AttentionKind::Mla ? kv_lora_rank + qk_rope_head_dim : 2 * num_key_value_heads * head_dim;
  }
  bool is_moe_layer(int layer) const;
  bool is_sliding_layer(int layer) const {
    return !sliding_layers.empty() && sliding_layers[static_cast<size_t>(layer)] != 0;
  }
  // Decoder-layer index of each MoE layer, in order.
  std::vector<int> moe_layers() const;
  int experts_per_group() const { return n_routed_experts / n_group; }
  // Softmax scale of attention, including YaRN's mscale correction.
  float attention_scale() const;

  std::string summary() const;
};

// Reads and validates `path` (a config.json). Errors name the file and key.
ModelConfig load_model_config(const std::filesystem::path& path);
ModelConfig parse_model_config(const nlohmann::json& json, const std::string& where);

}  // namespace mote
