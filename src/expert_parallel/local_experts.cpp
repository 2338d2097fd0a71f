#include "mote/expert_parallel/local_experts.h"

namespace mote {

LocalExperts::LocalExperts(const ModelWeights& weights, const ModelConfig& config)
    : placement_(Placement::by_rule("contiguous", static_cast<int>(config.moe_layers().size()), config.n_routed_experts,
                                    1, true)),
      worker_(weights, config, placement_, 0,
              WireFormat{config.hidden_size, config.num_experts_per_tok, WireDType::F32}, nullptr) {}

void LocalExperts::begin(const ExpertBatch& batch) {
  batch_ = batch;
  entries_.clear();
  for (int32_t i = 0; i < batch.n * batch.top_k; ++i) {
    if (batch.experts[i] >= 0) entries_.push_back(i);
  }
}

void LocalExperts::finish(std::vector<const float*>& rows) {
  // Received from no other rank: this rank's own tokens only.
  worker_.process(none_, no_records_, no_layer_, results_, result_counts_, {&batch_, entries_});
  rows.assign(static_cast<size_t>(batch_.n) * batch_.top_k, nullptr);
  for (size_t i = 0; i < entries_.size(); ++i) rows[static_cast<size_t>(entries_[i])] = worker_.local_result(i);
}

}  // namespace mote
