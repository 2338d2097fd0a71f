// gpt-oss (model_type gpt_oss, OpenAI's gpt-oss-20b and -120b): GQA with
// q/k/v/o biases and a learned sink logit per head, layers alternating
// between a sliding window and full attention (layer_types), neox rope with
// YaRN as configured, every layer sparse. The router is a Linear with bias:
// the top-k of its logits, softmax over those k. Each layer's experts are
// stored stacked in MXFP4 (mlp.experts.gate_up_proj_blocks/_scales/_bias,
// down_proj_*), gate and up rows interleaved, with the clamped SwiGLU.
#include "gqa_common.h"
#include "mote/model/family.h"

namespace mote {
namespace {

constexpr float kSwigluAlpha = 1.702f;  // fixed in the reference code, not a config key

void read_config(const ConfigReader& r, ModelConfig& c) {
  gqa::read_attention(r, c, gqa::RopeScaling::AsConfigured);  // YaRN: config.cpp reads rope_scaling
  c.qk_norm = QkNorm::None;
  c.attention_bias = r.get_bool_or("attention_bias", true);
  c.attention_sinks = true;

  c.sliding_window = r.get_int_or("sliding_window", 0, 0);
  c.sliding_layers.assign(static_cast<size_t>(c.num_hidden_layers), 0);
  if (const auto* types = r.find("layer_types")) {
    if (!types->is_array() || types->size() != static_cast<size_t>(c.num_hidden_layers)) {
      fail("{}: layer_types must list one type for each of the {} layers", r.where(), c.num_hidden_layers);
    }
    for (size_t l = 0; l < types->size(); ++l) {
      const auto& t = (*types)[l];
      if (t == "sliding_attention") {
        c.sliding_layers[l] = 1;
      } else if (t != "full_attention") {
        fail("{}: layer_types[{}] = {} is not supported (supported: sliding_attention, full_attention)", r.where(), l,
             t.dump());
      }
    }
  } else {
    // The reference's default: even layers slide, odd ones see everything.
    for (size_t l = 0; l < c.sliding_layers.size(); l += 2) c.sliding_layers[l] = 1;
  }
  bool any_sliding = false;
  for (const uint8_t s : c.sliding_layers) any_sliding |= s != 0;
  if (any_sliding && c.sliding_window < 1)
    fail("{}: layer_types has sliding_attention layers but sliding_window is not a positive integer", r.where());

  c.router = RouterKind::TopkSoftmax;
  c.router_logit_bias = true;
  c.n_routed_experts = r.get_int("num_local_experts", 1);
  c.num_experts_per_tok = r.get_int("num_experts_per_tok", 1);
  const int per_token = r.get_int_or("experts_per_token", c.num_experts_per_tok, 1);
  if (per_token != c.num_experts_per_tok) {
    fail("{}: experts_per_token {} and num_experts_per_tok {} disagree", r.where(), per_token, c.num_experts_per_tok);
  }
  c.moe_intermediate_size = r.get_int("intermediate_size", 1);
  c.intermediate_size = c.moe_intermediate_size;
  c.norm_topk_prob = true;
  c.experts_stacked = true;
  c.swiglu_limit = static_cast<float>(r.get_double_or("swiglu_limit", 7.0));
  if (!(c.swiglu_limit > 0.0f)) fail("{}: swiglu_limit {} must be positive", r.where(), c.swiglu_limit);
  c.swiglu_alpha = kSwigluAlpha;
  // MXFP4 packs 32 values of a row per block: both projections' inner sizes.
  if (c.hidden_size % 32 != 0 || c.moe_intermediate_size % 32 != 0) {
    fail("{}: hidden_size {} and intermediate_size {} must be multiples of 32 (MXFP4 blocks)", r.where(), c.hidden_size,
         c.moe_intermediate_size);
  }
}

TensorNames names() {
  TensorNames n;
  n.router = "mlp.router.weight";
  n.router_bias = "mlp.router.bias";
  n.experts = "mlp.experts";
  n.gate = "gate_up_proj";
  n.up = nullptr;
  n.down = "down_proj";
  n.q_norm = nullptr;
  n.k_norm = nullptr;
  return n;
}

}  // namespace

extern const Family kGptOssFamily{"gpt_oss", read_config, names()};

}  // namespace mote
