// The /experiment group of an experiment's HDF5 file and its CSV table
// (docs/hdf5-format.md): a behaviour per condition (baseline, targets,
// random controls) and prompt class, and the random controls' spread.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mote/util/statistics.h"

namespace mote {

struct ExperimentCondition {
  std::string name;
  int experts_off = 0, experts_on = 0;
  std::vector<int32_t> requests, matches;  // [class]
  std::vector<double> rate;                // [class]
};

struct ExperimentData {
  std::string metric;       // as printed: "regex: ...", "token-prob: ...", "first token: ..."
  std::string metric_kind;  // regex, first-token or token-prob
  std::string prompts;      // the prompt set
  std::vector<std::string> target_files;
  uint64_t seed = 0;
  bool match_layers = false;
  std::vector<std::string> classes;
  std::vector<ExperimentCondition> conditions;  // baseline, the targets, then the random controls
  std::vector<Spread> random;                   // [class] of rate over the random controls
};

void write_experiment(hid_t root, const ExperimentData& experiment);
// One line per condition and class, with a header line.
std::string experiment_csv(const ExperimentData& experiment);

}  // namespace mote
