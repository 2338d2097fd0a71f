// The forward pass of every supported family (the config says which parts:
// see include/mote/model/family.h). Each decoder layer reads as its list of ops:
//
//   x = rms_norm(h, input_norm);          h += attention(x)      MLA or GQA
//   x = rms_norm(h, post_attention_norm); h += dense layer ? ffn(x) : moe(x)
//
// and after the last layer, logits = lm_head(rms_norm(h, final_norm)) for
// the rows that need them. MoE layers route each token, run the routed
// experts through an ExpertExecutor, and add the shared expert's output.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "mote/model/attention.h"
#include "mote/model/config.h"
#include "mote/model/experts.h"
#include "mote/model/ffn.h"
#include "mote/model/gqa_attention.h"
#include "mote/model/kv_cache.h"
#include "mote/model/router.h"
#include "mote/model/step.h"
#include "mote/model/weights.h"
#include "mote/ops/rope.h"

namespace mote {

class MoeTransformer {
 public:
  // `experts` runs the routed experts: a job's exchange, or LocalExperts
  // (expert_parallel/local_experts.h) for a model run alone.
  MoeTransformer(const ModelConfig& config, const ModelWeights& weights, ExpertExecutor& experts);

  const ModelConfig& config() const { return c_; }
  int moe_layer_count() const { return static_cast<int>(moe_layers_.size()); }
  // The Hugging Face name of MoE layer `moe_layer`'s router matrix, for messages.
  std::string router_tensor(int moe_layer) const;
  int top_k() const { return router_.top_k(); }

  // Feeds `rows` through the model, writing their KV entries. For each index
  // i of `logit_rows` writes vocab logits of rows[logit_rows[i]] to
  // logits + i * vocab.
  void forward(std::span<const StepRow> rows, KvCache& cache, std::span<const int32_t> logit_rows, float* logits,
               const ForwardTaps& taps = {});

 private:
  // Checks the rows, and fills h_ with their embeddings (rows that resume
  // later get their residual there) and the rope angles of their positions.
  void embed(std::span<const StepRow> rows, const KvCache& cache);
  void moe(const LayerWeights& w, int layer, int moe_layer, const float* x, std::span<const StepRow> rows, float* out,
           const ForwardTaps& taps);
  // Routes every row (into chosen_, gate_weights_, sent_) and records it in
  // the taps. With `run_rows`, the decisions of the other rows are counted
  // in taps.routed_not_run_counts: their experts will not run.
  void route(const LayerWeights& w, int moe_layer, const float* x, std::span<const StepRow> rows,
             const ForwardTaps& taps, const std::span<const int32_t>* run_rows);
  // Routed experts (`sent`, `gates`: [rows, top_k]), the shared expert and
  // the weighted sum, into out.
  void run_experts(const LayerWeights& w, int layer, int moe_layer, const float* x, std::span<const StepRow> rows,
                   const int32_t* sent, const float* gates, float* out);
  // Routing taps of rows 0..n-1 at MoE layers [first, first + count) set to "none routed".
  void clear_routing(const ForwardTaps& taps, int n, int first_moe_layer, int moe_layers) const;
  // The last layer's feed-forward for the logit rows only (ForwardTaps::last_ffn_logit_rows_only).
  void last_ffn(const LayerWeights& lw, int layer, int moe_layer, std::span<const StepRow> rows,
                std::span<const int32_t> logit_rows, const ForwardTaps& taps);

  const ModelConfig& c_;
  const ModelWeights& w_;
  Rope rope_;
  MlaAttention attention_;
  GqaAttention gqa_;
  Router router_;
  Ffn ffn_;
  ExpertExecutor& experts_;
  std::vector<int> moe_layers_;

  // Scratch reused across steps; grows to the largest batch seen.
  std::vector<float> h_, x_, branch_, rope_cos_, rope_sin_, router_logits_, router_scratch_, gate_weights_, shared_out_,
      final_rows_;
  std::vector<const float*> expert_rows_;  // each (row, slot)'s expert output, held by the executor
  std::vector<int32_t> chosen_, sent_;
  std::vector<StepRow> sub_rows_;
  std::vector<float> sub_x_, sub_out_, sub_gates_;
  std::vector<int32_t> sub_sent_;
  std::vector<uint8_t> dispatch_;
};

}  // namespace mote
