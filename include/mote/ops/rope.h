// Rotary position embedding: pairs (x[2i], x[2i+1]) (DeepSeek's
// interleaved layout) or (x[i], x[i + d/2]) (neox's rotate_half, the other
// families) are rotated by pos * inv_freq[i], with YaRN's frequency blend
// and magnitude scale when the config asks for it.
#pragma once

#include <optional>
#include <vector>

namespace mote {

// YaRN's rope_scaling, as config.json gives it.
struct YarnScaling {
  double factor = 1.0;
  int original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
  // Whether the ramp's ends are rounded to whole dimensions (floor/ceil),
  // as DeepSeek's code does; gpt-oss sets "truncate": false.
  bool truncate = true;
};

struct RopeParams {
  int dim = 0;  // dimensions rotated
  double theta = 10000.0;
  bool neox = false;  // rotate halves rather than interleaved pairs
  std::optional<YarnScaling> yarn;
};

class Rope {
 public:
  explicit Rope(const RopeParams& params);
  int dim() const { return dim_; }
  // cos and sin (dim/2 values each) for position `pos`.
  void angles(int pos, float* cos_out, float* sin_out) const;
  // Rotates `x` (dim values) in place.
  void apply(float* x, const float* cos_v, const float* sin_v) const;

 private:
  int dim_;
  bool neox_;
  std::vector<float> inv_freq_;
  float magnitude_ = 1.0f;
};

}  // namespace mote
