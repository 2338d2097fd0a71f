// Runs the routed experts of one MoE layer for a batch. The local executor
// computes every expert in this process; the expert-parallel one ships
// tokens to the ranks that own them. Both return the same bits.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "mote/model/ffn.h"
#include "mote/model/step.h"
#include "mote/model/weights.h"

namespace mote {

// The routed-expert work of one MoE layer for one step.
struct ExpertBatch {
  int layer = 0;      // decoder-layer index
  int moe_layer = 0;  // index among MoE layers
  const float* x = nullptr;        // [n, hidden] normalised hidden states
  int n = 0;
  const int32_t* experts = nullptr;  // [n, top_k] expert ids in slot order, -1 = empty slot
  const float* weights = nullptr;    // [n, top_k] gate weights
  int top_k = 0;
  std::span<const StepRow> rows;     // class and phase of each row
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

// Computes each expert once over all of its rows: gather, SwiGLU, scatter.
class LocalExpertExecutor : public ExpertExecutor {
 public:
  LocalExpertExecutor(const ModelWeights& weights, int hidden, int n_experts);
  void begin(const ExpertBatch& batch) override { batch_ = batch; }
  void finish(std::vector<const float*>& rows) override;

 private:
  ExpertBatch batch_;
  const ModelWeights& weights_;
  int hidden_;
  int n_experts_;
  Ffn ffn_;
  std::vector<int> offsets_, order_;
  std::vector<float> gathered_, results_;
  std::vector<FfnJob> jobs_;
};

}  // namespace mote
