#include "mote/model/ffn.h"

#include "mote/ops/elementwise.h"
#include "mote/ops/matmul.h"

namespace mote {

void Ffn::forward(const FfnWeights& w, const float* x, int n, float* out) {
  const FfnJob job{&w, x, n, out};
  forward_many({&job, 1});
}

void Ffn::forward_many(std::span<const FfnJob> jobs) {
  offsets_.assign(jobs.size() + 1, 0);
  for (size_t i = 0; i < jobs.size(); ++i)
    offsets_[i + 1] = offsets_[i] + static_cast<size_t>(jobs[i].n) * static_cast<size_t>(jobs[i].w->gate.rows);
  gate_.resize(offsets_.back());
  up_.resize(offsets_.back());
  products_.clear();
  for (size_t i = 0; i < jobs.size(); ++i) {
    const FfnJob& j = jobs[i];
    const size_t width = static_cast<size_t>(j.w->gate.rows), hidden = static_cast<size_t>(j.w->gate.cols);
    products_.push_back({j.x, hidden, j.n, &j.w->gate, gate_.data() + offsets_[i], width});
    products_.push_back({j.x, hidden, j.n, &j.w->up, up_.data() + offsets_[i], width});
  }
  matmul_group(products_);
  products_.clear();
  for (size_t i = 0; i < jobs.size(); ++i) {
    const FfnJob& j = jobs[i];
    float* g = gate_.data() + offsets_[i];
    silu_mul(g, up_.data() + offsets_[i], g, static_cast<int>(offsets_[i + 1] - offsets_[i]));
    const size_t width = static_cast<size_t>(j.w->gate.rows), hidden = static_cast<size_t>(j.w->down.rows);
    products_.push_back({g, width, j.n, &j.w->down, j.out, hidden});
  }
  matmul_group(products_);
}

}  // namespace mote
