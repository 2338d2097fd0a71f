// One forward step over a batch of rows: each row is one token of one
// sequence, fed at its position. Prefill feeds many rows of a sequence in one
// step; decode feeds one row per active sequence.
#pragma once

#include <cstdint>

namespace mote {

struct ExpertMask;  // mote/model/expert_mask.h
struct ExpertCounters;

struct StepRow {
  int32_t slot = 0;                  // sequence slot in the KV cache
  int32_t pos = 0;                   // position of the token in its sequence
  int32_t token = 0;                 // token id
  const ExpertMask* mask = nullptr;  // MoTE switches of the row's request, or none
  int16_t cls = 0;                   // prompt class of the row's request, for counters
  uint8_t phase = 0;                 // 0: prompt token, 1: generated token fed back
  // Prefix reuse: a row may enter at the feed-forward of decoder layer
  // `resume_layer` (a MoE layer) with `resume_h`, the residual stream there
  // as an earlier run recorded it; nothing before that point is computed
  // for it. -1: the row starts from its token's embedding. Rows of a step
  // are ordered by resume_layer (ascending).
  int16_t resume_layer = -1;
  const float* resume_h = nullptr;
  // When set, receives the residual stream just before every MoE layer's
  // feed-forward, [moe_layer, hidden]: what a later run resumes from.
  float* capture = nullptr;
};

// Tap points the forward pass writes to when they are set.
struct ForwardTaps {
  // Routed experts and gate weights per (row, MoE layer, top-k slot), in
  // selection order; -1 and 0 where fewer than top_k experts were chosen.
  int32_t* routing_experts = nullptr;
  float* routing_weights = nullptr;
  // 1 where the expert of that slot was sent the token (0 for experts
  // switched off with the zero policy, and for empty slots).
  uint8_t* routing_sent = nullptr;
  // The coordinator's routing record, counted per (class, phase, layer,
  // expert): the decisions whose experts run, which the ranks' counters of
  // what they processed must equal.
  ExpertCounters* routing_counts = nullptr;
  // The last layer's feed-forward only for the rows whose logits are asked
  // for: the others' output there feeds nothing (their KV entries are
  // written before it). Every row is still routed there and recorded in the
  // routing taps; the decisions whose experts do not run are counted here.
  bool last_ffn_logit_rows_only = false;
  ExpertCounters* routed_not_run_counts = nullptr;
  // Per row: the first MoE layer whose router logits were not all finite
  // (its routing is then meaningless), or left as it was (-1) when none.
  int16_t* router_nonfinite = nullptr;
};

}  // namespace mote
