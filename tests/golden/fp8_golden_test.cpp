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
  std::vector<StepRow> rows;
  for (int p = 0; p < n; ++p) rows.push_back({0, p, ids[p]});
  std::vector<int32_t> all_rows(n);
  std::iota(all_rows.begin(), all_rows.end(), 0);
  std::vector<float> logits(static_cast<size_t>(n) * vocab);
  const int layers = model.moe_layer_count();
  const int k = model.top_k();
  std::vector<int32_t> experts(static_cast<size_t>(n) * layers * k);
  std::vector<float> weights(experts.size());
  model.forward(rows, cache, all_rows, logits.data(), {experts.data(), weights.data()});

  float max_diff = 0.0f;
  for (size_t i = 0; i < logits.size(); ++i) max_diff = std::max(max_diff, std::abs(logits[i] - ref_logits[i]));
  EXPECT_LE(max_diff, kLogitTolerance);

  // Routing: the reference lists experts by descending weight, mote in
  // selection order; compare (expert, weight) sets.
  float max_weight_diff = 0.0f;
  for (int m = 0; m < layers; ++m) {
    for (int p = 0; p < n; ++p) {
      std::vector<std::pair<int32_t, float>> ours, ref;
      for (int s = 0; s < k; ++s) {
        const size_t at = (static_cast<size_t>(p) * layers + m) * k + s;
        const size_t ref_at = (static_cast<size_t>(m) * n + p) * k + s;
        ours.emplace_back(experts[at], weights[at]);
        ref.emplace_back(ref_experts[ref_at], ref_weights[ref_at]);
      }
      std::sort(ours.begin(), ours.end());
      std::sort(ref.begin(), ref.end());
      for (int s = 0; s < k; ++s) {
        ASSERT_EQ(ours[s].first, ref[s].first) << "MoE layer " << m << " position " << p;
        max_weight_diff = std::max(max_weight_diff, std::abs(ours[s].second - ref[s].second));
      }
    }
  }
  EXPECT_LE(max_weight_diff, kWeightTolerance);

  // The greedy continuation through the KV cache: each step's logits against
  // the reference row, and the token chosen against the reference's.
  std::vector<float> step_logits(vocab);
  const std::vector<int32_t> first_row{0};
  float max_step_diff = 0.0f;
  const float* current = &logits[static_cast<size_t>(n - 1) * vocab];
  for (int i = 0; i < new_tokens; ++i) {
    const float* ref = &gen_logits[static_cast<size_t>(i) * vocab];
    for (int v = 0; v < vocab; ++v) max_step_diff = std::max(max_step_diff, std::abs(current[v] - ref[v]));
    EXPECT_EQ(std::max_element(current, current + vocab) - current, gen_ids[i]) << "greedy step " << i;
    if (i + 1 == new_tokens) break;
    const StepRow step{0, n + i, gen_ids[i]};
    model.forward({&step, 1}, cache, first_row, step_logits.data());
    current = step_logits.data();
  }
  EXPECT_LE(max_step_diff, kLogitTolerance);
  std::printf("%s: max |logit diff| %.3g (prompt), %.3g (greedy steps), max |gate weight diff| %.3g\n", name.c_str(), max_diff,
              max_step_diff, max_weight_diff);
}

INSTANTIATE_TEST_SUITE_P(AllPrompts, Fp8Golden, testing::ValuesIn(all_prompts()));

}  // namespace
}  // namespace mote
