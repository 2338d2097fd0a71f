// One request as the model runs it (its prompt, mask and options) and what
// it produced: the interface between whatever runs requests (the
// generator) and whatever records them (the result files).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mote/model/expert_mask.h"

namespace mote {

struct GenerationRequest {
  GenerationRequest() = default;
  GenerationRequest(std::vector<int32_t> tokens, const ExpertMask* m = nullptr, uint64_t random_stream = 0,
                    int16_t class_index = 0)
      : prompt(std::move(tokens)), mask(m), stream(random_stream), cls(class_index) {}

  std::vector<int32_t> prompt;
  const ExpertMask* mask = nullptr;
  // A mask of the request's own (id kOwnMaskId), which `mask` points to.
  std::shared_ptr<const ExpertMask> own_mask;
  uint64_t stream = 0;  // random stream; the request's index keeps sampling batch-independent
  int16_t cls = 0;      // class index, for the counters
  // Scoring (needs max_new_tokens 0): the log-probabilities of the score_ids
  // after every position from score_from to the end of the prompt. Only
  // those rows go through the output head. -1: none.
  int32_t score_from = -1;
  // Keep the residual stream before every MoE layer's feed-forward, for
  // every prompt position (GenerationResult::moe_inputs).
  bool capture = false;
  // Prefix reuse (needs max_new_tokens 0): start at MoE layer
  // resume_moe_layer's feed-forward from resume_h [prompt position, hidden],
  // the residual a capture recorded under the same switches up to that
  // layer. Nothing before that point changes, so the result is bit-identical
  // to running the whole prompt. -1: from the embeddings.
  int32_t resume_moe_layer = -1;
  std::vector<float> resume_h;
  // The request's own generation settings (a server's requests differ);
  // negative: the job's (GenerationOptions).
  int32_t max_new_tokens = -1;
  float temperature = -1.0f, top_p = -1.0f;
  bool own_seed = false;  // sample from `seed` instead of the job's
  uint64_t seed = 0;
  // Log-probabilities (GenerationResult::token_logprobs) of the token that
  // follows every position from logprobs_from on: the prompt's own next
  // token, then each one sampled; with the top_logprobs most likely ids at
  // each. -1: none.
  int32_t logprobs_from = -1;
  int32_t top_logprobs = 0;
};

// Error: the request never ran (its prompt was unusable); not from the generator.
// Cancelled: its source withdrew it while it ran (a server's client left).
enum class StopReason { Eos, MaxTokens, ContextFull, Error, Cancelled };
const char* stop_reason_name(StopReason reason);

struct GenerationResult {
  std::vector<int32_t> generated;  // includes the final EOS when one was produced
  StopReason stop = StopReason::MaxTokens;
  int positions = 0;                   // positions fed: prompt + generated tokens fed back
  std::vector<float> logits;           // [positions, vocab] with save_logits
  std::vector<int32_t> route_experts;  // [positions, moe_layers, top_k] with trace
  std::vector<float> route_weights;
  // Tokens each routed expert processed for this request, and the sum of
  // their gate weights: [phase, moe_layer, expert] (always recorded).
  std::vector<uint32_t> expert_counts;
  std::vector<double> expert_gate_sum;
  // With score_from: [scored position, score_ids] log-probabilities.
  std::vector<double> scores;
  // With capture: [prompt position, moe_layer, hidden].
  std::vector<float> moe_inputs;
  // With logprobs_from: per position from it, the log-probability of the
  // token that followed (log-softmax of the raw logits, in double), and
  // [position, top_logprobs] of the most likely ids (ties to the lower id).
  std::vector<float> token_logprobs;
  std::vector<int32_t> top_ids;
  std::vector<float> top_logprobs;
  int prompt_positions = 0;  // positions fed per phase
  int generated_positions = 0;
  // Set (with stop Error) when the request failed while running: its logits
  // were not finite (a NaN or infinity in the weights, say).
  std::string error;
};

}  // namespace mote
