#include "mote/results/experiment_file.h"

#include <fmt/format.h>

#include "mote/io/h5.h"

namespace mote {

void write_experiment(hid_t root, const ExperimentData& e) {
  H5Handle g = h5_create_group(root, "experiment");
  h5_attr_string(g.id(), "metric", e.metric);
  h5_attr_string(g.id(), "prompts", e.prompts);
  std::string targets;
  for (const auto& file : e.target_files) targets += (targets.empty() ? "" : ", ") + file;
  h5_attr_string(g.id(), "target_mask", targets);
  h5_attr_string(g.id(), "metric_kind", e.metric_kind);
  h5_attr_int(g.id(), "targets", static_cast<int64_t>(e.target_files.size()));
  h5_attr_int(g.id(), "seed", static_cast<int64_t>(e.seed));
  h5_attr_int(g.id(), "match_layers", e.match_layers);
  std::vector<std::string> names;
  std::vector<double> rates, mean, sd, lo, hi;
  std::vector<int32_t> requests, matches, off, on;
  for (const auto& c : e.conditions) {
    names.push_back(c.name);
    off.push_back(c.experts_off);
    on.push_back(c.experts_on);
    rates.insert(rates.end(), c.rate.begin(), c.rate.end());
    requests.insert(requests.end(), c.requests.begin(), c.requests.end());
    matches.insert(matches.end(), c.matches.begin(), c.matches.end());
  }
  for (const auto& s : e.random) {
    mean.push_back(s.mean);
    sd.push_back(s.sd);
    lo.push_back(s.min);
    hi.push_back(s.max);
  }
  const std::vector<hsize_t> dims{e.conditions.size(), e.classes.size()};
  h5_string_list(g.id(), "conditions", names);
  h5_string_list(g.id(), "classes", e.classes);
  h5_dataset(g.id(), "experts_off", {off.size()}, off.data());
  h5_dataset(g.id(), "experts_on", {on.size()}, on.data());
  h5_dataset(g.id(), "rate", dims, rates.data());
  h5_dataset(g.id(), "requests", dims, requests.data());
  h5_dataset(g.id(), "matches", dims, matches.data());
  h5_dataset(g.id(), "random_mean", {mean.size()}, mean.data());
  h5_dataset(g.id(), "random_sd", {sd.size()}, sd.data());
  h5_dataset(g.id(), "random_min", {lo.size()}, lo.data());
  h5_dataset(g.id(), "random_max", {hi.size()}, hi.data());
}

std::string experiment_csv(const ExperimentData& e) {
  std::string table = "condition,class,experts_off,experts_on,requests,matches,rate\n";
  for (const auto& c : e.conditions) {
    for (size_t k = 0; k < e.classes.size(); ++k) {
      table += fmt::format("{},{},{},{},{},{},{:.6f}\n", c.name, e.classes[k], c.experts_off, c.experts_on,
                           c.requests[k], c.matches[k], c.rate[k]);
    }
  }
  return table;
}

}  // namespace mote
