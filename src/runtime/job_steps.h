// The steps of a job (src/runtime/job.cpp runs them in order): what each
// reads, what it leaves for the next. Private to the runtime.
#pragma once

#include <mpi.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mote/expert_parallel/expert_counters.h"
#include "mote/expert_parallel/placement.h"
#include "mote/io/output_file.h"
#include "mote/io/prompt_file.h"
#include "mote/model/expert_mask.h"
#include "mote/model/loaded_model.h"
#include "mote/runtime/checkpoint.h"
#include "mote/runtime/job.h"
#include "mote/runtime/progress.h"
#include "mote/runtime/prompt_encoding.h"
#include "mote/tokenizer/chat_template.h"

namespace mote {

// The model as this rank holds it: the coordinators hold everything but
// other ranks' routed experts, the other ranks only their own experts.
struct JobModel {
  ModelConfig config;
  std::optional<Placement> placement;
  std::unique_ptr<LoadedModel> files;
  // Chat templates by file ("" = the model's own), read on rank 0 before
  // any weights are mapped: a broken one fails in seconds.
  std::map<std::string, std::optional<ChatTemplate>> chat_templates;
  int moe_layers() const { return static_cast<int>(config.moe_layers().size()); }
};
JobModel load_job_model(const JobOptions& options, int rank, int world_size);

// Mask sets: id 0 is "unsteered"; requests name the others.
struct MaskSets {
  std::vector<ExpertMask> sets;
  const ExpertMask* default_mask = nullptr;  // for requests that name none
};
// Read on rank 0 (adding the files they include to `inputs`), then sent to every rank.
MaskSets read_mask_sets(const JobOptions& options, const ModelConfig& config, bool reader, std::vector<std::filesystem::path>& inputs);

// The job's requests, read and encoded on rank 0, in prompt-file order.
struct JobRequests {
  std::vector<PromptSpec> specs;
  std::vector<std::string> classes;
  std::vector<EncodedPrompt> encoded;
  std::vector<GenerationRequest> requests;
  std::vector<const ExpertMask*> masks;
  std::vector<std::string> errors;  // non-empty: the request cannot run and is recorded as failed
  size_t size() const { return specs.size(); }
};
JobRequests read_requests(const JobOptions& options, JobModel& model, const MaskSets& masks);

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
                  Checkpoint* checkpoint, FinishedRequests finished, const std::vector<size_t>& todo);
  void operator()(size_t index, GenerationResult&& result);
  // Prints what waits (requests finished before a resume) once the job is complete.
  void print_ready();
  // Stopped: keeps what finished in the checkpoint. Returns false without one.
  bool save_checkpoint();
  // Complete: writes the result file and moves it into place.
  void write_result(const MpiSession& mpi, const MaskSets& masks, const std::vector<uint64_t>& rank_memory, const JobFinish& finish);

  size_t finished_before() const { return finished_before_; }
  size_t finished_now() const { return finished_now_; }
  const ExpertCounters& run_totals() const { return run_totals_; }
  const std::vector<std::string>& errors();  // why each request failed, before or while running

 private:
  void show(size_t index, const std::string& body);
  void write(hid_t group, size_t index, const GenerationResult& result) const;

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
  std::vector<std::string> texts_, run_errors_, all_errors_;
  Progress progress_;
};

uint64_t fnv1a(uint64_t h, std::string_view text);

}  // namespace mote
