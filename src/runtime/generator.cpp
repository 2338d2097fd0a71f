#include "mote/runtime/generator.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <deque>
#include <memory>
#include <optional>

#include "mote/ops/matmul.h"
#include "mote/util/error.h"

namespace mote {

namespace {

struct Slot {
  bool active = false;
  size_t request = 0;  // the id on_done reports
  const ExpertMask* mask = nullptr;
  std::shared_ptr<const ExpertMask> own_mask;  // what `mask` points to, for a mask of the request's own
  int16_t cls = 0;
  std::vector<int32_t> tokens;  // prompt, then generated tokens as they are fed back
  int fed = 0;                  // positions already in the KV cache
  size_t prompt_len = 0;
  int score_from = -1;
  int max_new = 0;  // the request's, else the job's
  SamplingParams sampling;
  int logprobs_from = -1, top_logprobs = 0;
  bool capture = false;
  int resume_layer = -1;  // decoder layer
  std::vector<float> resume_h;
  std::optional<Rng> rng;
  GenerationResult result;
};

// Log-probabilities of `ids` under the softmax of the first `vocab` logits,
// accumulated in double in id order (the same for any batch).
void log_probabilities(const float* logits, int vocab, std::span<const int32_t> ids, std::vector<double>& out) {
  const float top = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - top);
  const double log_norm = top + std::log(sum);
  for (const int32_t id : ids) out.push_back(static_cast<double>(logits[id]) - log_norm);
}

// The log-probability of `chosen` and of the `top` most likely ids (ties to
// the lower id), appended to the result.
void token_log_probabilities(const float* logits, int vocab, int32_t chosen, int top, GenerationResult& result) {
  std::vector<double> log_norm;
  const int32_t none[1] = {chosen};
  log_probabilities(logits, vocab, none, log_norm);
  const double norm = static_cast<double>(logits[chosen]) - log_norm[0];
  result.token_logprobs.push_back(static_cast<float>(log_norm[0]));
  if (top <= 0) return;
  std::vector<int32_t> best;
  best.reserve(static_cast<size_t>(top) + 1);
  const auto before = [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; };
  for (int32_t i = 0; i < vocab; ++i) {
    if (static_cast<int>(best.size()) == top && !before(i, best.back())) continue;
    best.insert(std::upper_bound(best.begin(), best.end(), i, before), i);
    if (static_cast<int>(best.size()) > top) best.pop_back();
  }
  for (const int32_t id : best) {
    result.top_ids.push_back(id);
    result.top_logprobs.push_back(static_cast<float>(static_cast<double>(logits[id]) - norm));
  }
}

}  // namespace

Generator::Generator(MoeTransformer& model, std::vector<int32_t> eos_ids, GenerationOptions options)
    : model_(model), eos_ids_(std::move(eos_ids)), options_(options) {
  if (options_.batch_size < 1) fail("batch size must be at least 1");
  if (options_.max_step_tokens < 1) fail("max step tokens must be at least 1");
  if (options_.max_new_tokens < 0) fail("max new tokens must not be negative");
  if (options_.sample_vocab < 0 || options_.sample_vocab > model_.config().vocab_size) {
    fail("the sampled vocabulary ({} ids) must be within the model's ({})", options_.sample_vocab,
         model_.config().vocab_size);
  }
  const int scored_vocab = options_.sample_vocab > 0 ? options_.sample_vocab : model_.config().vocab_size;
  for (size_t i = 0; i < options_.score_ids.size(); ++i) {
    const int32_t id = options_.score_ids[i];
    if (id < 0 || id >= scored_vocab || (i > 0 && id <= options_.score_ids[i - 1])) {
      fail("scored token ids must be sorted, unique and within the vocabulary ({} ids); {} is not", scored_vocab, id);
    }
  }
}

namespace {

class ListSource : public RequestSource {
 public:
  explicit ListSource(std::span<const GenerationRequest> requests) : requests_(requests) {}
  void take(int free_slots, std::vector<std::pair<size_t, GenerationRequest>>& out) override {
    for (; free_slots > 0 && next_ < requests_.size(); --free_slots, ++next_) out.emplace_back(next_, requests_[next_]);
  }
  bool exhausted() const override { return next_ == requests_.size(); }

 private:
  std::span<const GenerationRequest> requests_;
  size_t next_ = 0;
};

}  // namespace

bool Generator::run(std::span<const GenerationRequest> requests,
                    const std::function<void(size_t, GenerationResult&&)>& on_done) {
  ListSource source(requests);
  return run(source, on_done);
}

namespace {

using OnDone = std::function<void(size_t, GenerationResult&&)>;

// One run of a generator over its requests: the slots, and the buffers a
// step reuses. Each step is the same list of phases: admit requests into
// free slots, schedule the step's rows, run the model forward, then record
// each row and sample for the requests whose pending tokens are all in.
class GenerationRun {
 public:
  GenerationRun(MoeTransformer& model, const std::vector<int32_t>& eos_ids, const GenerationOptions& options,
                GenerationStats& stats, const OnDone& on_done)
      : model_(model),
        eos_ids_(eos_ids),
        options_(options),
        stats_(stats),
        on_done_(on_done),
        c_(model.config()),
        vocab_(c_.vocab_size),
        moe_layers_(model.moe_layer_count()),
        top_k_(model.top_k()),
        route_width_(moe_layers_ * top_k_),
        hidden_(c_.hidden_size),
        max_pos_(c_.max_position_embeddings),
        scored_vocab_(options.sample_vocab > 0 ? options.sample_vocab : vocab_),
        count_size_(static_cast<size_t>(kPhaseCount) * moe_layers_ * c_.n_routed_experts),
        moe_decoder_layers_(c_.moe_layers()),
        slots_(options.batch_size),
        cache_(c_, slots_),  // a slot's memory is allocated when a request takes it
        state_(static_cast<size_t>(slots_)),
        sampler_(options.sampling) {}

  // Runs until the source is exhausted and every request finished (true)
  // or stop_requested ends it (false).
  bool until_done(RequestSource& source) {
    const uint64_t bytes_before = weight_bytes_streamed();
    const auto run_start = std::chrono::steady_clock::now();
    bool completed = true;
    for (;;) {
      // The source hears from every step, even one without room (a shared
      // queue counts its coordinators' steps, and decides there whether
      // the job stops).
      taken_.clear();
      source.take(source.exhausted() ? 0 : slots_ - active_, taken_);
      if (options_.stop_requested && options_.stop_requested()) {
        completed = false;
        break;
      }
      cancel(source);
      if (active_ == 0 && taken_.empty()) {
        if (source.exhausted()) break;
        source.wait();
        continue;
      }
      admit();
      schedule_rows();
      forward();
      record_and_sample();
    }
    stats_.total_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    stats_.weight_bytes += weight_bytes_streamed() - bytes_before;
    return completed;
  }

 private:
  // Requests the source withdrew finish at once, as they are.
  void cancel(RequestSource& source) {
    cancelled_.clear();
    source.cancelled(cancelled_);
    for (const size_t id : cancelled_) {
      for (Slot& slot : state_) {
        if (!slot.active || slot.request != id) continue;
        slot.result.stop = StopReason::Cancelled;
        finish(slot);
      }
    }
  }

  // Checks the requests taken, then gives each a free slot and its KV cache.
  void admit() {
    if (static_cast<int>(taken_.size()) > slots_ - active_)
      fail("the request source gave {} requests for {} free slots", taken_.size(), slots_ - active_);
    for (auto& [id, req] : taken_) {
      const size_t len = req.prompt.size();
      if (len == 0) fail("request {}: the prompt has no tokens", id);
      if (len > static_cast<size_t>(max_pos_)) {
        fail("request {}: the prompt has {} tokens but the model has max_position_embeddings {}", id, len, max_pos_);
      }
      if (req.score_from >= static_cast<int>(len))
        fail("request {}: scoring from position {} of a {}-token prompt", id, req.score_from, len);
      if (req.score_from >= 0 && options_.score_ids.empty()) fail("request {}: scoring needs the ids to score", id);
      if (req.logprobs_from >= static_cast<int>(len) || req.top_logprobs < 0 || req.top_logprobs > kMaxTopLogprobs)
        fail("request {}: log-probabilities from position {} of {} with {} alternatives", id, req.logprobs_from, len,
             req.top_logprobs);
      if (req.top_p > 1.0f || req.top_p == 0.0f) fail("request {}: top_p {} is not in (0, 1]", id, req.top_p);
      if (req.resume_moe_layer >= 0) {
        if ((req.max_new_tokens >= 0 ? req.max_new_tokens : options_.max_new_tokens) != 0)
          fail("request {}: a request resumed at a MoE layer cannot generate", id);
        if (req.resume_moe_layer >= moe_layers_ || req.resume_h.size() != len * static_cast<size_t>(hidden_)) {
          fail("request {}: resumes at MoE layer {} with {} values for {} positions of {}", id, req.resume_moe_layer,
               req.resume_h.size(), len, hidden_);
        }
      }
    }
    for (auto& [id, req] : taken_) {
      int s = 0;
      while (state_[s].active) ++s;
      Slot& slot = state_[s];
      slot = Slot{};
      slot.active = true;
      slot.request = id;
      slot.mask = req.mask;
      slot.own_mask = std::move(req.own_mask);
      slot.cls = req.cls;
      slot.tokens = std::move(req.prompt);
      slot.prompt_len = slot.tokens.size();
      slot.score_from = req.score_from;
      slot.max_new = req.max_new_tokens >= 0 ? req.max_new_tokens : options_.max_new_tokens;
      slot.sampling = options_.sampling;
      if (req.temperature >= 0) slot.sampling.temperature = req.temperature;
      if (req.top_p > 0) slot.sampling.top_p = req.top_p;
      slot.logprobs_from = req.logprobs_from;
      slot.top_logprobs = req.top_logprobs;
      slot.capture = req.capture;
      slot.resume_layer =
          req.resume_moe_layer >= 0 ? moe_decoder_layers_[static_cast<size_t>(req.resume_moe_layer)] : -1;
      slot.resume_h = std::move(req.resume_h);
      if (slot.capture) slot.result.moe_inputs.assign(slot.prompt_len * moe_layers_ * hidden_, 0.0f);
      slot.rng.emplace(req.own_seed ? req.seed : options_.seed, req.stream);
      slot.result.expert_counts.assign(count_size_, 0);
      slot.result.expert_gate_sum.assign(count_size_, 0.0);
      // Positions that will be fed: the prompt and every generated token but the last.
      const int wanted = static_cast<int>(slot.prompt_len) + std::max(slot.max_new - 1, 0);
      cache_.reset(s, std::min(wanted, max_pos_));
      ++active_;
    }
  }

  // Rows of this step: decoding slots first (one token each), then prompt
  // chunks within the step budget. Every active slot makes progress.
  // Prompts resumed at a later layer come last, so that the rows taking
  // part in each layer are a prefix of the step's (a decoding request
  // never resumes).
  void schedule_rows() {
    slot_order_.clear();
    for (int s = 0; s < slots_; ++s) slot_order_.push_back(s);
    std::stable_sort(slot_order_.begin(), slot_order_.end(),
                     [&](int a, int b) { return state_[a].resume_layer < state_[b].resume_layer; });
    rows_.clear();
    row_slot_.clear();
    logit_rows_.clear();
    for (int pass = 0; pass < 2; ++pass) {
      for (const int s : slot_order_) {
        Slot& slot = state_[s];
        if (!slot.active) continue;
        const bool decoding = static_cast<size_t>(slot.fed) >= slot.prompt_len;
        if (decoding != (pass == 0)) continue;
        const int pending = static_cast<int>(slot.tokens.size()) - slot.fed;
        const int budget = options_.max_step_tokens - static_cast<int>(rows_.size());
        const int take = decoding ? pending : std::min(pending, std::max(budget, rows_.empty() ? 1 : 0));
        for (int i = 0; i < take; ++i) {
          const int pos = slot.fed + i;
          const bool last = i + 1 == pending;
          const bool scored =
              slot.score_from >= 0 && pos >= slot.score_from && static_cast<size_t>(pos) < slot.prompt_len;
          // Logits only where they are used: sampling, scoring, or kept.
          const bool last_prompt = static_cast<size_t>(pos) + 1 == slot.prompt_len;
          const bool prompt_logprob =
              slot.logprobs_from >= 0 && pos >= slot.logprobs_from && static_cast<size_t>(pos) + 1 < slot.prompt_len;
          if ((last && slot.max_new > 0) || scored || prompt_logprob || options_.save_logits ||
              (options_.save_last_logits && last_prompt)) {
            logit_rows_.push_back(static_cast<int32_t>(rows_.size()));
          }
          const bool prompt = static_cast<size_t>(pos) < slot.prompt_len;
          StepRow row{s,         pos,      slot.tokens[pos],
                      slot.mask, slot.cls, static_cast<uint8_t>(prompt ? kPromptPhase : kGeneratedPhase)};
          if (slot.resume_layer >= 0) {
            row.resume_layer = static_cast<int16_t>(slot.resume_layer);
            row.resume_h = &slot.resume_h[static_cast<size_t>(pos) * hidden_];
          }
          if (slot.capture && prompt)
            row.capture = &slot.result.moe_inputs[static_cast<size_t>(pos) * moe_layers_ * hidden_];
          rows_.push_back(row);
          row_slot_.push_back(s);
        }
      }
    }
  }

  // The model over the step's rows, with the routing of every row tapped
  // (per-request expert counts need it), timed by the kind of step.
  void forward() {
    logits_.resize(logit_rows_.size() * vocab_);
    ForwardTaps taps;
    taps.routing_counts = options_.routing_counts;
    taps.routed_not_run_counts = options_.routed_not_run_counts;
    taps.last_ffn_logit_rows_only = options_.last_ffn_logit_rows_only;
    route_experts_.resize(rows_.size() * route_width_);
    route_weights_.resize(rows_.size() * route_width_);
    route_sent_.resize(rows_.size() * route_width_);
    taps.routing_experts = route_experts_.data();
    taps.routing_weights = route_weights_.data();
    taps.routing_sent = route_sent_.data();
    router_nonfinite_.assign(rows_.size(), -1);
    taps.router_nonfinite = router_nonfinite_.data();
    const auto step_start = std::chrono::steady_clock::now();
    model_.forward(rows_, cache_, logit_rows_, logits_.data(), taps);
    const double step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
    int64_t prompt_rows = 0;
    for (const StepRow& row : rows_) prompt_rows += row.phase == kPromptPhase;
    const auto generated_rows = static_cast<int64_t>(rows_.size()) - prompt_rows;
    if (generated_rows == 0) {
      stats_.prefill_seconds += step_seconds;
      stats_.prefill_tokens += prompt_rows;
    } else if (prompt_rows == 0) {
      stats_.decode_seconds += step_seconds;
      stats_.decode_tokens += generated_rows;
    } else {
      stats_.mixed_seconds += step_seconds;
      stats_.mixed_prompt_tokens += prompt_rows;
      stats_.mixed_generated_tokens += generated_rows;
    }
  }

  void record_and_sample() {
    size_t logit_index = 0;
    for (size_t r = 0; r < rows_.size(); ++r) {
      Slot& slot = state_[row_slot_[r]];
      const bool has_logits = logit_index < logit_rows_.size() && logit_rows_[logit_index] == static_cast<int32_t>(r);
      const float* row_logits = has_logits ? &logits_[logit_index * vocab_] : nullptr;
      if (has_logits) ++logit_index;
      record(r, slot, row_logits);
      if (slot.fed == static_cast<int>(slot.tokens.size())) next_token(slot, row_logits);
    }
  }

  // What row `r` adds to its request's result: errors, expert counts,
  // logits and scores kept, the routing trace; the position is then fed.
  void record(size_t r, Slot& slot, const float* row_logits) {
    const StepRow& row = rows_[r];
    if (router_nonfinite_[r] >= 0 && slot.result.error.empty()) {
      slot.result.error = fmt::format(
          "non-finite router scores at position {} in MoE layer {} ('{}' times the hidden state): a NaN or "
          "infinity in the model's activations",
          row.pos, router_nonfinite_[r], model_.router_tensor(router_nonfinite_[r]));
    }
    const int phase = row.phase;
    if (phase == kPromptPhase) {
      ++stats_.prompt_tokens;
      ++slot.result.prompt_positions;
    } else {
      ++slot.result.generated_positions;
    }
    const int n_experts = c_.n_routed_experts;
    for (int m = 0; m < moe_layers_; ++m) {
      for (int s = 0; s < top_k_; ++s) {
        const size_t at = r * route_width_ + static_cast<size_t>(m) * top_k_ + s;
        if (!route_sent_[at]) continue;
        const size_t i = (static_cast<size_t>(phase) * moe_layers_ + m) * n_experts + route_experts_[at];
        ++slot.result.expert_counts[i];
        slot.result.expert_gate_sum[i] += route_weights_[at];
      }
    }
    if (options_.save_logits || (options_.save_last_logits && static_cast<size_t>(row.pos) + 1 == slot.prompt_len)) {
      slot.result.logits.insert(slot.result.logits.end(), row_logits, row_logits + vocab_);
    }
    if (slot.score_from >= 0 && row.pos >= slot.score_from && phase == kPromptPhase) {
      if (std::any_of(row_logits, row_logits + scored_vocab_, [](float v) { return !std::isfinite(v); }) &&
          slot.result.error.empty()) {
        slot.result.error = fmt::format(
            "non-finite logits at scored position {}: a NaN or infinity in the model's weights or activations",
            row.pos);
      }
      log_probabilities(row_logits, scored_vocab_, options_.score_ids, slot.result.scores);
    }
    if (slot.logprobs_from >= 0 && row.pos >= slot.logprobs_from && static_cast<size_t>(row.pos) + 1 < slot.prompt_len)
      token_log_probabilities(row_logits, scored_vocab_, slot.tokens[row.pos + 1], slot.top_logprobs, slot.result);
    if (options_.trace) {  // the routing itself is tapped always; kept only when asked
      slot.result.route_experts.insert(slot.result.route_experts.end(), &route_experts_[r * route_width_],
                                       &route_experts_[(r + 1) * route_width_]);
      slot.result.route_weights.insert(slot.result.route_weights.end(), &route_weights_[r * route_width_],
                                       &route_weights_[(r + 1) * route_width_]);
    }
    ++slot.fed;
    ++slot.result.positions;
  }

  // Every pending token of the slot is fed: sample the next one, or finish.
  void next_token(Slot& slot, const float* row_logits) {
    if (slot.max_new == 0) {
      if (!slot.result.error.empty()) slot.result.stop = StopReason::Error;
      finish(slot);
      return;
    }
    // Non-finite logits would sample token 0 forever: the request fails,
    // named, and the others go on.
    if (const float* bad = std::find_if(row_logits, row_logits + vocab_, [](float v) { return !std::isfinite(v); });
        bad != row_logits + vocab_ || !slot.result.error.empty()) {
      slot.result.stop = StopReason::Error;
      if (slot.result.error.empty()) {
        slot.result.error = fmt::format(
            "non-finite logit {} (token {}) after position {}: a NaN or infinity in the model's weights or "
            "activations",
            *bad, bad - row_logits, slot.fed - 1);
      }
      finish(slot);
      return;
    }
    const int32_t next = sampler_.sample(row_logits, scored_vocab_, *slot.rng, slot.sampling);
    slot.result.generated.push_back(next);
    if (slot.logprobs_from >= 0)
      token_log_probabilities(row_logits, scored_vocab_, next, slot.top_logprobs, slot.result);
    if (options_.on_token) options_.on_token(slot.request, slot.result);
    ++stats_.generated_tokens;
    const bool eos = options_.stop_at_eos && std::find(eos_ids_.begin(), eos_ids_.end(), next) != eos_ids_.end();
    const bool full_count = static_cast<int>(slot.result.generated.size()) >= slot.max_new;
    const bool no_room = slot.fed >= max_pos_;
    if (eos || full_count || no_room) {
      slot.result.stop = eos ? StopReason::Eos : full_count ? StopReason::MaxTokens : StopReason::ContextFull;
      finish(slot);
    } else {
      slot.tokens.push_back(next);
    }
  }

  void finish(Slot& slot) {
    slot.active = false;
    --active_;
    on_done_(slot.request, std::move(slot.result));
  }

  MoeTransformer& model_;
  const std::vector<int32_t>& eos_ids_;
  const GenerationOptions& options_;
  GenerationStats& stats_;
  const OnDone& on_done_;
  const ModelConfig& c_;
  const int vocab_, moe_layers_, top_k_, route_width_, hidden_, max_pos_, scored_vocab_;
  const size_t count_size_;
  const std::vector<int> moe_decoder_layers_;
  const int slots_;
  KvCache cache_;
  std::vector<Slot> state_;
  Sampler sampler_;
  int active_ = 0;
  // The step's buffers, reused.
  std::vector<std::pair<size_t, GenerationRequest>> taken_;
  std::vector<size_t> cancelled_;
  std::vector<StepRow> rows_;
  std::vector<int32_t> row_slot_, logit_rows_;
  std::vector<int> slot_order_;
  std::vector<float> logits_;
  std::vector<int32_t> route_experts_;
  std::vector<float> route_weights_;
  std::vector<uint8_t> route_sent_;
  std::vector<int16_t> router_nonfinite_;
};

}  // namespace

bool Generator::run(RequestSource& source, const OnDone& on_done) {
  GenerationRun run(model_, eos_ids_, options_, stats_, on_done);
  return run.until_done(source);
}

}  // namespace mote
