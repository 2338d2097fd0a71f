// The steps of a job (src/runtime/job.cpp runs them in order): what each
// reads, what it leaves for the next. Private to the runtime.
#pragma once

#include <mpi.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mote/expert_parallel/expert_exchange.h"
#include "mote/expert_parallel/placement.h"
#include "mote/io/output_file.h"
#include "mote/io/prompt_file.h"
#include "mote/model/expert_counters.h"
#include "mote/model/expert_mask.h"
#include "mote/model/loaded_model.h"
#include "mote/runtime/checkpoint.h"
#include "mote/runtime/job.h"
#include "mote/runtime/progress.h"
#include "mote/runtime/prompt_encoding.h"
#include "mote/runtime/request_queue.h"
#include "mote/tokenizer/chat_template.h"

namespace mote {

// The model as this rank holds it: the coordinators hold everything but
// other ranks' routed experts, the other ranks only their own experts.
struct JobModel {
  ModelConfig config;
  std::optional<Placement> placement;
  std::unique_ptr<LoadedModel> loaded;  // the weights this rank holds, the tokenizer and EOS ids
  // Chat templates by file ("" = the model's own), read on rank 0 before
  // any weights are mapped: a broken one fails in seconds.
  std::map<std::string, std::optional<ChatTemplate>> chat_templates;
  int moe_layers() const { return static_cast<int>(config.moe_layers().size()); }
};
JobModel load_job_model(const JobOptions& options, int rank, int world_size);

// The start of a job's log (rank 0): its options, the model, and how the
// routed experts are spread over the ranks.
void log_job_start(const JobOptions& options, const JobModel& model, int world_size);

// Mask sets: id 0 is "unsteered"; requests name the others.
struct MaskSets {
  std::vector<ExpertMask> sets;
  const ExpertMask* default_mask = nullptr;  // for requests that name none
};
// Read on rank 0 (adding the files they include to `inputs`), then sent to every rank.
MaskSets read_mask_sets(const JobOptions& options, const ModelConfig& config, bool root);

// The prompt files of a job (--prompts, then each --class-prompts file,
// whose prompts take its class and CLASS: ids), read on rank 0.
std::vector<PromptSpec> read_prompt_specs(const JobOptions& options);

// One request's prompt, read and encoded.
struct PreparedPrompt {
  PromptSpec spec;
  EncodedPrompt encoded;  // on error, the raw prompt's text and no tokens
  std::string error;      // non-empty: the request cannot run
};

// The job's requests on rank 0, in prompt-file order. Each keeps a few
// bytes for the whole job (where its prompt is, its class and mask set,
// whether it can run); the prompt itself is read and encoded again when
// it is handed out and when its result is written, so that memory grows
// with what runs, not with the prompt file. Every prompt is read and
// encoded once at the start, to fail bad ones before any work.
class JobRequests {
 public:
  JobRequests() = default;
  // Reads (or takes JobOptions::built_requests) and checks every request.
  JobRequests(JobOptions& options, JobModel& model, const MaskSets& masks);

  size_t size() const { return entries_.size(); }
  const std::vector<std::string>& classes() const { return classes_; }
  int16_t cls(size_t i) const { return entries_[i].cls; }
  const ExpertMask* mask(size_t i) const { return entries_[i].mask; }
  bool failed(size_t i) const { return entries_[i].failed; }
  // Why request i cannot run; empty when it can.
  const std::string& error(size_t i) const;
  // The hash of every request's id, class, mask set and encoded text (for
  // checkpoints), in order.
  uint64_t content_hash() const { return content_hash_; }
  // Request i as it will run: its spec and encoded prompt, as at the start.
  PreparedPrompt prepare(size_t i) const;
  PromptSpec spec(size_t i) const;
  // Request i without its prompt, which the job's filler adds when it is handed out.
  GenerationRequest request(size_t i) const;

 private:
  struct Entry {
    PromptPlace place;
    uint32_t file = 0;  // index in files_
    int16_t cls = 0;
    bool failed = false;
    const ExpertMask* mask = nullptr;
    uint64_t line_hash = 0;  // of the spec read, to notice a prompt file changed under the job
  };
  PreparedPrompt prepare(PromptSpec spec) const;
  void add(PromptSpec&& spec, const PromptPlace& place, uint32_t file, const MaskSets& masks);

  const JobOptions* options_ = nullptr;
  JobModel* model_ = nullptr;
  std::vector<Entry> entries_;
  struct Source {
    std::string path, cls;  // cls: the class of a --class-prompts file
  };
  std::vector<Source> files_;
  std::vector<PromptSpec> built_;  // JobOptions::built_requests, when given
  std::vector<std::string> classes_;
  std::unordered_map<std::string, int16_t> class_index_;
  std::unordered_map<size_t, std::string> errors_;
  std::unordered_map<uint64_t, size_t> id_hashes_;  // while reading: id hash -> request
  std::chrono::steady_clock::time_point last_report_;
  uint64_t content_hash_ = 0;
};

// The checkpoint of a job with --out, resumed with --resume or
// --resume-from; `finished` receives what an earlier run finished.
void open_checkpoint(JobOptions& options, const JobModel& model, const JobRequests& requests, const MaskSets& masks,
                     std::optional<Checkpoint>& checkpoint, FinishedRequests& finished);

// Rank 0's handling of finished requests, whichever coordinator ran them:
// written to the output (or checkpoint), printed in prompt-file order, and
// added to the class totals in request order (so totals do not depend on
// batching, world size, coordinators or interruptions).
class ResultCollector {
 public:
  ResultCollector(const JobOptions& options, const JobModel& model, const JobRequests& requests, OutputFile* out,
                  Checkpoint* checkpoint, FinishedRequests finished, const std::vector<size_t>& todo,
                  bool keep_outcome);
  void operator()(size_t index, GenerationResult&& result);
  // Prints what waits (requests finished before a resume) once the job is complete.
  void print_ready();
  // Stopped: keeps what finished in the checkpoint. Returns false without one.
  bool save_checkpoint();
  // Complete: writes the result file and moves it into place.
  void write_result(const MpiSession& mpi, const MaskSets& masks, const std::vector<uint64_t>& rank_memory,
                    const JobFinish& finish);

  size_t finished_before() const { return finished_before_; }
  size_t finished_now() const { return finished_now_; }
  const ExpertCounters& run_totals() const { return run_totals_; }
  // A request's prompt as it was handed out (the job's RequestFiller),
  // kept until its result is written and printed.
  void handed_out(size_t index, PreparedPrompt&& prompt);

 private:
  void show(size_t index, const std::string& body);
  void write(hid_t group, size_t index, const GenerationResult& result);

  const JobOptions& options_;
  const JobModel& model_;
  const JobRequests& requests_;
  OutputFile* out_;
  Checkpoint* checkpoint_;
  bool write_parts_;
  std::optional<H5Handle> requests_group_;
  std::map<size_t, GenerationResult> waiting_;
  size_t next_to_print_ = 0;
  size_t finished_before_ = 0, finished_now_ = 0;
  bool stdout_failed_ = false;
  std::vector<bool> ran_;
  ExpertCounters class_totals_, run_totals_;
  std::vector<uint64_t> class_tokens_;
  const PreparedPrompt& prompt(size_t index);  // handed out, or prepared again
  std::map<size_t, PreparedPrompt> prompts_;
  std::map<size_t, std::string> run_errors_;  // requests that failed while they ran
  // The outcome a JobFinish reads, kept only when there is one.
  bool keep_outcome_;
  std::vector<std::string> texts_;
  std::vector<int32_t> first_tokens_;
  std::vector<std::vector<double>> scores_;
  Progress progress_;
};

// Step 5 and 6, for a job that runs its requests in one phase (generate,
// profile) or several (a scan's baselines, then its knockouts): the
// exchange, the expert counters and the coordinators' communicator live as
// long as the job; each run() hands out one list of requests and ends when
// every rank has finished it.
class JobRun {
 public:
  // `masks`: the job's mask sets (the same on every rank); a phase may
  // replace them between runs, never during one.
  JobRun(const JobOptions& options, const MpiSession& mpi, const JobModel& model, const std::vector<ExpertMask>& masks);
  ~JobRun();
  JobRun(const JobRun&) = delete;
  JobRun& operator=(const JobRun&) = delete;

  // Every rank calls it; rank 0 passes the requests and takes the results
  // in on_done (not in order). Returns, on the coordinators, the stop signal
  // that ended the phase early (0 when it ran to the end; other ranks: 0).
  // A server (JobOptions::serving) passes no requests but its inbox, on rank 0.
  int run(std::vector<std::pair<size_t, GenerationRequest>> todo, const ResultHandler& on_done,
          const RequestFiller& fill = {}, RequestInbox* inbox = nullptr);
  // Step 6: what the experts processed (on whichever ranks own them)
  // against what each coordinator's router decided, to the bit. Returns
  // the routing decisions of all coordinators summed (rank 0).
  ExpertCounters check_counters();
  // The end-of-job throughput lines over all runs, logged by rank 0 (every rank calls it).
  void report_throughput();

 private:
  const JobOptions& options_;
  const MpiSession& mpi_;
  const JobModel& model_;
  const std::vector<ExpertMask>& masks_;
  std::vector<ExpertCounters> processed_;  // per coordinator that sent the tokens
  ExpertCounters routed_;                  // this coordinator's routing decisions whose experts ran
  ExpertCounters routed_not_run_;          // and those whose experts did not (ForwardTaps::routed_not_run_counts)
  std::unique_ptr<ExpertWorker> worker_;
  std::unique_ptr<ExpertExchange> exchange_;
  MPI_Comm coordinators_comm_ = MPI_COMM_NULL;
  GenerationStats stats_;
  double block_seconds_ = 0, wall_seconds_ = 0;
};

// What makes a model directory this model (for checkpoints): its small
// files' contents and every tensor's name, dtype, shape and place.
std::string model_fingerprint(const std::filesystem::path& dir, const WeightStore& store);

// The provenance every result file's root carries (docs/hdf5-format.md).
void write_job_attributes(hid_t root, const JobOptions& options, const ModelConfig& config, const Placement& placement,
                          int world_size, const char* job);

// Every rank's peak RSS and resident weight bytes, [rank][2], on rank 0
// (every rank calls it); logged and written as /ranks.
std::vector<uint64_t> gather_rank_memory(const JobModel& model, int world_size);
void log_rank_memory(const std::vector<uint64_t>& rank_memory);
void write_ranks(hid_t root, const Placement& placement, const std::vector<uint64_t>& rank_memory);
// Per-request gate sums added up in request order against the ranks' own
// sums: equal up to the order of summation.
constexpr double kGateSumOrderTolerance = 1e-9;

// The fTRI totals of a profile: counts and gate sums per class, the tokens
// fed per class and phase ([class, phase]), and the axes' note.
void write_totals(hid_t root, const ExpertCounters& counters, const std::vector<std::string>& classes,
                  const std::vector<uint64_t>& class_tokens, const ModelConfig& config);
// Moves /requests/0 .. count-1 into a new /requests that lists them in
// index order (`where` names the file in errors).
void order_requests(hid_t root, size_t count, const std::string& where);

// Threads per rank: --threads, else OMP_NUM_THREADS, else the host's cores
// shared among the job's ranks on it.
void set_threads(JobOptions& job, const MpiSession& mpi);

// --coordinators against the world size: 0 (all) becomes every rank; more
// than the job's ranks is an error.

}  // namespace mote
