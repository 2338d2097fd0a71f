#include "mote/model/loaded_model.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "mote/io/json_file.h"
#include "mote/util/error.h"
#include "mote/util/stop_signal.h"

namespace mote {

ModelConfig read_model_dir_config(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    fail("{}: not a model directory (name the model with --model DIR: a Hugging Face model directory)", dir.string());
  }
  return load_model_config(dir / "config.json");
}

std::unique_ptr<LoadedModel> load_model(const std::filesystem::path& dir, const ExpertFilter& load_expert,
                                        bool shared_parts, WeightMemory memory) {
  std::error_code ec;
  auto m = std::make_unique<LoadedModel>();
  m->dir = dir;
  m->config = read_model_dir_config(dir);
  // The small files first, then every safetensors header: a problem anywhere
  // is found in seconds, before gigabytes are mapped.
  stop_point("loading the model");
  m->tokenizer = Tokenizer::load(dir);
  stop_point("loading the model");
  if (m->tokenizer.vocab_size() > m->config.vocab_size) {
    fail("{}: the tokenizer has {} tokens but config.json has vocab_size {}", dir.string(), m->tokenizer.vocab_size(),
         m->config.vocab_size);
  }
  const ExpertFilter all = [](int, int) { return true; };
  const ExpertFilter& experts = load_expert ? load_expert : all;
  m->store = WeightStore::open_model_dir(
      dir, [&](std::string_view name) { return tensor_used(m->config, experts, shared_parts, name); });
  m->weights = load_model_weights(m->store, m->config, experts, shared_parts, memory);
  stop_point("loading the model");

  // Stop tokens: generation_config.json, else config.json, else the tokenizer's eos.
  const auto gen_path = dir / "generation_config.json";
  if (std::filesystem::exists(gen_path, ec)) try {
      const auto gen = read_json_file(gen_path);
      if (gen.is_object() && gen.contains("eos_token_id")) {
        const auto& e = gen["eos_token_id"];
        const auto add = [&](const nlohmann::json& v) {
          if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= m->config.vocab_size) {
            fail("{}: eos_token_id must be token ids inside the vocabulary", gen_path.string());
          }
          m->eos_ids.push_back(v.get<int32_t>());
        };
        if (e.is_array()) {
          for (const auto& v : e) add(v);
        } else {
          add(e);
        }
      }
    } catch (const nlohmann::json::exception& e) {
      fail("{}: unexpected structure: {}", gen_path.string(), e.what());
    }
  if (m->eos_ids.empty()) m->eos_ids = m->config.eos_token_ids;
  if (m->eos_ids.empty() && m->tokenizer.eos_id() >= 0) m->eos_ids.push_back(m->tokenizer.eos_id());
  for (int32_t id : m->eos_ids) {
    if (id < 0 || id >= m->config.vocab_size) fail("{}: eos token id {} is outside the vocabulary", dir.string(), id);
    if (id >= m->tokenizer.vocab_size()) {
      fail("{}: eos token id {} is a padding row of the vocabulary: the tokenizer has only {} tokens", dir.string(), id,
           m->tokenizer.vocab_size());
    }
  }
  return m;
}

}  // namespace mote
