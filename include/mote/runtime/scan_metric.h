// Behaviour metrics read from the logits at the first answer position
// (after the last prompt token), needing no generation:
//
//   token-prob            the probability mass of a list of tokens there
//                         (for example a refusal's opening tokens)
//   continuation-logprob  the teacher-forced log-probability of a given
//                         continuation text after the prompt
//
// A request keeps only the log-probabilities of the ids a metric reads
// (GenerationOptions::score_ids), at the positions it reads them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mote/runtime/generator.h"

namespace mote {

class Tokenizer;

struct ScanMetric {
  std::string name;                   // token-prob or continuation-logprob
  std::string spec;                   // --tokens or --continuation as given
  std::vector<int32_t> tokens;        // token-prob: the tokens, as given
  std::vector<int32_t> continuation;  // continuation-logprob: its tokens
  std::vector<int32_t> score_ids;     // sorted, unique: what requests keep

  // Sets a request up to be scored: the continuation is fed after the
  // prompt (but its last token), and scoring starts at the last prompt token.
  void prepare(GenerationRequest& request) const;
  // The metric of one scored request.
  double value(const std::vector<double>& scores) const;
};

// `tokens`: a comma-separated list of vocabulary tokens (in the
// vocabulary's spelling, or text that encodes to exactly one token) or
// "#ID"; `continuation`: text. Errors name what is not in the vocabulary.
ScanMetric make_scan_metric(const std::string& name, const std::string& tokens, const std::string& continuation,
                            const Tokenizer& tokenizer, int sampled_vocab);

}  // namespace mote
