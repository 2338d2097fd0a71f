// A generation or fTRI profiling job over the ranks of an MPI world: what
// `mote generate`, `mote profile` and `mote experiment` run once their
// options are parsed. Ranks 0..K-1 are coordinators (each holds the
// non-expert weights, its own KV cache and a share of the requests); every
// rank may hold routed experts. Rank 0 also reads the inputs, hands out the
// requests and writes the output. src/runtime/job.cpp reads as the list of
// steps every rank takes.
#pragma once

#include <hdf5.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mote/io/prompt_file.h"
#include "mote/model/expert_mask.h"
#include "mote/runtime/generator.h"

namespace mote {

class MpiSession;
class Tokenizer;

struct JobOptions {
  std::string model_dir;
  std::string prompts;
  std::vector<std::string> class_prompts;  // CLASS=FILE
  std::string chat_template;
  std::string out;
  std::string config_file;   // the --config job file (its [mote] section is a mask)
  std::string command_line;  // for provenance
  GenerationOptions gen;
  int threads = 0;
  int coordinators = 0;  // ranks 0..K-1 run the requests; 0: every rank
  std::string log_level = "info";
  std::string placement = "contiguous";
  std::string placement_file;
  bool coordinator_experts = true;
  std::string wire_dtype = "f32";
  std::string weights = "map";     // map or copy (WeightMemory)
  std::vector<std::string> masks;  // FILE or NAME=FILE
  // Set by a caller that builds the job itself (an experiment's
  // conditions), on rank 0: requests that replace what --prompts and
  // --class-prompts would read (those then only name their source in
  // messages and provenance), and mask sets beside --mask's, each named.
  std::optional<std::vector<PromptSpec>> built_requests;
  std::vector<ExpertMask> built_masks;
  // Set on every rank by a server: requests arrive while the job runs
  // (runtime/server.h), and a signal drains them instead of stopping it.
  bool serving = false;
  // Tokens (or #IDs, comma-separated) whose log-probabilities every request
  // keeps at the first answer position (GenerationOptions::score_ids).
  std::string score_tokens;
  std::string save_logits = "none";  // none, all (every position fed) or last (the last prompt position)
  // Per-request expert counts in the result (class totals are kept either way).
  bool request_counts = true;
  bool profile = false;
  int checkpoint_every = 0;
  bool resume = false;
  std::string resume_from;
  // Set while the job runs: the hash of what decides its results (written
  // to the result as job_fingerprint), and whether --resume found the job
  // already finished (its result complete, no checkpoint left).
  std::string fingerprint;
  bool already_finished = false;

  std::string summary() const;
};

// Refuses options that cannot make a job, naming the option.
void validate(const JobOptions& options);
// The options every run of the model has (generation, threads,
// coordinators), without a job's inputs and outputs: a server's.
void validate_generation(const JobOptions& options);

// What a finished job hands to JobFinish, per request in prompt-file order.
struct JobOutcome {
  const std::vector<std::string>& texts;     // generated text up to (not including) a final EOS
  const std::vector<std::string>& errors;    // non-empty for a request that failed
  const std::vector<int32_t>& first_tokens;  // the first generated token id, -1 if none
  // With --score-tokens: the log-probabilities of its ids (GenerationOptions::score_ids)
  // at the first answer position; empty for a failed request.
  const std::vector<std::vector<double>>& scores;
  const Tokenizer& tokenizer;  // the model's, to read ids as text
};

// Called on rank 0 when a job has finished, before its HDF5 file (root
// group `root`, or -1 without --out) is committed.
using JobFinish = std::function<void(hid_t root, const JobOutcome& outcome)>;

// Runs the job on this rank; every rank of the world calls it. Returns the
// process exit code: 0 done, 128 + N stopped by signal N (a checkpoint kept).
int run_job(JobOptions& options, MpiSession& mpi, const JobFinish& finish = {});

}  // namespace mote
