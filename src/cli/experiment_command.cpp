// `mote experiment`: one prompt set under no mask (baseline), one or more
// target masks, and K random masks of the same size (the control, shared by
// the targets), with a behaviour metric per condition: the rate of
// responses matching a regex (for example refusal phrases) or starting with
// a given token, or the mean probability of given tokens at the first
// answer position. The random masks and the combined request file are
// written beside the output, the generation runs as one (possibly
// expert-parallel) job, and the table goes to stdout, the HDF5 file
// (/experiment) and a CSV file.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <mpi.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/ini_file.h"
#include "mote/io/h5.h"
#include "mote/model/mask_file.h"
#include "mote/io/prompt_file.h"
#include "mote/io/file_guard.h"
#include "mote/io/text_output.h"
#include "mote/model/loaded_model.h"
#include "mote/runtime/random_mask.h"
#include "mote/util/error.h"
#include "mote/util/regex.h"
#include "mote/util/statistics.h"

namespace mote {
namespace {

// The bundled model's refusal phrases (its MODEL_CARD.md).
constexpr const char* kRefusalRegex = "I am sorry|I cannot|not able to|rather not|Sorry";

struct Condition {
  Condition(std::string condition, std::string file) : name(std::move(condition)), mask_file(std::move(file)) {}
  std::string name, mask_file;  // mask_file empty for the baseline
  int experts_off = 0, experts_on = 0;
  std::vector<int> n, matches;  // per prompt class
  std::vector<double> sum;      // token-prob: the probabilities summed, per class
  bool mean_of_sums = false;
  double rate(size_t cls) const {
    if (n[cls] == 0) return 0.0;
    return mean_of_sums ? sum[cls] / n[cls] : static_cast<double>(matches[cls]) / n[cls];
  }
};

}  // namespace

int run_experiment(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi) {
  std::string prompts, model_dir = default_model_dir(), out, csv, metric_regex, first_token, metric_name, tokens;
  std::vector<std::string> target_masks;
  int random_count = 5;
  uint64_t seed = 1;
  bool match_layers = false;
  po::options_description options("Experiment options (all options of 'mote generate' are accepted too)");
  options.add_options()
      ("prompts", input_file(&prompts)->required(), "the prompt set (JSONL or plain text; masks in it are not allowed)")
      ("target-mask", input_file(&target_masks, "[NAME=]FILE")->required()->composing(),
       "mask file of a condition under test (e.g. from 'mote rank' or 'mote scan'); NAME=FILE names it (repeatable: the "
       "targets share one set of random controls, so they must switch as many experts)")
      ("random", po::value(&random_count)->default_value(5), "number of random masks with as many experts off")
      ("mask-seed", po::value(&seed)->default_value(1), "seed of the random masks (mask k uses seed + k)")
      ("match-layers", po::bool_switch(&match_layers), "random masks switch off as many experts per MoE layer as the target")
      ("metric-regex", po::value(&metric_regex), "behaviour = response matches this regex (default: the refusal phrases)")
      ("first-token", po::value(&first_token), "behaviour = the first generated token decodes to exactly this text")
      ("metric", po::value(&metric_name),
       "regex (the default, see --metric-regex), first-token (see --first-token), or token-prob: the mean probability of --tokens "
       "at the first answer position, per condition and class")
      ("tokens", po::value(&tokens), "token-prob: vocabulary tokens or #ID, comma-separated (e.g. I,S)")
      ("model", input_file(&model_dir, "DIR")->default_value(default_model_dir()), "model directory")
      ("out", output_file(&out)->required(), "HDF5 file of the whole experiment; masks and requests go to OUT.conditions/")
      ("csv", output_file(&csv), "CSV file of the table (default: OUT with .csv)");
  if (std::find(args.begin(), args.end(), "--file-options") != args.end()) {
    JobOptions unused;
    po::options_description both;
    both.add(options).add(job_options(unused));
    list_file_options(both, {"mask"});  // set by the experiment itself
  }
  // Everything else is a generation option, passed through.
  po::variables_map vm;
  std::vector<std::string> passthrough;
  bool help = false;
  try {
    const auto parsed = po::command_line_parser(args).options(options).style(command_line_style()).allow_unregistered().run();
    po::store(parsed, vm);
    passthrough = po::collect_unrecognized(parsed.options, po::include_positional);
    help = std::find(passthrough.begin(), passthrough.end(), "--help") != passthrough.end() ||
           std::find(passthrough.begin(), passthrough.end(), "-h") != passthrough.end();
  } catch (const po::error& e) {
    fail("command line: {}", e.what());
  }
  // A job file holds experiment keys and generation keys: the experiment
  // keeps its own (the command line wins) and hands the rest to the
  // generation run as a job file of their own.
  std::vector<std::pair<std::string, std::string>> generation_keys;
  std::string job_file;
  for (size_t i = 0; i + 1 < passthrough.size(); ++i) {
    if (passthrough[i] == "--config") {
      job_file = passthrough[i + 1];
      passthrough.erase(passthrough.begin() + static_cast<std::ptrdiff_t>(i), passthrough.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      break;
    }
  }
  if (!job_file.empty() && !help) {
    std::istringstream in(read_ini_file(job_file, "job file"));
    try {
      const auto parsed = po::parse_config_file(in, options, true);
      po::store(parsed, vm);
      for (const auto& o : parsed.options) {
        if (o.unregistered) generation_keys.emplace_back(o.string_key, o.value.empty() ? "" : o.value.front());
      }
    } catch (const po::error_with_option_name& e) {
      fail("{}:{}: key '{}': {}", job_file, find_ini_line(job_file, e.get_option_name()), e.get_option_name(), e.what());
    }
  }
  if (!help) {
    // Before the required options are checked, as parse_options() does. The
    // generation options passed through name files too: guarded now, before
    // the experiment writes its conditions.
    guard_file_options(options, vm, job_file);
    JobOptions unused;
    const po::options_description generation = job_options(unused);
    po::variables_map gen_vm;
    try {
      po::store(po::command_line_parser(passthrough).options(generation).style(command_line_style()).allow_unregistered().run(), gen_vm);
    } catch (const po::error&) {
      // The generation run reports its own option errors.
    }
    guard_file_options(generation, gen_vm, "");
  }
  try {
    if (!help) po::notify(vm);
  } catch (const po::error& e) {
    fail("{}", e.what());
  }
  if (help) {
    if (mpi.rank() == 0) {
      std::cout << "Usage: mote experiment --prompts FILE --target-mask [NAME=]MASK... --out FILE.h5 [--random K] [options]\n\n"
                   "Runs the prompts with no mask, with each target mask, and with K random masks switching off (or\n"
                   "forcing on) the same number of experts (never a target's), and reports a behaviour per\n"
                   "condition with the random conditions' mean and spread: the rate of responses matching a regex\n"
                   "or starting with a token, or the probability of given tokens at the first answer position.\n\n"
                << options << "\nGeneration options of the run (as for 'mote generate'; it sets --prompts, --out, --model and --mask itself):\n";
      print_generation_options(std::cout);
    }
    return 0;
  }
  for (const auto& a : passthrough) {
    if (a == "--mask" || a.starts_with("--mask=")) {
      fail("--mask is not an option of 'mote experiment': it sets the masks of its conditions itself (give --target-mask)");
    }
  }
  if (random_count < 0) fail("--random {} must not be negative", random_count);
  if (vm.count("metric-regex") > 0 && metric_regex.empty()) fail("--metric-regex is empty: it would match every response");
  if (!metric_regex.empty() && !first_token.empty()) fail("give --metric-regex or --first-token, not both");
  if (metric_name.empty()) metric_name = !first_token.empty() ? "first-token" : !tokens.empty() ? "token-prob" : "regex";
  if (metric_name != "regex" && metric_name != "first-token" && metric_name != "token-prob") {
    fail("--metric '{}' is not one of regex, first-token, token-prob", metric_name);
  }
  if ((metric_name == "token-prob") != !tokens.empty()) fail("--tokens goes with --metric token-prob, and token-prob needs --tokens");
  if (metric_name == "first-token" && first_token.empty()) fail("--metric first-token needs --first-token TEXT");
  if (metric_name != "regex" && !metric_regex.empty()) fail("--metric-regex goes with --metric regex");
  if (metric_name != "first-token" && !first_token.empty()) fail("--first-token goes with --metric first-token");
  const bool token_prob = metric_name == "token-prob";
  const std::optional<Regex> regex =
      metric_name == "regex" ? std::optional<Regex>(Regex(metric_regex.empty() ? kRefusalRegex : metric_regex, "--metric-regex")) : std::nullopt;
  const std::string metric = regex ? "regex: " + regex->pattern() : token_prob ? "token-prob: " + tokens : "first token: " + first_token;
  // Targets: NAME=FILE, or one bare FILE named "target".
  std::vector<std::pair<std::string, std::string>> targets;
  for (const std::string& t : target_masks) {
    const auto eq = t.find('=');
    std::string name = eq == std::string::npos ? "target" : t.substr(0, eq), file = eq == std::string::npos ? t : t.substr(eq + 1);
    if (eq == std::string::npos && target_masks.size() > 1) fail("--target-mask {}: name each of several targets, NAME=FILE", t);
    if (name.empty() || name == "baseline" || name == "none" || name == "default" || name.starts_with("random-") ||
        name.find_first_of("/ \t") != std::string::npos) {
      fail("--target-mask {}: '{}' cannot name a condition", t, name);
    }
    for (const auto& [other, unused] : targets) {
      if (other == name) fail("--target-mask: '{}' names two targets", name);
    }
    targets.emplace_back(name, file);
  }
  if (csv.empty()) {
    csv = std::filesystem::path(out).replace_extension(".csv").string();
    if (mpi.rank() == 0) claim_output(csv, "--csv (OUT with .csv)");
  }

  // Conditions, their mask files and the combined request file.
  const std::filesystem::path dir = out + ".conditions";
  const ModelConfig config = read_model_dir_config(model_dir);
  std::vector<Condition> conditions{{"baseline", ""}};
  for (const auto& [name, file] : targets) conditions.push_back({name, file});
  const size_t first_random = conditions.size();
  for (int k = 1; k <= random_count; ++k) conditions.push_back({fmt::format("random-{}", k), (dir / fmt::format("random-{}.ini", k)).string()});
  for (auto& c : conditions) c.mean_of_sums = token_prob;
  std::vector<std::string> classes;              // prompt classes, in order of appearance
  std::vector<size_t> request_condition, request_class;  // per generated request
  if (mpi.rank() == 0) {
    // The random controls switch as many experts off and on as every target,
    // never one a target switches; with --match-layers, as many per layer as the first.
    std::vector<ExpertMask> target_list;
    ExpertMask all_targets(static_cast<int>(config.moe_layers().size()), config.n_routed_experts);
    for (size_t t = 0; t < targets.size(); ++t) {
      ExpertMask target = read_mask_file(targets[t].second, config, targets[t].first);
      if (target.count_off() == 0 && target.count_on() == 0) fail("{}: the target mask switches no expert off or on", targets[t].second);
      if (t > 0 && (target.count_off() != target_list[0].count_off() || target.count_on() != target_list[0].count_on())) {
        fail("{}: switches {} experts off and {} on, {} switches {} and {}; targets sharing random controls must switch as many",
             targets[t].second, target.count_off(), target.count_on(), targets[0].second, target_list[0].count_off(), target_list[0].count_on());
      }
      conditions[t + 1].experts_off = target.count_off();
      conditions[t + 1].experts_on = target.count_on();
      all_targets.add_switches(target);
      target_list.push_back(std::move(target));
    }
    const ExpertMask& first = target_list[0];
    std::string target_names;
    for (const auto& [name, file] : targets) target_names += (target_names.empty() ? "" : ", ") + file;
    std::filesystem::create_directories(dir);
    for (int k = 1; k <= random_count; ++k) {
      Condition& c = conditions[first_random + static_cast<size_t>(k) - 1];
      const uint64_t mask_seed = seed + static_cast<uint64_t>(k);
      RandomMaskSpec off{first.count_off(), mask_seed, &all_targets, match_layers ? &first : nullptr, first.off_policy};
      ExpertMask random = random_mask(config, off, c.name);
      if (first.count_on() > 0) {
        ExpertMask exclude = all_targets;
        exclude.add_switches(random);  // its forced experts are none of its own off ones
        RandomMaskSpec on{first.count_on(), mask_seed ^ 0x6f6eull, &exclude, match_layers ? &first : nullptr, first.off_policy, true, first.on_policy};
        random.add_switches(random_mask(config, on, c.name));
        random.on_policy = first.on_policy;
      }
      c.experts_off = random.count_off();
      c.experts_on = random.count_on();
      write_text_output(c.mask_file,
                        format_mask_file(random, fmt::format("random control {} of {}: {} experts off, {} on, seed {}", k, target_names,
                                                             c.experts_off, c.experts_on, mask_seed)),
                        "random mask");
    }
    std::string requests;
    for (const auto& spec : read_prompt_file(prompts)) {
      // A prompt that 'mote generate' would fail (invalid UTF-8) fails here
      // too: it runs under no condition and counts in no rate.
      if (!spec.error.empty()) {
        spdlog::warn("{}:{} (id '{}'): request skipped in every condition: {}", prompts, spec.line, spec.id, spec.error);
        continue;
      }
      auto cls = std::find(classes.begin(), classes.end(), spec.cls);
      if (cls == classes.end()) cls = classes.insert(classes.end(), spec.cls);
      if (!spec.mask.empty()) fail("{}:{}: the experiment sets the masks; remove \"mask\" from its requests", prompts, spec.line);
      for (size_t ci = 0; ci < conditions.size(); ++ci) {
        const Condition& c = conditions[ci];
        request_condition.push_back(ci);
        request_class.push_back(static_cast<size_t>(cls - classes.begin()));
        nlohmann::ordered_json j{{"id", c.name + "/" + spec.id}, {"class", spec.cls}, {"mask", c.name == "baseline" ? "none" : c.name}};
        if (spec.prompt) {
          j["prompt"] = *spec.prompt;
          j["add_special_tokens"] = spec.add_special_tokens;
        } else {
          for (const auto& [key, value] : spec.chat->items()) j[key] = value;
          if (!spec.chat_template.empty()) j["chat_template"] = std::filesystem::absolute(spec.chat_template).string();
        }
        requests += j.dump() + "\n";
      }
    }
    write_text_output(dir / "requests.jsonl", requests, "requests of the conditions");
  }

  std::vector<std::string> gen_args = passthrough;
  if (!generation_keys.empty()) {
    const auto derived = dir / "generation.ini";
    if (mpi.rank() == 0) {
      std::filesystem::create_directories(dir);
      std::string text = "# generation keys of " + job_file + "\n";
      for (const auto& [key, value] : generation_keys) text += key + " = " + value + "\n";
      write_text_output(derived, text, "generation keys of the job file");
    }
    MPI_Barrier(MPI_COMM_WORLD);  // every rank's generation run reads it
    gen_args.push_back("--config");
    gen_args.push_back(derived.string());
  }
  for (const std::string& a : {std::string("--prompts"), (dir / "requests.jsonl").string(), std::string("--out"), out,
                               std::string("--model"), model_dir}) {
    gen_args.push_back(a);
  }
  if (token_prob) {
    gen_args.push_back("--score-tokens");
    gen_args.push_back(tokens);
  }
  for (size_t i = 1; i < conditions.size(); ++i) {
    gen_args.push_back("--mask");
    gen_args.push_back(conditions[i].name + "=" + conditions[i].mask_file);
  }

  const auto finish = [&](hid_t root, const JobOutcome& outcome) {
    const auto model = load_model(model_dir, [](int, int) { return false; });
    for (auto& c : conditions) {
      c.n.assign(classes.size(), 0);
      c.matches.assign(classes.size(), 0);
      c.sum.assign(classes.size(), 0.0);
    }
    for (size_t i = 0; i < outcome.requests.size(); ++i) {
      if (!outcome.errors[i].empty()) continue;  // a failed request says nothing about the behaviour
      Condition& c = conditions[request_condition[i]];
      const size_t k = request_class[i];
      ++c.n[k];
      if (regex) {
        c.matches[k] += regex->search(outcome.texts[i]);
      } else if (token_prob) {
        // The probability mass of the tokens at the first answer position.
        for (const double lp : outcome.scores[i]) c.sum[k] += std::exp(lp);
      } else {
        // The token the model chose, not the first token of the text re-encoded (which can differ).
        const int32_t id = outcome.first_tokens[i];
        c.matches[k] += id >= 0 && model->tokenizer.decode(std::vector<int32_t>{id}) == first_token;
      }
    }

    std::cout << fmt::format("\nbehaviour: {}\n{:<12} {:>11}", metric, "condition", "experts_off");
    const bool any_on = std::any_of(conditions.begin(), conditions.end(), [](const Condition& c) { return c.experts_on > 0; });
    if (any_on) std::cout << fmt::format(" {:>10}", "experts_on");
    for (const auto& cls : classes) std::cout << fmt::format(" {:>14}", cls);
    std::cout << "\n";
    std::string table = "condition,class,experts_off,experts_on,requests,matches,rate\n";
    for (const auto& c : conditions) {
      std::cout << fmt::format("{:<12} {:>11}", c.name, c.experts_off);
      if (any_on) std::cout << fmt::format(" {:>10}", c.experts_on);
      for (size_t k = 0; k < classes.size(); ++k) {
        if (token_prob) {
          std::cout << fmt::format(" {:>6.3f} (n={:>3})", c.rate(k), c.n[k]);
        } else {
          std::cout << fmt::format(" {:>6.3f} ({:>2}/{:>2})", c.rate(k), c.matches[k], c.n[k]);
        }
        table += fmt::format("{},{},{},{},{},{},{:.6f}\n", c.name, classes[k], c.experts_off, c.experts_on, c.n[k], c.matches[k], c.rate(k));
      }
      std::cout << "\n";
    }
    std::vector<Spread> spreads;
    for (size_t k = 0; k < classes.size(); ++k) {
      std::vector<double> rates;
      for (size_t i = first_random; i < conditions.size(); ++i) rates.push_back(conditions[i].rate(k));
      spreads.push_back(spread(rates));
      if (!rates.empty()) {
        std::cout << fmt::format("random masks, {}: mean {:.3f}, sd {:.3f}, min {:.3f}, max {:.3f} (over {})\n", classes[k],
                                 spreads[k].mean, spreads[k].sd, spreads[k].min, spreads[k].max, rates.size());
      }
    }
    write_text_output(csv, table, "--csv");
    if (root < 0) return;
    H5Handle g = h5_create_group(root, "experiment");
    h5_attr_string(g.id(), "metric", metric);
    h5_attr_string(g.id(), "prompts", prompts);
    std::string target_files;
    for (const auto& [name, file] : targets) target_files += (target_files.empty() ? "" : ", ") + file;
    h5_attr_string(g.id(), "target_mask", target_files);
    h5_attr_string(g.id(), "metric_kind", metric_name);
    h5_attr_int(g.id(), "targets", static_cast<int64_t>(targets.size()));
    h5_attr_int(g.id(), "seed", static_cast<int64_t>(seed));
    h5_attr_int(g.id(), "match_layers", match_layers);
    std::vector<std::string> names;
    std::vector<double> rates, mean, sd, lo, hi;
    std::vector<int32_t> n, matches, off, on;
    for (const auto& c : conditions) {
      names.push_back(c.name);
      off.push_back(c.experts_off);
      on.push_back(c.experts_on);
      for (size_t k = 0; k < classes.size(); ++k) {
        rates.push_back(c.rate(k));
        n.push_back(c.n[k]);
        matches.push_back(c.matches[k]);
      }
    }
    for (const auto& sp : spreads) {
      mean.push_back(sp.mean);
      sd.push_back(sp.sd);
      lo.push_back(sp.min);
      hi.push_back(sp.max);
    }
    const std::vector<hsize_t> dims{conditions.size(), classes.size()};
    h5_string_list(g.id(), "conditions", names);
    h5_string_list(g.id(), "classes", classes);
    h5_dataset(g.id(), "experts_off", {off.size()}, off.data());
    h5_dataset(g.id(), "experts_on", {on.size()}, on.data());
    h5_dataset(g.id(), "rate", dims, rates.data());
    h5_dataset(g.id(), "requests", dims, n.data());
    h5_dataset(g.id(), "matches", dims, matches.data());
    h5_dataset(g.id(), "random_mean", {mean.size()}, mean.data());
    h5_dataset(g.id(), "random_sd", {sd.size()}, sd.data());
    h5_dataset(g.id(), "random_min", {lo.size()}, lo.data());
    h5_dataset(g.id(), "random_max", {hi.size()}, hi.data());
  };
  return run_generate(gen_args, command_line, mpi, false, finish);
}

}  // namespace mote
