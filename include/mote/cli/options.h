// Command-line and job-file options of every subcommand, with
// Boost.Program_options. A job file (--config FILE) is INI; every option can
// be given in either place and the command line wins. Errors in a job file
// name the file, line and key.
#pragma once

#include <boost/program_options.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mote {

class MpiSession;

namespace po = boost::program_options;

// Options that name files say so, so that parse_options() can guard them
// generically: every input option's file is noted (io/file_guard.h) and every
// output option's path claimed before any work. A value "NAME=FILE" (masks,
// class prompts) names FILE unless the whole value is an existing file.
enum class FileRole { Input, Output };

struct FileOption {
  virtual ~FileOption() = default;
  virtual FileRole file_role() const = 0;
};

template <typename T>
class FileValue : public po::typed_value<T>, public FileOption {
 public:
  FileValue(T* store, FileRole role) : po::typed_value<T>(store), role_(role) {}
  FileRole file_role() const override { return role_; }

 private:
  FileRole role_;
};

// A file or directory the command reads; shown as `name` in --help.
template <typename T>
po::typed_value<T>* input_file(T* store, const char* name = "FILE") {
  auto* v = new FileValue<T>(store, FileRole::Input);
  v->value_name(name);
  return v;
}
// A file the command writes.
inline po::typed_value<std::string>* output_file(std::string* store, const char* name = "FILE") {
  auto* v = new FileValue<std::string>(store, FileRole::Output);
  v->value_name(name);
  return v;
}

// Notes the input options' files and claims the output options' paths of
// `options` as parsed into `values` (see FileOption); the job file is an
// input too.
void guard_file_options(const po::options_description& options, const po::variables_map& values,
                        const std::string& config_file);

// Thrown to end a command early with a status and nothing more to do (the
// hidden --file-options listing).
struct EarlyExit {
  int code;
};

// --file-options (hidden, for tests and tools): prints one line per option
// that names a file, "input NAME VALUE" or "output NAME VALUE" (VALUE as
// --help shows it: FILE, DIR, ...), leaving out `skip`, and ends the command.
void list_file_options(const po::options_description& options, const std::vector<std::string>& skip = {});

struct ParsedOptions {
  po::variables_map values;
  bool help = false;
  std::string config_file;  // empty when none was given
};

// Parses `args` (the subcommand's arguments) against `options`, then the job
// file named by --config if any, which may also hold the keys of
// `file_only` (not shown by --help). Positional arguments go to `positional`.
ParsedOptions parse_options(const std::vector<std::string>& args, const po::options_description& options,
                            const po::positional_options_description* positional = nullptr,
                            const po::options_description* file_only = nullptr);

// parse_options() for a command that runs on rank 0 alone (the tools: plan,
// place, rank, inspect, ...). nullopt when this rank has nothing more to
// do: --help was given (rank 0 prints `usage`, the options and --config)
// or this is not rank 0.
std::optional<ParsedOptions> parse_command(const std::vector<std::string>& args, const po::options_description& options,
                                           const MpiSession& mpi, const char* usage,
                                           const po::positional_options_description* positional = nullptr);

// Boost's default command-line style without prefix guessing: an option
// name must be given whole.
int command_line_style();

// The bundled model, found beside the tool (BIN/../models/..., as in the
// build tree, or BIN/../share/mote/models/... when installed) or in the
// current directory's models/; never a path fixed when mote was built.
std::string default_model_dir();

// "512G", "96GiB", "120GB", "1.5T", "800000000": bytes. KB, MB, GB and TB
// are powers of 1000; KiB ... TiB and the bare K, M, G, T powers of 1024.
// Anything else is an error naming `option`.
uint64_t parse_byte_size(const std::string& text, const char* option);

// The command line as typed, for provenance.
std::string joined_command_line(int argc, char** argv);

// --coordinators: a number of ranks (at least 1), or "all" (every rank of
// the job), returned as 0.
int parse_coordinators(const std::string& text);

}  // namespace mote
