// Random-weight models of any DeepSeek-V3 shape, written in the Hugging Face
// layout, for benchmarks and tests at sizes the bundled model cannot show.
// Weights are bf16 N(0, 0.02) from a seeded generator; norm weights are 1,
// router biases small and F32. With a quantization_config in the config,
// the decoder layers' projections are stored as DeepSeek-R1 stores them:
// e4m3 with one F32 weight_scale_inv per 128x128 block (amax / 448). The
// tokenizer files are copied from `tokenizer_from` (so vocab_size must
// cover its vocabulary).
#pragma once

#include <cstdint>
#include <filesystem>

#include <nlohmann/json.hpp>

namespace mote {

struct SyntheticLayout {
  // Decoder layers per shard file (model-0000i-of-0000n.safetensors plus
  // model.safetensors.index.json); 0 writes one model.safetensors.
  int layers_per_shard = 0;
  // Only config.json, the tokenizer and the index (no weights): the
  // directory a user has before downloading a large model. Needs sharding.
  bool index_only = false;
};

void write_synthetic_model(const std::filesystem::path& dir, const nlohmann::json& config, uint64_t seed,
                           const std::filesystem::path& tokenizer_from, const SyntheticLayout& layout = {});

}  // namespace mote
