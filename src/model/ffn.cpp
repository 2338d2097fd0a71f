#include "mote/model/ffn.h"

#include "mote/ops/elementwise.h"
#include "mote/ops/matmul.h"

namespace mote {

void Ffn::forward(const FfnWeights& w, const float* x, int n, float* out) {
  const size_t width = static_cast<size_t>(w.gate.rows);
  gate_.resize(static_cast<size_t>(n) * width);
  up_.resize(static_cast<size_t>(n) * width);
  matmul(x, n, w.gate, gate_.data());
  matmul(x, n, w.up, up_.data());
  silu_mul(gate_.data(), up_.data(), gate_.data(), static_cast<int>(static_cast<size_t>(n) * width));
  matmul(gate_.data(), n, w.down, out);
}

}  // namespace mote
