// gpt-oss as published: its config read into the shared parts, MXFP4
// experts loaded as views of the stacked tensors, YaRN without the ramp's
// rounding, the clamped SwiGLU, and every malformed input named.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "model_files.h"
#include "mote/expert_parallel/local_experts.h"
#include "mote/io/json_file.h"
#include "mote/model/kv_cache.h"
#include "mote/model/loaded_model.h"
#include "mote/model/moe_transformer.h"
#include "mote/ops/elementwise.h"
#include "mote/ops/rope.h"
#include "mote/tokenizer/harmony.h"

namespace mote {
namespace {

using nlohmann::json;

const std::filesystem::path kFixture = std::filesystem::path(MOTE_SOURCE_DIR) / "models" / "tiny-gpt-oss";
const std::string kGateUp = "model.layers.1.mlp.experts.gate_up_proj";

json fixture_config() { return read_json_file(kFixture / "config.json"); }

// A copy of the fixture's weights that `edit` changes, loaded with `config`
// (the tokenizer, slow to read and not what is tested, left out); the error
// must contain every one of `needles`.
void expect_load_error(const std::function<void(std::vector<TensorData>&)>& edit,
                       const std::vector<std::string>& needles) {
  test::ScratchDir dir;
  std::filesystem::copy_file(kFixture / "model.safetensors", dir / "model.safetensors");
  test::rewrite_tensors(dir.path(), edit);
  const ModelConfig config = load_model_config(kFixture / "config.json");
  try {
    const WeightStore store = WeightStore::open_model_dir(dir.path(), [](std::string_view) { return true; });
    load_model_weights(store, config, [](int, int) { return true; });
    ADD_FAILURE() << "no error; expected: " << needles.back();
  } catch (const Error& e) {
    for (const auto& needle : needles)
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

TensorData& find(std::vector<TensorData>& ts, const std::string& name) {
  for (auto& t : ts) {
    if (t.name == name) return t;
  }
  throw std::runtime_error("no tensor " + name);
}

TEST(GptOss, ConfigReadsIntoTheSharedParts) {
  const ModelConfig c = load_model_config(kFixture / "config.json");
  EXPECT_EQ(c.attention, AttentionKind::Gqa);
  EXPECT_TRUE(c.rope_neox);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.attention_sinks);
  EXPECT_EQ(c.sliding_window, 8);
  EXPECT_EQ(c.sliding_layers, (std::vector<uint8_t>{1, 0, 1, 0}));
  EXPECT_EQ(c.router, RouterKind::TopkSoftmax);
  EXPECT_TRUE(c.router_logit_bias);
  EXPECT_FALSE(c.router_bias);
  EXPECT_EQ(c.n_routed_experts, 16);
  EXPECT_EQ(c.num_experts_per_tok, 4);
  EXPECT_EQ(c.moe_layers().size(), 4u);
  EXPECT_FLOAT_EQ(c.swiglu_limit, 7.0f);
  EXPECT_FLOAT_EQ(c.swiglu_alpha, 1.702f);
  EXPECT_TRUE(c.mxfp4.has_value());
  ASSERT_TRUE(c.yarn.has_value());
  EXPECT_FALSE(c.yarn->truncate);
  EXPECT_FLOAT_EQ(c.attention_scale(), 0.25f);  // head_dim^-0.5: YaRN scales cos and sin instead
}

TEST(GptOss, YarnWithoutRoundingGivesTheReferenceFrequencies) {
  const ModelConfig c = load_model_config(kFixture / "config.json");
  const Rope rope(c.rope());
  // The model card's values (the original implementation's formula), and
  // cos^2 + sin^2 = (0.1 ln 32 + 1)^2.
  const double expected[] = {1.0, 0.225418, 0.0508133, 0.00679496, 0.000456484, 1.81883e-05, 4.09998e-06, 9.24209e-07};
  float cos_v[8], sin_v[8];
  rope.angles(1, cos_v, sin_v);
  for (int i = 0; i < 8; ++i) {
    EXPECT_NEAR(std::atan2(sin_v[i], cos_v[i]) / expected[i], 1.0, 1e-5) << i;
    EXPECT_NEAR(std::hypot(cos_v[i], sin_v[i]), 0.1 * std::log(32.0) + 1.0, 1e-6) << i;
  }
}

TEST(GptOss, ClampedSwigluClampsGateAboveAndUpBothWays) {
  const float gate_up[] = {1.0f, 2.0f, 9.0f, -8.0f, -3.0f, 7.5f};
  float out[3];
  clamped_swiglu(gate_up, 7.0f, 1.702f, out, 3);
  const auto glu = [](double g) { return g / (1.0 + std::exp(-1.702 * g)); };
  EXPECT_NEAR(out[0], 3.0 * glu(1.0), 1e-6);
  EXPECT_NEAR(out[1], -6.0 * glu(7.0), 1e-5);
  EXPECT_NEAR(out[2], 8.0 * glu(-3.0), 1e-6);
}

TEST(GptOss, ExpertsAreMxfp4ViewsOfTheStackedTensors) {
  const auto model = load_model(kFixture);
  const FfnWeights& e = model->weights.layers[1].experts[5];
  EXPECT_EQ(e.gate_up.dtype, DType::MXFP4);
  EXPECT_EQ(e.gate_up.rows, 256);
  EXPECT_EQ(e.gate_up.cols, 32);
  EXPECT_EQ(e.down.rows, 32);
  EXPECT_EQ(e.down.cols, 128);
  EXPECT_EQ(e.gate_up_bias.size(), 256u);
  EXPECT_EQ(e.down_bias.size(), 32u);
  EXPECT_TRUE(e.gate.empty());
  // Expert 5's slice: 5 x 256 rows of 16 bytes into the stacked blocks.
  EXPECT_EQ(e.gate_up.data - model->weights.layers[1].experts[0].gate_up.data, 5 * 256 * 16);
  EXPECT_EQ(e.gate_up.scales - model->weights.layers[1].experts[0].gate_up.scales, 5 * 256);
  const auto& attention = model->weights.layers[0].attention;
  EXPECT_EQ(attention.q_bias.size(), 64u);
  EXPECT_EQ(attention.o_bias.size(), 32u);
  EXPECT_EQ(attention.sinks.size(), 4u);
  EXPECT_EQ(model->weights.layers[0].router.logit_bias.size(), 16u);
}

TEST(GptOss, SlidingLayersKeepOnlyTheirWindowInTheKvCache) {
  const ModelConfig c = load_model_config(kFixture / "config.json");
  KvCache cache(c, 2);
  cache.reset(0, 80);  // 10 windows
  cache.reset(1, 5);   // shorter than a window
  EXPECT_EQ(cache.rows(0, 0), 8);
  EXPECT_EQ(cache.rows(0, 1), 80);
  EXPECT_EQ(cache.rows(1, 2), 5);
  EXPECT_EQ(cache.floats(0), static_cast<size_t>(8 + 80 + 8 + 80) * c.kv_entry_size());
  // Positions a window apart share a sliding layer's entry, never a full one's.
  EXPECT_EQ(cache.entry(0, 0, 3), cache.entry(0, 0, 11));
  EXPECT_NE(cache.entry(0, 1, 3), cache.entry(0, 1, 11));
}

// An 80-token prompt (10 windows) fed in one step, in chunks of 3 and 13,
// and token by token, beside a second sequence in the same steps: the same
// logits at every position, bit for bit, whichever keys the ring still holds.
TEST(GptOss, WindowedCacheGivesTheSameBitsForAnyChunking) {
  const auto model = load_model(kFixture);
  const ModelConfig& c = model->config;
  LocalExperts experts(model->weights, c);
  MoeTransformer transformer(c, model->weights, experts);
  const int n = 80, vocab = c.vocab_size;
  std::vector<int32_t> ids(n);
  for (int p = 0; p < n; ++p) ids[p] = (p * 7919 + 13) % 199998;
  const auto run = [&](int chunk) {
    KvCache cache(c, 2);
    cache.reset(0, n);
    cache.reset(1, n);
    std::vector<float> logits(static_cast<size_t>(n) * vocab);
    for (int p0 = 0; p0 < n; p0 += chunk) {
      std::vector<StepRow> rows;
      const int end = std::min(n, p0 + chunk);
      for (int p = p0; p < end; ++p) rows.push_back({1, p, ids[static_cast<size_t>(n - 1 - p)]});
      for (int p = p0; p < end; ++p) rows.push_back({0, p, ids[static_cast<size_t>(p)]});
      std::vector<int32_t> wanted;
      for (int p = p0; p < end; ++p) wanted.push_back(end - p0 + p - p0);
      std::vector<float> step(wanted.size() * static_cast<size_t>(vocab));
      transformer.forward(rows, cache, wanted, step.data(), {});
      std::copy(step.begin(), step.end(), logits.begin() + static_cast<ptrdiff_t>(p0) * vocab);
    }
    return logits;
  };
  const auto whole = run(n);
  for (const int chunk : {1, 3, 13}) {
    const auto chunked = run(chunk);
    for (size_t i = 0; i < whole.size(); ++i)
      ASSERT_EQ(chunked[i], whole[i]) << "chunks of " << chunk << ", position " << i / vocab;
  }
}

TEST(GptOss, HarmonyRepliesShowTheirFinalChannel) {
  const Tokenizer tokenizer = Tokenizer::load(kFixture);
  const auto final_of = [&](const std::string& reply) {
    return harmony_final_text(tokenizer, tokenizer.encode(reply, false));
  };
  EXPECT_EQ(final_of("<|channel|>analysis<|message|>The user greets.<|end|><|start|>assistant<|channel|>final"
                     "<|message|>Hello there!<|return|>"),
            "Hello there!");
  // Cut off in the final message: what it has so far.
  EXPECT_EQ(final_of("<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Hel"),
            "Hel");
  EXPECT_EQ(final_of("<|channel|>final <|constrain|>json<|message|>{}<|call|>"), "{}");
  // Only reasoning, or no harmony at all: nothing to pick out.
  EXPECT_EQ(final_of("<|channel|>analysis<|message|>Still thinking"), std::nullopt);
  EXPECT_EQ(final_of("plain text"), std::nullopt);
}

TEST(GptOss, MalformedMxfp4TensorsAreNamed) {
  const std::string blocks = "tensor '" + kGateUp + "_blocks' in ", scales = "tensor '" + kGateUp + "_scales' in ";
  expect_load_error(
      [](auto& ts) { std::erase_if(ts, [](const TensorData& t) { return t.name == kGateUp + "_scales"; }); },
      {blocks, "model.safetensors: MXFP4 blocks without their scales '" + kGateUp + "_scales'"});
  expect_load_error(
      [](auto& ts) {
        auto& b = find(ts, kGateUp + "_blocks");
        b.shape = {16, 256, 1, 8};
        b.bytes.resize(b.bytes.size() / 2);
      },
      {blocks, "model.safetensors: shape [16, 256, 1, 8] but config.json implies [16, 256, 1, 16]"});
  expect_load_error(
      [](auto& ts) {
        find(ts, kGateUp + "_scales").shape = {16, 128, 2};
      },
      {scales, "model.safetensors: shape [16, 128, 2] but config.json implies [16, 256, 1]"});
  expect_load_error([](auto& ts) { find(ts, kGateUp + "_blocks").dtype = DType::I8; },
                    {blocks, "model.safetensors: dtype I8 but MXFP4 blocks are U8"});
  expect_load_error([](auto& ts) { find(ts, kGateUp + "_scales").bytes[3 * 256 + 17] = std::byte{255}; },
                    {scales, "model.safetensors: scale byte 255 (NaN in e8m0) at [3, 17, 0]"});
  // 2^127 times a code of 6 is beyond float32.
  expect_load_error(
      [](auto& ts) {
        find(ts, kGateUp + "_scales").bytes[0] = std::byte{254};
        find(ts, kGateUp + "_blocks").bytes[0] = std::byte{0x07};
      },
      {scales, "model.safetensors: scale byte 254 at [0, 0, 0] makes a weight overflow float32"});
  expect_load_error(
      [](auto& ts) { std::erase_if(ts, [](const TensorData& t) { return t.name == kGateUp + "_bias"; }); },
      {"tensor '" + kGateUp + "_bias' is not in ", "model.safetensors"});
  expect_load_error(
      [](auto& ts) {
        find(ts, "model.layers.2.self_attn.sinks").shape = {2, 2};
      },
      {"tensor 'model.layers.2.self_attn.sinks' in ", ": shape [2, 2] but config.json implies [4]"});
}

TEST(GptOss, UnsupportedConfigsAreRefusedByName) {
  const auto expect_config_error = [](const json& j, const std::string& message) {
    EXPECT_ERROR_CONTAINS(parse_model_config(j, "cfg.json"), message);
  };
  json j = fixture_config();
  j["quantization_config"]["quant_method"] = "gptq";
  expect_config_error(j, "cfg.json: quantization_config quant_method 'gptq' is not supported");
  j = fixture_config();
  j.erase("quantization_config");
  expect_config_error(j, "cfg.json: gpt_oss without quantization_config quant_method mxfp4 is not supported");
  j = fixture_config();
  j["quantization_config"]["bits"] = 4;
  expect_config_error(j, "cfg.json: quantization_config key 'bits' is not supported");
  j = fixture_config();
  j["layer_types"][1] = "chunked_attention";
  expect_config_error(j,
                      "cfg.json: layer_types[1] = \"chunked_attention\" is not supported (supported: "
                      "sliding_attention, full_attention)");
  j = fixture_config();
  j["layer_types"].erase(3);
  expect_config_error(j, "cfg.json: layer_types must list one type for each of the 4 layers");
  j = fixture_config();
  j["experts_per_token"] = 2;
  expect_config_error(j, "cfg.json: experts_per_token 2 and num_experts_per_tok 4 disagree");
  j = fixture_config();
  j["intermediate_size"] = 120;
  expect_config_error(j, "must be multiples of 32 (MXFP4 blocks)");
  j = fixture_config();
  j["sliding_window"] = nullptr;
  expect_config_error(j, "cfg.json: layer_types has sliding_attention layers but sliding_window is not a positive");
  j = fixture_config();
  j["rope_scaling"]["truncate"] = "no";
  expect_config_error(j, "key 'truncate' must be true or false");
  // MXFP4 is gpt-oss's alone; other families' configs refuse it.
  j = test::small_config();
  j["quantization_config"] = {{"quant_method", "mxfp4"}};
  expect_config_error(j, "cfg.json: quantization_config quant_method mxfp4 is supported for gpt_oss only");
}

}  // namespace
}  // namespace mote
