#include "mote/runtime/scan_metric.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "mote/tokenizer/tokenizer.h"
#include "mote/util/error.h"
#include "mote/util/utf8.h"

namespace mote {
namespace {

int32_t parse_token(const std::string& item, const Tokenizer& tokenizer, int vocab) {
  if (item.size() > 1 && item[0] == '#') {
    int64_t id = -1;
    const auto [end, ec] = std::from_chars(item.data() + 1, item.data() + item.size(), id);
    if (ec != std::errc() || end != item.data() + item.size())
      fail("--tokens: '{}' is not #ID with a decimal id", item);
    if (id < 0 || id >= vocab) fail("--tokens: id {} is outside the vocabulary (ids 0 to {})", id, vocab - 1);
    return static_cast<int32_t>(id);
  }
  if (const int32_t id = tokenizer.token_id(item); id >= 0 && id < vocab) return id;
  // Text as typed (" I" for a byte-level "ĠI") that is one token.
  const std::vector<int32_t> ids = tokenizer.encode(item, false);
  if (ids.size() == 1 && ids[0] < vocab) return ids[0];
  fail(
      "--tokens: '{}' is not a token of the model's vocabulary (its text encodes to {} tokens); give the vocabulary's "
      "spelling or #ID",
      item, ids.size());
}

}  // namespace

ScanMetric make_scan_metric(const std::string& name, const std::string& tokens, const std::string& continuation,
                            const Tokenizer& tokenizer, int sampled_vocab) {
  ScanMetric m;
  m.name = name;
  if (name == "token-prob") {
    if (!continuation.empty()) fail("--continuation is for --metric continuation-logprob");
    if (tokens.empty()) fail("--metric token-prob needs --tokens LIST (vocabulary tokens or #ID, comma-separated)");
    if (find_invalid_utf8(tokens)) fail("--tokens is not valid UTF-8");
    m.spec = tokens;
    size_t start = 0;
    while (start <= tokens.size()) {
      const size_t comma = std::min(tokens.find(',', start), tokens.size());
      const std::string item = tokens.substr(start, comma - start);
      if (item.empty()) fail("--tokens '{}': an empty item (two commas, or one at an end)", tokens);
      const int32_t id = parse_token(item, tokenizer, sampled_vocab);
      if (std::find(m.tokens.begin(), m.tokens.end(), id) != m.tokens.end())
        fail("--tokens: '{}' (id {}) is given twice", item, id);
      m.tokens.push_back(id);
      start = comma + 1;
    }
    m.score_ids = m.tokens;
  } else if (name == "continuation-logprob") {
    if (!tokens.empty()) fail("--tokens is for --metric token-prob");
    if (continuation.empty()) fail("--metric continuation-logprob needs --continuation TEXT");
    if (find_invalid_utf8(continuation)) fail("--continuation is not valid UTF-8");
    m.spec = continuation;
    m.continuation = tokenizer.encode(continuation, false);
    if (m.continuation.empty()) fail("--continuation '{}' encodes to no tokens", continuation);
    for (const int32_t id : m.continuation) {
      if (id >= sampled_vocab) fail("--continuation encodes to id {}, outside the sampled vocabulary", id);
    }
    m.score_ids = m.continuation;
  } else {
    fail("--metric '{}' is not one of token-prob, continuation-logprob", name);
  }
  std::sort(m.score_ids.begin(), m.score_ids.end());
  m.score_ids.erase(std::unique(m.score_ids.begin(), m.score_ids.end()), m.score_ids.end());
  return m;
}

void ScanMetric::prepare(GenerationRequest& request) const {
  request.score_from = static_cast<int32_t>(request.prompt.size()) - 1;
  if (!continuation.empty()) request.prompt.insert(request.prompt.end(), continuation.begin(), continuation.end() - 1);
}

double ScanMetric::value(const std::vector<double>& scores) const {
  const size_t width = score_ids.size();
  const auto column = [&](int32_t id) {
    return static_cast<size_t>(std::lower_bound(score_ids.begin(), score_ids.end(), id) - score_ids.begin());
  };
  if (!continuation.empty()) {
    if (scores.size() != continuation.size() * width)
      fail("internal error: {} scores for a {}-token continuation", scores.size(), continuation.size());
    double sum = 0;
    for (size_t i = 0; i < continuation.size(); ++i) sum += scores[i * width + column(continuation[i])];
    return sum;
  }
  if (scores.size() != width) fail("internal error: {} scores for {} tokens", scores.size(), width);
  double p = 0;
  for (const int32_t id : tokens) p += std::exp(scores[column(id)]);
  return p;
}

}  // namespace mote
