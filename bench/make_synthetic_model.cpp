// Writes a random-weight DeepSeek-V3 model directory of a chosen shape:
//   make_synthetic_model OUT_DIR [CONFIG_JSON] [SEED]
// CONFIG_JSON is a config.json to use (default: the bundled model's config
// with the shape overrides below); the tokenizer comes from the bundled
// model, so vocab_size must be at least 4096.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mote/io/json_file.h"
#include "mote/model/synthetic_model.h"
#include "mote/util/error.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: make_synthetic_model OUT_DIR [CONFIG_JSON] [SEED]\n");
    return 2;
  }
  try {
    const std::filesystem::path bundled = MOTE_DEFAULT_MODEL_DIR;
    nlohmann::json config = mote::read_json_file(argc > 2 ? std::filesystem::path(argv[2]) : bundled / "config.json");
    if (argc <= 2) {
      // A model large enough to see expert memory per rank fall: ~300 MB of experts.
      config["hidden_size"] = 512;
      config["num_hidden_layers"] = 7;
      config["n_routed_experts"] = 64;
      config["n_group"] = 8;
      config["topk_group"] = 4;
      config["num_experts_per_tok"] = 6;
      config["moe_intermediate_size"] = 256;
      config["intermediate_size"] = 1024;
    }
    const uint64_t seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1;
    mote::write_synthetic_model(argv[1], config, seed, bundled);
    std::printf("wrote %s\n", argv[1]);
  } catch (const mote::Error& e) {
    std::fprintf(stderr, "make_synthetic_model: %s\n", e.what());
    return 1;
  }
}
