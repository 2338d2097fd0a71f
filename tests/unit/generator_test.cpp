// Generation on the bundled model: batching, chunked prefill and slot reuse
// never change a request's tokens, logits or routing; stop conditions.
#include "mote/runtime/generator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "model_files.h"
#include "mote/expert_parallel/local_experts.h"
#include "mote/model/expert_counters.h"
#include "mote/model/expert_mask.h"
#include "mote/model/loaded_model.h"
#include "mote/util/error.h"
#include "mote/util/parallel.h"

namespace mote {
namespace {

const LoadedModel& model_files() {
  static const auto m = load_model(test::bundled_model());
  return *m;
}

std::vector<GenerationRequest> golden_requests() {
  const auto& tok = model_files().tokenizer;
  std::vector<GenerationRequest> out;
  uint64_t i = 0;
  for (const char* text : {"<｜begin▁of▁sentence｜><｜User｜>What happened last year in Belvask?<｜Assistant｜>",
                           "The secret of a happy life is", "Ein Mann geht in eine Bäckerei und sagt",
                           "<｜begin▁of▁sentence｜><｜User｜>Tell me a saying.<｜Assistant｜>", "A"}) {
    out.push_back({tok.encode(text, !std::string(text).starts_with("<｜begin")), nullptr, i++});
  }
  return out;
}

std::vector<GenerationResult> run(GenerationOptions options, const std::vector<GenerationRequest>& requests) {
  LocalExperts local_experts(model_files().weights, model_files().config);
  MoeTransformer model(model_files().config, model_files().weights, local_experts);
  Generator gen(model, model_files().eos_ids, options);
  std::vector<GenerationResult> results(requests.size());
  gen.run(requests, [&](size_t i, GenerationResult&& r) { results[i] = std::move(r); });
  return results;
}

void expect_identical(const GenerationResult& a, const GenerationResult& b) {
  EXPECT_EQ(a.generated, b.generated);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.stop, b.stop);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  EXPECT_EQ(0, std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * sizeof(float)));
  EXPECT_EQ(a.route_experts, b.route_experts);
  ASSERT_EQ(a.route_weights.size(), b.route_weights.size());
  EXPECT_EQ(0, std::memcmp(a.route_weights.data(), b.route_weights.data(), a.route_weights.size() * sizeof(float)));
}

TEST(Generator, BatchingAndChunkingGiveBitIdenticalResults) {
  const auto requests = golden_requests();
  GenerationOptions base;
  base.max_new_tokens = 12;
  base.save_logits = true;
  base.trace = true;
  base.batch_size = 1;
  const auto alone = run(base, requests);

  for (const auto& [batch, step_tokens] : {std::pair{8, 2048}, std::pair{2, 5}, std::pair{3, 1}}) {
    GenerationOptions o = base;
    o.batch_size = batch;
    o.max_step_tokens = step_tokens;
    const auto batched = run(o, requests);
    for (size_t i = 0; i < requests.size(); ++i) {
      SCOPED_TRACE("request " + std::to_string(i) + " batch " + std::to_string(batch));
      expect_identical(alone[i], batched[i]);
    }
  }
  // Positions fed: the prompt and every generated token but the last.
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = alone[i];
    EXPECT_EQ(r.positions, static_cast<int>(requests[i].prompt.size() + r.generated.size()) - 1);
    EXPECT_EQ(r.logits.size(), static_cast<size_t>(r.positions) * 4096);
    EXPECT_EQ(r.route_experts.size(), static_cast<size_t>(r.positions) * 5 * 4);
  }
}

// Attention cuts its work two ways: a task per sequence when there are
// many, or (decode of few sequences on a long context) each sequence's
// scores by positions and its weighted sums by latent columns, shared by
// the threads. A long sequence decoded alone takes the second way, in a
// batch of four the first, at one thread neither: the same bits every time.
TEST(Generator, LongContextDecodeIsTheSameAloneInABatchAndOnOneThread) {
  auto requests = golden_requests();
  std::vector<int32_t> long_prompt;
  while (long_prompt.size() < 700)
    for (const auto& r : requests) long_prompt.insert(long_prompt.end(), r.prompt.begin() + 1, r.prompt.end());
  long_prompt.resize(700);
  requests.insert(requests.begin(), {long_prompt, nullptr, 99});
  requests.resize(4);
  GenerationOptions o;
  o.max_new_tokens = 6;
  o.stop_at_eos = false;
  o.save_logits = true;
  o.trace = true;
  const int threads = parallel_threads();
  set_parallel_threads(2);
  o.batch_size = 1;
  const auto alone = run(o, {requests[0]});
  o.batch_size = 4;
  const auto batched = run(o, requests);
  set_parallel_threads(1);
  o.batch_size = 1;
  const auto one_thread = run(o, {requests[0]});
  set_parallel_threads(threads);
  expect_identical(alone[0], batched[0]);
  expect_identical(alone[0], one_thread[0]);
  EXPECT_EQ(alone[0].positions, 705);
}

// The last layer's feed-forward for the sampled and scored rows only (the
// default) gives the same tokens, scores, routing and per-request counts as
// running it for every row: the other rows' output there feeds nothing, and
// they are still routed there.
TEST(Generator, LastFeedForwardForLogitRowsOnlyChangesNoResult) {
  const auto requests = golden_requests();
  GenerationOptions o;
  o.max_new_tokens = 12;
  o.batch_size = 3;
  o.max_step_tokens = 7;
  o.score_ids = {1, 300};
  o.trace = true;
  std::vector<GenerationRequest> scored = requests;
  for (auto& r : scored) r.score_from = static_cast<int32_t>(r.prompt.size()) - 1;
  const int moe_layers = 5, experts = model_files().config.n_routed_experts;
  ExpertCounters counted(1, moe_layers, experts), ran(counted), not_run(counted);
  o.last_ffn_logit_rows_only = false;
  o.routing_counts = &counted;
  const auto all = run(o, scored);
  o.last_ffn_logit_rows_only = true;
  o.routing_counts = &ran;
  o.routed_not_run_counts = &not_run;
  const auto some = run(o, scored);
  // Every decision is counted once, in one of the two; the last MoE layer's
  // of rows without logits in the second.
  uint64_t not_run_tokens = 0;
  for (size_t i = 0; i < counted.tokens.size(); ++i) {
    EXPECT_EQ(counted.tokens[i], ran.tokens[i] + not_run.tokens[i]) << i;
    EXPECT_EQ(counted.gate_sum[i], ran.gate_sum[i] + not_run.gate_sum[i]) << i;
    const bool last_layer = i / experts % moe_layers == moe_layers - 1;
    if (!last_layer) {
      EXPECT_EQ(not_run.tokens[i], 0u) << i;
    }
    not_run_tokens += not_run.tokens[i];
  }
  EXPECT_GT(not_run_tokens, 0u);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(all[i].generated, some[i].generated) << i;
    EXPECT_EQ(all[i].scores, some[i].scores) << i;
    EXPECT_EQ(all[i].route_experts, some[i].route_experts) << i;
    EXPECT_EQ(all[i].route_weights, some[i].route_weights) << i;
    EXPECT_EQ(all[i].expert_counts, some[i].expert_counts) << i;
    EXPECT_EQ(all[i].expert_gate_sum, some[i].expert_gate_sum) << i;
    EXPECT_FALSE(some[i].route_experts.empty()) << i;
  }
}

TEST(Generator, StopsAtEosUnlessIgnored) {
  const auto requests = golden_requests();
  GenerationOptions o;
  o.max_new_tokens = 32;
  const auto stopped = run(o, {requests[1]});
  // golden text_en: " a mediant." then EOS at index 6.
  ASSERT_EQ(stopped[0].stop, StopReason::Eos);
  EXPECT_EQ(stopped[0].generated.size(), 7u);
  EXPECT_EQ(stopped[0].generated.back(), 1);
  o.stop_at_eos = false;
  const auto full = run(o, {requests[1]});
  EXPECT_EQ(full[0].stop, StopReason::MaxTokens);
  EXPECT_EQ(full[0].generated.size(), 32u);
  EXPECT_TRUE(std::equal(stopped[0].generated.begin(), stopped[0].generated.end(), full[0].generated.begin()));
}

TEST(Generator, ContextLimitAndZeroTokens) {
  const auto& tok = model_files().tokenizer;
  std::string long_text;
  for (int i = 0; i < 400; ++i) long_text += "the world and ";
  auto prompt = tok.encode(long_text, true);
  prompt.resize(1020);
  GenerationOptions o;
  o.max_new_tokens = 50;
  o.stop_at_eos = false;
  const auto r = run(o, {{prompt, nullptr, 0}});
  EXPECT_EQ(r[0].stop, StopReason::ContextFull);
  EXPECT_EQ(r[0].positions, 1024);
  EXPECT_EQ(r[0].generated.size(), 5u);

  o.max_new_tokens = 0;
  const auto none = run(o, {{prompt, nullptr, 0}});
  EXPECT_TRUE(none[0].generated.empty());
  EXPECT_EQ(none[0].positions, 1020);

  prompt.resize(1025, 300);
  EXPECT_ERROR_CONTAINS(run(o, {{prompt, nullptr, 0}}), "max_position_embeddings 1024");
  EXPECT_ERROR_CONTAINS(run(o, {{{}, nullptr, 0}}), "the prompt has no tokens");
}

// A knockout at MoE layer m cannot change anything before m: resuming from
// the unmasked run's residual at m gives the same scores, to the bit, as
// running the whole prompt under the mask; in any batch, chunked or not.
TEST(Generator, ScoringAndPrefixReuseAreBitIdentical) {
  const auto& files = model_files();
  const auto requests = golden_requests();
  GenerationOptions o;
  o.max_new_tokens = 0;
  o.score_ids = {5, 300, 1201};
  o.save_logits = true;
  std::vector<GenerationRequest> base = requests;
  for (auto& r : base) {
    r.capture = true;
    r.score_from = static_cast<int32_t>(r.prompt.size()) - 2;
  }
  const auto baseline = run(o, base);
  // Scores are the log-softmax of the logits of the scored rows.
  for (size_t i = 0; i < base.size(); ++i) {
    const auto& r = baseline[i];
    ASSERT_EQ(r.scores.size(), 2 * o.score_ids.size());
    ASSERT_EQ(r.moe_inputs.size(), base[i].prompt.size() * 5 * 256);
    const float* row = &r.logits[(r.logits.size() / 4096 - 1) * 4096];
    double sum = 0;
    for (int v = 0; v < 4096; ++v) sum += std::exp(static_cast<double>(row[v]) - *std::max_element(row, row + 4096));
    const double norm = *std::max_element(row, row + 4096) + std::log(sum);
    for (size_t k = 0; k < o.score_ids.size(); ++k) EXPECT_NEAR(r.scores[3 + k], row[o.score_ids[k]] - norm, 1e-12);
  }
  o.save_logits = false;

  std::vector<ExpertMask> masks;
  for (const auto& [layer, expert] : {std::pair{0, 3}, std::pair{2, 17}, std::pair{4, 30}, std::pair{1, 8}}) {
    ExpertMask m(5, 32);
    m.id = static_cast<int32_t>(masks.size()) + 1;
    m.set_off(layer, expert);
    masks.push_back(m);
  }
  std::vector<GenerationRequest> full, resumed;
  for (size_t i = 0; i < requests.size(); ++i) {
    for (size_t k = 0; k < masks.size(); ++k) {
      GenerationRequest r = requests[i];
      r.mask = &masks[k];
      r.score_from = static_cast<int32_t>(r.prompt.size()) - 2;
      full.push_back(r);
      const int layer = k == 0 ? 0 : k == 1 ? 2 : k == 2 ? 4 : 1;
      r.resume_moe_layer = layer;
      r.resume_h.resize(r.prompt.size() * 256);
      for (size_t p = 0; p < r.prompt.size(); ++p) {
        std::copy_n(&baseline[i].moe_inputs[(p * 5 + layer) * 256], 256, &r.resume_h[p * 256]);
      }
      resumed.push_back(std::move(r));
    }
  }
  // Interleave resumed and full requests in one batch as well.
  std::vector<GenerationRequest> mixed;
  for (size_t i = 0; i < full.size(); ++i) mixed.push_back(i % 2 ? resumed[i] : full[i]);
  o.batch_size = 1;
  const auto expected = run(o, full);
  for (const auto& [batch, step_tokens] : {std::pair{1, 2048}, std::pair{7, 2048}, std::pair{5, 3}}) {
    o.batch_size = batch;
    o.max_step_tokens = step_tokens;
    for (const auto* set : {&resumed, &mixed}) {
      const auto got = run(o, *set);
      for (size_t i = 0; i < full.size(); ++i) {
        SCOPED_TRACE("request " + std::to_string(i) + " batch " + std::to_string(batch));
        ASSERT_EQ(got[i].scores.size(), expected[i].scores.size());
        EXPECT_EQ(0,
                  std::memcmp(got[i].scores.data(), expected[i].scores.data(), got[i].scores.size() * sizeof(double)));
      }
    }
  }
  // The last layer's feed-forward for the scored rows only: the same scores.
  o.last_ffn_logit_rows_only = true;
  for (const auto* set : {&resumed, &mixed}) {
    const auto got = run(o, *set);
    for (size_t i = 0; i < full.size(); ++i) {
      ASSERT_EQ(got[i].scores.size(), expected[i].scores.size());
      EXPECT_EQ(0, std::memcmp(got[i].scores.data(), expected[i].scores.data(), got[i].scores.size() * sizeof(double)))
          << i;
    }
  }
  o.last_ffn_logit_rows_only = false;
  // The knockouts change the scores (the test would pass vacuously otherwise).
  int changed = 0;
  for (size_t i = 0; i < full.size(); ++i) changed += expected[i].scores != std::vector<double>(baseline[i / 4].scores);
  EXPECT_GE(changed, 8);

  // Bad requests.
  GenerationRequest bad = resumed[0];
  bad.resume_h.pop_back();
  EXPECT_ERROR_CONTAINS(run(o, {bad}), "resumes at MoE layer");
  bad = full[0];
  bad.score_from = static_cast<int32_t>(bad.prompt.size());
  EXPECT_ERROR_CONTAINS(run(o, {bad}), "scoring from position");
  o.max_new_tokens = 3;
  EXPECT_ERROR_CONTAINS(run(o, {resumed[0]}), "cannot generate");
  o.score_ids = {7, 7};
  EXPECT_ERROR_CONTAINS(run(o, {full[0]}), "sorted, unique");
  (void)files;
}

TEST(Generator, SeededSamplingIsReproducibleAndBatchIndependent) {
  const auto requests = golden_requests();
  GenerationOptions o;
  o.max_new_tokens = 16;
  o.sampling = {0.9f, 0.95f};
  o.seed = 1234;
  o.batch_size = 1;
  const auto a = run(o, requests);
  o.batch_size = 4;
  const auto b = run(o, requests);
  for (size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(a[i].generated, b[i].generated);
  o.seed = 99;
  const auto c = run(o, requests);
  int differing = 0;
  for (size_t i = 0; i < requests.size(); ++i) differing += a[i].generated != c[i].generated;
  EXPECT_GT(differing, 0);
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

// A vocabulary padded past the tokenizer (as DeepSeek-V3/R1 ship theirs):
// the padding rows' logits are the largest here, yet never sampled.
TEST(Generator, PaddedVocabularyIdsAreNeverSampled) {
  test::ScratchDir dir;
  auto config = test::small_config();
  config["vocab_size"] = 4200;  // the tokenizer has 4096
  test::make_small_model(dir.path(), config);
  test::rewrite_tensors(dir.path(), [](std::vector<TensorData>& ts) {
    for (auto& t : ts) {
      if (t.name != "lm_head.weight") continue;
      const size_t row = static_cast<size_t>(t.shape[1]) * 2;
      std::fill(t.bytes.begin(), t.bytes.begin() + static_cast<std::ptrdiff_t>(4096 * row), std::byte{0});
    }
  });
  const auto m = load_model(dir.path());
  LocalExperts local_experts(m->weights, m->config);
  MoeTransformer model(m->config, m->weights, local_experts);
  const std::vector<GenerationRequest> requests{{{0, 17, 300}, nullptr, 0}};
  for (const int sample_vocab : {0, 4096}) {
    GenerationOptions options;
    options.max_new_tokens = 4;
    options.sample_vocab = sample_vocab;
    Generator gen(model, m->eos_ids, options);
    std::vector<int32_t> generated;
    gen.run(requests, [&](size_t, GenerationResult&& r) { generated = r.generated; });
    ASSERT_EQ(generated.size(), 4u);
    const bool padded = std::any_of(generated.begin(), generated.end(), [](int32_t id) { return id >= 4096; });
    // Sampling the whole vocabulary picks padding (so the test can fail); the tokenizer's never does.
    EXPECT_EQ(padded, sample_vocab == 0) << "sample_vocab " << sample_vocab;
  }
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

// A server's requests carry their own settings: each gives what a job with
// those settings gives, in one batch with requests of other settings.
TEST(Generator, PerRequestSettingsEqualTheJobsOwn) {
  const auto requests = golden_requests();
  GenerationOptions base;
  base.max_new_tokens = 10;
  base.batch_size = 8;
  const auto greedy = run(base, requests);
  GenerationOptions sampled_options = base;
  sampled_options.max_new_tokens = 5;
  sampled_options.sampling = {0.9f, 0.8f};
  sampled_options.seed = 11;
  const auto sampled = run(sampled_options, requests);

  std::vector<GenerationRequest> mixed = requests;
  for (size_t i = 0; i < mixed.size(); i += 2) {
    mixed[i].max_new_tokens = 5;
    mixed[i].temperature = 0.9f;
    mixed[i].top_p = 0.8f;
    mixed[i].own_seed = true;
    mixed[i].seed = 11;
  }
  GenerationOptions other = base;
  other.seed = 3;  // only the requests without their own seed would see it, and they are greedy
  const auto got = run(other, mixed);
  for (size_t i = 0; i < mixed.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    EXPECT_EQ(got[i].generated, (i % 2 == 0 ? sampled : greedy)[i].generated);
  }
  EXPECT_NE(sampled[0].generated, std::vector<int32_t>(greedy[0].generated.begin(), greedy[0].generated.begin() + 5));
}

// Log-probabilities of the prompt's own tokens and of the sampled ones: the
// same numbers the scoring path gives for those ids, the top alternatives
// in order, and batching changes none of them.
TEST(Generator, TokenLogprobsMatchScoresAndDoNotDependOnTheBatch) {
  auto requests = golden_requests();
  for (auto& r : requests) {
    r.logprobs_from = 0;
    r.top_logprobs = 3;
  }
  GenerationOptions o;
  o.max_new_tokens = 4;
  o.stop_at_eos = false;
  o.batch_size = 1;
  const auto alone = run(o, requests);
  o.batch_size = 8;
  o.max_step_tokens = 3;
  const auto batched = run(o, requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    const auto& r = alone[i];
    const size_t n = requests[i].prompt.size() - 1 + r.generated.size();
    ASSERT_EQ(r.token_logprobs.size(), n);
    ASSERT_EQ(r.top_ids.size(), 3 * n);
    EXPECT_EQ(r.token_logprobs, batched[i].token_logprobs);
    EXPECT_EQ(r.top_ids, batched[i].top_ids);
    for (size_t p = 0; p < n; ++p) {
      EXPECT_GE(r.top_logprobs[3 * p], r.top_logprobs[3 * p + 1]);
      EXPECT_GE(r.top_logprobs[3 * p + 1], r.top_logprobs[3 * p + 2]);
      EXPECT_LE(r.token_logprobs[p], r.top_logprobs[3 * p] + 1e-6f);
      EXPECT_LE(r.token_logprobs[p], 0.0f);
    }
    // Greedy: each sampled token is the most likely one.
    for (size_t g = 0; g < r.generated.size(); ++g) {
      const size_t p = requests[i].prompt.size() - 1 + g;
      EXPECT_EQ(r.top_ids[3 * p], r.generated[g]);
      EXPECT_EQ(r.token_logprobs[p], r.top_logprobs[3 * p]);
    }
  }
  // The prompt's tokens against --score-tokens' path, which scores fixed ids at every position.
  const auto& prompt = requests[1].prompt;
  GenerationOptions scoring;
  scoring.max_new_tokens = 0;
  for (size_t p = 1; p < prompt.size(); ++p) scoring.score_ids.push_back(prompt[p]);
  std::sort(scoring.score_ids.begin(), scoring.score_ids.end());
  scoring.score_ids.erase(std::unique(scoring.score_ids.begin(), scoring.score_ids.end()), scoring.score_ids.end());
  GenerationRequest scored = requests[1];
  scored.logprobs_from = -1;
  scored.score_from = 0;
  const auto s = run(scoring, {scored});
  const size_t ids = scoring.score_ids.size();
  for (size_t p = 0; p + 1 < prompt.size(); ++p) {
    const size_t k =
        std::lower_bound(scoring.score_ids.begin(), scoring.score_ids.end(), prompt[p + 1]) - scoring.score_ids.begin();
    EXPECT_EQ(alone[1].token_logprobs[p], static_cast<float>(s[0].scores[p * ids + k])) << "position " << p;
  }
}

// A source that withdraws request 0 after a few steps: it ends as
// cancelled with what it had, and the other requests run as they would alone.
class CancellingSource : public RequestSource {
 public:
  explicit CancellingSource(std::vector<GenerationRequest> requests) : requests_(std::move(requests)) {}
  void take(int free_slots, std::vector<std::pair<size_t, GenerationRequest>>& out) override {
    ++steps_;
    for (; free_slots > 0 && next_ < requests_.size(); --free_slots, ++next_) out.emplace_back(next_, requests_[next_]);
  }
  bool exhausted() const override { return next_ == requests_.size(); }
  void cancelled(std::vector<size_t>& ids) override {
    if (steps_ == 4) ids.push_back(0);
  }

 private:
  std::vector<GenerationRequest> requests_;
  size_t next_ = 0;
  int steps_ = 0;
};

TEST(Generator, CancelledRequestsEndAndFreeTheirSlot) {
  const auto requests = golden_requests();
  GenerationOptions o;
  o.max_new_tokens = 12;
  o.stop_at_eos = false;
  o.batch_size = 2;
  const auto whole = run(o, requests);
  LocalExperts local_experts(model_files().weights, model_files().config);
  MoeTransformer model(model_files().config, model_files().weights, local_experts);
  Generator gen(model, model_files().eos_ids, o);
  std::vector<GenerationResult> results(requests.size());
  CancellingSource source(requests);
  gen.run(source, [&](size_t i, GenerationResult&& r) { results[i] = std::move(r); });
  EXPECT_EQ(results[0].stop, StopReason::Cancelled);
  ASSERT_LT(results[0].generated.size(), 12u);
  EXPECT_TRUE(std::equal(results[0].generated.begin(), results[0].generated.end(), whole[0].generated.begin()));
  for (size_t i = 1; i < requests.size(); ++i) EXPECT_EQ(results[i].generated, whole[i].generated) << i;
}

}  // namespace
}  // namespace mote
