// `mote experiment`: options in, an experiment (runtime/experiment.h) out.
#include <iostream>

#include "mote/cli/commands.h"
#include "mote/cli/logging.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/expert_exchange.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/ini_file.h"
#include "mote/runtime/experiment.h"
#include "mote/util/error.h"

namespace mote {

int run_experiment(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi) {
  ExperimentOptions experiment;
  experiment.job.command_line = command_line;
  po::options_description options("Experiment options");
  // clang-format off
  options.add_options()
      ("target-mask", input_file(&experiment.target_masks, "[NAME=]FILE")->composing(),
       "mask file of a condition under test (e.g. from 'mote rank' or 'mote scan'); NAME=FILE names it (repeatable: the "
       "targets share one set of random controls, so they must switch as many experts)")
      ("random", po::value(&experiment.random)->default_value(5), "number of random masks with as many experts off")
      ("mask-seed", po::value(&experiment.mask_seed)->default_value(1), "seed of the random masks (mask k uses seed + k)")
      ("match-layers", po::bool_switch(&experiment.match_layers), "random masks switch off as many experts per MoE layer as the target")
      ("metric-regex", po::value(&experiment.metric_regex), "behaviour = response matches this regex (default: the refusal phrases)")
      ("first-token", po::value(&experiment.first_token), "behaviour = the first generated token decodes to exactly this text")
      ("metric", po::value(&experiment.metric),
       "regex (the default, see --metric-regex), first-token (see --first-token), or token-prob: the mean probability of --tokens "
       "at the first answer position, per condition and class")
      ("tokens", po::value(&experiment.tokens), "token-prob: vocabulary tokens or #ID, comma-separated (e.g. I,S)")
      ("csv", output_file(&experiment.csv), "CSV file of the table (default: OUT with .csv)");
  // clang-format on
  // The job's options, but for the masks, which the conditions set.
  po::options_description job(
      "Job options (as for 'mote generate'; --out is required, and holds the whole experiment)");
  const po::options_description every_job_option = job_options(experiment.job);
  for (const auto& option : every_job_option.options()) {
    if (option->long_name() != "mask" && option->long_name() != "score-tokens") job.add(option);
  }
  for (const auto& a : args) {
    if (a == "--mask" || a.starts_with("--mask=")) {
      fail(
          "--mask is not an option of 'mote experiment': it sets the masks of its conditions itself (give "
          "--target-mask)");
    }
    if (a == "--score-tokens" || a.starts_with("--score-tokens=")) {
      fail("--score-tokens is not an option of 'mote experiment': give --metric token-prob --tokens LIST");
    }
  }
  po::options_description all;
  all.add(options).add(job);
  // Read from a job file only to refuse them by name.
  po::options_description job_file_masks = job_file_mask_keys();
  job_file_masks.add_options()("mask", po::value<std::vector<std::string>>()->composing());
  const ParsedOptions parsed = parse_options(args, all, nullptr, &job_file_masks);
  if (parsed.help) {
    if (mpi.rank() == 0) {
      std::cout
          << "Usage: mote experiment --prompts FILE --target-mask [NAME=]MASK... --out FILE.h5 [--random K] [options]\n"
             "       mpirun -n N mote experiment ...   (or launch/mote-run -n N experiment ...)\n\n"
             "Runs the prompts with no mask, with each target mask, and with K random masks switching off (or\n"
             "forcing on) the same number of experts (never a target's), and reports a behaviour per\n"
             "condition with the random conditions' mean and spread: the rate of responses matching a regex\n"
             "or starting with a token, or the probability of given tokens at the first answer position.\n"
             "All conditions run as one job, sharing batches. The table goes to stdout, /experiment in --out\n"
             "and the CSV file; the random masks to OUT.conditions/random-K.ini (docs/ftri.md).\n\n"
          << options << "\n"
          << job << "  --config FILE                         job file (INI) with any of the options above\n";
    }
    return 0;
  }
  for (const auto& option : job_file_masks.options()) {
    const std::string& key = option->long_name();
    if (parsed.values.count(key) > 0) {
      fail("{}:{}: {} sets a mask, and the experiment sets the masks of its conditions itself (give --target-mask)",
           parsed.config_file, find_ini_line(parsed.config_file, key),
           key == "mask" ? "'mask ='" : "the [mote] section");
    }
  }
  experiment.job.config_file = parsed.config_file;
  experiment.job.gen.stop_at_eos = !parsed.values["ignore-eos"].as<bool>();
  experiment.job.request_counts = !parsed.values["no-request-counts"].as<bool>();
  experiment.metric_regex_given = parsed.values.count("metric-regex") > 0;
  validate(experiment);
  parse_wire_dtype(experiment.job.wire_dtype);
  parse_weight_memory(experiment.job.weights);
  setup_logging(experiment.job.log_level, mpi.rank());
  return run_experiment(experiment, mpi);
}

}  // namespace mote
