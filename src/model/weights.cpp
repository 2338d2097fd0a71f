#include "mote/model/weights.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

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

constexpr const char* kScaleSuffix = "_scale_inv";

class Loader {
 public:
  Loader(const WeightStore& store, const ModelConfig& config) : store_(store), config_(config) {}

  Weight matrix(const std::string& name, int rows, int cols) {
    const TensorView& t = checked(name);
    if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != cols) {
      fail("tensor '{}' in {}: shape {} but config.json implies [{}, {}]", name, store_.describe(), t.shape_string(), rows, cols);
    }
    Weight w{t.dtype, rows, cols, t.data};
    const std::string scale_name = name + kScaleSuffix;
    const TensorView* scale = store_.find(scale_name);
    if (t.dtype != DType::F8_E4M3) {
      if (scale != nullptr) {
        fail("tensor '{}' in {}: a block scale for '{}', which is {}, not F8_E4M3", scale_name, store_.describe(), name, dtype_name(t.dtype));
      }
      return w;
    }
    if (!config_.fp8) {
      fail("tensor '{}' in {}: dtype F8_E4M3 but config.json has no quantization_config saying how to read it", name, store_.describe());
    }
    if (scale == nullptr) fail("tensor '{}' in {}: FP8 weight without its scale tensor '{}'", name, store_.describe(), scale_name);
    const int64_t scale_rows = (rows + kFp8Block - 1) / kFp8Block, scale_cols = (cols + kFp8Block - 1) / kFp8Block;
    if (scale->dtype != DType::F32) {
      fail("tensor '{}' in {}: dtype {} but FP8 block scales must be F32", scale_name, store_.describe(), dtype_name(scale->dtype));
    }
    if (scale->shape != std::vector<int64_t>{scale_rows, scale_cols}) {
      fail("tensor '{}' in {}: shape {} but the 128x128 blocks of '{}' [{}, {}] need [{}, {}]", scale_name, store_.describe(),
           scale->shape_string(), name, rows, cols, scale_rows, scale_cols);
    }
    for (int64_t i = 0; i < scale_rows * scale_cols; ++i) {
      float v;
      std::memcpy(&v, scale->data + 4 * i, 4);
      if (!std::isfinite(v)) {
        fail("tensor '{}' in {}: block [{}, {}] has the non-finite scale {}", scale_name, store_.describe(), i / scale_cols,
             i % scale_cols, v);
      }
    }
    w.scales = scale->data;
    fp8_.push_back({name, w});
    return w;
  }

  std::vector<float> vector(const std::string& name, int n) const {
    const TensorView& t = checked(name);
    if (t.shape.size() != 1 || t.shape[0] != n) {
      fail("tensor '{}' in {}: shape {} but config.json implies [{}]", name, store_.describe(), t.shape_string(), n);
    }
    if (t.dtype == DType::F8_E4M3) fail("tensor '{}' in {}: a 1-D tensor in F8_E4M3; only matrices may be FP8", name, store_.describe());
    return widen_all(Weight{t.dtype, 1, n, t.data});
  }

  // Every FP8 byte of the matrices loaded is checked once: e4m3 has no
  // infinities, and 0x7F / 0xFF (NaN) would poison every output they touch.
  // This also brings the pages in, as the first step would.
  void check_fp8_values() const {
    std::vector<std::string> errors(fp8_.size());
#pragma omp parallel for schedule(dynamic)
    for (size_t k = 0; k < fp8_.size(); ++k) {
      const Weight& w = fp8_[k].second;
      const auto* bytes = reinterpret_cast<const uint8_t*>(w.data);
      const size_t n = w.bytes();
      uint8_t any = 0;
      for (size_t i = 0; i < n; ++i) any |= static_cast<uint8_t>((bytes[i] & 0x7F) == 0x7F);
      if (any == 0) continue;
      for (size_t i = 0; i < n; ++i) {
        if (e4m3_is_nan(bytes[i])) {
          errors[k] = fmt::format("tensor '{}' in {}: FP8 byte 0x{:02x} at [{}, {}] encodes NaN", fp8_[k].first, store_.describe(),
                                  bytes[i], i / static_cast<size_t>(w.cols), i % static_cast<size_t>(w.cols));
          break;
        }
      }
    }
    for (const auto& e : errors) {
      if (!e.empty()) throw Error(e);
    }
  }

  FfnWeights ffn(int layer, const std::string& prefix, int hidden, int width) {
    FfnWeights f;
    f.gate = matrix(Names::layer(layer, (prefix + ".gate_proj.weight").c_str()), width, hidden);
    f.up = matrix(Names::layer(layer, (prefix + ".up_proj.weight").c_str()), width, hidden);
    f.down = matrix(Names::layer(layer, (prefix + ".down_proj.weight").c_str()), hidden, width);
    return f;
  }

 private:
  const TensorView& checked(const std::string& name) const {
    const TensorView& t = store_.get(name);
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16 && t.dtype != DType::F8_E4M3) {
      fail("tensor '{}' in {}: dtype {} is not supported (supported: F32, F16, BF16, and F8_E4M3 with block scales)", name,
           store_.describe(), dtype_name(t.dtype));
    }
    if (t.data == nullptr) fail("tensor '{}' in {}: its file is not mapped", name, store_.describe());
    return t;
  }

  const WeightStore& store_;
  const ModelConfig& config_;
  std::vector<std::pair<std::string, Weight>> fp8_;
};

// Decoder layer of a "model.layers.N...." name, or -1.
int layer_of(std::string_view name) {
  const std::string_view prefix = Names::kLayerPrefix;
  if (!name.starts_with(prefix)) return -1;
  int index = 0;
  const auto [end, ec] = std::from_chars(name.data() + prefix.size(), name.data() + name.size(), index);
  if (ec != std::errc() || end == name.data() + name.size() || *end != '.') return -1;
  return index;
}

}  // namespace

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  std::vector<TensorSpec> out;
  const int64_t hidden = c.hidden_size;
  const int64_t heads = c.num_attention_heads;
  // Projections inside decoder layers are FP8 in DeepSeek's FP8 checkpoints;
  // embeddings, lm_head, norms and the router stay as they are.
  const auto matrix = [&](std::string name, int64_t rows, int64_t cols, bool quantizable = true) {
    out.push_back({std::move(name), {rows, cols}, false, false, quantizable});
  };
  const auto norm = [&](std::string name, int64_t n) { out.push_back({std::move(name), {n}, true}); };
  const auto ffn = [&](int l, const std::string& prefix, int64_t width) {
    matrix(Names::layer(l, (prefix + ".gate_proj.weight").c_str()), width, hidden);
    matrix(Names::layer(l, (prefix + ".up_proj.weight").c_str()), width, hidden);
    matrix(Names::layer(l, (prefix + ".down_proj.weight").c_str()), hidden, width);
  };
  matrix(Names::kEmbed, c.vocab_size, hidden, false);
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
    matrix(Names::layer(l, "mlp.gate.weight"), c.n_routed_experts, hidden, false);
    out.push_back({Names::layer(l, "mlp.gate.e_score_correction_bias"), {c.n_routed_experts}, false, true});
    if (c.n_shared_experts > 0) ffn(l, "mlp.shared_experts", static_cast<int64_t>(c.moe_intermediate_size) * c.n_shared_experts);
    for (int e = 0; e < c.n_routed_experts; ++e) ffn(l, Names::expert(e), c.moe_intermediate_size);
  }
  norm(Names::kFinalNorm, hidden);
  if (!c.tie_word_embeddings) matrix(Names::kLmHead, c.vocab_size, hidden, false);
  return out;
}

ModelWeights load_model_weights(const WeightStore& store, const ModelConfig& c, const ExpertFilter& load_expert, bool shared_parts) {
  Loader load(store, c);
  const int hidden = c.hidden_size;
  const int heads = c.num_attention_heads;

  // Layers beyond the config's count (other than DeepSeek's multi-token
  // prediction layers) mean config.json and the weights disagree.
  for (const auto& [name, view] : store.all()) {
    const int index = layer_of(name);
    if (index >= c.num_hidden_layers + c.num_nextn_predict_layers) {
      fail("tensor '{}' in {} belongs to layer {} but config.json has num_hidden_layers {}", name, store.describe(), index,
           c.num_hidden_layers);
    }
  }

  ModelWeights w;
  int moe_index = 0;
  if (!shared_parts) {
    // An expert shard holds its routed experts and nothing else.
    for (int l = 0; l < c.num_hidden_layers; ++l) {
      LayerWeights lw;
      lw.is_moe = c.is_moe_layer(l);
      if (lw.is_moe) {
        lw.experts.resize(static_cast<size_t>(c.n_routed_experts));
        for (int e = 0; e < c.n_routed_experts; ++e) {
          if (load_expert(moe_index, e)) lw.experts[e] = load.ffn(l, Names::expert(e), hidden, c.moe_intermediate_size);
        }
        ++moe_index;
      }
      w.layers.push_back(std::move(lw));
    }
    load.check_fp8_values();
    return w;
  }
  w.embed = load.matrix(Names::kEmbed, c.vocab_size, hidden);
  w.final_norm = load.vector(Names::kFinalNorm, hidden);
  if (c.tie_word_embeddings && store.find(Names::kLmHead) == nullptr) {
    w.lm_head = w.embed;
  } else {
    w.lm_head = load.matrix(Names::kLmHead, c.vocab_size, hidden);
  }

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
  load.check_fp8_values();
  return w;
}

bool tensor_used(const ModelConfig& c, const ExpertFilter& load_expert, bool shared_parts, std::string_view name) {
  const int layer = layer_of(name);
  if (layer < 0) return shared_parts;
  if (layer >= c.num_hidden_layers) return false;  // multi-token prediction: never used for generation
  const std::string_view experts = ".mlp.experts.";
  const size_t at = name.find(experts);
  if (at == std::string_view::npos || !c.is_moe_layer(layer)) return shared_parts;
  if (!load_expert) return true;
  int expert = 0;
  const char* digits = name.data() + at + experts.size();
  const auto [end, ec] = std::from_chars(digits, name.data() + name.size(), expert);
  if (ec != std::errc()) return true;
  const auto moe = c.moe_layers();
  const int moe_layer = static_cast<int>(std::find(moe.begin(), moe.end(), layer) - moe.begin());
  return load_expert(moe_layer, expert);
}

}  // namespace mote
