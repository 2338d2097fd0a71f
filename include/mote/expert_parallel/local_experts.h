// Every routed expert in this process, computed by the worker a job's
// ranks run (ExpertWorker), without MPI: for the golden tests, benchmarks
// and anything else that runs a model alone. Its bits are a job's with the
// f32 wire, at any world size.
#pragma once

#include <vector>

#include "mote/expert_parallel/expert_exchange.h"
#include "mote/expert_parallel/placement.h"

namespace mote {

class LocalExperts : public ExpertExecutor {
 public:
  LocalExperts(const ModelWeights& weights, const ModelConfig& config);
  void begin(const ExpertBatch& batch) override;
  void finish(std::vector<const float*>& rows) override;

 private:
  Placement placement_;  // every expert on rank 0
  ExpertWorker worker_;
  ExpertBatch batch_;
  std::vector<int32_t> entries_;  // (row * top_k + slot) of each routed slot, in row order
  const std::vector<char> none_;
  const std::vector<int> no_records_{0}, no_layer_{0};
  std::vector<char> results_;
  std::vector<int> result_counts_;
};

}  // namespace mote
