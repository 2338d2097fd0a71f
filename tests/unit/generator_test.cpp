// Generation on the bundled model: batching, chunked prefill and slot reuse
// never change a request's tokens, logits or routing; stop conditions.
#include "mote/runtime/generator.h"

#include <gtest/gtest.h>

#include "mote/model/loaded_model.h"
#include "mote/util/error.h"
#include "model_files.h"

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
  MoeTransformer model(model_files().config, model_files().weights);
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
  MoeTransformer model(m->config, m->weights);
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
