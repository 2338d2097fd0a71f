// A small random-weight DeepSeek-V3 model for tests that need whole model
// directories, and a way to rewrite its tensors to make it hostile.
#pragma once

#include <functional>

#include "mote/io/safetensors.h"
#include "mote/io/safetensors_writer.h"
#include "mote/model/synthetic_model.h"
#include "mote/util/error.h"
#include "test_files.h"

namespace mote::test {

inline nlohmann::json small_config() {
  return {
      {"model_type", "deepseek_v3"},
      {"vocab_size", 4096},
      {"hidden_size", 64},
      {"intermediate_size", 96},
      {"moe_intermediate_size", 32},
      {"num_hidden_layers", 3},
      {"num_attention_heads", 2},
      {"num_key_value_heads", 2},
      {"n_shared_experts", 1},
      {"n_routed_experts", 8},
      {"routed_scaling_factor", 2.5},
      {"kv_lora_rank", 32},
      {"q_lora_rank", 24},
      {"qk_rope_head_dim", 8},
      {"v_head_dim", 16},
      {"qk_nope_head_dim", 16},
      {"topk_method", "noaux_tc"},
      {"n_group", 2},
      {"topk_group", 1},
      {"num_experts_per_tok", 2},
      {"moe_layer_freq", 1},
      {"first_k_dense_replace", 1},
      {"norm_topk_prob", true},
      {"scoring_func", "sigmoid"},
      {"hidden_act", "silu"},
      {"max_position_embeddings", 128},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", 10000.0},
      {"rope_scaling", nullptr},
      {"tie_word_embeddings", false},
      {"bos_token_id", 0},
      {"eos_token_id", 1},
  };
}

inline std::filesystem::path bundled_model() { return MOTE_MODEL_DIR; }

inline void make_small_model(const std::filesystem::path& dir, const nlohmann::json& config = small_config()) {
  write_synthetic_model(dir, config, 7, bundled_model());
}

// Reads dir/model.safetensors, lets `edit` change the tensors, writes it back.
inline void rewrite_tensors(const std::filesystem::path& dir,
                            const std::function<void(std::vector<TensorData>&)>& edit) {
  std::vector<TensorData> tensors;
  {
    const SafetensorsFile file(dir / "model.safetensors");
    for (const auto& [name, view] : file.tensors()) {
      TensorData t{name, view.dtype, view.shape, {}};
      t.bytes.assign(view.data, view.data + view.nbytes);
      tensors.push_back(std::move(t));
    }
  }
  edit(tensors);
  write_safetensors(dir / "model.safetensors", tensors);
}

// Runs `body` and expects an mote::Error whose message contains `needle`.
#define EXPECT_ERROR_CONTAINS(body, needle)                                                        \
  do {                                                                                             \
    try {                                                                                          \
      body;                                                                                        \
      ADD_FAILURE() << "no error; expected one containing: " << (needle);                          \
    } catch (const ::mote::Error& e) {                                                             \
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what(); \
    }                                                                                              \
  } while (0)

}  // namespace mote::test
