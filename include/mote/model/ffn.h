// SwiGLU feed-forward over a batch of rows: down(silu(gate(x)) * up(x)).
// Dense layers, shared experts and routed experts all use it; a routed
// expert runs it once over all the tokens routed to it.
#pragma once

#include <vector>

#include "mote/model/weights.h"

namespace mote {

class Ffn {
 public:
  // x: [n, hidden]; out: [n, hidden].
  void forward(const FfnWeights& w, const float* x, int n, float* out);

 private:
  std::vector<float> gate_, up_;
};

}  // namespace mote
