// The bundled model stored in DeepSeek-R1's FP8 format (e4m3 with 128x128
// block scales) against reference outputs of an independent float32
// implementation on the dequantized weights
// (models/tiny-deepseek-v3-mote-fp8/golden, see its README): token ids,
// logits at every prompt position, routed experts and weights, and the 32
// greedy tokens fed back through the KV cache (teacher-forced, so one
// near-tie cannot hide the rest).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "../support/golden_checks.h"
#include "../support/npz.h"
#include "mote/io/json_file.h"
#include "mote/model/moe_transformer.h"
#include "mote/model/loaded_model.h"

namespace mote {
namespace {

const std::filesystem::path kModelDir = MOTE_FP8_MODEL_DIR;
// The float64 cross-check agrees with the reference within 1.4e-5; mote
// dequantizes exactly as the reference does (fp8 * scale, one rounding).
constexpr float kLogitTolerance = 1e-4f;
constexpr float kWeightTolerance = 1e-5f;

std::vector<std::string> all_prompts() {
  std::vector<std::string> names;
  const auto golden = read_json_file(kModelDir / "golden/golden.json");
  for (const auto& p : golden["prompts"]) names.push_back(p["name"].get<std::string>());
  return names;
}

class Fp8Golden : public testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { model_ = load_model(kModelDir).release(); }
  static void TearDownTestSuite() { delete model_; }
  static LoadedModel* model_;
};
LoadedModel* Fp8Golden::model_ = nullptr;

TEST_P(Fp8Golden, MatchesReference) {
  const std::string name = GetParam();
  nlohmann::json golden;
  const auto all = read_json_file(kModelDir / "golden/golden.json");
  for (const auto& p : all["prompts"]) {
    if (p["name"] == name) golden = p;
  }
  const auto arrays = test::read_npz(kModelDir / "golden" / (name + ".npz"));
  const auto ref_logits = arrays.at("logits").as<float>();
  const auto gen_ids = arrays.at("gen_ids").as<int32_t>();
  const auto gen_logits = arrays.at("gen_logits").as<float>();
  const auto ref_experts = arrays.at("experts").as<int32_t>();
  const auto ref_weights = arrays.at("expert_weights").as<float>();
  const ModelConfig& c = model_->config;
  const int vocab = c.vocab_size;

  // Raw prompts get BOS from the tokenizer; chat prompts carry it in the rendered text.
  const bool raw = golden["kind"] == "raw";
  const auto ids = model_->tokenizer.encode(golden[raw ? "text" : "rendered"].get<std::string>(), raw);
  ASSERT_EQ(ids, golden["input_ids"].get<std::vector<int32_t>>());
  const int n = static_cast<int>(ids.size());
  const int new_tokens = static_cast<int>(gen_ids.size());

  MoeTransformer model(c, model_->weights);
  KvCache cache(c, 1);
  cache.reset(0, n + new_tokens);
  const test::Prefill pre = test::prefill(model, cache, ids, vocab);
  const std::vector<float>& logits = pre.logits;
  const std::vector<int32_t>& experts = pre.experts;
  const std::vector<float>& weights = pre.weights;
  const int layers = pre.layers;
  const int k = pre.k;

  float max_diff = 0.0f;
  for (size_t i = 0; i < logits.size(); ++i) max_diff = std::max(max_diff, std::abs(logits[i] - ref_logits[i]));
  EXPECT_LE(max_diff, kLogitTolerance);

  // Routing: the reference lists experts by descending weight, mote in
  // selection order; compare (expert, weight) sets.
  const test::RoutingCheck routing = test::compare_routing(experts, weights, ref_experts, ref_weights, n, layers, k);
  EXPECT_LE(routing.max_weight_diff, kWeightTolerance);

  // The greedy continuation through the KV cache (teacher-forced).
  const float max_step_diff = test::follow_greedy(model, cache, &logits[static_cast<size_t>(n - 1) * vocab], n, gen_ids, gen_logits, vocab);
  EXPECT_LE(max_step_diff, kLogitTolerance);
  std::printf("%s: max |logit diff| %.3g (prompt), %.3g (greedy steps), max |gate weight diff| %.3g\n", name.c_str(), max_diff,
              max_step_diff, routing.max_weight_diff);
}

INSTANTIATE_TEST_SUITE_P(AllPrompts, Fp8Golden, testing::ValuesIn(all_prompts()));

}  // namespace
}  // namespace mote
