// The families' routers with MoTE masks, worked out by hand on small logit
// vectors; their config keys and refusals; their tensor tables.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "model_files.h"
#include "mote/io/json_file.h"
#include "mote/model/config.h"
#include "mote/model/loaded_model.h"
#include "mote/model/router.h"

namespace mote {
namespace {

using nlohmann::json;

struct Routed {
  std::vector<int32_t> experts;
  std::vector<float> weights;
  std::vector<uint8_t> dispatch;
};

ModelConfig router_config(RouterKind kind, int k, bool normalize, int n_group = 1, int topk_group = 1) {
  ModelConfig c;
  c.router = kind;
  c.n_routed_experts = 4;
  c.num_experts_per_tok = k;
  c.norm_topk_prob = normalize;
  c.n_group = n_group;
  c.topk_group = topk_group;
  c.routed_scaling_factor = 1.0;
  return c;
}

Routed route(const ModelConfig& c, const std::vector<float>& probabilities, const ExpertMask* mask = nullptr) {
  // Logits whose softmax is `probabilities` (a zero becomes -inf).
  std::vector<float> logits;
  for (const float p : probabilities) logits.push_back(p > 0 ? std::log(p) : -INFINITY);
  const Router router(c);
  Routed r{std::vector<int32_t>(static_cast<size_t>(router.top_k())),
           std::vector<float>(static_cast<size_t>(router.top_k())),
           std::vector<uint8_t>(static_cast<size_t>(router.top_k()))};
  std::vector<float> scratch(static_cast<size_t>(router.scratch_size()));
  router.route(logits.data(), nullptr, 0, mask, r.experts.data(), r.weights.data(), r.dispatch.data(), scratch.data());
  return r;
}

void expect_routing(const Routed& r, const std::vector<int32_t>& experts, const std::vector<float>& weights,
                    const std::vector<uint8_t>& dispatch = {1, 1}) {
  EXPECT_EQ(r.experts, experts);
  ASSERT_EQ(r.weights.size(), weights.size());
  for (size_t i = 0; i < weights.size(); ++i) EXPECT_NEAR(r.weights[i], weights[i], 1e-6) << "slot " << i;
  EXPECT_EQ(r.dispatch, dispatch);
}

ExpertMask mask_with(OffPolicy off, OnPolicy on = OnPolicy::Natural) {
  ExpertMask m(1, 4);
  m.off_policy = off;
  m.on_policy = on;
  return m;
}

// p = [0.1, 0.2, 0.3, 0.4], top-2.
const std::vector<float> kP = {0.1f, 0.2f, 0.3f, 0.4f};

TEST(SoftmaxRouter, NotRenormalisedLikeOlmoe) {
  const ModelConfig c = router_config(RouterKind::SoftmaxTopk, 2, false);
  expect_routing(route(c, kP), {3, 2}, {0.4f, 0.3f});
  ExpertMask m = mask_with(OffPolicy::Reroute);
  m.set_off(0, 3);
  // Reroute: u_3 = -inf before the softmax, so p = [1, 2, 3] / 6.
  expect_routing(route(c, kP, &m), {2, 1}, {0.5f, 1.0f / 3});
  m.off_policy = OffPolicy::Drop;
  // Drop: chosen on the unmasked p, expert 3 leaves, no renormalisation.
  expect_routing(route(c, kP, &m), {2, -1}, {0.3f, 0.0f}, {1, 0});
  m.off_policy = OffPolicy::Zero;
  expect_routing(route(c, kP, &m), {3, 2}, {0.4f, 0.3f}, {0, 1});
  ExpertMask on = mask_with(OffPolicy::Reroute, OnPolicy::Natural);
  on.set_on(0, 0);
  expect_routing(route(c, kP, &on), {0, 3}, {0.1f, 0.4f});
  on.on_policy = OnPolicy::Max;
  // Max: u_0 = max u = ln 0.4, so p = [4, 2, 3, 4] / 13.
  expect_routing(route(c, kP, &on), {0, 3}, {4.0f / 13, 4.0f / 13});
  ExpertMask gain(1, 4);
  gain.gains[3] = 2.0f;
  expect_routing(route(c, kP, &gain), {3, 2}, {0.8f, 0.3f});
}

TEST(SoftmaxRouter, RenormalisedLikeQwen3) {
  const ModelConfig c = router_config(RouterKind::SoftmaxTopk, 2, true);
  expect_routing(route(c, kP), {3, 2}, {4.0f / 7, 3.0f / 7});
  ExpertMask m = mask_with(OffPolicy::Reroute);
  m.set_off(0, 3);
  expect_routing(route(c, kP, &m), {2, 1}, {0.6f, 0.4f});
  m.off_policy = OffPolicy::Drop;
  // The survivor is renormalised: this family renormalises.
  expect_routing(route(c, kP, &m), {2, -1}, {1.0f, 0.0f}, {1, 0});
  ExpertMask on = mask_with(OffPolicy::Reroute, OnPolicy::Natural);
  on.set_on(0, 0);
  expect_routing(route(c, kP, &on), {0, 3}, {0.2f, 0.8f});
  on.on_policy = OnPolicy::Max;
  expect_routing(route(c, kP, &on), {0, 3}, {0.5f, 0.5f});
}

TEST(SoftmaxRouter, TopkThenSoftmaxLikeMixtral) {
  const ModelConfig c = router_config(RouterKind::TopkSoftmax, 2, true);
  // softmax(ln 0.4, ln 0.3) = [4, 3] / 7.
  expect_routing(route(c, kP), {3, 2}, {4.0f / 7, 3.0f / 7});
  ExpertMask m = mask_with(OffPolicy::Reroute);
  m.set_off(0, 3);
  expect_routing(route(c, kP, &m), {2, 1}, {0.6f, 0.4f});
  m.off_policy = OffPolicy::Drop;
  expect_routing(route(c, kP, &m), {2, -1}, {1.0f, 0.0f}, {1, 0});
  ExpertMask on = mask_with(OffPolicy::Reroute, OnPolicy::Natural);
  on.set_on(0, 0);
  expect_routing(route(c, kP, &on), {0, 3}, {0.2f, 0.8f});
  on.on_policy = OnPolicy::Max;
  expect_routing(route(c, kP, &on), {0, 3}, {0.5f, 0.5f});
}

TEST(SoftmaxRouter, GroupLimitedLikeDeepseekV2) {
  // Groups {0, 1} and {2, 3}, one kept. p = [0.05, 0.4, 0.3, 0.25]: the best
  // score picks group 0 (0.4 > 0.3); V3's top-2 sum would pick group 1.
  const ModelConfig c = router_config(RouterKind::SoftmaxGroupMax, 2, false, 2, 1);
  const std::vector<float> p = {0.05f, 0.4f, 0.3f, 0.25f};
  expect_routing(route(c, p), {1, 0}, {0.4f, 0.05f});
  ExpertMask m = mask_with(OffPolicy::Reroute);
  m.set_off(0, 1);
  // p = [0.05, 0, 0.3, 0.25] / 0.6: group 1 now has the best score.
  expect_routing(route(c, p, &m), {2, 3}, {0.5f, 0.25f / 0.6f});
  ExpertMask on = mask_with(OffPolicy::Reroute);
  on.set_on(0, 3);
  // A forced expert's group is always kept.
  expect_routing(route(c, p, &on), {3, 2}, {0.25f, 0.3f});
}

TEST(SoftmaxRouter, ADisabledExpertNeverReceivesAToken) {
  for (const RouterKind kind : {RouterKind::SoftmaxTopk, RouterKind::TopkSoftmax, RouterKind::SoftmaxGroupMax}) {
    const ModelConfig c = router_config(kind, 2, true, kind == RouterKind::SoftmaxGroupMax ? 2 : 1, 1);
    for (const OffPolicy policy : {OffPolicy::Reroute, OffPolicy::Drop, OffPolicy::Zero}) {
      ExpertMask m = mask_with(policy);
      m.set_off(0, 3);
      const Routed r = route(c, kP, &m);
      for (size_t s = 0; s < r.experts.size(); ++s) EXPECT_FALSE(r.experts[s] == 3 && r.dispatch[s]);
    }
  }
}

json family_config(const std::string& model) {
  return read_json_file(std::filesystem::path(MOTE_SOURCE_DIR) / "models" / model / "config.json");
}

void expect_config_message(const json& j, const std::string& message) {
  try {
    parse_model_config(j, "cfg.json");
    ADD_FAILURE() << "no error; expected: " << message;
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), message);
  }
}

TEST(Families, ReadTheirConfigs) {
  const ModelConfig qwen = parse_model_config(family_config("tiny-qwen3-moe"), "q");
  EXPECT_EQ(qwen.attention, AttentionKind::Gqa);
  EXPECT_EQ(qwen.qk_norm, QkNorm::PerHead);
  EXPECT_EQ(qwen.router, RouterKind::SoftmaxTopk);
  EXPECT_EQ(qwen.n_routed_experts, 32);
  EXPECT_EQ(qwen.num_key_value_heads, 2);
  EXPECT_EQ(qwen.head_dim, 32);
  EXPECT_TRUE(qwen.norm_topk_prob);
  EXPECT_EQ(qwen.moe_layers().size(), 4u);
  const ModelConfig olmoe = parse_model_config(family_config("tiny-olmoe"), "o");
  EXPECT_EQ(olmoe.qk_norm, QkNorm::Whole);
  EXPECT_FALSE(olmoe.norm_topk_prob);
  EXPECT_EQ(olmoe.moe_intermediate_size, 48);
  const ModelConfig mixtral = parse_model_config(family_config("tiny-mixtral"), "m");
  EXPECT_EQ(mixtral.router, RouterKind::TopkSoftmax);
  EXPECT_EQ(mixtral.n_routed_experts, 8);
  const ModelConfig v2 = parse_model_config(family_config("tiny-deepseek-v2-lite"), "v");
  EXPECT_EQ(v2.attention, AttentionKind::Mla);
  EXPECT_EQ(v2.router, RouterKind::SoftmaxTopk);
  EXPECT_FALSE(v2.router_bias);
  EXPECT_EQ(v2.moe_layers().size(), 3u);
}

TEST(Families, RefuseWhatMoteDoesNotImplementByName) {
  json j = family_config("tiny-qwen3-moe");
  j["model_type"] = "grok";
  expect_config_message(j,
                        "cfg.json: model_type 'grok' is not supported (supported: deepseek_v3, deepseek_v2, qwen3_moe, "
                        "mixtral, olmoe, gpt_oss)");
  j = family_config("tiny-qwen3-moe");
  j["use_sliding_window"] = true;
  expect_config_message(j, "cfg.json: use_sliding_window true is not supported (sliding-window attention)");
  j = family_config("tiny-qwen3-moe");
  j["mlp_only_layers"] = {0, 2};
  expect_config_message(j, "cfg.json: mlp_only_layers [0,2] is not supported (supported: [], every layer sparse)");
  j = family_config("tiny-qwen3-moe");
  j["decoder_sparse_step"] = 2;
  expect_config_message(j, "cfg.json: decoder_sparse_step 2 is not supported (supported: 1, every layer sparse)");
  j = family_config("tiny-qwen3-moe");
  j["num_key_value_heads"] = 3;
  expect_config_message(j, "cfg.json: num_attention_heads 8 is not a multiple of num_key_value_heads 3");
  j = family_config("tiny-qwen3-moe");
  j["attention_bias"] = true;
  expect_config_message(j, "cfg.json: attention_bias true is not supported (qwen3_moe has no attention biases)");
  j = family_config("tiny-qwen3-moe");
  j["num_experts_per_tok"] = 40;
  expect_config_message(j, "cfg.json: num_experts_per_tok 40 exceeds the 32 routed experts");
  j = family_config("tiny-olmoe");
  j["clip_qkv"] = 8.0;
  expect_config_message(j, "cfg.json: clip_qkv is not supported (supported: null)");
  j = family_config("tiny-mixtral");
  j["sliding_window"] = 4096;
  expect_config_message(j, "cfg.json: sliding_window 4096 is not supported (supported: null)");
  j = family_config("tiny-mixtral");
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  expect_config_message(j, "cfg.json: rope_scaling is not supported for mixtral (only null)");
  j = family_config("tiny-deepseek-v2-lite");
  j["topk_method"] = "noaux_tc";
  expect_config_message(
      j, "cfg.json: topk_method 'noaux_tc' is not supported for deepseek_v2 (supported: greedy, group_limited_greedy)");
  j = family_config("tiny-deepseek-v2-lite");
  j["scoring_func"] = "sigmoid";
  expect_config_message(j, "cfg.json: scoring_func 'sigmoid' is not supported for deepseek_v2 (supported: softmax)");
  j = family_config("tiny-mixtral");
  j.erase("num_local_experts");
  expect_config_message(j, "cfg.json: missing key 'num_local_experts'");
}

// Missing and misshapen tensors of each family are named with the shape
// its config implies.
TEST(Families, MissingAndMisshapenTensorsAreNamed) {
  const auto check = [](const std::string& model, const std::string& tensor, const std::vector<int64_t>& new_shape,
                        const std::string& message) {
    test::ScratchDir dir;
    test::copy_model(std::filesystem::path(MOTE_SOURCE_DIR) / "models" / model, dir.path());
    test::rewrite_tensors(dir.path(), [&](std::vector<TensorData>& tensors) {
      for (auto it = tensors.begin(); it != tensors.end(); ++it) {
        if (it->name != tensor) continue;
        if (new_shape.empty()) {
          tensors.erase(it);
        } else {
          it->shape = new_shape;
          size_t elements = 1;
          for (const int64_t d : new_shape) elements *= static_cast<size_t>(d);
          it->bytes.assign(elements * dtype_size(it->dtype), std::byte{0});
        }
        return;
      }
      FAIL() << "no tensor " << tensor;
    });
    std::string expected = message;
    if (const size_t at = expected.find("in model.safetensors"); at != std::string::npos) {
      expected.replace(at, 20, "in " + (dir / "model.safetensors").string());
    }
    try {
      load_model(dir.path());
      ADD_FAILURE() << "loaded; expected: " << expected;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  };
  check("tiny-mixtral", "model.layers.2.block_sparse_moe.experts.5.w3.weight", {},
        "model.layers.2.block_sparse_moe.experts.5.w3.weight");
  check(
      "tiny-qwen3-moe", "model.layers.1.self_attn.k_norm.weight", {64},
      "tensor 'model.layers.1.self_attn.k_norm.weight' in model.safetensors: shape [64] but config.json implies [32]");
  check(
      "tiny-olmoe", "model.layers.0.self_attn.q_norm.weight", {32},
      "tensor 'model.layers.0.self_attn.q_norm.weight' in model.safetensors: shape [32] but config.json implies [128]");
  check("tiny-deepseek-v2-lite", "model.layers.3.mlp.gate.weight", {31, 128},
        "tensor 'model.layers.3.mlp.gate.weight' in model.safetensors: shape [31, 128] but config.json implies [32, "
        "128]");
}

}  // namespace
}  // namespace mote
