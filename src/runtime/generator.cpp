#include "mote/runtime/generator.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <deque>
#include <optional>

#include "mote/ops/matmul.h"
#include "mote/util/error.h"

namespace mote {

namespace {

struct Slot {
  bool active = false;
  size_t request = 0;  // the id on_done reports
  const ExpertMask* mask = nullptr;
  int16_t cls = 0;
  std::vector<int32_t> tokens;  // prompt, then generated tokens as they are fed back
  int fed = 0;                  // positions already in the KV cache
  size_t prompt_len = 0;
  int score_from = -1;
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

}  // namespace

Generator::Generator(MoeTransformer& model, std::vector<int32_t> eos_ids, GenerationOptions options)
    : model_(model), eos_ids_(std::move(eos_ids)), options_(options) {
  if (options_.batch_size < 1) fail("batch size must be at least 1");
  if (options_.max_step_tokens < 1) fail("max step tokens must be at least 1");
  if (options_.max_new_tokens < 0) fail("max new tokens must not be negative");
  if (options_.sample_vocab < 0 || options_.sample_vocab > model_.config().vocab_size) {
    fail("the sampled vocabulary ({} ids) must be within the model's ({})", options_.sample_vocab, model_.config().vocab_size);
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

bool Generator::run(RequestSource& source, const std::function<void(size_t, GenerationResult&&)>& on_done) {
  const ModelConfig& c = model_.config();
  const int vocab = c.vocab_size;
  const int route_width = model_.moe_layer_count() * model_.top_k();
  const int max_pos = c.max_position_embeddings;
  const int scored_vocab = options_.sample_vocab > 0 ? options_.sample_vocab : vocab;
  const std::vector<int> moe_decoder_layers = c.moe_layers();
  const int hidden = c.hidden_size;

  const int slots = options_.batch_size;
  KvCache cache(c, slots);  // a slot's memory is allocated when a request takes it
  std::vector<Slot> state(static_cast<size_t>(slots));
  Sampler sampler(options_.sampling);
  std::vector<std::pair<size_t, GenerationRequest>> taken;

  std::vector<StepRow> rows;
  std::vector<int32_t> row_slot, logit_rows;
  std::vector<int> slot_order;
  std::vector<float> logits;
  std::vector<int32_t> route_experts;
  std::vector<float> route_weights;
  std::vector<uint8_t> route_sent;
  std::vector<int16_t> router_nonfinite;
  const int moe_layers = model_.moe_layer_count();
  const int n_experts = c.n_routed_experts;
  const int top_k = model_.top_k();
  const size_t count_size = static_cast<size_t>(kPhaseCount) * moe_layers * n_experts;
  const uint64_t bytes_before = weight_bytes_streamed();
  const auto run_start = std::chrono::steady_clock::now();

  bool completed = true;
  int active = 0;
  for (;;) {
    // Admit requests into free slots. The source hears from every step,
    // even one without room (a shared queue counts its coordinators' steps,
    // and decides there whether the job stops).
    taken.clear();
    source.take(source.exhausted() ? 0 : slots - active, taken);
    if (options_.stop_requested && options_.stop_requested()) {
      completed = false;
      break;
    }
    if (active == 0 && taken.empty()) {
      if (source.exhausted()) break;
      source.wait();
      continue;
    }
    if (static_cast<int>(taken.size()) > slots - active) fail("the request source gave {} requests for {} free slots", taken.size(), slots - active);
    for (auto& [id, req] : taken) {
      const size_t len = req.prompt.size();
      if (len == 0) fail("request {}: the prompt has no tokens", id);
      if (len > static_cast<size_t>(max_pos)) {
        fail("request {}: the prompt has {} tokens but the model has max_position_embeddings {}", id, len, max_pos);
      }
      if (req.score_from >= static_cast<int>(len)) fail("request {}: scoring from position {} of a {}-token prompt", id, req.score_from, len);
      if (req.score_from >= 0 && options_.score_ids.empty()) fail("request {}: scoring needs the ids to score", id);
      if (req.resume_moe_layer >= 0) {
        if (options_.max_new_tokens != 0) fail("request {}: a request resumed at a MoE layer cannot generate", id);
        if (req.resume_moe_layer >= model_.moe_layer_count() || req.resume_h.size() != len * static_cast<size_t>(hidden)) {
          fail("request {}: resumes at MoE layer {} with {} values for {} positions of {}", id, req.resume_moe_layer, req.resume_h.size(), len,
               hidden);
        }
      }
    }
    for (auto& [id, req] : taken) {
      int s = 0;
      while (state[s].active) ++s;
      Slot& slot = state[s];
      slot = Slot{};
      slot.active = true;
      slot.request = id;
      slot.mask = req.mask;
      slot.cls = req.cls;
      slot.tokens = std::move(req.prompt);
      slot.prompt_len = slot.tokens.size();
      slot.score_from = req.score_from;
      slot.capture = req.capture;
      slot.resume_layer = req.resume_moe_layer >= 0 ? moe_decoder_layers[static_cast<size_t>(req.resume_moe_layer)] : -1;
      slot.resume_h = std::move(req.resume_h);
      if (slot.capture) slot.result.moe_inputs.assign(slot.prompt_len * moe_layers * hidden, 0.0f);
      slot.rng.emplace(options_.seed, req.stream);
      slot.result.expert_counts.assign(count_size, 0);
      slot.result.expert_gate_sum.assign(count_size, 0.0);
      // Positions that will be fed: the prompt and every generated token but the last.
      const int wanted = static_cast<int>(slot.prompt_len) + std::max(options_.max_new_tokens - 1, 0);
      cache.reset(s, std::min(wanted, max_pos));
      ++active;
    }

    // Rows of this step: decoding slots first (one token each), then prompt
    // chunks within the step budget. Every active slot makes progress.
    // Prompts resumed at a later layer come last, so that the rows taking
    // part in each layer are a prefix of the step's (a decoding request
    // never resumes).
    slot_order.clear();
    for (int s = 0; s < slots; ++s) slot_order.push_back(s);
    std::stable_sort(slot_order.begin(), slot_order.end(), [&](int a, int b) { return state[a].resume_layer < state[b].resume_layer; });
    rows.clear();
    row_slot.clear();
    logit_rows.clear();
    for (int pass = 0; pass < 2; ++pass) {
      for (const int s : slot_order) {
        Slot& slot = state[s];
        if (!slot.active) continue;
        const bool decoding = static_cast<size_t>(slot.fed) >= slot.prompt_len;
        if (decoding != (pass == 0)) continue;
        const int pending = static_cast<int>(slot.tokens.size()) - slot.fed;
        const int budget = options_.max_step_tokens - static_cast<int>(rows.size());
        const int take = decoding ? pending : std::min(pending, std::max(budget, rows.empty() ? 1 : 0));
        for (int i = 0; i < take; ++i) {
          const int pos = slot.fed + i;
          const bool last = i + 1 == pending;
          const bool scored = slot.score_from >= 0 && pos >= slot.score_from && static_cast<size_t>(pos) < slot.prompt_len;
          // Logits only where they are used: sampling, scoring, or kept.
          const bool last_prompt = static_cast<size_t>(pos) + 1 == slot.prompt_len;
          if ((last && options_.max_new_tokens > 0) || scored || options_.save_logits || (options_.save_last_logits && last_prompt)) {
            logit_rows.push_back(static_cast<int32_t>(rows.size()));
          }
          const bool prompt = static_cast<size_t>(pos) < slot.prompt_len;
          StepRow row{s, pos, slot.tokens[pos], slot.mask, slot.cls, static_cast<uint8_t>(prompt ? kPromptPhase : kGeneratedPhase)};
          if (slot.resume_layer >= 0) {
            row.resume_layer = static_cast<int16_t>(slot.resume_layer);
            row.resume_h = &slot.resume_h[static_cast<size_t>(pos) * hidden];
          }
          if (slot.capture && prompt) row.capture = &slot.result.moe_inputs[static_cast<size_t>(pos) * moe_layers * hidden];
          rows.push_back(row);
          row_slot.push_back(s);
        }
      }
    }

    logits.resize(logit_rows.size() * vocab);
    // Routing is always tapped: per-request expert counts need it.
    ForwardTaps taps;
    taps.routing_counts = options_.routing_counts;
    taps.routed_not_run_counts = options_.routed_not_run_counts;
    taps.last_ffn_logit_rows_only = options_.last_ffn_logit_rows_only;
    route_experts.resize(rows.size() * route_width);
    route_weights.resize(rows.size() * route_width);
    route_sent.resize(rows.size() * route_width);
    taps.routing_experts = route_experts.data();
    taps.routing_weights = route_weights.data();
    taps.routing_sent = route_sent.data();
    router_nonfinite.assign(rows.size(), -1);
    taps.router_nonfinite = router_nonfinite.data();
    const auto step_start = std::chrono::steady_clock::now();
    model_.forward(rows, cache, logit_rows, logits.data(), taps);
    const double step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
    int64_t prompt_rows = 0;
    for (const StepRow& row : rows) prompt_rows += row.phase == kPromptPhase;
    const auto generated_rows = static_cast<int64_t>(rows.size()) - prompt_rows;
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

    // Record, then sample for slots whose pending tokens are all fed.
    size_t logit_index = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
      Slot& slot = state[row_slot[r]];
      const bool has_logits = logit_index < logit_rows.size() && logit_rows[logit_index] == static_cast<int32_t>(r);
      const float* row_logits = has_logits ? &logits[logit_index * vocab] : nullptr;
      if (has_logits) ++logit_index;
      if (router_nonfinite[r] >= 0 && slot.result.error.empty()) {
        slot.result.error = fmt::format("non-finite router scores at position {} in MoE layer {} ('{}' times the hidden state): a NaN or "
                                        "infinity in the model's activations",
                                        rows[r].pos, router_nonfinite[r], model_.router_tensor(router_nonfinite[r]));
      }
      const int phase = rows[r].phase;
      if (phase == kPromptPhase) {
        ++stats_.prompt_tokens;
        ++slot.result.prompt_positions;
      } else {
        ++slot.result.generated_positions;
      }
      for (int m = 0; m < moe_layers; ++m) {
        for (int s = 0; s < top_k; ++s) {
          const size_t at = r * route_width + static_cast<size_t>(m) * top_k + s;
          if (!route_sent[at]) continue;
          const size_t i = (static_cast<size_t>(phase) * moe_layers + m) * n_experts + route_experts[at];
          ++slot.result.expert_counts[i];
          slot.result.expert_gate_sum[i] += route_weights[at];
        }
      }
      if (options_.save_logits || (options_.save_last_logits && static_cast<size_t>(rows[r].pos) + 1 == slot.prompt_len)) {
        slot.result.logits.insert(slot.result.logits.end(), row_logits, row_logits + vocab);
      }
      if (slot.score_from >= 0 && rows[r].pos >= slot.score_from && phase == kPromptPhase) {
        if (std::any_of(row_logits, row_logits + scored_vocab, [](float v) { return !std::isfinite(v); }) && slot.result.error.empty()) {
          slot.result.error = fmt::format("non-finite logits at scored position {}: a NaN or infinity in the model's weights or activations",
                                          rows[r].pos);
        }
        log_probabilities(row_logits, scored_vocab, options_.score_ids, slot.result.scores);
      }
      if (options_.trace) {  // the routing itself is tapped always; kept only when asked
        slot.result.route_experts.insert(slot.result.route_experts.end(), &route_experts[r * route_width], &route_experts[(r + 1) * route_width]);
        slot.result.route_weights.insert(slot.result.route_weights.end(), &route_weights[r * route_width], &route_weights[(r + 1) * route_width]);
      }
      ++slot.fed;
      ++slot.result.positions;
      if (slot.fed != static_cast<int>(slot.tokens.size())) continue;

      // All fed: choose the next token, unless none is wanted.
      if (options_.max_new_tokens == 0) {
        if (!slot.result.error.empty()) slot.result.stop = StopReason::Error;
        slot.active = false;
        --active;
        on_done(slot.request, std::move(slot.result));
        continue;
      }
      // Non-finite logits would sample token 0 forever: the request fails,
      // named, and the others go on.
      if (const float* bad = std::find_if(row_logits, row_logits + vocab, [](float v) { return !std::isfinite(v); });
          bad != row_logits + vocab || !slot.result.error.empty()) {
        slot.result.stop = StopReason::Error;
        if (slot.result.error.empty()) slot.result.error = fmt::format("non-finite logit {} (token {}) after position {}: a NaN or infinity in the model's weights or "
                                        "activations", *bad, bad - row_logits, slot.fed - 1);
        slot.active = false;
        --active;
        on_done(slot.request, std::move(slot.result));
        continue;
      }
      const int32_t next = sampler.sample(row_logits, options_.sample_vocab > 0 ? options_.sample_vocab : vocab, *slot.rng);
      slot.result.generated.push_back(next);
      ++stats_.generated_tokens;
      const bool eos = options_.stop_at_eos && std::find(eos_ids_.begin(), eos_ids_.end(), next) != eos_ids_.end();
      const bool full_count = static_cast<int>(slot.result.generated.size()) >= options_.max_new_tokens;
      const bool no_room = slot.fed >= max_pos;
      if (eos || full_count || no_room) {
        slot.result.stop = eos ? StopReason::Eos : full_count ? StopReason::MaxTokens : StopReason::ContextFull;
        slot.active = false;
        --active;
        on_done(slot.request, std::move(slot.result));
      } else {
        slot.tokens.push_back(next);
      }
    }
  }
  stats_.total_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  stats_.weight_bytes += weight_bytes_streamed() - bytes_before;
  return completed;
}

}  // namespace mote
