// Runs the routed experts of one MoE layer for a batch: a job's exchange
// ships tokens to the ranks that own them (expert_parallel/), and
// LocalExperts runs them all in this process with the same worker. Both
// return the same bits.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "mote/model/step.h"

namespace mote {

// The routed-expert work of one MoE layer for one step.
struct ExpertBatch {
  int layer = 0;             // decoder-layer index
  int moe_layer = 0;         // index among MoE layers
  const float* x = nullptr;  // [n, hidden] normalised hidden states
  int n = 0;
  const int32_t* experts = nullptr;  // [n, top_k] expert ids in slot order, -1 = empty slot
  const float* weights = nullptr;    // [n, top_k] gate weights
  int top_k = 0;
  std::span<const StepRow> rows;  // class and phase of each row
};

class ExpertExecutor {
 public:
  virtual ~ExpertExecutor() = default;
  // Starts the work; the caller may compute the shared expert before finish().
  virtual void begin(const ExpertBatch& batch) = 0;
  // Sets rows[row * top_k + slot] to expert(x[row]), unweighted: `hidden`
  // values held by the executor until the next begin(); null for empty
  // slots. (Pointers rather than a copy into one array: a layer's expert
  // results are top_k times its input, and the combine reads them once.)
  virtual void finish(std::vector<const float*>& rows) = 0;
};

}  // namespace mote
