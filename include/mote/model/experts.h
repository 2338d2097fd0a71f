// Runs the routed experts of one MoE layer for a batch. The local executor
// computes every expert in this process; the expert-parallel one ships
// tokens to the ranks that own them. Both return the same bits.
#pragma once

#include <cstdint>
#include <vector>

#include "mote/model/ffn.h"
#include "mote/model/weights.h"

namespace mote {

class ExpertExecutor {
 public:
  virtual ~ExpertExecutor() = default;
  // x: [n, hidden]; experts: [n, top_k] expert ids (-1 = empty slot).
  // Writes out[(row * top_k + slot) * hidden ...] = expert(x[row]),
  // unweighted; empty slots are left untouched.
  virtual void run(int layer, int moe_layer, const float* x, int n, const int32_t* experts, int top_k, float* out) = 0;
};

// Computes each expert once over all of its rows: gather, SwiGLU, scatter.
class LocalExpertExecutor : public ExpertExecutor {
 public:
  LocalExpertExecutor(const ModelWeights& weights, int hidden, int n_experts);
  void run(int layer, int moe_layer, const float* x, int n, const int32_t* experts, int top_k, float* out) override;

 private:
  const ModelWeights& weights_;
  int hidden_;
  int n_experts_;
  Ffn ffn_;
  std::vector<int> offsets_, order_;
  std::vector<float> gathered_, results_;
};

}  // namespace mote
