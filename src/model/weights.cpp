#include "mote/model/weights.h"

#include <charconv>

#include <fmt/format.h>

#include "mote/util/error.h"

namespace mote {
namespace {

// Hugging Face tensor names of the DeepSeek-V3 family. Every naming quirk of
// the family is here and nowhere else.
struct Names {
  static std::string layer(int l, const char* rest) { return fmt::format("model.layers.{}.{}", l, rest); }
  static std::string expert(int e) { return fmt::format("mlp.experts.{}", e); }
  static constexpr const char* kEmbed = "model.embed_tokens.weight";
  static constexpr const char* kFinalNorm = "model.norm.weight";
  static constexpr const char* kLmHead = "lm_head.weight";
  static constexpr const char* kLayerPrefix = "model.layers.";
};

class Loader {
 public:
  Loader(const WeightStore& store) : store_(store) {}

  Weight matrix(const std::string& name, int rows, int cols) const {
    const TensorView& t = checked(name);
    if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != cols) {
      fail("tensor '{}' in {}: shape {} but config.json implies [{}, {}]", name, store_.describe(), t.shape_string(), rows, cols);
    }
    return {t.dtype, rows, cols, t.data};
  }

  std::vector<float> vector(const std::string& name, int n) const {
    const TensorView& t = checked(name);
    if (t.shape.size() != 1 || t.shape[0] != n) {
      fail("tensor '{}' in {}: shape {} but config.json implies [{}]", name, store_.describe(), t.shape_string(), n);
    }
    return widen_all(Weight{t.dtype, 1, n, t.data});
  }

  FfnWeights ffn(int layer, const std::string& prefix, int hidden, int width) const {
    FfnWeights f;
    f.gate = matrix(Names::layer(layer, (prefix + ".gate_proj.weight").c_str()), width, hidden);
    f.up = matrix(Names::layer(layer, (prefix + ".up_proj.weight").c_str()), width, hidden);
    f.down = matrix(Names::layer(layer, (prefix + ".down_proj.weight").c_str()), hidden, width);
    return f;
  }

 private:
  const TensorView& checked(const std::string& name) const {
    const TensorView& t = store_.get(name);
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16) {
      fail("tensor '{}' in {}: dtype {} is not supported (supported: F32, F16, BF16)", name, store_.describe(), dtype_name(t.dtype));
    }
    return t;
  }

  const WeightStore& store_;
};

}  // namespace

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  std::vector<TensorSpec> out;
  const int64_t hidden = c.hidden_size;
  const int64_t heads = c.num_attention_heads;
  const auto matrix = [&](std::string name, int64_t rows, int64_t cols) { out.push_back({std::move(name), {rows, cols}}); };
  const auto norm = [&](std::string name, int64_t n) { out.push_back({std::move(name), {n}, true}); };
  const auto ffn = [&](int l, const std::string& prefix, int64_t width) {
    matrix(Names::layer(l, (prefix + ".gate_proj.weight").c_str()), width, hidden);
    matrix(Names::layer(l, (prefix + ".up_proj.weight").c_str()), width, hidden);
    matrix(Names::layer(l, (prefix + ".down_proj.weight").c_str()), hidden, width);
  };
  matrix(Names::kEmbed, c.vocab_size, hidden);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    norm(Names::layer(l, "input_layernorm.weight"), hidden);
    norm(Names::layer(l, "post_attention_layernorm.weight"), hidden);
    const int64_t q_out = heads * c.qk_head_dim();
    if (c.q_lora_rank > 0) {
      matrix(Names::layer(l, "self_attn.q_a_proj.weight"), c.q_lora_rank, hidden);
      norm(Names::layer(l, "self_attn.q_a_layernorm.weight"), c.q_lora_rank);
      matrix(Names::layer(l, "self_attn.q_b_proj.weight"), q_out, c.q_lora_rank);
    } else {
      matrix(Names::layer(l, "self_attn.q_proj.weight"), q_out, hidden);
    }
    matrix(Names::layer(l, "self_attn.kv_a_proj_with_mqa.weight"), c.kv_lora_rank + c.qk_rope_head_dim, hidden);
    norm(Names::layer(l, "self_attn.kv_a_layernorm.weight"), c.kv_lora_rank);
    matrix(Names::layer(l, "self_attn.kv_b_proj.weight"), heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
    matrix(Names::layer(l, "self_attn.o_proj.weight"), hidden, heads * c.v_head_dim);
    if (!c.is_moe_layer(l)) {
      ffn(l, "mlp", c.intermediate_size);
      continue;
    }
    matrix(Names::layer(l, "mlp.gate.weight"), c.n_routed_experts, hidden);
    out.push_back({Names::layer(l, "mlp.gate.e_score_correction_bias"), {c.n_routed_experts}, false, true});
    if (c.n_shared_experts > 0) ffn(l, "mlp.shared_experts", static_cast<int64_t>(c.moe_intermediate_size) * c.n_shared_experts);
    for (int e = 0; e < c.n_routed_experts; ++e) ffn(l, Names::expert(e), c.moe_intermediate_size);
  }
  norm(Names::kFinalNorm, hidden);
  if (!c.tie_word_embeddings) matrix(Names::kLmHead, c.vocab_size, hidden);
  return out;
}

ModelWeights load_model_weights(const WeightStore& store, const ModelConfig& c, const ExpertFilter& load_expert) {
  const Loader load(store);
  const int hidden = c.hidden_size;
  const int heads = c.num_attention_heads;

  // Layers beyond the config's count (other than DeepSeek's multi-token
  // prediction layers) mean config.json and the weights disagree.
  for (const auto& [name, view] : store.all()) {
    if (name.rfind(Names::kLayerPrefix, 0) != 0) continue;
    const char* digits = name.c_str() + std::char_traits<char>::length(Names::kLayerPrefix);
    int index = 0;
    const auto [end, ec] = std::from_chars(digits, name.c_str() + name.size(), index);
    if (ec != std::errc() || *end != '.') continue;
    if (index >= c.num_hidden_layers + c.num_nextn_predict_layers) {
      fail("tensor '{}' in {} belongs to layer {} but config.json has num_hidden_layers {}", name, store.describe(), index,
           c.num_hidden_layers);
    }
  }

  ModelWeights w;
  w.embed = load.matrix(Names::kEmbed, c.vocab_size, hidden);
  w.final_norm = load.vector(Names::kFinalNorm, hidden);
  if (c.tie_word_embeddings && store.find(Names::kLmHead) == nullptr) {
    w.lm_head = w.embed;
  } else {
    w.lm_head = load.matrix(Names::kLmHead, c.vocab_size, hidden);
  }

  int moe_index = 0;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    LayerWeights lw;
    lw.input_norm = load.vector(Names::layer(l, "input_layernorm.weight"), hidden);
    lw.post_attention_norm = load.vector(Names::layer(l, "post_attention_layernorm.weight"), hidden);

    AttentionWeights& a = lw.attention;
    const int q_out = heads * c.qk_head_dim();
    if (c.q_lora_rank > 0) {
      a.q_a = load.matrix(Names::layer(l, "self_attn.q_a_proj.weight"), c.q_lora_rank, hidden);
      a.q_a_norm = load.vector(Names::layer(l, "self_attn.q_a_layernorm.weight"), c.q_lora_rank);
      a.q_b = load.matrix(Names::layer(l, "self_attn.q_b_proj.weight"), q_out, c.q_lora_rank);
    } else {
      a.q = load.matrix(Names::layer(l, "self_attn.q_proj.weight"), q_out, hidden);
    }
    a.kv_a = load.matrix(Names::layer(l, "self_attn.kv_a_proj_with_mqa.weight"), c.kv_lora_rank + c.qk_rope_head_dim, hidden);
    a.kv_a_norm = load.vector(Names::layer(l, "self_attn.kv_a_layernorm.weight"), c.kv_lora_rank);
    a.kv_b = load.matrix(Names::layer(l, "self_attn.kv_b_proj.weight"), heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
    a.o = load.matrix(Names::layer(l, "self_attn.o_proj.weight"), hidden, heads * c.v_head_dim);

    lw.is_moe = c.is_moe_layer(l);
    if (!lw.is_moe) {
      lw.dense = load.ffn(l, "mlp", hidden, c.intermediate_size);
    } else {
      lw.router.gate = load.matrix(Names::layer(l, "mlp.gate.weight"), c.n_routed_experts, hidden);
      lw.router.bias = load.vector(Names::layer(l, "mlp.gate.e_score_correction_bias"), c.n_routed_experts);
      if (c.n_shared_experts > 0) lw.shared = load.ffn(l, "mlp.shared_experts", hidden, c.moe_intermediate_size * c.n_shared_experts);
      lw.experts.resize(static_cast<size_t>(c.n_routed_experts));
      for (int e = 0; e < c.n_routed_experts; ++e) {
        if (!load_expert(moe_index, e)) continue;
        lw.experts[e] = load.ffn(l, Names::expert(e), hidden, c.moe_intermediate_size);
      }
      ++moe_index;
    }
    w.layers.push_back(std::move(lw));
  }
  return w;
}

}  // namespace mote
