// Writes a random-weight DeepSeek-V3 model directory of a chosen shape:
//   make_synthetic_model OUT_DIR [CONFIG_JSON] [SEED] [--layers-per-shard N] [--index-only]
// CONFIG_JSON is a config.json to use (default: the bundled model's config
// with the shape overrides below); a quantization_config in it makes the
// decoder layers' projections FP8 with 128x128 block scales, as DeepSeek-R1
// ships them (bench/configs/deepseek-r1.json has R1's real shapes). The
// tokenizer comes from the bundled model, so vocab_size must be at least
// 4096 (a larger one is padding, as in DeepSeek's own vocabulary).
// --layers-per-shard writes shards and an index; --index-only writes only
// config.json, the tokenizer and the index (for 'mote plan').
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mote/io/json_file.h"
#include "mote/model/synthetic_model.h"
#include "mote/util/error.h"

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  mote::SyntheticLayout layout;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--layers-per-shard" && i + 1 < argc) {
      layout.layers_per_shard = std::atoi(argv[++i]);
    } else if (a == "--index-only") {
      layout.index_only = true;
    } else {
      positional.push_back(a);
    }
  }
  if (positional.empty()) {
    std::fprintf(stderr,
                 "usage: make_synthetic_model OUT_DIR [CONFIG_JSON] [SEED] [--layers-per-shard N] [--index-only]\n");
    return 2;
  }
  try {
    const std::filesystem::path bundled = MOTE_DEFAULT_MODEL_DIR;
    nlohmann::json config =
        mote::read_json_file(positional.size() > 1 ? std::filesystem::path(positional[1]) : bundled / "config.json");
    if (positional.size() <= 1) {
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
    const uint64_t seed = positional.size() > 2 ? std::strtoull(positional[2].c_str(), nullptr, 10) : 1;
    mote::write_synthetic_model(positional[0], config, seed, bundled, layout);
    std::printf("wrote %s\n", positional[0].c_str());
  } catch (const mote::Error& e) {
    std::fprintf(stderr, "make_synthetic_model: %s\n", e.what());
    return 1;
  }
}
