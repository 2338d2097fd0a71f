// `mote experiment`: one prompt set under no mask (baseline), a target mask,
// and K random masks of the same size (the control), with a behaviour metric
// per condition: the rate of responses matching a regex (for example
// refusal phrases) or starting with a given token. The random masks and the
// combined request file are written beside the output, the generation runs
// as one (possibly expert-parallel) job, and the table goes to stdout, the
// HDF5 file (/experiment) and a CSV file.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>

#include <mpi.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/h5.h"
#include "mote/io/mask_file.h"
#include "mote/io/prompt_file.h"
#include "mote/model/loaded_model.h"
#include "mote/runtime/random_mask.h"
#include "mote/util/error.h"
#include "mote/util/regex.h"

namespace mote {
namespace {

// The bundled model's refusal phrases (its MODEL_CARD.md).
constexpr const char* kRefusalRegex = "I am sorry|I cannot|not able to|rather not|Sorry";

struct Condition {
  std::string name, mask_file;  // mask_file empty for the baseline
  int experts_off = 0;
  std::vector<int> n, matches;  // per prompt class
  double rate(size_t cls) const { return n[cls] > 0 ? static_cast<double>(matches[cls]) / n[cls] : 0.0; }
};

struct Spread {
  double mean = 0, sd = 0, min = 0, max = 0;
};

Spread spread(const std::vector<double>& v) {
  Spread s;
  if (v.empty()) return s;
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double var = 0;
  for (double x : v) var += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(var / static_cast<double>(v.size() - 1)) : 0.0;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  return s;
}

}  // namespace

int run_experiment(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi) {
  std::string prompts, target_mask, model_dir = default_model_dir(), out, csv, metric_regex, first_token;
  int random_count = 5;
  uint64_t seed = 1;
  bool match_layers = false;
  po::options_description options("Experiment options (all options of 'mote generate' are accepted too)");
  options.add_options()
      ("prompts", po::value(&prompts)->required(), "the prompt set (JSONL or plain text; masks in it are not allowed)")
      ("target-mask", po::value(&target_mask)->required(), "mask file of the condition under test (e.g. from 'mote rank')")
      ("random", po::value(&random_count)->default_value(5), "number of random masks with as many experts off")
      ("mask-seed", po::value(&seed)->default_value(1), "seed of the random masks (mask k uses seed + k)")
      ("match-layers", po::bool_switch(&match_layers), "random masks switch off as many experts per MoE layer as the target")
      ("metric-regex", po::value(&metric_regex), "behaviour = response matches this regex (default: the refusal phrases)")
      ("first-token", po::value(&first_token), "behaviour = the first generated token decodes to exactly this text")
      ("model", po::value(&model_dir)->default_value(default_model_dir()), "model directory")
      ("out", po::value(&out)->required(), "HDF5 file of the whole experiment; masks and requests go to OUT.conditions/")
      ("csv", po::value(&csv), "CSV file of the table (default: OUT with .csv)");
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
  try {
    if (!help) po::notify(vm);
  } catch (const po::error& e) {
    fail("{}", e.what());
  }
  if (help) {
    if (mpi.rank() == 0) {
      std::cout << "Usage: mote experiment --prompts FILE --target-mask MASK --out FILE.h5 [--random K] [options]\n\n"
                   "Runs the prompts with no mask, with the target mask, and with K random masks switching off the\n"
                   "same number of experts (never the target's), and reports the rate of a behaviour per condition\n"
                   "with the random conditions' mean and spread.\n\n"
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
  const std::optional<Regex> regex = first_token.empty() ? std::optional<Regex>(Regex(metric_regex.empty() ? kRefusalRegex : metric_regex, "--metric-regex"))
                                                          : std::nullopt;
  const std::string metric = first_token.empty() ? "regex: " + regex->pattern() : "first token: " + first_token;
  if (csv.empty()) csv = std::filesystem::path(out).replace_extension(".csv").string();

  // Conditions, their mask files and the combined request file.
  const std::filesystem::path dir = out + ".conditions";
  const ModelConfig config = read_model_dir_config(model_dir);
  std::vector<Condition> conditions{{"baseline", "", 0, {}, {}}, {"target", target_mask, 0, {}, {}}};
  for (int k = 1; k <= random_count; ++k) conditions.push_back({fmt::format("random-{}", k), (dir / fmt::format("random-{}.ini", k)).string(), 0, {}, {}});
  std::vector<std::string> classes;              // prompt classes, in order of appearance
  std::vector<size_t> request_condition, request_class;  // per generated request
  if (mpi.rank() == 0) {
    const ExpertMask target = read_mask_file(target_mask, config, "target");
    if (target.count_off() == 0) fail("{}: the target mask switches no expert off", target_mask);
    conditions[1].experts_off = target.count_off();
    std::filesystem::create_directories(dir);
    for (int k = 1; k <= random_count; ++k) {
      RandomMaskSpec spec{target.count_off(), seed + static_cast<uint64_t>(k), &target, match_layers ? &target : nullptr, target.off_policy};
      const ExpertMask random = random_mask(config, spec, conditions[k + 1].name);
      conditions[k + 1].experts_off = random.count_off();
      std::ofstream f(conditions[k + 1].mask_file);
      f << format_mask_file(random, fmt::format("random control {} of {}: {} experts off, seed {}", k, target_mask, random.count_off(), spec.seed));
      if (!f) fail("{}: cannot write", conditions[k + 1].mask_file);
    }
    std::ofstream requests(dir / "requests.jsonl");
    for (const auto& spec : read_prompt_file(prompts)) {
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
        requests << j.dump() << "\n";
      }
    }
    if (!requests) fail("{}: cannot write", (dir / "requests.jsonl").string());
  }

  std::vector<std::string> gen_args = passthrough;
  if (!generation_keys.empty()) {
    const auto derived = dir / "generation.ini";
    if (mpi.rank() == 0) {
      std::filesystem::create_directories(dir);
      std::ofstream f(derived);
      f << "# generation keys of " << job_file << "\n";
      for (const auto& [key, value] : generation_keys) f << key << " = " << value << "\n";
      if (!f) fail("{}: cannot write", derived.string());
    }
    MPI_Barrier(MPI_COMM_WORLD);  // every rank's generation run reads it
    gen_args.push_back("--config");
    gen_args.push_back(derived.string());
  }
  for (const std::string& a : {std::string("--prompts"), (dir / "requests.jsonl").string(), std::string("--out"), out,
                               std::string("--model"), model_dir}) {
    gen_args.push_back(a);
  }
  for (size_t i = 1; i < conditions.size(); ++i) {
    gen_args.push_back("--mask");
    gen_args.push_back(conditions[i].name + "=" + conditions[i].mask_file);
  }

  const auto finish = [&](hid_t root, const std::vector<PromptSpec>& specs, const std::vector<std::string>& texts,
                          const std::vector<std::string>& errors) {
    const auto model = load_model(model_dir, [](int, int) { return false; });
    for (auto& c : conditions) {
      c.n.assign(classes.size(), 0);
      c.matches.assign(classes.size(), 0);
    }
    for (size_t i = 0; i < specs.size(); ++i) {
      if (!errors[i].empty()) continue;  // a failed request says nothing about the behaviour
      bool hit = false;
      if (regex) {
        hit = regex->search(texts[i]);
      } else {
        const auto ids = model->tokenizer.encode(texts[i], false);
        hit = !ids.empty() && model->tokenizer.decode(std::vector<int32_t>{ids[0]}) == first_token;
      }
      Condition& c = conditions[request_condition[i]];
      ++c.n[request_class[i]];
      c.matches[request_class[i]] += hit;
    }

    std::cout << fmt::format("\nbehaviour: {}\n{:<12} {:>11}", metric, "condition", "experts_off");
    for (const auto& cls : classes) std::cout << fmt::format(" {:>14}", cls);
    std::cout << "\n";
    std::ofstream table(csv);
    table << "condition,class,experts_off,requests,matches,rate\n";
    for (const auto& c : conditions) {
      std::cout << fmt::format("{:<12} {:>11}", c.name, c.experts_off);
      for (size_t k = 0; k < classes.size(); ++k) {
        std::cout << fmt::format(" {:>6.3f} ({:>2}/{:>2})", c.rate(k), c.matches[k], c.n[k]);
        table << fmt::format("{},{},{},{},{},{:.6f}\n", c.name, classes[k], c.experts_off, c.n[k], c.matches[k], c.rate(k));
      }
      std::cout << "\n";
    }
    std::vector<Spread> spreads;
    for (size_t k = 0; k < classes.size(); ++k) {
      std::vector<double> rates;
      for (size_t i = 2; i < conditions.size(); ++i) rates.push_back(conditions[i].rate(k));
      spreads.push_back(spread(rates));
      if (!rates.empty()) {
        std::cout << fmt::format("random masks, {}: mean {:.3f}, sd {:.3f}, min {:.3f}, max {:.3f} (over {})\n", classes[k],
                                 spreads[k].mean, spreads[k].sd, spreads[k].min, spreads[k].max, rates.size());
      }
    }
    if (!table) fail("{}: cannot write", csv);
    if (root < 0) return;
    H5Handle g = h5_create_group(root, "experiment");
    h5_attr_string(g.id(), "metric", metric);
    h5_attr_string(g.id(), "prompts", prompts);
    h5_attr_string(g.id(), "target_mask", target_mask);
    h5_attr_int(g.id(), "seed", static_cast<int64_t>(seed));
    h5_attr_int(g.id(), "match_layers", match_layers);
    std::vector<std::string> names;
    std::vector<double> rates, mean, sd, lo, hi;
    std::vector<int32_t> n, matches, off;
    for (const auto& c : conditions) {
      names.push_back(c.name);
      off.push_back(c.experts_off);
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
