#include "mote/model/config.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config_reader.h"
#include "mote/io/json_file.h"
#include "mote/model/family.h"
#include "mote/util/error.h"

namespace mote {
namespace {

using nlohmann::json;
using Reader = ConfigReader;

// quantization_config: accepted only as DeepSeek ships FP8 checkpoints and
// gpt-oss its MXFP4 experts; anything else is refused by name rather than
// misread.
void parse_quantization(const json& q, const std::string& where, ModelConfig& c) {
  constexpr const char* kSupported =
      "supported: quant_method fp8 (fmt e4m3, activation_scheme dynamic, weight_block_size [128, 128]), or mxfp4 "
      "(gpt_oss)";
  if (!q.is_object()) fail("{}: key 'quantization_config' must be an object", where);
  const Reader r(q, where + " quantization_config");
  const std::string method = r.get_string_or("quant_method", "");
  if (method == "mxfp4") {
    if (c.model_type != "gpt_oss")
      fail("{}: quantization_config quant_method mxfp4 is supported for gpt_oss only, not {}", where, c.model_type);
    for (const auto& [key, value] : q.items()) {
      if (key == "modules_to_not_convert") {
        // Which tensors stay unquantized: the loader reads each tensor's own dtype.
        if (!value.is_array() || !std::all_of(value.begin(), value.end(), [](const json& v) { return v.is_string(); }))
          fail("{}: quantization_config modules_to_not_convert must be a list of names", where);
      } else if (key != "quant_method") {
        fail("{}: quantization_config key '{}' is not supported ({})", where, key, kSupported);
      }
    }
    c.mxfp4 = Mxfp4Quantization{};
    return;
  }
  if (method != "fp8")
    fail("{}: quantization_config quant_method '{}' is not supported ({})", where, method, kSupported);
  const std::string fmt_name = r.get_string_or("fmt", "e4m3");
  if (fmt_name != "e4m3") fail("{}: quantization_config fmt '{}' is not supported ({})", where, fmt_name, kSupported);
  const std::string scheme = r.get_string_or("activation_scheme", "dynamic");
  if (scheme != "dynamic")
    fail("{}: quantization_config activation_scheme '{}' is not supported ({})", where, scheme, kSupported);
  const json* block = r.find("weight_block_size");
  if (block == nullptr) fail("{}: quantization_config has no 'weight_block_size' ({})", where, kSupported);
  if (!block->is_array() || block->size() != 2 || !(*block)[0].is_number_integer() ||
      !(*block)[1].is_number_integer() || (*block)[0].get<int64_t>() != 128 || (*block)[1].get<int64_t>() != 128) {
    fail("{}: quantization_config weight_block_size {} is not supported ({})", where, block->dump(), kSupported);
  }
  for (const auto& [key, value] : q.items()) {
    if (key != "quant_method" && key != "fmt" && key != "activation_scheme" && key != "weight_block_size") {
      fail("{}: quantization_config key '{}' is not supported ({})", where, key, kSupported);
    }
  }
  c.fp8 = Fp8Quantization{};
}

// Consistency of what every family's reader filled in.
void check_moe(const ModelConfig& c, const std::string& where) {
  if (c.num_experts_per_tok > c.n_routed_experts) {
    fail("{}: num_experts_per_tok {} exceeds the {} routed experts", where, c.num_experts_per_tok, c.n_routed_experts);
  }
  if (c.n_routed_experts % c.n_group != 0) {
    fail("{}: n_routed_experts {} is not a multiple of n_group {}", where, c.n_routed_experts, c.n_group);
  }
  if (c.topk_group > c.n_group) fail("{}: topk_group {} exceeds n_group {}", where, c.topk_group, c.n_group);
  if (c.router == RouterKind::SigmoidGrouped && c.experts_per_group() < 2) {
    fail("{}: each of the n_group groups needs at least 2 experts for group scores", where);
  }
  if (c.num_experts_per_tok > c.topk_group * c.experts_per_group()) {
    fail("{}: num_experts_per_tok {} exceeds the {} experts of topk_group {} groups", where, c.num_experts_per_tok,
         c.topk_group * c.experts_per_group(), c.topk_group);
  }
  if (c.first_k_dense_replace > c.num_hidden_layers) {
    fail("{}: first_k_dense_replace {} exceeds num_hidden_layers {}", where, c.first_k_dense_replace,
         c.num_hidden_layers);
  }
  if (c.attention == AttentionKind::Gqa) {
    if (c.num_attention_heads % c.num_key_value_heads != 0) {
      fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", where, c.num_attention_heads,
           c.num_key_value_heads);
    }
    if (c.head_dim % 2 != 0) fail("{}: head_dim {} must be even for rope", where, c.head_dim);
  }
}

double yarn_get_mscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

bool ModelConfig::is_moe_layer(int layer) const {
  return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
}

std::vector<int> ModelConfig::moe_layers() const {
  std::vector<int> out;
  for (int l = 0; l < num_hidden_layers; ++l) {
    if (is_moe_layer(l)) out.push_back(l);
  }
  return out;
}

float ModelConfig::attention_scale() const {
  double scale = 1.0 / std::sqrt(static_cast<double>(attention == AttentionKind::Mla ? qk_head_dim() : head_dim));
  if (yarn && yarn->mscale_all_dim != 0.0) {
    const double m = yarn_get_mscale(yarn->factor, yarn->mscale_all_dim);
    scale *= m * m;
  }
  return static_cast<float>(scale);
}

// The parse proper; parse_model_config() turns library exceptions into errors.
static ModelConfig parse_model_config_checked(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) fail("{}: expected a JSON object", where);
  const Reader r(j, where);
  ModelConfig c;
  c.model_type = r.get_string_or("model_type", "");
  const Family* family = find_family(c.model_type);
  if (family == nullptr)
    fail("{}: model_type '{}' is not supported (supported: {})", where, c.model_type, supported_families());
  if (const auto* q = r.find("quantization_config")) parse_quantization(*q, where, c);
  c.vocab_size = r.get_int("vocab_size", 1);
  c.hidden_size = r.get_int("hidden_size", 1);
  c.num_hidden_layers = r.get_int("num_hidden_layers", 1);
  c.num_attention_heads = r.get_int("num_attention_heads", 1);
  const std::string act = r.get_string_or("hidden_act", "silu");
  if (act != "silu") fail("{}: hidden_act '{}' is not supported (supported: silu)", where, act);
  family->read_config(r, c);
  if (r.get_bool_or("attention_bias", false) && !c.attention_bias)
    fail("{}: attention_bias true is not supported ({} has no attention biases)", where, c.model_type);
  if (c.experts_stacked && !c.mxfp4) {
    fail(
        "{}: {} without quantization_config quant_method mxfp4 is not supported (experts are read as the published "
        "checkpoints store them, in MXFP4)",
        where, c.model_type);
  }
  check_moe(c, where);

  c.rms_norm_eps = r.get_double_or("rms_norm_eps", 1e-6);
  if (!(c.rms_norm_eps > 0.0 && c.rms_norm_eps < 1.0))
    fail("{}: key 'rms_norm_eps' = {} must be in (0, 1)", where, c.rms_norm_eps);
  c.rope_theta = r.get_double_or("rope_theta", 10000.0);
  if (c.rope_theta <= 1.0) fail("{}: rope_theta must be greater than 1", where);
  c.max_position_embeddings = r.get_int("max_position_embeddings", 1);
  c.tie_word_embeddings = r.get_bool_or("tie_word_embeddings", false);
  c.bos_token_id = r.get_int_or("bos_token_id", -1, 0);
  if (const auto* eos = r.find("eos_token_id")) {
    if (eos->is_array()) {
      for (const auto& e : *eos) c.eos_token_ids.push_back(r.to_int(e, "eos_token_id", 0));
    } else {
      c.eos_token_ids.push_back(r.to_int(*eos, "eos_token_id", 0));
    }
  }

  if (const auto* rs = r.find("rope_scaling")) {
    if (!rs->is_object()) fail("{}: key 'rope_scaling' must be null or an object", where);
    const Reader s(*rs, where + " rope_scaling");
    std::string type = s.get_string_or("type", "");
    if (type.empty()) type = s.get_string_or("rope_type", "");
    if (type != "yarn") fail("{}: rope_scaling type '{}' is not supported (supported: yarn, or null)", where, type);
    YarnScaling y;
    y.factor = s.get_double("factor");
    if (y.factor < 1.0) fail("{}: rope_scaling factor {} must be at least 1", where, y.factor);
    y.original_max_position_embeddings = s.get_int_or("original_max_position_embeddings", 4096, 1);
    y.beta_fast = s.get_double_or("beta_fast", 32.0);
    y.beta_slow = s.get_double_or("beta_slow", 1.0);
    y.mscale = s.get_double_or("mscale", 1.0);
    y.mscale_all_dim = s.get_double_or("mscale_all_dim", 0.0);
    y.truncate = s.get_bool_or("truncate", true);
    if (!(y.beta_fast > 0.0 && y.beta_slow > 0.0))
      fail("{}: rope_scaling beta_fast {} and beta_slow {} must be positive", where, y.beta_fast, y.beta_slow);
    if (y.mscale < 0.0 || y.mscale_all_dim < 0.0)
      fail("{}: rope_scaling mscale {} and mscale_all_dim {} must not be negative", where, y.mscale, y.mscale_all_dim);
    c.yarn = y;
  }
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& path) {
  return parse_model_config(read_json_file(path), path.string());
}

ModelConfig parse_model_config(const nlohmann::json& j, const std::string& where) {
  try {
    return parse_model_config_checked(j, where);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected structure: {}", where, e.what());
  }
}

std::string ModelConfig::summary() const {
  static const char* const kRouters[] = {"sigmoid + bias, groups by top-2 sum", "softmax, top-k",
                                         "softmax, groups by best score", "top-k logits, softmax over them"};
  std::string out =
      fmt::format("{}: {} layers ({} dense, {} MoE), hidden {}, heads {}, vocab {}, max positions {}\n", model_type,
                  num_hidden_layers, num_hidden_layers - static_cast<int>(moe_layers().size()), moe_layers().size(),
                  hidden_size, num_attention_heads, vocab_size, max_position_embeddings);
  if (attention == AttentionKind::Mla) {
    out += fmt::format("  MLA: q_lora_rank {}, kv_lora_rank {}, qk_nope {}, qk_rope {}, v {}\n",
                       q_lora_rank == 0 ? std::string("none") : std::to_string(q_lora_rank), kv_lora_rank,
                       qk_nope_head_dim, qk_rope_head_dim, v_head_dim);
  } else {
    out += fmt::format("  attention: {} query / {} key-value heads of {}, q/k norm {}\n", num_attention_heads,
                       num_key_value_heads, head_dim,
                       qk_norm == QkNorm::None      ? "none"
                       : qk_norm == QkNorm::PerHead ? "per head"
                                                    : "over the projection");
  }
  out += fmt::format(
      "  MoE: {} routed + {} shared experts of width {}, router {}, top-{} of {} groups (keep {}), scale {}, "
      "norm_topk_prob {}",
      n_routed_experts, n_shared_experts, moe_intermediate_size, kRouters[static_cast<int>(router)],
      num_experts_per_tok, n_group, topk_group, routed_scaling_factor, norm_topk_prob);
  if (fp8) out += fmt::format("\n  weights: FP8 e4m3 with {}x{} block scales", fp8->block_rows, fp8->block_cols);
  if (mxfp4) out += "\n  weights: experts in MXFP4 (e2m1 with an e8m0 scale per 32 values)";
  if (attention_bias || attention_sinks || sliding_window > 0) {
    int sliding = 0;
    for (const uint8_t l : sliding_layers) sliding += l;
    out += fmt::format("\n  attention extras: biases {}, sinks {}, {} sliding layers of window {}", attention_bias,
                       attention_sinks, sliding, sliding_window);
  }
  if (swiglu_limit > 0.0f)
    out += fmt::format("\n  experts: clamped SwiGLU (limit {}, alpha {}), biases", swiglu_limit, swiglu_alpha);
  if (yarn) {
    out += fmt::format(
        "\n  rope: theta {}, {} layout, yarn factor {} (original {} positions, mscale {}, mscale_all_dim {}, ramp {})",
        rope_theta, rope_neox ? "neox" : "interleaved", yarn->factor, yarn->original_max_position_embeddings,
        yarn->mscale, yarn->mscale_all_dim, yarn->truncate ? "truncated" : "not truncated");
  } else {
    out += fmt::format("\n  rope: theta {}, {} layout, no scaling", rope_theta, rope_neox ? "neox" : "interleaved");
  }
  return out;
}

}  // namespace mote
