// Random-weight models of any DeepSeek-V3 shape, written in the Hugging Face
// layout, for benchmarks and tests at sizes the bundled model cannot show.
// Weights are bf16 N(0, 0.02) from a seeded generator; norm weights are 1,
// router biases small and F32. The tokenizer files are copied from
// `tokenizer_from` (so vocab_size must cover its vocabulary).
#pragma once

#include <cstdint>
#include <filesystem>

#include <nlohmann/json.hpp>

namespace mote {

void write_synthetic_model(const std::filesystem::path& dir, const nlohmann::json& config, uint64_t seed,
                           const std::filesystem::path& tokenizer_from);

}  // namespace mote
