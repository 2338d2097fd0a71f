// Grouped-query (and multi-head) attention over a cache of rotated keys and
// values, as Qwen3-MoE, OLMoE and Mixtral use it:
//   q = x W_q, k = x W_k, v = x W_v       [optional RMSNorm of q and k: per
//                                          head (Qwen3) or over the whole
//                                          projection (OLMoE)]
//   rope on every head of q and k; query head h reads KV head h / (heads / kv_heads)
//   out = W_o concat_h softmax(q_h k^T * head_dim^-0.5) v
// and as gpt-oss adds to it: biases on q, k, v and out; a sink logit per
// head appended to the scores before the softmax and dropped after it (the
// weights of the keys then sum to less than 1); on sliding layers, keys of
// the last sliding_window positions only.
#pragma once

#include <span>
#include <vector>

#include "mote/model/config.h"
#include "mote/model/kv_cache.h"
#include "mote/model/step.h"
#include "mote/model/weights.h"
#include "mote/ops/rope.h"

namespace mote {

class GqaAttention {
 public:
  GqaAttention(const ModelConfig& config, const Rope& rope);

  // As MlaAttention::forward; rope_cos/rope_sin hold head_dim/2 values per row.
  void forward(const AttentionWeights& w, int layer, const float* x, std::span<const StepRow> rows,
               const float* rope_cos, const float* rope_sin, KvCache& cache, float* out);

 private:
  const ModelConfig& c_;
  const Rope& rope_;
  float scale_;
  std::vector<float> q_, k_, v_, attn_, scores_;
  std::vector<int> run_row_;   // per row: the first row of its slot's run in the step
  std::vector<int> slot_run_;  // per cache slot: the row its run started at, or -1
};

}  // namespace mote
