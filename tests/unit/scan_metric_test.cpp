// Scan metrics: what --tokens and --continuation name, and the metric read
// from the kept log-probabilities.
#include "mote/runtime/scan_metric.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model_files.h"
#include "mote/model/loaded_model.h"
#include "mote/tokenizer/tokenizer.h"
#include "mote/util/error.h"
#include "mote/util/statistics.h"

namespace mote {
namespace {

const Tokenizer& tokenizer() {
  static const Tokenizer t = Tokenizer::load(test::bundled_model());
  return t;
}

TEST(ScanMetric, TokenProbSumsTheProbabilitiesOfTheNamedTokens) {
  const Tokenizer& tok = tokenizer();
  const int32_t i = tok.token_id("I"), s = tok.token_id("S");
  ASSERT_GE(i, 0);
  ASSERT_GE(s, 0);
  const ScanMetric m = make_scan_metric("token-prob", "S,I,#7", "", tok, 4096);
  EXPECT_EQ(m.tokens, (std::vector<int32_t>{s, i, 7}));
  std::vector<int32_t> sorted{s, i, 7};
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(m.score_ids, sorted);
  // Scores follow score_ids; the metric is the sum of their probabilities.
  std::vector<double> scores;
  for (const int32_t id : m.score_ids) scores.push_back(std::log(id == i ? 0.5 : id == s ? 0.25 : 0.125));
  EXPECT_NEAR(m.value(scores), 0.875, 1e-15);
  GenerationRequest r({1, 2, 3});
  m.prepare(r);
  EXPECT_EQ(r.score_from, 2);
  EXPECT_EQ(r.prompt.size(), 3u);
}

TEST(ScanMetric, ContinuationLogProbIsTeacherForced) {
  const Tokenizer& tok = tokenizer();
  const ScanMetric m = make_scan_metric("continuation-logprob", "", "I am sorry", tok, 4096);
  const std::vector<int32_t> cont = tok.encode("I am sorry", false);
  ASSERT_GE(cont.size(), 2u);
  EXPECT_EQ(m.continuation, cont);
  // The continuation is fed but for its last token; scoring starts at the last prompt token.
  GenerationRequest r({5, 6});
  m.prepare(r);
  EXPECT_EQ(r.score_from, 1);
  EXPECT_EQ(r.prompt.size(), 2 + cont.size() - 1);
  // Row k holds log-probabilities of score_ids after position score_from + k; the metric sums those of the
  // continuation.
  const size_t w = m.score_ids.size();
  std::vector<double> scores(cont.size() * w, -100.0);
  double expected = 0;
  for (size_t k = 0; k < cont.size(); ++k) {
    const size_t col =
        static_cast<size_t>(std::lower_bound(m.score_ids.begin(), m.score_ids.end(), cont[k]) - m.score_ids.begin());
    scores[k * w + col] = -0.5 * static_cast<double>(k + 1);
    expected += -0.5 * static_cast<double>(k + 1);
  }
  EXPECT_DOUBLE_EQ(m.value(scores), expected);
}

TEST(ScanMetric, BadTokensAndOptionsAreErrors) {
  const Tokenizer& tok = tokenizer();
  EXPECT_ERROR_CONTAINS(make_scan_metric("token-prob", "I,Zzzq", "", tok, 4096), "'Zzzq' is not a token");
  EXPECT_ERROR_CONTAINS(make_scan_metric("token-prob", "#4096", "", tok, 4096), "outside the vocabulary");
  EXPECT_ERROR_CONTAINS(make_scan_metric("token-prob", "#x1", "", tok, 4096), "not #ID");
  EXPECT_ERROR_CONTAINS(make_scan_metric("token-prob", "I,I", "", tok, 4096), "given twice");
  EXPECT_ERROR_CONTAINS(make_scan_metric("token-prob", ",I", "", tok, 4096), "an empty item");
  EXPECT_ERROR_CONTAINS(make_scan_metric("token-prob", "", "", tok, 4096), "needs --tokens");
  EXPECT_ERROR_CONTAINS(make_scan_metric("token-prob", std::string("\xff"), "", tok, 4096), "not valid UTF-8");
  EXPECT_ERROR_CONTAINS(make_scan_metric("continuation-logprob", "I", "x", tok, 4096), "--tokens is for");
  EXPECT_ERROR_CONTAINS(make_scan_metric("continuation-logprob", "", "", tok, 4096), "needs --continuation");
  EXPECT_ERROR_CONTAINS(make_scan_metric("entropy", "I", "", tok, 4096), "is not one of");
  // Text that encodes to one token (" the", spelled "Ġthe" in the vocabulary) is accepted as that token.
  const auto one = tok.encode(" the", false);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(make_scan_metric("token-prob", " the", "", tok, 4096).tokens, one);
  EXPECT_EQ(make_scan_metric("token-prob", "\u0120the", "", tok, 4096).tokens, one);
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

TEST(Spread, MeanSampleDeviationAndRange) {
  const std::vector<double> v{1.0, 2.0, 4.0};
  const Spread s = spread(v);
  EXPECT_DOUBLE_EQ(s.mean, 7.0 / 3.0);
  EXPECT_NEAR(
      s.sd,
      std::sqrt(((1 - 7.0 / 3) * (1 - 7.0 / 3) + (2 - 7.0 / 3) * (2 - 7.0 / 3) + (4 - 7.0 / 3) * (4 - 7.0 / 3)) / 2),
      1e-12);
  EXPECT_EQ(s.min, 1.0);
  EXPECT_EQ(s.max, 4.0);
  EXPECT_EQ(spread(std::vector<double>{3.0}).sd, 0.0);
  EXPECT_EQ(spread(std::vector<double>{}).mean, 0.0);
}

}  // namespace
}  // namespace mote
