#include "mote/model/experts.h"

#include <algorithm>

#include "mote/util/error.h"

namespace mote {

LocalExpertExecutor::LocalExpertExecutor(const ModelWeights& weights, int hidden, int n_experts)
    : weights_(weights), hidden_(hidden), n_experts_(n_experts) {}

void LocalExpertExecutor::finish(std::vector<const float*>& rows) {
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

  // Every routed expert's tokens gathered in expert order, then all the
  // experts' feed-forwards as one group.
  const size_t entries = order_.size();
  gathered_.resize(entries * h);
  results_.resize(entries * h);
  jobs_.clear();
  for (int e = 0; e < n_experts_; ++e) {
    const int begin = offsets_[e];
    const int count = offsets_[e + 1] - begin;
    if (count == 0) continue;
    const FfnWeights& f = lw.experts[e];
    if (f.empty()) fail("layer {}: expert {} was routed a token but its weights are not loaded here", layer, e);
    for (int j = begin; j < begin + count; ++j) {
      const int row = order_[j] / top_k;
      std::copy(x + row * h, x + (row + 1) * h, gathered_.data() + j * h);
    }
    jobs_.push_back({&f, gathered_.data() + begin * h, count, results_.data() + begin * h});
  }
  ffn_.forward_many(jobs_);
  rows.assign(static_cast<size_t>(n) * top_k, nullptr);
  for (size_t j = 0; j < entries; ++j) rows[static_cast<size_t>(order_[j])] = results_.data() + j * h;
}

}  // namespace mote
