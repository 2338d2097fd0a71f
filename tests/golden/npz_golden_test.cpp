// Models whose reference outputs are saved as golden.json + <prompt>.npz
// (see each golden/README.md): the bundled model's FP8 twin (DeepSeek-R1's
// weight format, against a float32 implementation on the dequantized
// weights) and the other families' random-weight fixtures. Token ids,
// logits at every prompt position, routed experts per token and MoE layer
// with their weights, and the greedy continuation through the KV cache
// (teacher-forced), token for token.
//   FP8: logits within 1e-4, every routing decision, weights within 1e-5.
//   Fixtures: logits within 1e-3 of the prompt's largest logit, routing
//   wherever the reference's margin exceeds 1e-3, weights within 1e-4 (the
//   tolerances their READMEs suggest).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include "../support/golden_checks.h"
#include "../support/npz.h"
#include "mote/expert_parallel/local_experts.h"
#include "mote/io/json_file.h"
#include "mote/model/loaded_model.h"
#include "mote/model/moe_transformer.h"

namespace mote {
namespace {

const std::filesystem::path kModels = MOTE_MODELS_DIR;

struct FamilyCase {
  std::string model;   // directory under models/
  std::string golden;  // "golden" or "golden/group_limited"
  std::string prompt;
  float logit_tolerance = 0.0f;  // absolute; 0: relative_tolerance x the prompt's largest |logit|
  float relative_tolerance = 1e-3f;
  float route_margin = 1e-3f;  // 0: every routing decision is compared
  float weight_tolerance = 1e-4f;
};

std::string case_name(const testing::TestParamInfo<FamilyCase>& info) {
  std::string name = info.param.model + "_" + info.param.golden + "_" + info.param.prompt;
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

std::vector<FamilyCase> all_cases() {
  std::vector<FamilyCase> cases;
  for (const auto& [model, golden] :
       std::vector<std::pair<std::string, std::string>>{{"tiny-deepseek-v3-mote-fp8", "golden"},
                                                        {"tiny-qwen3-moe", "golden"},
                                                        {"tiny-mixtral", "golden"},
                                                        {"tiny-olmoe", "golden"},
                                                        {"tiny-deepseek-v2-lite", "golden"},
                                                        {"tiny-deepseek-v2-lite", "golden/group_limited"},
                                                        {"tiny-gpt-oss", "golden"}}) {
    const auto g = read_json_file(kModels / model / golden / "golden.json");
    for (const auto& p : g["prompts"]) {
      FamilyCase fc{model, golden, p["name"].get<std::string>()};
      if (model == "tiny-deepseek-v3-mote-fp8") {
        // The float64 cross-check agrees with the reference within 1.4e-5; mote
        // dequantizes exactly as the reference does (fp8 * scale, one rounding).
        fc.logit_tolerance = 1e-4f;
        fc.route_margin = 0.0f;
        fc.weight_tolerance = 1e-5f;
      }
      cases.push_back(fc);
    }
  }
  return cases;
}

// The model of a case: its directory, or for a golden set with a
// config_override.json a copy of the config with the override applied
// beside links to the other files.
std::unique_ptr<LoadedModel> load_case_model(const FamilyCase& fc) {
  const auto dir = kModels / fc.model;
  const auto override_path = dir / fc.golden / "config_override.json";
  if (!std::filesystem::exists(override_path)) return load_model(dir);
  const auto copy =
      std::filesystem::temp_directory_path() / ("mote-family-" + fc.model + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(copy);
  std::filesystem::create_directories(copy);
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().filename() != "config.json") {
      std::filesystem::create_symlink(entry.path(), copy / entry.path().filename());
    }
  }
  auto config = read_json_file(dir / "config.json");
  const auto override_json = read_json_file(override_path);
  for (const auto& [key, value] : override_json.items()) config[key] = value;
  std::ofstream(copy / "config.json") << config.dump(2);
  auto model = load_model(copy);
  std::filesystem::remove_all(copy);  // the mapped files stay readable through their links' targets
  return model;
}

class NpzGolden : public testing::TestWithParam<FamilyCase> {};

TEST_P(NpzGolden, MatchesReference) {
  const FamilyCase& fc = GetParam();
  const auto model_files = load_case_model(fc);
  const auto dir = kModels / fc.model / fc.golden;
  nlohmann::json golden;
  const auto all = read_json_file(dir / "golden.json");
  for (const auto& p : all["prompts"]) {
    if (p["name"] == fc.prompt) golden = p;
  }
  const auto arrays = test::read_npz(dir / (fc.prompt + ".npz"));
  const auto ref_logits = arrays.at("logits").as<float>();
  const auto gen_ids = arrays.at("gen_ids").as<int32_t>();
  const auto gen_logits = arrays.at("gen_logits").as<float>();
  const auto ref_experts = arrays.at("experts").as<int32_t>();
  const auto ref_weights = arrays.at("expert_weights").as<float>();
  const auto router_logits = arrays.at("router_logits").as<float>();
  const ModelConfig& c = model_files->config;
  const int vocab = c.vocab_size;

  // Raw prompts get BOS from the tokenizer; chat prompts carry it in the rendered text.
  const bool raw = golden["kind"] == "raw";
  const auto ids = model_files->tokenizer.encode(golden[raw ? "text" : "rendered"].get<std::string>(), raw);
  ASSERT_EQ(ids, golden["input_ids"].get<std::vector<int32_t>>());
  const int n = static_cast<int>(ids.size());
  const int new_tokens = static_cast<int>(gen_ids.size());

  LocalExperts local_experts(model_files->weights, c);
  MoeTransformer model(c, model_files->weights, local_experts);
  KvCache cache(c, 1);
  cache.reset(0, n + new_tokens);
  const test::Prefill pre = test::prefill(model, cache, ids, vocab);
  const std::vector<float>& logits = pre.logits;
  const std::vector<int32_t>& experts = pre.experts;
  const std::vector<float>& weights = pre.weights;
  const int layers = pre.layers;
  const int k = pre.k;

  float max_abs_ref = 0.0f, max_diff = 0.0f;
  for (size_t i = 0; i < logits.size(); ++i) {
    max_abs_ref = std::max(max_abs_ref, std::abs(ref_logits[i]));
    max_diff = std::max(max_diff, std::abs(logits[i] - ref_logits[i]));
  }
  const float tolerance = fc.logit_tolerance > 0 ? fc.logit_tolerance : fc.relative_tolerance * max_abs_ref;
  EXPECT_LE(max_diff, tolerance);

  // Routing: compare (expert, weight) sets where the reference's k-th and
  // (k+1)-th router logits are more than route_margin apart.
  const int n_experts = c.n_routed_experts;
  const auto clear_margin = [&](int m, int p) {
    std::vector<float> u(router_logits.begin() + (static_cast<ptrdiff_t>(m) * n + p) * n_experts,
                         router_logits.begin() + (static_cast<ptrdiff_t>(m) * n + p + 1) * n_experts);
    std::sort(u.begin(), u.end(), std::greater<>());
    return fc.route_margin <= 0 || k >= n_experts || u[k - 1] - u[k] > fc.route_margin;
  };
  const test::RoutingCheck routing =
      test::compare_routing(experts, weights, ref_experts, ref_weights, n, layers, k, clear_margin);
  EXPECT_LE(routing.max_weight_diff, fc.weight_tolerance);
  EXPECT_GT(routing.compared, (n * layers) / 2);

  // The greedy continuation through the KV cache.
  const float max_step_diff =
      test::follow_greedy(model, cache, &logits[static_cast<size_t>(n - 1) * vocab], n, gen_ids, gen_logits, vocab);
  EXPECT_LE(max_step_diff, tolerance);
  std::printf(
      "%s %s %s: max |logit diff| %.3g (prompt), %.3g (greedy), tolerance %.3g; routing %d compared, %d near ties, "
      "max |weight diff| %.3g\n",
      fc.model.c_str(), fc.golden.c_str(), fc.prompt.c_str(), max_diff, max_step_diff, tolerance, routing.compared,
      routing.skipped, routing.max_weight_diff);
}

INSTANTIATE_TEST_SUITE_P(Models, NpzGolden, testing::ValuesIn(all_cases()), case_name);

}  // namespace
}  // namespace mote
