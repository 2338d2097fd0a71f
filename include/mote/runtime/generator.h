// Batched generation with continuous batching: up to `batch_size` requests
// hold KV-cache slots at once; each step feeds pending prompt tokens
// (chunked to `max_step_tokens`) and one token per decoding request through
// the model, then samples for every request whose pending tokens are all in.
// A finished request frees its slot for the next one in the queue. Because
// the kernels are batch-independent, every request gets the same tokens,
// logits and routing as it would alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "mote/model/expert_counters.h"
#include "mote/model/moe_transformer.h"
#include "mote/model/request.h"
#include "mote/runtime/sampler.h"

namespace mote {

struct GenerationOptions {
  int max_new_tokens = 64;
  SamplingParams sampling;
  uint64_t seed = 0;
  bool stop_at_eos = true;
  bool save_logits = false;       // logits of every fed position
  bool save_last_logits = false;  // logits of the last prompt position only (the first answer position)
  bool trace = false;             // routed experts and weights of every fed position
  // Ids at or above this are never sampled: the padding rows of a vocabulary
  // larger than the tokenizer's (DeepSeek's 129,280 against ~128.8k
  // tokens). 0 samples the model's whole vocabulary.
  int sample_vocab = 0;
  // Vocabulary ids whose log-probabilities a request with score_from >= 0
  // keeps (sorted, unique): all a metric such as token-prob needs, instead
  // of whole logits rows.
  std::vector<int32_t> score_ids;
  int batch_size = 8;
  int max_step_tokens = 2048;
  // The last layer's feed-forward only for rows whose logits are used
  // (ForwardTaps::last_ffn_logit_rows_only): every row is still routed and
  // recorded. Off only to check that it changes nothing.
  bool last_ffn_logit_rows_only = true;
  // When set, count every routing decision: those whose experts ran, and
  // those of the last layer whose experts did not (see above).
  ExpertCounters* routing_counts = nullptr;
  ExpertCounters* routed_not_run_counts = nullptr;
  // Polled before every step: when it returns true, run() returns at once,
  // leaving unfinished requests unreported (a stopped job resumes them).
  std::function<bool()> stop_requested;
  // Called after every token sampled, with the request's result so far
  // (a server streams it).
  std::function<void(size_t, const GenerationResult&)> on_token;
};

// GenerationRequest::top_logprobs at most (OpenAI's limit).
constexpr int kMaxTopLogprobs = 20;

struct GenerationStats {
  int64_t prompt_tokens = 0;     // prompt positions fed
  int64_t generated_tokens = 0;  // tokens sampled
  // Per kind of step: steps that fed only prompt tokens, only generated
  // tokens fed back, or both (a prompt admitted while others decode).
  int64_t prefill_tokens = 0, decode_tokens = 0, mixed_prompt_tokens = 0, mixed_generated_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0, mixed_seconds = 0;
  double total_seconds = 0;
  uint64_t weight_bytes = 0;  // weights streamed by the kernels

  GenerationStats& operator+=(const GenerationStats& o) {
    prompt_tokens += o.prompt_tokens;
    generated_tokens += o.generated_tokens;
    prefill_tokens += o.prefill_tokens;
    decode_tokens += o.decode_tokens;
    mixed_prompt_tokens += o.mixed_prompt_tokens;
    mixed_generated_tokens += o.mixed_generated_tokens;
    prefill_seconds += o.prefill_seconds;
    decode_seconds += o.decode_seconds;
    mixed_seconds += o.mixed_seconds;
    total_seconds += o.total_seconds;
    weight_bytes += o.weight_bytes;
    return *this;
  }
};

// Where a generator's requests come from: a list, or (with several
// coordinators) a queue shared with the other coordinators.
class RequestSource {
 public:
  virtual ~RequestSource() = default;
  // Called before every step: appends at most `free_slots` (possibly 0)
  // requests to start now, each with the id that on_done reports; may
  // append none.
  virtual void take(int free_slots, std::vector<std::pair<size_t, GenerationRequest>>& out) = 0;
  // True once no request will come any more.
  virtual bool exhausted() const = 0;
  // Called instead of a step when nothing runs and take() gave nothing
  // though more may come.
  virtual void wait() {}
  // Called after take(): appends the ids of running requests to end now
  // (reported with StopReason::Cancelled).
  virtual void cancelled(std::vector<size_t>& /*ids*/) {}
};

class Generator {
 public:
  Generator(MoeTransformer& model, std::vector<int32_t> eos_ids, GenerationOptions options);

  // Runs all requests; `on_done(index, result)` is called as each finishes
  // (not necessarily in order). Returns false if stop_requested ended it early.
  // The id passed to on_done is the request's index.
  bool run(std::span<const GenerationRequest> requests, const std::function<void(size_t, GenerationResult&&)>& on_done);
  // Runs requests as `source` hands them out, until it is exhausted and all
  // have finished (true) or stop_requested ended it (false).
  bool run(RequestSource& source, const std::function<void(size_t, GenerationResult&&)>& on_done);
  const GenerationStats& stats() const { return stats_; }

 private:
  MoeTransformer& model_;
  std::vector<int32_t> eos_ids_;
  GenerationOptions options_;
  GenerationStats stats_;
};

}  // namespace mote
