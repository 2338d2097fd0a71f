#include "mote/model/ffn.h"

#include "mote/ops/elementwise.h"
#include "mote/ops/matmul.h"

namespace mote {

void Ffn::forward(const FfnWeights& w, const float* x, int n, float* out) {
  const FfnJob job{&w, x, n, out};
  forward_many({&job, 1});
}

void Ffn::forward_many(std::span<const FfnJob> jobs) {
  // Each job's first products: gate and up, or the interleaved gate_up into
  // gate_ (twice the width; up_ then holds the activations).
  const auto width = [](const FfnWeights& w) {
    return static_cast<size_t>(w.gate_up.empty() ? w.gate.rows : w.gate_up.rows / 2);
  };
  offsets_.assign(jobs.size() + 1, 0);
  for (size_t i = 0; i < jobs.size(); ++i) {
    const size_t factor = jobs[i].w->gate_up.empty() ? 1 : 2;
    offsets_[i + 1] = offsets_[i] + static_cast<size_t>(jobs[i].n) * width(*jobs[i].w) * factor;
  }
  gate_.resize(offsets_.back());
  up_.resize(offsets_.back());
  products_.clear();
  for (size_t i = 0; i < jobs.size(); ++i) {
    const FfnJob& j = jobs[i];
    const size_t w = width(*j.w), hidden = static_cast<size_t>(j.w->down.rows);
    if (!j.w->gate_up.empty()) {
      products_.push_back({j.x, hidden, j.n, &j.w->gate_up, gate_.data() + offsets_[i], 2 * w});
      continue;
    }
    products_.push_back({j.x, hidden, j.n, &j.w->gate, gate_.data() + offsets_[i], w});
    products_.push_back({j.x, hidden, j.n, &j.w->up, up_.data() + offsets_[i], w});
  }
  matmul_group(products_);
  products_.clear();
  for (size_t i = 0; i < jobs.size(); ++i) {
    const FfnJob& j = jobs[i];
    const FfnWeights& fw = *j.w;
    const size_t w = width(fw), hidden = static_cast<size_t>(fw.down.rows);
    float* g = gate_.data() + offsets_[i];
    float* act = g;
    if (!fw.gate_up.empty()) {
      if (!fw.gate_up_bias.empty()) {
        for (int r = 0; r < j.n; ++r) add_in_place(g + r * 2 * w, fw.gate_up_bias.data(), static_cast<int>(2 * w));
      }
      act = up_.data() + offsets_[i];
      clamped_swiglu(g, fw.swiglu_limit, fw.swiglu_alpha, act, static_cast<int>(j.n * w));
    } else {
      silu_mul(g, up_.data() + offsets_[i], g, static_cast<int>(offsets_[i + 1] - offsets_[i]));
    }
    products_.push_back({act, w, j.n, &fw.down, j.out, hidden});
  }
  matmul_group(products_);
  for (const FfnJob& j : jobs) {
    if (j.w->down_bias.empty()) continue;
    const auto hidden = static_cast<size_t>(j.w->down.rows);
    for (int r = 0; r < j.n; ++r) add_in_place(j.out + r * hidden, j.w->down_bias.data(), static_cast<int>(hidden));
  }
}

}  // namespace mote
