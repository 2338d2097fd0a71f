#include "mote/cli/options.h"

#include <mpi.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/file_guard.h"
#include "mote/io/ini_file.h"
#include "mote/io/json_file.h"
#include "mote/util/error.h"
#include "mote/util/utf8.h"

namespace mote {

int parse_coordinators(const std::string& text) {
  if (text == "all") return 0;
  size_t used = 0;
  long k = 0;
  try {
    k = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    fail("--coordinators '{}' is neither a number of ranks nor all", short_excerpt(text));
  if (k < 1) fail("--coordinators {} must be at least 1 (or all: every rank)", k);
  if (k > 1'000'000) fail("--coordinators {} is more ranks than any job has", k);
  return static_cast<int>(k);
}

namespace {

// Seeds are unsigned: Boost would read "-1" as 2^64 - 1 without a word.
void check_unsigned(const po::parsed_options& parsed, const std::string& where) {
  for (const auto& o : parsed.options) {
    if ((o.string_key == "seed" || o.string_key == "mask-seed") && !o.value.empty() &&
        o.value.front().starts_with("-")) {
      fail("{}: --{} {}: must be a whole number from 0 to 18446744073709551615", where, o.string_key, o.value.front());
    }
  }
}

}  // namespace

int command_line_style() {
  // No guessing: "--mask" must never silently mean "--mask-seed".
  return po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
}

namespace {

// The files a value of a file option names: the value itself, or FILE of
// NAME=FILE (unless the whole value is an existing file).
std::vector<std::string> named_files(const po::variable_value& value) {
  std::vector<std::string> values;
  if (const auto* one = boost::any_cast<std::string>(&value.value())) values.push_back(*one);
  if (const auto* many = boost::any_cast<std::vector<std::string>>(&value.value())) values = *many;
  for (auto& v : values) {
    std::error_code ec;
    const auto eq = v.find('=');
    if (eq != std::string::npos && !std::filesystem::exists(v, ec)) v = v.substr(eq + 1);
  }
  return values;
}

}  // namespace

void guard_file_options(const po::options_description& options, const po::variables_map& values,
                        const std::string& config_file) {
  // Rank 0 reads the inputs and writes the outputs; other ranks may not
  // even see the same directories.
  int initialized = 0, rank = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) return;
  note_input(config_file, "the job file (--config)");
  for (const auto& option : options.options()) {
    const auto* file = dynamic_cast<const FileOption*>(option->semantic().get());
    if (file == nullptr || file->file_role() != FileRole::Input || values.count(option->long_name()) == 0) continue;
    for (const auto& path : named_files(values[option->long_name()])) {
      std::error_code ec;
      note_input(path, fmt::format("the {} --{} names", std::filesystem::is_directory(path, ec) ? "directory" : "file",
                                   option->long_name()));
    }
  }
  for (const auto& option : options.options()) {
    const auto* file = dynamic_cast<const FileOption*>(option->semantic().get());
    if (file == nullptr || file->file_role() != FileRole::Output || values.count(option->long_name()) == 0) continue;
    if (values[option->long_name()].defaulted()) continue;
    for (const auto& path : named_files(values[option->long_name()])) {
      if (!path.empty())
        claim_output(path, "--" + option->long_name());  // empty: no such output (--out "" over a job file's)
    }
  }
  check_claimed_outputs();
}

void list_file_options(const po::options_description& options, const std::vector<std::string>& skip) {
  std::set<std::string> listed{skip.begin(), skip.end()};
  for (const auto& option : options.options()) {
    const auto* file = dynamic_cast<const FileOption*>(option->semantic().get());
    if (file == nullptr || !listed.insert(option->long_name()).second) continue;
    std::cout << (file->file_role() == FileRole::Input ? "input " : "output ") << option->long_name() << " "
              << option->semantic()->name().substr(0, option->semantic()->name().find(' ')) << "\n";
  }
  std::cout << "input config FILE\n";
  throw EarlyExit{0};
}

ParsedOptions parse_options(const std::vector<std::string>& args, const po::options_description& options,
                            const po::positional_options_description* positional,
                            const po::options_description* file_only) {
  if (std::find(args.begin(), args.end(), "--file-options") != args.end()) list_file_options(options);
  ParsedOptions parsed;
  po::options_description all;
  all.add(options);
  all.add_options()("config", po::value<std::string>(), "")("help,h", "");
  try {
    po::command_line_parser parser(args);
    parser.options(all).style(command_line_style());
    if (positional != nullptr) parser.positional(*positional);
    const auto result = parser.run();
    check_unsigned(result, "command line");
    po::store(result, parsed.values);
  } catch (const po::error& e) {
    fail("command line: {}", e.what());
  }
  parsed.help = parsed.values.count("help") > 0;
  if (parsed.help) return parsed;  // usage needs no valid options
  if (parsed.values.count("config") > 0) {
    parsed.config_file = parsed.values["config"].as<std::string>();
    std::istringstream in(read_ini_file(parsed.config_file, "job file"));
    try {
      // Values already stored from the command line are kept: it wins.
      po::options_description in_file;
      in_file.add(options);
      if (file_only != nullptr) in_file.add(*file_only);
      const auto result = po::parse_config_file(in, in_file, false);
      check_unsigned(result, parsed.config_file);
      po::store(result, parsed.values);
    } catch (const po::error_with_option_name& e) {
      const std::string key =
          e.get_option_name().starts_with("--") ? e.get_option_name().substr(2) : e.get_option_name();
      // A key given twice is cited at its second line, the one in the way.
      const int line =
          find_ini_line(parsed.config_file, key, dynamic_cast<const po::multiple_occurrences*>(&e) != nullptr ? 1 : 0);
      fail("{}:{}: key '{}': {}", parsed.config_file, line, key, e.what());
    } catch (const po::error& e) {
      fail("{}: {}", parsed.config_file, e.what());
    }
  }
  // Before the required options are checked: a command line that would
  // destroy an input is refused as such, whatever else is wrong with it.
  guard_file_options(options, parsed.values, parsed.config_file);
  try {
    po::notify(parsed.values);
  } catch (const po::error& e) {
    fail("{}", e.what());
  }
  return parsed;
}

std::optional<ParsedOptions> parse_command(const std::vector<std::string>& args, const po::options_description& options,
                                           const MpiSession& mpi, const char* usage,
                                           const po::positional_options_description* positional) {
  ParsedOptions parsed = parse_options(args, options, positional);
  if (parsed.help) {
    if (mpi.rank() == 0)
      std::cout << usage << options
                << "  --config FILE                         job file (INI) with any of the options above\n";
    return std::nullopt;
  }
  if (mpi.rank() != 0) return std::nullopt;
  return parsed;
}

std::string default_model_dir() {
  constexpr const char* kBundled = "tiny-deepseek-v3-mote";
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::vector<std::filesystem::path> candidates;
  if (!ec) {
    candidates.push_back(exe.parent_path() / ".." / "models" / kBundled);
    candidates.push_back(exe.parent_path() / ".." / "share" / "mote" / "models" / kBundled);
  }
  candidates.push_back(std::filesystem::path("models") / kBundled);
  for (const auto& c : candidates) {
    if (std::filesystem::is_regular_file(c / "config.json", ec))
      return std::filesystem::weakly_canonical(c, ec).string();
  }
  return (std::filesystem::path("models") / kBundled).string();
}

std::string joined_command_line(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) {
    if (i > 0) out += ' ';
    out += argv[i];
  }
  return out;
}

// "512G", "96GiB", "120GB", "1.5T", "800000000": bytes. KB, MB, GB, TB are
// SI (powers of 1000), KiB ... TiB and the bare K, M, G, T powers of 1024
// (as Slurm's --mem reads them).
uint64_t parse_byte_size(const std::string& text, const char* option) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  bool si = false;
  if (unit.size() == 3 && (unit[1] == 'i' || unit[1] == 'I') && (unit[2] == 'B' || unit[2] == 'b')) {
    unit.resize(1);  // KiB, MiB, GiB, TiB
  } else if (unit.size() == 2 && (unit[1] == 'B' || unit[1] == 'b')) {
    unit.resize(1);  // KB, MB, GB, TB
    si = true;
  } else if (unit == "B" || unit == "b") {
    unit.clear();
  }
  const double base = si ? 1000.0 : 1024.0;
  double scale = 1;
  if (unit == "K" || unit == "k")
    scale = base;
  else if (unit == "M" || unit == "m")
    scale = base * base;
  else if (unit == "G" || unit == "g")
    scale = base * base * base;
  else if (unit == "T" || unit == "t")
    scale = base * base * base * base;
  else if (!unit.empty())
    used = 0;
  if (used == 0 || !(value > 0) || value * scale > 1e18) {
    fail("{} '{}': expected a size such as 512G or 96GiB (powers of 1024), 120GB (powers of 1000) or 800000000 (bytes)",
         option, text);
  }
  return static_cast<uint64_t>(value * scale);
}

}  // namespace mote
