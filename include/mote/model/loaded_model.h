// Everything read from a Hugging Face model directory: config.json, the
// memory-mapped weights, and the tokenizer, checked against each other.
#pragma once

#include <filesystem>
#include <memory>

#include "mote/io/safetensors.h"
#include "mote/model/config.h"
#include "mote/model/weights.h"
#include "mote/tokenizer/tokenizer.h"

namespace mote {

struct LoadedModel {
  std::filesystem::path dir;
  ModelConfig config;
  WeightStore store;
  ModelWeights weights;
  Tokenizer tokenizer;
  std::vector<int32_t> eos_ids;  // generation stops at any of these
};

// Reads `dir/config.json`, after checking that `dir` is a directory.
ModelConfig read_model_dir_config(const std::filesystem::path& dir);

// Loads `dir`; `load_expert` picks the routed experts this process holds
// (all of them when empty). Without `shared_parts` (an expert shard) only
// those experts are loaded: no embeddings, attention, dense layers, shared
// experts or lm_head, and files holding none of its tensors stay unmapped.
// `memory`: where the matrices live (WeightMemory in weights.h).
std::unique_ptr<LoadedModel> load_model(const std::filesystem::path& dir, const ExpertFilter& load_expert = {},
                                        bool shared_parts = true, WeightMemory memory = WeightMemory::Map);

}  // namespace mote
