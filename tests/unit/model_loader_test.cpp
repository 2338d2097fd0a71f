#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <tuple>

#include "model_files.h"
#include "mote/expert_parallel/local_experts.h"
#include "mote/model/loaded_model.h"
#include "mote/model/moe_transformer.h"
#include "mote/util/error.h"

namespace mote {
namespace {

using test::rewrite_tensors;
using test::ScratchDir;

std::vector<float> last_logits(const LoadedModel& m, const std::vector<int32_t>& tokens) {
  LocalExperts local_experts(m.weights, m.config);
  MoeTransformer model(m.config, m.weights, local_experts);
  KvCache cache(m.config, 1);
  cache.reset(0, static_cast<int>(tokens.size()));
  std::vector<StepRow> rows;
  for (size_t i = 0; i < tokens.size(); ++i) rows.push_back({0, static_cast<int32_t>(i), tokens[i], nullptr});
  std::vector<float> logits(m.config.vocab_size);
  const int32_t last = static_cast<int32_t>(tokens.size()) - 1;
  model.forward(rows, cache, {&last, 1}, logits.data());
  return logits;
}

TEST(ModelLoader, BundledModelHasExactlyTheExpectedTensors) {
  const auto m = load_model(test::bundled_model());
  const auto expected = expected_tensors(m->config);
  EXPECT_EQ(expected.size(), m->store.all().size());
  for (const auto& spec : expected) {
    const TensorView* view = m->store.find(spec.name);
    ASSERT_NE(view, nullptr) << spec.name;
    EXPECT_EQ(view->shape, spec.shape) << spec.name;
  }
}

// Weights copied into the process's memory give the same bits as mapped
// ones, BF16 and FP8, and the matrices then lie in the copies, not the files.
TEST(ModelLoader, CopiedWeightsGiveTheSameLogitsAsMappedOnes) {
  for (const auto& dir : {test::bundled_model(), test::bundled_model().parent_path() / "tiny-deepseek-v3-mote-fp8"}) {
    const auto mapped = load_model(dir);
    const auto copied = load_model(dir, {}, true, WeightMemory::Copy);
    EXPECT_TRUE(mapped->weights.copies.empty());
    ASSERT_FALSE(copied->weights.copies.empty());
    const auto in_copies = [&](const Weight& w) {
      for (const auto& c : copied->weights.copies)
        if (c.get() == w.data) return true;
      return false;
    };
    EXPECT_TRUE(in_copies(copied->weights.lm_head)) << dir;
    EXPECT_TRUE(in_copies(copied->weights.layers.back().experts.back().down)) << dir;
    const std::vector<int32_t> tokens{0, 17, 300, 5, 42};
    const auto a = last_logits(*mapped, tokens), b = last_logits(*copied, tokens);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << dir << " logit " << i;
  }
  EXPECT_ERROR_CONTAINS(parse_weight_memory("mmap"), "--weights 'mmap' is not one of map, copy");
}

TEST(ModelLoader, SyntheticModelRunsWithAndWithoutQueryLowRank) {
  for (const bool low_rank : {true, false}) {
    ScratchDir dir;
    auto config = test::small_config();
    if (!low_rank) config["q_lora_rank"] = nullptr;
    test::make_small_model(dir.path(), config);
    const auto m = load_model(dir.path());
    EXPECT_EQ(m->config.q_lora_rank, low_rank ? 24 : 0);
    for (float v : last_logits(*m, {0, 17, 300, 5})) ASSERT_TRUE(std::isfinite(v));
  }
}

TEST(ModelLoader, YarnModelRuns) {
  ScratchDir dir;
  auto config = test::small_config();
  config["rope_scaling"] = {{"type", "yarn"},       {"factor", 4.0},  {"original_max_position_embeddings", 32},
                            {"beta_fast", 32},      {"beta_slow", 1}, {"mscale", 1.0},
                            {"mscale_all_dim", 1.0}};
  test::make_small_model(dir.path(), config);
  const auto m = load_model(dir.path());
  ASSERT_TRUE(m->config.yarn.has_value());
  // mscale_all_dim scales the softmax: (0.1 ln 4 + 1)^2 / sqrt(24).
  EXPECT_NEAR(m->config.attention_scale(), std::pow(0.1 * std::log(4.0) + 1.0, 2) / std::sqrt(24.0), 1e-6);
  for (float v : last_logits(*m, {0, 17, 300, 5})) ASSERT_TRUE(std::isfinite(v));
}

TEST(ModelLoader, MissingTensorIsNamed) {
  ScratchDir dir;
  test::make_small_model(dir.path());
  rewrite_tensors(dir.path(), [](auto& ts) {
    std::erase_if(ts, [](const TensorData& t) { return t.name == "model.layers.2.mlp.experts.3.up_proj.weight"; });
  });
  EXPECT_ERROR_CONTAINS(load_model(dir.path()), "missing tensor 'model.layers.2.mlp.experts.3.up_proj.weight'");
}

TEST(ModelLoader, WrongShapeIsNamed) {
  ScratchDir dir;
  test::make_small_model(dir.path());
  rewrite_tensors(dir.path(), [](auto& ts) {
    for (auto& t : ts) {
      if (t.name == "model.layers.1.self_attn.o_proj.weight") t.shape = {32, 64};
    }
  });
  EXPECT_ERROR_CONTAINS(load_model(dir.path()), "tensor 'model.layers.1.self_attn.o_proj.weight'");
  EXPECT_ERROR_CONTAINS(load_model(dir.path()), "shape [32, 64] but config.json implies [64, 32]");
}

TEST(ModelLoader, WrongDtypeIsNamed) {
  ScratchDir dir;
  test::make_small_model(dir.path());
  rewrite_tensors(dir.path(), [](auto& ts) {
    for (auto& t : ts) {
      if (t.name == "model.norm.weight") {
        t.dtype = DType::I16;  // same byte size as bf16, so the header stays consistent
      }
    }
  });
  EXPECT_ERROR_CONTAINS(load_model(dir.path()), "tensor 'model.norm.weight'");
  EXPECT_ERROR_CONTAINS(load_model(dir.path()), "dtype I16 is not supported");
}

// A NaN in the router or a norm would route every token of a layer to the
// lowest-numbered experts (or poison every row) without a word: each such
// tensor is checked at load, and the message names it and the element.
TEST(ModelLoader, NonFiniteRouterAndNormValuesAreNamed) {
  const auto poison = [](TensorData& t, size_t element) {
    const size_t width = dtype_size(t.dtype);
    if (t.dtype == DType::F32) {
      const float nan = std::nanf("");
      std::memcpy(t.bytes.data() + element * width, &nan, 4);
    } else {
      const uint16_t nan = t.dtype == DType::BF16 ? 0x7FC0 : 0x7E00;  // bf16 or f16 NaN
      std::memcpy(t.bytes.data() + element * width, &nan, 2);
    }
  };
  for (const auto& [name, element, message] : std::vector<std::tuple<std::string, size_t, std::string>>{
           {"model.layers.1.mlp.gate.e_score_correction_bias", 5,
            "element 5 is nan; norms and router biases must be finite"},
           {"model.layers.2.post_attention_layernorm.weight", 3, "element 3 is nan"},
           {"model.norm.weight", 0, "element 0 is nan"},
           {"model.layers.1.mlp.gate.weight", 64 + 7, "element [1, 7] is nan; the router's weights must be finite"},
       }) {
    ScratchDir dir;
    test::make_small_model(dir.path());
    rewrite_tensors(dir.path(), [&](auto& ts) {
      for (auto& t : ts) {
        if (t.name == name) poison(t, element);
      }
    });
    EXPECT_ERROR_CONTAINS(load_model(dir.path()), "tensor '" + name + "'");
    EXPECT_ERROR_CONTAINS(load_model(dir.path()), message);
  }
}

TEST(ModelLoader, LayerCountMismatchIsNamed) {
  ScratchDir dir;
  test::make_small_model(dir.path());
  auto config = test::small_config();
  config["num_hidden_layers"] = 2;
  test::write_file(dir / "config.json", config.dump());
  EXPECT_ERROR_CONTAINS(load_model(dir.path()), "belongs to layer 2 but config.json has num_hidden_layers 2");
}

TEST(ModelLoader, TokenizerLargerThanVocabularyIsRefused) {
  ScratchDir dir;
  auto config = test::small_config();
  test::make_small_model(dir.path(), config);
  config["vocab_size"] = 1000;
  test::write_file(dir / "config.json", config.dump());
  // The embedding shape check fires first; both name the disagreement.
  EXPECT_THROW(load_model(dir.path()), Error);
}

TEST(ModelLoader, NotADirectory) { EXPECT_ERROR_CONTAINS(load_model("/nonexistent/model"), "not a model directory"); }

}  // namespace
}  // namespace mote
