// The bundled model against reference outputs of an independent float32
// implementation (models/tiny-deepseek-v3-mote/golden, see its README):
// token ids, logits at every position, routed experts and weights per token
// and MoE layer, and 32 greedy tokens through the KV cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "../support/golden_checks.h"
#include "mote/expert_parallel/local_experts.h"
#include "mote/io/json_file.h"
#include "mote/model/loaded_model.h"
#include "mote/model/moe_transformer.h"

namespace mote {
namespace {

const std::filesystem::path kModelDir = MOTE_MODEL_DIR;
// golden/README.md: an independent fp32 implementation agrees within ~1e-4.
constexpr float kLogitTolerance = 1e-4f;
constexpr float kWeightTolerance = 1e-5f;

struct GoldenCase {
  std::string run;   // "base" or "masked"
  std::string name;  // prompt name
};

std::string case_name(const testing::TestParamInfo<GoldenCase>& info) { return info.param.run + "_" + info.param.name; }

std::vector<GoldenCase> all_cases() {
  std::vector<GoldenCase> cases;
  const auto prompts = read_json_file(kModelDir / "golden/prompts.json");
  for (const char* run : {"base", "masked"}) {
    for (const auto& p : prompts["prompts"]) cases.push_back({run, p["name"].get<std::string>()});
  }
  return cases;
}

class Golden : public testing::TestWithParam<GoldenCase> {
 protected:
  static void SetUpTestSuite() { model_ = load_model(kModelDir).release(); }
  static void TearDownTestSuite() { delete model_; }
  static LoadedModel* model_;

  ExpertMask golden_mask() const {
    const ModelConfig& c = model_->config;
    const auto moe = c.moe_layers();
    ExpertMask mask(static_cast<int>(moe.size()), c.n_routed_experts);
    const auto spec = read_json_file(kModelDir / "golden/mask.json");
    EXPECT_FALSE(spec["mask"].empty());
    for (const auto& entry : spec["mask"]) {
      const int layer = entry["layer"].get<int>();
      const auto it = std::find(moe.begin(), moe.end(), layer);
      EXPECT_NE(it, moe.end());
      mask.set_off(static_cast<int>(it - moe.begin()), entry["expert"].get<int>());
    }
    return mask;
  }
};
LoadedModel* Golden::model_ = nullptr;

TEST_P(Golden, MatchesReference) {
  const GoldenCase& gc = GetParam();
  const auto golden = read_json_file(kModelDir / "golden" / gc.run / (gc.name + ".json"));
  const ModelConfig& c = model_->config;
  const int vocab = c.vocab_size;

  // Tokenization: the text already holds BOS, so no special tokens are added.
  const auto ids = model_->tokenizer.encode(golden["text"].get<std::string>(), false);
  ASSERT_EQ(ids, golden["input_ids"].get<std::vector<int32_t>>());
  const int n = static_cast<int>(ids.size());
  const int new_tokens = static_cast<int>(golden["greedy"]["new_ids"].size());

  const ExpertMask mask = golden_mask();
  const ExpertMask* row_mask = gc.run == "masked" ? &mask : nullptr;
  LocalExperts local_experts(model_->weights, c);
  MoeTransformer model(c, model_->weights, local_experts);
  KvCache cache(c, 1);
  cache.reset(0, n + new_tokens);

  // Prefill with logits and routing at every position.
  const test::Prefill pre = test::prefill(model, cache, ids, vocab, row_mask);
  const std::vector<float>& logits = pre.logits;
  const std::vector<int32_t>& experts = pre.experts;
  const std::vector<float>& weights = pre.weights;
  const int layers = pre.layers;
  const int k = pre.k;

  float max_diff = 0.0f;
  const auto& last = golden["last_logits"];
  for (int v = 0; v < vocab; ++v) {
    max_diff = std::max(max_diff, std::abs(logits[static_cast<size_t>(n - 1) * vocab + v] - last[v].get<float>()));
  }
  for (int p = 0; p < n; ++p) {
    const auto& top5 = golden["top5"][p];
    for (int i = 0; i < 5; ++i) {
      const int id = top5["ids"][i].get<int>();
      max_diff =
          std::max(max_diff, std::abs(logits[static_cast<size_t>(p) * vocab + id] - top5["logits"][i].get<float>()));
    }
    const float* row = &logits[static_cast<size_t>(p) * vocab];
    EXPECT_EQ(std::max_element(row, row + vocab) - row, top5["ids"][0].get<int>()) << "argmax at position " << p;
  }
  EXPECT_LE(max_diff, kLogitTolerance);
  RecordProperty("max_logit_diff", std::to_string(max_diff));

  // Routing: same expert set per token and layer (golden sorts by id).
  float max_weight_diff = 0.0f;
  for (const auto& layer_entry : golden["routing"]) {
    const auto moe = c.moe_layers();
    const int m = static_cast<int>(std::find(moe.begin(), moe.end(), layer_entry["layer"].get<int>()) - moe.begin());
    for (int p = 0; p < n; ++p) {
      std::vector<std::pair<int32_t, float>> ours;
      for (int s = 0; s < k; ++s) {
        const size_t at = (static_cast<size_t>(p) * layers + m) * k + s;
        ours.emplace_back(experts[at], weights[at]);
      }
      std::sort(ours.begin(), ours.end());
      for (int s = 0; s < k; ++s) {
        ASSERT_EQ(ours[s].first, layer_entry["experts"][p][s].get<int>()) << "layer " << m << " position " << p;
        max_weight_diff =
            std::max(max_weight_diff, std::abs(ours[s].second - layer_entry["weights"][p][s].get<float>()));
      }
    }
  }
  EXPECT_LE(max_weight_diff, kWeightTolerance);

  // Greedy continuation through the KV cache, not stopped at EOS.
  const auto expected = golden["greedy"]["new_ids"].get<std::vector<int32_t>>();
  std::vector<float> step_logits(vocab);
  const float* current = &logits[static_cast<size_t>(n - 1) * vocab];
  std::vector<int32_t> generated;
  const std::vector<int32_t> first_row{0};
  for (int i = 0; i < new_tokens; ++i) {
    const auto next = static_cast<int32_t>(std::max_element(current, current + vocab) - current);
    generated.push_back(next);
    if (i + 1 == new_tokens) break;
    const StepRow step{0, n + i, next, row_mask};
    model.forward({&step, 1}, cache, first_row, step_logits.data());
    current = step_logits.data();
  }
  EXPECT_EQ(generated, expected);
  EXPECT_EQ(model_->tokenizer.decode(generated), golden["greedy"]["text"].get<std::string>());
  std::printf("%s/%s: max |logit diff| %.3g, max |gate weight diff| %.3g\n", gc.run.c_str(), gc.name.c_str(), max_diff,
              max_weight_diff);
}

INSTANTIATE_TEST_SUITE_P(AllPrompts, Golden, testing::ValuesIn(all_cases()), case_name);

}  // namespace
}  // namespace mote
