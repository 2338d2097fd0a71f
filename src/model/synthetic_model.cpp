#include "mote/model/synthetic_model.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "mote/io/safetensors_writer.h"
#include "mote/model/config.h"
#include "mote/model/weights.h"
#include "mote/ops/weight.h"
#include "mote/util/error.h"
#include "mote/util/rng.h"

namespace mote {
namespace {

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) fail("{}: cannot write", path.string());
}

// Decoder layer of a tensor name, or -1 for the ones outside layers.
int layer_of(const std::string& name) {
  if (!name.starts_with("model.layers.")) return -1;
  int layer = 0;
  std::from_chars(name.data() + 13, name.data() + name.size(), layer);
  return layer;
}

// The multi-token-prediction layer's extra tensors, as DeepSeek-V3/R1 name
// them (only their names matter: mote never maps them).
std::vector<TensorSpec> mtp_tensors(const ModelConfig& c) {
  std::vector<TensorSpec> out;
  for (int l = c.num_hidden_layers; l < c.num_hidden_layers + c.num_nextn_predict_layers; ++l) {
    const auto name = [&](const char* rest) { return fmt::format("model.layers.{}.{}", l, rest); };
    out.push_back({name("enorm.weight"), {c.hidden_size}, true});
    out.push_back({name("hnorm.weight"), {c.hidden_size}, true});
    out.push_back(
        {name("eh_proj.weight"), {c.hidden_size, 2 * static_cast<int64_t>(c.hidden_size)}, false, false, true});
    out.push_back({name("shared_head.norm.weight"), {c.hidden_size}, true});
  }
  return out;
}

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed, 0) {}
  double normal() {
    // Box-Muller from two uniforms; the generator is ours, so the file is the same everywhere.
    const double u1 = std::max(rng_.uniform(), 1e-300);
    const double u2 = rng_.uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
  }

  std::vector<TensorData> tensors(const TensorSpec& spec, bool fp8) {
    TensorData t;
    t.name = spec.name;
    t.shape = spec.shape;
    uint64_t n = 1;
    for (int64_t d : spec.shape) n *= static_cast<uint64_t>(d);
    if (spec.is_bias) {
      t.dtype = DType::F32;
      t.bytes.resize(n * 4);
      for (uint64_t i = 0; i < n; ++i) {
        const auto v = static_cast<float>(0.01 * normal());
        std::memcpy(t.bytes.data() + 4 * i, &v, 4);
      }
      return {std::move(t)};
    }
    if (fp8 && spec.quantizable && spec.shape.size() == 2) return quantized(std::move(t));
    if (spec.packed != TensorSpec::Packed::No) {
      // MXFP4: random e2m1 pairs; scales 2^-8 .. 2^-5, so that weights have
      // about the spread of the bf16 ones (0.02).
      t.dtype = DType::U8;
      t.bytes.resize(n);
      const bool blocks = spec.packed == TensorSpec::Packed::Blocks;
      for (uint64_t i = 0; i < n; ++i) {
        const auto u = static_cast<uint32_t>(rng_.uniform() * 256.0);
        t.bytes[i] = static_cast<std::byte>(blocks ? u : 119 + u % 4);
      }
      return {std::move(t)};
    }
    t.dtype = DType::BF16;
    t.bytes.resize(n * 2);
    for (uint64_t i = 0; i < n; ++i) {
      const uint16_t v = float_to_bf16(spec.is_norm ? 1.0f : static_cast<float>(0.02 * normal()));
      std::memcpy(t.bytes.data() + 2 * i, &v, 2);
    }
    return {std::move(t)};
  }

 private:
  // The weight in e4m3 with per-block scales amax / 448, and the scales.
  std::vector<TensorData> quantized(TensorData t) {
    const int64_t rows = t.shape[0], cols = t.shape[1];
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (auto& v : w) v = static_cast<float>(0.02 * normal());
    const int64_t srows = (rows + kFp8Block - 1) / kFp8Block, scols = (cols + kFp8Block - 1) / kFp8Block;
    TensorData scale{t.name + "_scale_inv",
                     DType::F32,
                     {srows, scols},
                     std::vector<std::byte>(static_cast<size_t>(srows * scols * 4))};
    t.dtype = DType::F8_E4M3;
    t.bytes.resize(w.size());
    for (int64_t br = 0; br < srows; ++br) {
      for (int64_t bc = 0; bc < scols; ++bc) {
        float amax = 0.0f;
        const int64_t r_end = std::min(rows, (br + 1) * kFp8Block), c_end = std::min(cols, (bc + 1) * kFp8Block);
        for (int64_t r = br * kFp8Block; r < r_end; ++r)
          for (int64_t c = bc * kFp8Block; c < c_end; ++c)
            amax = std::max(amax, std::fabs(w[static_cast<size_t>(r * cols + c)]));
        const float s = amax > 0.0f ? amax / 448.0f : 1.0f;
        std::memcpy(scale.bytes.data() + 4 * (br * scols + bc), &s, 4);
        for (int64_t r = br * kFp8Block; r < r_end; ++r)
          for (int64_t c = bc * kFp8Block; c < c_end; ++c) {
            const size_t i = static_cast<size_t>(r * cols + c);
            t.bytes[i] = static_cast<std::byte>(float_to_e4m3(w[i] / s));
          }
      }
    }
    std::vector<TensorData> out;
    out.push_back(std::move(t));
    out.push_back(std::move(scale));
    return out;
  }

  Rng rng_;
};

}  // namespace

void write_synthetic_model(const std::filesystem::path& dir, const nlohmann::json& config_json, uint64_t seed,
                           const std::filesystem::path& tokenizer_from, const SyntheticLayout& layout) {
  const ModelConfig config = parse_model_config(config_json, "synthetic config");
  if (layout.index_only && layout.layers_per_shard <= 0) fail("an index-only synthetic model needs layers per shard");
  std::filesystem::create_directories(dir);
  write_text(dir / "config.json", config_json.dump(2) + "\n");
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    std::filesystem::copy_file(tokenizer_from / name, dir / name, std::filesystem::copy_options::overwrite_existing);
  }

  auto specs = expected_tensors(config);
  const auto mtp = mtp_tensors(config);
  specs.insert(specs.end(), mtp.begin(), mtp.end());
  const bool fp8 = config.fp8.has_value();
  Generator gen(seed);
  if (layout.layers_per_shard <= 0) {
    std::vector<TensorData> tensors;
    for (const TensorSpec& spec : specs) {
      for (auto& t : gen.tensors(spec, fp8)) tensors.push_back(std::move(t));
    }
    write_safetensors(dir / "model.safetensors", tensors);
    return;
  }

  // Shards by decoder layer, as DeepSeek ships them: embeddings in the
  // first, final norm and lm_head in the last, the MTP layer alone.
  const int total_layers = config.num_hidden_layers + config.num_nextn_predict_layers;
  const int shards = (config.num_hidden_layers + layout.layers_per_shard - 1) / layout.layers_per_shard +
                     (config.num_nextn_predict_layers > 0 ? 1 : 0);
  const auto shard_of = [&](const std::string& name) {
    const int layer = layer_of(name);
    if (layer < 0)
      return name.starts_with("model.embed_tokens") ? 0 : (config.num_hidden_layers - 1) / layout.layers_per_shard;
    if (layer >= config.num_hidden_layers) return shards - 1;
    return layer / layout.layers_per_shard;
  };
  (void)total_layers;
  const auto file_name = [&](int shard) {
    return fmt::format("model-{:05d}-of-{:05d}.safetensors", shard + 1, shards);
  };
  nlohmann::json weight_map = nlohmann::json::object();
  std::map<int, std::vector<const TensorSpec*>> by_shard;
  for (const TensorSpec& spec : specs) {
    const int shard = shard_of(spec.name);
    by_shard[shard].push_back(&spec);
    weight_map[spec.name] = file_name(shard);
    if (fp8 && spec.quantizable && spec.shape.size() == 2) weight_map[spec.name + "_scale_inv"] = file_name(shard);
  }
  nlohmann::json index{{"metadata", nlohmann::json::object()}, {"weight_map", weight_map}};
  write_text(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  if (layout.index_only) return;
  for (const auto& [shard, list] : by_shard) {
    std::vector<TensorData> tensors;
    for (const TensorSpec* spec : list) {
      for (auto& t : gen.tensors(*spec, fp8)) tensors.push_back(std::move(t));
    }
    write_safetensors(dir / file_name(shard), tensors);
  }
}

}  // namespace mote
