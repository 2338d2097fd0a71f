#include "mote/model/synthetic_model.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include "mote/io/safetensors_writer.h"
#include "mote/model/config.h"
#include "mote/model/weights.h"
#include "mote/runtime/sampler.h"
#include "mote/util/error.h"

namespace mote {

void write_synthetic_model(const std::filesystem::path& dir, const nlohmann::json& config_json, uint64_t seed,
                           const std::filesystem::path& tokenizer_from) {
  const ModelConfig config = parse_model_config(config_json, "synthetic config");
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir / "config.json");
    out << config_json.dump(2) << "\n";
  }
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    std::filesystem::copy_file(tokenizer_from / name, dir / name, std::filesystem::copy_options::overwrite_existing);
  }

  Rng rng(seed, 0);
  const auto normal = [&]() {
    // Box-Muller from two uniforms; the generator is ours, so the file is the same everywhere.
    const double u1 = std::max(rng.uniform(), 1e-300);
    const double u2 = rng.uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
  };
  std::vector<TensorData> tensors;
  for (const TensorSpec& spec : expected_tensors(config)) {
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
    } else {
      t.dtype = DType::BF16;
      t.bytes.resize(n * 2);
      for (uint64_t i = 0; i < n; ++i) {
        const uint16_t v = float_to_bf16(spec.is_norm ? 1.0f : static_cast<float>(0.02 * normal()));
        std::memcpy(t.bytes.data() + 2 * i, &v, 2);
      }
    }
    tensors.push_back(std::move(t));
  }
  write_safetensors(dir / "model.safetensors", tensors);
}

}  // namespace mote
