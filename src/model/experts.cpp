#include "mote/model/experts.h"

#include <algorithm>

#include "mote/util/error.h"

namespace mote {

LocalExpertExecutor::LocalExpertExecutor(const ModelWeights& weights, int hidden, int n_experts)
    : weights_(weights), hidden_(hidden), n_experts_(n_experts) {}

void LocalExpertExecutor::finish(float* out) {
  const int layer = batch_.layer;
  const float* x = batch_.x;
  const int n = batch_.n;
  const int32_t* experts = batch_.experts;
  const int top_k = batch_.top_k;
  const LayerWeights& lw = weights_.layers[layer];
  const size_t h = static_cast<size_t>(hidden_);
  // Counting sort of (row, slot) pairs by expert, rows in ascending order
  // within each expert, so an expert's GEMM sees its tokens in batch order.
  offsets_.assign(static_cast<size_t>(n_experts_) + 1, 0);
  for (int i = 0; i < n * top_k; ++i) {
    if (experts[i] >= 0) ++offsets_[experts[i] + 1];
  }
  for (int e = 0; e < n_experts_; ++e) offsets_[e + 1] += offsets_[e];
  order_.resize(static_cast<size_t>(offsets_[n_experts_]));
  std::vector<int>& cursor = offsets_;  // reused below, restored after
  for (int i = 0; i < n * top_k; ++i) {
    if (experts[i] >= 0) order_[cursor[experts[i]]++] = i;
  }
  for (int e = n_experts_; e > 0; --e) cursor[e] = cursor[e - 1];
  cursor[0] = 0;

  for (int e = 0; e < n_experts_; ++e) {
    const int begin = offsets_[e];
    const int count = offsets_[e + 1] - begin;
    if (count == 0) continue;
    const FfnWeights& f = lw.experts[e];
    if (f.empty()) fail("layer {}: expert {} was routed a token but its weights are not loaded here", layer, e);
    gathered_.resize(static_cast<size_t>(count) * h);
    results_.resize(static_cast<size_t>(count) * h);
    for (int j = 0; j < count; ++j) {
      const int row = order_[begin + j] / top_k;
      std::copy(x + row * h, x + (row + 1) * h, gathered_.data() + j * h);
    }
    ffn_.forward(f, gathered_.data(), count, results_.data());
    for (int j = 0; j < count; ++j) {
      std::copy(results_.data() + j * h, results_.data() + (j + 1) * h, out + static_cast<size_t>(order_[begin + j]) * h);
    }
  }
}

}  // namespace mote
