// An experiment (`mote experiment`): one prompt set under no mask
// (baseline), under one or more target masks, and under K random masks
// switching as many experts (the control, shared by the targets), with a
// behaviour metric per condition and prompt class: the rate of responses
// matching a regex (for example refusal phrases) or starting with a given
// token, or the mean probability of given tokens at the first answer
// position. One generation job like every other: the requests are (prompt,
// condition) pairs, each under its condition's mask set, many in one batch,
// so results are bit-identical for any world size, coordinators and
// placement.
//
// The steps (src/runtime/experiment.cpp):
//
//   1. conditions (rank 0): read the targets, draw the random controls and
//      write them to OUT.conditions/random-K.ini for reuse
//   2. requests (rank 0): every prompt under every condition, in memory
//   3. the job (every rank), with the conditions as its mask sets
//   4. scoring (rank 0): the metric per condition and class, printed, and
//      written to /experiment and the CSV file
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mote/runtime/job.h"

namespace mote {

struct ExperimentOptions {
  JobOptions job;                         // model, prompts, out, generation and parallel options
  std::vector<std::string> target_masks;  // [NAME=]FILE
  int random = 5;                         // random controls
  uint64_t mask_seed = 1;                 // random control k uses mask_seed + k
  bool match_layers = false;              // controls switch as many experts per MoE layer as the first target
  std::string metric;                     // regex, first-token or token-prob; empty: from the options given
  std::string metric_regex;               // empty: the bundled model's refusal phrases
  bool metric_regex_given = false;
  std::string first_token;
  std::string tokens;  // token-prob: vocabulary tokens or #ID, comma-separated
  std::string csv;     // empty: OUT with .csv

  std::string summary() const;
};

// Refuses options that cannot make an experiment, naming the option, and
// settles the metric.
void validate(ExperimentOptions& options);

// Runs the experiment on this rank; every rank of the world calls it.
// Returns the process exit code (0 done, 128 + N stopped by signal N).
int run_experiment(ExperimentOptions& options, MpiSession& mpi);

}  // namespace mote
