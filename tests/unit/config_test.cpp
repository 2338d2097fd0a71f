#include "mote/model/config.h"

#include <gtest/gtest.h>

#include "model_files.h"
#include "mote/util/error.h"

namespace mote {
namespace {

using nlohmann::json;

void expect_config_error(const json& j, const std::string& needle) {
  EXPECT_ERROR_CONTAINS(parse_model_config(j, "cfg.json"), needle);
  EXPECT_ERROR_CONTAINS(parse_model_config(j, "cfg.json"), "cfg.json");
}

TEST(Config, ReadsBundledModel) {
  const ModelConfig c = load_model_config(test::bundled_model() / "config.json");
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.q_lora_rank, 96);
  EXPECT_EQ(c.moe_layers(), (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_FALSE(c.yarn.has_value());
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{1});
  EXPECT_FLOAT_EQ(c.attention_scale(), 1.0f / std::sqrt(48.0f));
}

TEST(Config, MoeLayerFrequency) {
  json j = test::small_config();
  j["num_hidden_layers"] = 6;
  j["moe_layer_freq"] = 2;
  EXPECT_EQ(parse_model_config(j, "x").moe_layers(), (std::vector<int>{2, 4}));
}

TEST(Config, RefusesUnsupportedOptionsByName) {
  json j = test::small_config();
  j["model_type"] = "grok";
  expect_config_error(
      j,
      "model_type 'grok' is not supported (supported: deepseek_v3, deepseek_v2, qwen3_moe, mixtral, olmoe, gpt_oss)");
  j = test::small_config();
  j["scoring_func"] = "softmax";
  expect_config_error(j, "scoring_func 'softmax' is not supported");
  j = test::small_config();
  j["topk_method"] = "group_limited_greedy";
  expect_config_error(j, "topk_method 'group_limited_greedy' is not supported");
  j = test::small_config();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  expect_config_error(j, "rope_scaling type 'linear' is not supported");
  j = test::small_config();
  j["quantization_config"] = {{"quant_method", "fp8"}};
  expect_config_error(j, "quantization_config");
  j = test::small_config();
  j["hidden_act"] = "gelu";
  expect_config_error(j, "hidden_act 'gelu'");
}

TEST(Config, RefusesMissingAndMistypedKeys) {
  json j = test::small_config();
  j.erase("kv_lora_rank");
  expect_config_error(j, "missing key 'kv_lora_rank'");
  j = test::small_config();
  j["hidden_size"] = "256";
  expect_config_error(j, "key 'hidden_size' must be an integer");
  j = test::small_config();
  j["hidden_size"] = -4;
  expect_config_error(j, "key 'hidden_size' = -4 is out of range");
  j = test::small_config();
  j["norm_topk_prob"] = 1;
  expect_config_error(j, "key 'norm_topk_prob' must be true or false");
}

TEST(Config, RefusesInconsistentRouterShape) {
  json j = test::small_config();
  j["n_group"] = 3;
  expect_config_error(j, "not a multiple of n_group");
  j = test::small_config();
  j["topk_group"] = 3;
  expect_config_error(j, "topk_group 3 exceeds n_group 2");
  j = test::small_config();
  j["num_experts_per_tok"] = 5;
  expect_config_error(j, "num_experts_per_tok 5 exceeds");
  j = test::small_config();
  j["qk_rope_head_dim"] = 7;
  expect_config_error(j, "must be even");
}

TEST(Config, InvalidJsonFile) {
  test::ScratchDir dir;
  test::write_file(dir / "config.json", "{\"model_type\": \"deepseek_v3\",");
  EXPECT_ERROR_CONTAINS(load_model_config(dir / "config.json"), "invalid JSON");
  EXPECT_ERROR_CONTAINS(load_model_config(dir / "absent.json"), "cannot open");
}

}  // namespace
}  // namespace mote
