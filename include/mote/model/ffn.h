// SwiGLU feed-forward over a batch of rows: down(silu(gate(x)) * up(x)),
// or gpt-oss's expert: down(clamped_swiglu(gate_up(x) + b1)) + b2.
// Dense layers, shared experts and routed experts all use it; a routed
// expert runs it once over all the tokens routed to it.
#pragma once

#include <span>
#include <vector>

#include "mote/model/weights.h"
#include "mote/ops/matmul.h"

namespace mote {

// One feed-forward of a group: x [n, hidden] -> out [n, hidden].
struct FfnJob {
  const FfnWeights* w;
  const float* x;
  int n;
  float* out;
};

class Ffn {
 public:
  // x: [n, hidden]; out: [n, hidden].
  void forward(const FfnWeights& w, const float* x, int n, float* out);
  // Several feed-forwards (the routed experts of a layer) with the results
  // of calling forward on each, in two parallel regions in all: every
  // gate and up product, then every down product.
  void forward_many(std::span<const FfnJob> jobs);

 private:
  std::vector<float> gate_, up_;
  std::vector<size_t> offsets_;
  std::vector<MatmulJob> products_;
};

}  // namespace mote
