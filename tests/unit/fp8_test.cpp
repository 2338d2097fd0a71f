// FP8 (e4m3 with 128x128 block scales): the codec, the kernels against a
// double-precision reference on the dequantized matrix, and every way an
// FP8 checkpoint can be wrong, each refused with the exact message.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "model_files.h"
#include "mote/expert_parallel/local_experts.h"
#include "mote/io/safetensors_writer.h"
#include "mote/model/loaded_model.h"
#include "mote/model/moe_transformer.h"
#include "mote/ops/matmul.h"

namespace mote {
namespace {

using nlohmann::json;
using test::ScratchDir;

json fp8_config() {
  json c = test::small_config();
  c["quantization_config"] = {
      {"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"}, {"weight_block_size", {128, 128}}};
  return c;
}

TEST(Fp8, DecodesEveryCodeAsTheFormatSays) {
  for (int b = 0; b < 256; ++b) {
    const auto byte = static_cast<uint8_t>(b);
    const float v = e4m3_to_float(byte);
    const int e = (b >> 3) & 0xF, m = b & 7;
    if ((b & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(v)) << b;
      continue;
    }
    const double magnitude = e == 0 ? m / 8.0 * std::ldexp(1.0, -6) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7);
    EXPECT_EQ(v, static_cast<float>((b & 0x80) ? -magnitude : magnitude)) << b;
    EXPECT_EQ(float_to_e4m3(v), v == 0.0f ? (b & 0x80) : b) << b;  // every finite code round-trips
  }
  EXPECT_EQ(e4m3_to_float(0x7E), 448.0f);
  EXPECT_EQ(float_to_e4m3(1e9f), 0x7E);  // saturates, never NaN
  EXPECT_EQ(float_to_e4m3(-500.0f), 0xFE);
  EXPECT_EQ(float_to_e4m3(1.0625f), 0x38);  // tie between 1 and 1.125: to even
  EXPECT_EQ(float_to_e4m3(1.1875f), 0x3A);  // tie between 1.125 and 1.25: to even
}

// A random FP8 matrix with block scales, stored at an unaligned address.
struct Fp8Matrix {
  std::vector<std::byte> bytes, scales;
  Weight weight;
  std::vector<double> dequantized;  // fp8 * scale, as the reference computes it (in fp32)
};

Fp8Matrix random_fp8(int rows, int cols, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> code(0, 255);
  std::uniform_real_distribution<float> scale(1e-4f, 1e-2f);
  Fp8Matrix m;
  m.bytes.resize(static_cast<size_t>(rows) * cols + 1);
  const int sr = (rows + 127) / 128, sc = (cols + 127) / 128;
  m.scales.resize(static_cast<size_t>(sr) * sc * 4 + 1);
  for (int i = 0; i < rows * cols; ++i) {
    int b = code(gen);
    if ((b & 0x7F) == 0x7F) b ^= 1;
    m.bytes[1 + i] = static_cast<std::byte>(b);
  }
  for (int i = 0; i < sr * sc; ++i) {
    const float s = scale(gen);
    std::memcpy(m.scales.data() + 1 + 4 * i, &s, 4);
  }
  m.weight = Weight{DType::F8_E4M3, rows, cols, m.bytes.data() + 1, m.scales.data() + 1, 0};
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      m.dequantized.push_back(e4m3_to_float(static_cast<uint8_t>(m.bytes[1 + r * cols + c])) * m.weight.scale(r, c));
  return m;
}

void expect_matmul_matches_and_is_batch_independent(int rows, int cols, int n) {
  SCOPED_TRACE("rows " + std::to_string(rows) + " cols " + std::to_string(cols) + " tokens " + std::to_string(n));
  const auto m = random_fp8(rows, cols, 3);
  std::mt19937 gen(9);
  std::normal_distribution<float> dist;
  std::vector<float> x(static_cast<size_t>(n) * cols);
  for (auto& v : x) v = dist(gen);
  std::vector<float> y(static_cast<size_t>(n) * rows), alone(rows);
  matmul(x.data(), n, m.weight, y.data());
  for (int t = 0; t < n; ++t) {
    matmul(x.data() + static_cast<size_t>(t) * cols, 1, m.weight, alone.data());
    for (int r = 0; r < rows; ++r) {
      double ref = 0, mag = 0;
      for (int c = 0; c < cols; ++c) {
        ref += static_cast<double>(x[t * cols + c]) * m.dequantized[static_cast<size_t>(r) * cols + c];
        mag += std::abs(static_cast<double>(x[t * cols + c]) * m.dequantized[static_cast<size_t>(r) * cols + c]);
      }
      ASSERT_NEAR(y[static_cast<size_t>(t) * rows + r], ref, 1e-6 * mag + 1e-30) << t << "," << r;
      ASSERT_EQ(y[static_cast<size_t>(t) * rows + r], alone[r])
          << "token " << t << " row " << r << " depends on its batch";
    }
  }
  // A row slice that starts inside a block keeps its rows' scales. Starting
  // off a multiple of 4 rows, one row block straddles two scale blocks and
  // scales each weight instead of the activations: the same values, not
  // always the same bits as the whole matrix, but batch-independent too.
  for (const int first : {100, 102}) {
    const Weight slice = m.weight.row_slice(first, 60);
    std::vector<float> ys(static_cast<size_t>(n) * 60), ys_alone(60);
    matmul(x.data(), n, slice, ys.data());
    for (int t = 0; t < n; ++t) {
      matmul(x.data() + static_cast<size_t>(t) * cols, 1, slice, ys_alone.data());
      for (int r = 0; r < 60; ++r) {
        const float got = ys[static_cast<size_t>(t) * 60 + r], whole = y[static_cast<size_t>(t) * rows + first + r];
        EXPECT_EQ(got, ys_alone[r]) << "slice at " << first << ": token " << t << " row " << r
                                    << " depends on its batch";
        if (first % 4 == 0) {
          EXPECT_EQ(got, whole) << t << "," << r;
        } else {
          EXPECT_NEAR(got, whole, 1e-5f * (1.0f + std::abs(whole))) << t << "," << r;
        }
      }
    }
  }
}

TEST(Fp8, MatmulMatchesTheDequantizedMatrixAndIsBatchIndependent) {
  // Partial blocks in both directions and a column count that is not a
  // multiple of 8; for prefill, several column chunks and token tiles of 6
  // with a remainder.
  expect_matmul_matches_and_is_batch_independent(300, 203, 5);
  expect_matmul_matches_and_is_batch_independent(236, 1100, 13);
}

TEST(Fp8, MatmulByColumnsMatchesTheDequantizedMatrix) {
  const int rows = 140, cols = 150, n = 6;
  const auto m = random_fp8(rows, cols, 4);
  std::vector<float> x(static_cast<size_t>(n) * rows);
  std::mt19937 gen(5);
  std::normal_distribution<float> dist;
  for (auto& v : x) v = dist(gen);
  std::vector<float> y(static_cast<size_t>(n) * cols);
  matmul_by_columns(x.data(), rows, n, m.weight, y.data(), cols);
  for (int t = 0; t < n; ++t) {
    const float* xt = x.data() + static_cast<size_t>(t) * rows;
    for (int c = 0; c < cols; ++c) {
      double ref = 0, mag = 0;
      for (int r = 0; r < rows; ++r) {
        ref += xt[r] * m.dequantized[static_cast<size_t>(r) * cols + c];
        mag += std::abs(xt[r] * m.dequantized[static_cast<size_t>(r) * cols + c]);
      }
      EXPECT_NEAR(y[static_cast<size_t>(t) * cols + c], ref, 1e-6 * mag + 1e-30) << c;
    }
    // Alone, the same bits as in the batch.
    std::vector<float> alone(cols);
    matmul_by_columns(xt, rows, 1, m.weight, alone.data(), cols);
    for (int c = 0; c < cols; ++c)
      ASSERT_EQ(alone[c], y[static_cast<size_t>(t) * cols + c]) << "token " << t << " column " << c;
  }
}

TEST(Fp8, SyntheticFp8ModelLoadsAndRuns) {
  ScratchDir dir;
  test::make_small_model(dir.path(), fp8_config());
  const auto m = load_model(dir.path());
  ASSERT_TRUE(m->config.fp8.has_value());
  EXPECT_EQ(m->weights.layers[1].experts[0].gate.dtype, DType::F8_E4M3);
  EXPECT_EQ(m->weights.layers[1].router.gate.dtype, DType::BF16);  // the router stays as shipped
  LocalExperts local_experts(m->weights, m->config);
  MoeTransformer model(m->config, m->weights, local_experts);
  KvCache cache(m->config, 1);
  cache.reset(0, 4);
  std::vector<StepRow> rows{{0, 0, 0}, {0, 1, 17}, {0, 2, 300}, {0, 3, 5}};
  std::vector<float> logits(m->config.vocab_size);
  const int32_t last = 3;
  model.forward(rows, cache, {&last, 1}, logits.data());
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
}

TEST(Fp8, MultiTokenPredictionLayerIsNeverMapped) {
  ScratchDir dir;
  json config = fp8_config();
  config["num_nextn_predict_layers"] = 1;
  write_synthetic_model(dir.path(), config, 7, test::bundled_model(), {.layers_per_shard = 1});
  const auto m = load_model(dir.path());
  const auto mapped = m->store.paths();
  EXPECT_EQ(mapped.size(), 3u);  // the three decoder layers' shards, not the MTP layer's
  for (const auto& p : mapped) EXPECT_NE(p.filename().string(), "model-00004-of-00004.safetensors");
  // An expert shard maps only the files holding its experts.
  const auto shard = load_model(
      dir.path(), [](int layer, int) { return layer == 1; }, false);
  ASSERT_EQ(shard->store.paths().size(), 1u);
  EXPECT_EQ(shard->store.paths()[0].filename().string(), "model-00003-of-00004.safetensors");
}

void expect_config_error(const json& j, const std::string& message) {
  EXPECT_ERROR_CONTAINS(parse_model_config(j, "cfg.json"), message);
}

TEST(Fp8, UnsupportedQuantizationIsRefusedByName) {
  json j = fp8_config();
  j["quantization_config"]["quant_method"] = "gptq";
  expect_config_error(
      j,
      "cfg.json: quantization_config quant_method 'gptq' is not supported (supported: quant_method fp8 (fmt e4m3, "
      "activation_scheme dynamic, weight_block_size [128, 128]), or mxfp4 (gpt_oss))");
  j = fp8_config();
  j["quantization_config"]["weight_block_size"] = {64, 64};
  expect_config_error(j, "cfg.json: quantization_config weight_block_size [64,64] is not supported");
  j = fp8_config();
  j["quantization_config"]["fmt"] = "e5m2";
  expect_config_error(j, "cfg.json: quantization_config fmt 'e5m2' is not supported");
  j = fp8_config();
  j["quantization_config"]["activation_scheme"] = "static";
  expect_config_error(j, "cfg.json: quantization_config activation_scheme 'static' is not supported");
  j = fp8_config();
  j["quantization_config"].erase("weight_block_size");
  expect_config_error(j, "cfg.json: quantization_config has no 'weight_block_size'");
}

// Rewrites one tensor of an FP8 small model and expects `message` from loading it.
void expect_load_error(const std::function<void(std::vector<TensorData>&)>& edit, const std::string& message,
                       const json& config = fp8_config()) {
  ScratchDir dir;
  test::make_small_model(dir.path(), fp8_config());
  test::rewrite_tensors(dir.path(), edit);
  test::write_file(dir / "config.json", config.dump());
  EXPECT_ERROR_CONTAINS(load_model(dir.path()), message);
}

TensorData& find(std::vector<TensorData>& ts, const std::string& name) {
  for (auto& t : ts) {
    if (t.name == name) return t;
  }
  throw std::runtime_error("no tensor " + name);
}

const std::string kExpert = "model.layers.2.mlp.experts.3.up_proj.weight";

TEST(Fp8, Fp8TensorWithoutItsScaleIsNamed) {
  expect_load_error(
      [](auto& ts) { std::erase_if(ts, [](const TensorData& t) { return t.name == kExpert + "_scale_inv"; }); },
      "tensor '" + kExpert + "' in ");
  expect_load_error(
      [](auto& ts) { std::erase_if(ts, [](const TensorData& t) { return t.name == kExpert + "_scale_inv"; }); },
      ": FP8 weight without its scale tensor '" + kExpert + "_scale_inv'");
}

TEST(Fp8, ScaleOfTheWrongShapeIsNamed) {
  // A 32 x 64 matrix is one block: a scale of two blocks is wrong.
  expect_load_error(
      [](auto& ts) {
        auto& s = find(ts, kExpert + "_scale_inv");
        s.shape = {2, 1};
        s.bytes.resize(8);
      },
      "tensor '" + kExpert + "_scale_inv' in ");
  expect_load_error(
      [](auto& ts) {
        auto& s = find(ts, kExpert + "_scale_inv");
        s.shape = {2, 1};
        s.bytes.resize(8);
      },
      ": shape [2, 1] but the 128x128 blocks of '" + kExpert + "' [32, 64] need [1, 1]");
}

TEST(Fp8, NonFiniteScalesAreNamed) {
  for (const float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    expect_load_error([&](auto& ts) { std::memcpy(find(ts, kExpert + "_scale_inv").bytes.data(), &bad, 4); },
                      "tensor '" + kExpert + "_scale_inv' in ");
    expect_load_error([&](auto& ts) { std::memcpy(find(ts, kExpert + "_scale_inv").bytes.data(), &bad, 4); },
                      ": block [0, 0] has the non-finite scale " + fmt::format("{}", bad));
  }
}

TEST(Fp8, NanByteIsNamed) {
  expect_load_error([](auto& ts) { find(ts, kExpert).bytes[2 * 64 + 5] = std::byte{0xFF}; },
                    ": FP8 byte 0xff at [2, 5] encodes NaN");
  expect_load_error([](auto& ts) { find(ts, kExpert).bytes[0] = std::byte{0x7F}; }, "tensor '" + kExpert + "' in ");
}

TEST(Fp8, Fp8WithoutQuantizationConfigAndOrphanScalesAreRefused) {
  expect_load_error([](auto&) {}, "tensor 'model.layers.0.self_attn.q_a_proj.weight' in ", test::small_config());
  expect_load_error([](auto&) {}, ": dtype F8_E4M3 but config.json has no quantization_config saying how to read it",
                    test::small_config());
  expect_load_error(
      [](auto& ts) {
        ts.push_back({"model.norm.weight_scale_inv", DType::F32, {1, 1}, std::vector<std::byte>(4)});
        TensorData& router = find(ts, "model.layers.1.mlp.gate.weight");
        ts.push_back({router.name + "_scale_inv", DType::F32, {1, 1}, std::vector<std::byte>(4)});
      },
      "tensor 'model.layers.1.mlp.gate.weight_scale_inv' in ");
  expect_load_error(
      [](auto& ts) {
        ts.push_back({"model.layers.1.mlp.gate.weight_scale_inv", DType::F32, {1, 1}, std::vector<std::byte>(4)});
      },
      ": a block scale for 'model.layers.1.mlp.gate.weight', which is BF16, not F8_E4M3");
  expect_load_error([](auto& ts) { find(ts, kExpert + "_scale_inv").dtype = DType::I32; },
                    ": dtype I32 but FP8 block scales must be F32");
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

// Every header of a sharded model is checked before any file is mapped:
// a corrupt header in the last shard (even the never-used MTP shard) fails
// the load, naming that file.
TEST(Fp8, EveryShardHeaderIsValidatedBeforeMapping) {
  test::ScratchDir dir;
  json config = fp8_config();
  config["num_nextn_predict_layers"] = 1;
  write_synthetic_model(dir.path(), config, 7, test::bundled_model(), {.layers_per_shard = 1});
  const auto last = dir / "model-00004-of-00004.safetensors";
  std::string bytes;
  {
    std::ifstream in(last, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  bytes[8] = '[';  // the header is no longer a JSON object
  test::write_file(last, bytes);
  EXPECT_ERROR_CONTAINS(load_model(dir.path()), last.string() + " (safetensors header): invalid JSON");
}

}  // namespace
}  // namespace mote
