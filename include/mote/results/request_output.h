// The per-request part of every mote HDF5 file (see docs/hdf5-format.md):
//
//   /requests/<i>                 i = index of the request in the prompt file
//       attrs: id, class, stop_reason (and stop_code: 0 eos, 1 max_new_tokens, 2 context_full,
//              3 error), mask; error (why the request did not run; failed requests only)
//       prompt_text, text         scalar UTF-8 strings (text: the decoded
//                                 generated tokens, special tokens kept)
//       prompt_tokens             int32 [prompt length]
//       generated_tokens          int32 [n], a final EOS included
//       logits                    float32 [positions, vocab]    (--save-logits; [1, vocab] with --save-logits last)
//       routing/experts           int32 [positions, moe_layers, top_k] (--trace)
//       routing/weights           float32, same shape
//       expert_counts             uint32 [phase, moe_layers, experts]: tokens each expert processed
//       expert_gate_sum           float64, same shape: their gate weights summed
//       scores                    float64 [scored_position, score_id] (--score-tokens): log-probabilities of /score_ids
#pragma once

#include <hdf5.h>

#include <string>
#include <vector>

#include "mote/model/request.h"

namespace mote {

struct RequestRecord {
  size_t index = 0;
  std::string id, cls, mask;
  std::string prompt_text, text;
  std::string error;  // non-empty: the request failed without running
  const std::vector<int32_t>* prompt_tokens = nullptr;
  const GenerationResult* result = nullptr;
  int vocab = 0;
  int moe_layers = 0;
  int top_k = 0;
  int experts = 0;
  int score_width = 0;            // ids per scored position
  bool last_logits_only = false;  // --save-logits last: one row, the last prompt position's
  bool counts = true;             // expert_counts and expert_gate_sum (not with --no-request-counts)
  std::string mask_ini;           // a served request's own mask, in mask-file syntax (empty: none)
};

void write_request(hid_t requests_group, const RequestRecord& record);

}  // namespace mote
